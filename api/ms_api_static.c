/* The widget's static files.  Names are checked before the file system sees
 * them (a short allow-list of characters, no "..", no hidden files) and the
 * resolved path must still lie inside the widget folder, so neither a
 * crafted name nor a symlink can reach other files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ms_api_int.h"

static const struct {
        const char *ext;
        const char *type;
} types[] = {
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".html", "text/html; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".md", "text/plain; charset=utf-8"},
};

static int name_allowed(const char *rel)
{
        if (strlen(rel) > 200)
                return 0;
        const char *seg = rel;
        for (const char *p = rel;; p++) {
                if (*p == '/' || *p == '\0') {
                        /* Empty segments ("a//b"), and segments starting with a
                         * dot ("..", ".git", ".env") are refused. */
                        if (p == seg || seg[0] == '.')
                                return 0;
                        if (*p == '\0')
                                return 1;
                        seg = p + 1;
                        continue;
                }
                char c = *p;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
                        return 0;
        }
}

static const char *type_of(const char *name)
{
        const char *dot = strrchr(name, '.');
        if (dot)
                for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                        if (strcmp(dot, types[i].ext) == 0)
                                return types[i].type;
        return NULL;
}

int ms_api_static_open(const char *dir, const char *rel, uint64_t *size,
                       const char **content_type)
{
        if (!*rel)
                rel = "index.html";
        if (!name_allowed(rel))
                return -1;
        const char *type = type_of(rel);
        /* Only known file kinds are served, so nothing unexpected that ends
         * up in the folder (an editor backup, a core file) leaks. */
        if (!type)
                return -1;
        char path[PATH_MAX], real[PATH_MAX], realdir[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", dir, rel) >= (int)sizeof(path))
                return -1;
        if (!realpath(dir, realdir) || !realpath(path, real))
                return -1;
        size_t n = strlen(realdir);
        if (strncmp(real, realdir, n) != 0 || real[n] != '/')
                return -1;
        int fd = open(real, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return -1;
        }
        *size = (uint64_t)st.st_size;
        *content_type = type;
        return fd;
}
