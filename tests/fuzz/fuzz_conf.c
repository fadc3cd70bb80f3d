/* libFuzzer target: the configuration loader (issue 4, point 7).  The input
 * is written to a temporary file that ms_conf_load reads as the libconfig
 * file; it must either load (and clear) or fail with MS_ERR_CONFIG and a
 * message, never crash or leak.  MEMBERSYNC_* variables are removed first so
 * only the file counts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms_conf.h"
#include "ms_util.h"

extern char **environ;
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_temp(void)
{
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        for (int again = 1; again;) {
                again = 0;
                for (char **e = environ; *e; e++) {
                        if (strncmp(*e, "MEMBERSYNC_", 11) == 0) {
                                char name[256];
                                size_t n = strcspn(*e, "=");
                                snprintf(name, sizeof(name), "%.*s", (int)n, *e);
                                unsetenv(name);
                                again = 1;
                                break;
                        }
                }
        }
        snprintf(path, sizeof(path), "/tmp/ms-fuzz-conf.XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
                abort();
        close(fd);
        atexit(remove_temp);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        FILE *f = fopen(path, "wb");
        if (!f)
                abort();
        fwrite(data, 1, size, f);
        fclose(f);
        ms_conf_t conf;
        char err[1024] = "";
        int rc = ms_conf_load(path, &conf, err, sizeof(err));
        if (rc == 0) {
                ms_conf_clear(&conf);
        } else if (rc != MS_ERR_CONFIG || !err[0]) {
                fprintf(stderr, "fuzz_conf: unexpected return %d (%s)\n", rc, err);
                abort();
        }
        return 0;
}
