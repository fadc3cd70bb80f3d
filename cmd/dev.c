#include "cli.h"

#include <stdio.h>

int ms_cli_dev(ms_conf_t *conf, int argc, char **argv, const char *argv0)
{
        (void)conf;
        (void)argc;
        (void)argv;
        (void)argv0;
        fprintf(stderr, "membersync dev: not built yet\n");
        return 1;
}
