/* Bearer JWT verification for the api role.
 *
 * libjwt verifies the signature with whatever algorithm the token's header
 * names, so the header is checked here first: only HS256 (with the
 * configured secret) and RS256 (with the configured public key) pass, and
 * each only when its key is configured.  That closes both `alg: none` and
 * the classic confusion attack where an RS256 public key is used as an
 * HMAC secret.  Claims are then read with jansson and checked strictly. */
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ms_api_int.h"
#include "ms_log.h"
#include "ms_util.h"

/* Tolerated clock difference between the token issuer and us. */
#define CLOCK_LEEWAY_S 30
#define MAX_TOKEN_LEN  8192
/* RFC 7518 3.2: an HS256 key must be at least as long as the hash. */
#define MIN_HS256_SECRET 32

struct ms_api_auth {
        unsigned char *hs_secret;
        size_t hs_len;
        unsigned char *rs_pub;
        size_t rs_len;
};

static int read_key(const char *path, unsigned char **out, size_t *len, int strip_newline,
                    char *errstr, size_t errstr_size)
{
        size_t n = 0;
        char *buf = ms_read_file(path, &n);
        if (!buf) {
                snprintf(errstr, errstr_size, "config: api: cannot read %s", path);
                return MS_ERR_CONFIG;
        }
        /* Secret files are usually written with a trailing newline that is
         * not part of the secret (same rule as ms_conf_secret). */
        while (strip_newline && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        *out = (unsigned char *)buf;
        *len = n;
        return 0;
}

int ms_api_auth_new(const ms_conf_t *conf, ms_api_auth_t **out, char *errstr,
                    size_t errstr_size)
{
        int rc = 0;
        ms_api_auth_t *a = calloc(1, sizeof(*a));
        if (!a) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        if (!conf->api_jwt_hs256_secret_file[0] &&
            !conf->api_jwt_rs256_public_key_file[0]) {
                snprintf(
                    errstr, errstr_size,
                    "config: api.jwt_hs256_secret_file or api.jwt_rs256_public_key_file "
                    "must be set (MEMBERSYNC_API_JWT_HS256_SECRET_FILE / "
                    "MEMBERSYNC_API_JWT_RS256_PUBLIC_KEY_FILE)");
                rc = MS_ERR_CONFIG;
                goto out;
        }
        if (conf->api_jwt_hs256_secret_file[0]) {
                if ((rc = read_key(conf->api_jwt_hs256_secret_file, &a->hs_secret,
                                   &a->hs_len, 1, errstr, errstr_size)))
                        goto out;
                if (a->hs_len < MIN_HS256_SECRET) {
                        snprintf(
                            errstr, errstr_size,
                            "config: api.jwt_hs256_secret_file: the secret must be at "
                            "least %d bytes",
                            MIN_HS256_SECRET);
                        rc = MS_ERR_CONFIG;
                        goto out;
                }
        }
        if (conf->api_jwt_rs256_public_key_file[0]) {
                if ((rc = read_key(conf->api_jwt_rs256_public_key_file, &a->rs_pub,
                                   &a->rs_len, 0, errstr, errstr_size)))
                        goto out;
                if (!strstr((const char *)a->rs_pub, "-----BEGIN PUBLIC KEY-----") &&
                    !strstr((const char *)a->rs_pub, "-----BEGIN RSA PUBLIC KEY-----")) {
                        snprintf(errstr, errstr_size,
                                 "config: api.jwt_rs256_public_key_file: not a PEM "
                                 "public key");
                        rc = MS_ERR_CONFIG;
                        goto out;
                }
        }
out:
        if (rc) {
                ms_api_auth_destroy(a);
                a = NULL;
        }
        *out = a;
        return rc;
}

void ms_api_auth_destroy(ms_api_auth_t *auth)
{
        if (!auth)
                return;
        if (auth->hs_secret) {
                /* Do not leave the secret behind in freed memory. */
                memset(auth->hs_secret, 0, auth->hs_len);
                free(auth->hs_secret);
        }
        free(auth->rs_pub);
        free(auth);
}

static int b64url_val(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

/* Decodes unpadded base64url into a malloc'ed NUL-terminated buffer. */
static char *b64url_decode(const char *s, size_t len)
{
        if (len % 4 == 1)
                return NULL;
        char *out = malloc(len / 4 * 3 + 4);
        if (!out)
                return NULL;
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
                int v = b64url_val(s[i]);
                if (v < 0) {
                        free(out);
                        return NULL;
                }
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (char)((acc >> bits) & 0xff);
                }
        }
        out[o] = '\0';
        return out;
}

static int claim_str(json_t *claims, const char *name, char *dst, size_t size, char *why,
                     size_t why_size)
{
        const char *v = json_string_value(json_object_get(claims, name));
        if (!v || !*v) {
                snprintf(why, why_size, "claim %s is missing", name);
                return -1;
        }
        if (strlen(v) >= size) {
                snprintf(why, why_size, "claim %s is too long", name);
                return -1;
        }
        snprintf(dst, size, "%s", v);
        return 0;
}

/* A NumericDate claim (RFC 7519 2): a JSON number of seconds. */
static int claim_time(json_t *claims, const char *name, int required, double *out,
                      char *why, size_t why_size)
{
        json_t *v = json_object_get(claims, name);
        if (!v && !required)
                return 1;
        if (!json_is_number(v)) {
                snprintf(why, why_size, "claim %s is missing or not a number", name);
                return -1;
        }
        *out = json_number_value(v);
        return 0;
}

int ms_api_auth_verify(const ms_api_auth_t *auth, const char *token,
                       ms_api_principal_t *who, char *why, size_t why_size)
{
        int rc = -1;
        char *head = NULL, *grants = NULL;
        json_t *hdr = NULL, *claims = NULL;
        jwt_t *jwt = NULL;
        memset(who, 0, sizeof(*who));

        size_t len = strlen(token);
        const char *dot1 = strchr(token, '.');
        const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (len == 0 || len > MAX_TOKEN_LEN || !dot1 || !dot2 || strchr(dot2 + 1, '.') ||
            dot2[1] == '\0') {
                snprintf(why, why_size, "malformed token");
                goto out;
        }
        head = b64url_decode(token, (size_t)(dot1 - token));
        hdr = head ? json_loads(head, JSON_REJECT_DUPLICATES, NULL) : NULL;
        const char *alg = json_string_value(json_object_get(hdr, "alg"));
        if (!alg) {
                snprintf(why, why_size, "malformed token header");
                goto out;
        }
        const unsigned char *key = NULL;
        size_t key_len = 0;
        jwt_alg_t want = JWT_ALG_INVAL;
        if (strcmp(alg, "HS256") == 0 && auth->hs_secret) {
                key = auth->hs_secret;
                key_len = auth->hs_len;
                want = JWT_ALG_HS256;
        } else if (strcmp(alg, "RS256") == 0 && auth->rs_pub) {
                key = auth->rs_pub;
                key_len = auth->rs_len;
                want = JWT_ALG_RS256;
        } else {
                snprintf(why, why_size, "algorithm not accepted");
                goto out;
        }
        if (jwt_decode(&jwt, token, key, (int)key_len) != 0 || !jwt) {
                snprintf(why, why_size, "invalid signature");
                goto out;
        }
        /* Belt and braces: the algorithm libjwt verified with is the one we
         * chose the key for. */
        if (jwt_get_alg(jwt) != want) {
                snprintf(why, why_size, "algorithm not accepted");
                goto out;
        }
        grants = jwt_get_grants_json(jwt, NULL);
        claims = grants ? json_loads(grants, 0, NULL) : NULL;
        if (!json_is_object(claims)) {
                snprintf(why, why_size, "malformed claims");
                goto out;
        }
        double exp = 0, nbf = 0;
        double now = (double)time(NULL);
        if (claim_time(claims, "exp", 1, &exp, why, why_size) < 0)
                goto out;
        if (exp + CLOCK_LEEWAY_S <= now) {
                snprintf(why, why_size, "token expired");
                goto out;
        }
        int has_nbf = claim_time(claims, "nbf", 0, &nbf, why, why_size);
        if (has_nbf < 0)
                goto out;
        if (has_nbf == 0 && nbf > now + CLOCK_LEEWAY_S) {
                snprintf(why, why_size, "token not valid yet");
                goto out;
        }
        if (claim_str(claims, "sub", who->sub, sizeof(who->sub), why, why_size))
                goto out;
        const char *role = json_string_value(json_object_get(claims, "role"));
        if (!role) {
                snprintf(why, why_size, "claim role is missing");
                goto out;
        }
        if (strcmp(role, "global_admin") == 0) {
                who->global = 1;
                /* A global admin may belong to an org too; it is only
                 * informational for them. */
                const char *org = json_string_value(json_object_get(claims, "org_id"));
                if (org && strlen(org) < sizeof(who->org_id))
                        snprintf(who->org_id, sizeof(who->org_id), "%s", org);
        } else if (strcmp(role, "org_admin") == 0) {
                if (claim_str(claims, "org_id", who->org_id, sizeof(who->org_id), why,
                              why_size))
                        goto out;
        } else {
                snprintf(why, why_size, "claim role is not org_admin or global_admin");
                goto out;
        }
        rc = 0;
out:
        if (jwt)
                jwt_free(jwt);
        free(grants);
        free(head);
        json_decref(hdr);
        json_decref(claims);
        return rc;
}
