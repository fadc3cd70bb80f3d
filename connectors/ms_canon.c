/* ms_canon: the record rules of DESIGN.md section 5, common to both member
 * systems.  The mapping modules (cornerstone_map.c, consio_map.c) copy a
 * native record into an ms_canon_input_t; everything that decides errors,
 * warnings and normalized values lives here so that both systems follow the
 * same rules by construction.
 *
 * Decisions the design left open (also listed in the README):
 * - Every "string" field accepts a JSON string, an integer or an integral
 *   real (coerced to its decimal text, e.g. 12345 -> "12345"); null or a
 *   missing key is "absent"; objects, arrays, booleans and fractional
 *   numbers are MALFORMED.  A string that is not valid UTF-8 (only possible
 *   with json_string_nocheck) is MALFORMED too: we never guess an encoding.
 * - Identifiers (member number, local association id) are trimmed and must
 *   not hold control characters (NUL included) and must be at most 255
 *   bytes, else MALFORMED: they are keys in PostgreSQL and Kafka, where a NUL
 *   or a multi-kilobyte key cannot be stored.  An external id that is absent,
 *   empty or unusable in the same way (or of the wrong type) is MISSING_ID.
 * - Blank text ("" or only whitespace) in email, phone and the dates means
 *   "no value" (null, no warning), as null does.
 * - Names: NFC, then C0 controls, DEL, C1 controls and Unicode spaces
 *   (NBSP, U+2000..U+200A, ...) become a space, runs of spaces collapse to
 *   one, ends trimmed, then cut to 200 code points (trimmed again so a cut
 *   never leaves a trailing space).  The local association name follows the
 *   same rules and gets its own TRUNCATED warning; blank becomes null.
 * - Email: trimming removes surrounding whitespace and control characters
 *   (Unicode spaces such as NBSP included).  Besides the rules of the
 *   design: at most 254 bytes (RFC 5321), no empty domain labels
 *   ("a@b..no", "a@.no"), no whitespace or control characters anywhere.
 *   Domain lowercased with Unicode simple case mapping; the local part is
 *   kept as is.
 * - Phone: the removed separators are spaces (Unicode spaces such as NBSP
 *   too), dashes (also U+2010..U+2015 and U+2212), dots and parentheses; any
 *   other character makes the number invalid.  A '+' must come first; a
 *   country code cannot start with 0 ("+0..." / "000..." are invalid, E.164
 *   has no such codes).
 * - Status: compared after trimming and NFC, case-sensitively; missing
 *   status is INVALID_STATUS (the design lists only member number and names
 *   as MISSING_FIELD).
 * - Roles: a value that is neither an array nor null is MALFORMED; an
 *   element that is not a known role name (including non-strings) is
 *   dropped with UNKNOWN_ROLE; duplicates collapse silently.  Past
 *   MS_CANON_MAX_WARNINGS the remaining unknown roles are reported in the
 *   last role warning's message instead of one warning each.
 * - A record with an error carries no warnings: it is skipped, so its
 *   field-level problems are not counted.
 * - A source_updated_at that cannot be parsed becomes null without a
 *   warning: it is metadata written by the source system, which an admin
 *   cannot correct, and it is not part of the content hash. */
#include "ms_canon.h"
#include "ms_map.h"
#include "ms_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#define NAME_MAX_CP 200
#define NAME_BUF    (NAME_MAX_CP * 4 + 1)
#define EMAIL_MAX   254
#define EMAIL_BUF   (EMAIL_MAX * 2 + 8)
#define PHONE_BUF   24
#define NFC_OPTS    (UTF8PROC_STABLE | UTF8PROC_COMPOSE)

static const char *const field_names[MS_CANON_F_COUNT] = {
    "external_id",
    "member_number",
    "given_name",
    "family_name",
    "email",
    "phone",
    "birth_date",
    "local_association_id",
    "local_association_name",
    "status",
    "valid_from",
    "valid_to",
    "roles",
    "source_updated_at",
};

static const char *const status_enum[4] = {"ACTIVE", "LAPSED", "RESIGNED", "DECEASED"};
static const char *const role_enum[4] = {"PEER_MENTOR", "COORDINATOR", "LOCAL_LEADER",
                                         "BOARD_MEMBER"};
/* Role indexes in alphabetical order of their names, so that the roles array
 * comes out sorted without sorting at run time. */
static const int role_sorted[4] = {3, 1, 2, 0};

const char *ms_canon_field_name(ms_canon_field_t f)
{
        return (unsigned)f < MS_CANON_F_COUNT ? field_names[f] : NULL;
}

const char *ms_system_enum(ms_system_t s)
{
        switch (s) {
        case MS_SYSTEM_CORNERSTONE:
                return "CORNERSTONE";
        case MS_SYSTEM_CONSIO:
                return "CONSIO";
        }
        return NULL;
}

const char *ms_system_slug(ms_system_t s)
{
        switch (s) {
        case MS_SYSTEM_CORNERSTONE:
                return "cornerstone";
        case MS_SYSTEM_CONSIO:
                return "consio";
        }
        return NULL;
}

int ms_system_parse(const char *s, ms_system_t *out)
{
        if (!s)
                return -1;
        if (strcasecmp(s, "cornerstone") == 0) {
                *out = MS_SYSTEM_CORNERSTONE;
                return 0;
        }
        if (strcasecmp(s, "consio") == 0) {
                *out = MS_SYSTEM_CONSIO;
                return 0;
        }
        return -1;
}

/* ---- UTF-8 and text helpers ---------------------------------------------- */

/* Decodes one code point; returns its byte length, or 0 when the bytes are not
 * well-formed UTF-8 (overlong forms, surrogates and values past U+10FFFF are
 * rejected, as jansson does). */
static size_t utf8_decode(const unsigned char *s, size_t len, int32_t *cp)
{
        unsigned c = s[0];
        if (c < 0x80) {
                *cp = (int32_t)c;
                return 1;
        }
        if (c < 0xC2)
                return 0;
        if (c < 0xE0) {
                if (len < 2 || (s[1] & 0xC0) != 0x80)
                        return 0;
                *cp = (int32_t)(((c & 0x1Fu) << 6) | (s[1] & 0x3Fu));
                return 2;
        }
        if (c < 0xF0) {
                if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
                        return 0;
                int32_t v = (int32_t)(((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) |
                                      (s[2] & 0x3Fu));
                /* U+FFFD is the gateway's stand-in for bytes that were not
                 * UTF-8 on the wire (ms_gateway repairs the body so that one
                 * bad record does not fail the page): treated as the invalid
                 * text it replaced. */
                if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF) || v == 0xFFFD)
                        return 0;
                *cp = v;
                return 3;
        }
        if (c < 0xF5) {
                if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
                    (s[3] & 0xC0) != 0x80)
                        return 0;
                int32_t v = (int32_t)(((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) |
                                      ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu));
                if (v < 0x10000 || v > 0x10FFFF)
                        return 0;
                *cp = v;
                return 4;
        }
        return 0;
}

/* Validates UTF-8 and reports whether NFC could change the text: code points
 * below U+0300 are all NFC_Quick_Check=Yes, so most Norwegian names (ASCII
 * plus Latin-1 letters) skip utf8proc entirely. */
static int scan_utf8(const char *s, size_t len, unsigned *flags)
{
        const unsigned char *p = (const unsigned char *)s;
        unsigned f = 0;
        size_t i = 0;
        while (i < len) {
                if (p[i] < 0x80) {
                        i++;
                        continue;
                }
                int32_t cp;
                size_t n = utf8_decode(p + i, len - i, &cp);
                if (n == 0)
                        return -1;
                f |= MS_CANON_TXT_NONASCII;
                if (cp >= 0x300)
                        f |= MS_CANON_TXT_NEEDNFC;
                i += n;
        }
        *flags = f;
        return 0;
}

static int is_ascii_space(unsigned char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *len)
{
        const char *p = *s;
        size_t n = *len;
        while (n > 0 && is_ascii_space((unsigned char)p[0])) {
                p++;
                n--;
        }
        while (n > 0 && is_ascii_space((unsigned char)p[n - 1]))
                n--;
        *s = p;
        *len = n;
}

/* Characters that names treat as a space: C0 controls (NUL included), space,
 * DEL, C1 controls, NBSP and the other Unicode space separators. */
static int is_space_cp(int32_t cp)
{
        if (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0))
                return 1;
        if (cp < 0x1680)
                return 0;
        return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
               cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Trims is_space_cp characters (Unicode spaces and controls) from both ends
 * of valid UTF-8: contact data is often pasted with a stray NBSP or newline. */
static void trim_spaces(const char **s, size_t *len)
{
        const unsigned char *p = (const unsigned char *)*s;
        size_t b = 0, e = *len;
        while (b < e) {
                int32_t cp;
                size_t n = utf8_decode(p + b, e - b, &cp);
                if (n == 0 || !is_space_cp(cp))
                        break;
                b += n;
        }
        while (e > b) {
                size_t start = e - 1;
                while (start > b && (p[start] & 0xC0) == 0x80)
                        start--;
                int32_t cp;
                size_t n = utf8_decode(p + start, e - start, &cp);
                if (n != e - start || !is_space_cp(cp))
                        break;
                e = start;
        }
        *s += b;
        *len = e - b;
}

/* What a phone number may be written with besides digits and a leading '+':
 * spaces (Unicode ones too), dashes (hyphen, the Unicode dashes a word
 * processor substitutes, minus sign), dots and parentheses.  Control
 * characters are not separators: they make the number invalid. */
static int is_phone_separator(int32_t cp)
{
        if (cp == ' ' || cp == '\t' || cp == '-' || cp == '.' || cp == '(' || cp == ')')
                return 1;
        if (cp < 0xA0)
                return 0;
        return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
               (cp >= 0x2010 && cp <= 0x2015) || cp == 0x202F || cp == 0x205F ||
               cp == 0x2212 || cp == 0x3000;
}

/* Control characters are not allowed inside identifiers. */
static int has_control(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;
        while (i < len) {
                int32_t cp;
                size_t n = utf8_decode(p + i, len - i, &cp);
                if (n == 0 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
                        return 1;
                i += n;
        }
        return 0;
}

/* Decimal text of an integer or an integral real; -1 for anything else.  Reals
 * are accepted only where exact (|x| < 2^53) because 1.5 or 1e300 has no
 * sensible identifier form. */
static int number_text(const json_t *v, char *buf, size_t size)
{
        if (json_is_integer(v)) {
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return 0;
        }
        if (json_is_real(v)) {
                double d = json_real_value(v);
                if (!isfinite(d) || d != floor(d) || fabs(d) >= 9007199254740992.0)
                        return -1;
                snprintf(buf, size, "%lld", (long long)d);
                return 0;
        }
        return -1;
}

/* ---- reading native values (used by the mapping modules) ---------------- */

static void mark_bad(uint32_t *mask, unsigned char *why, ms_canon_field_t f, int reason)
{
        if (!(*mask & (1u << f)))
                why[f] = (unsigned char)reason;
        *mask |= 1u << f;
}

void ms_canon_input_init(ms_canon_input_t *in)
{
        /* Only the parts that are read unconditionally need clearing; the
         * text buffers are written before use. */
        memset(in->f, 0, sizeof in->f);
        memset(in->bad_why, 0, sizeof in->bad_why);
        in->roles = NULL;
        in->id_state = MS_CANON_ID_ABSENT;
        in->malformed = 0;
        in->ext_id[0] = '\0';
        in->la_id[0] = '\0';
}

void ms_canon_in_text(ms_canon_input_t *in, ms_canon_field_t f, const json_t *v)
{
        ms_canon_text_t *t = &in->f[f];
        t->s = NULL;
        t->len = 0;
        t->flags = 0;
        if (!v || json_is_null(v))
                return;
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                if (scan_utf8(s, len, &t->flags) < 0) {
                        mark_bad(&in->malformed, in->bad_why, f, MS_CANON_BAD_UTF8);
                        return;
                }
                t->s = s;
                t->len = len;
                return;
        }
        if (number_text(v, in->num[f], sizeof in->num[f]) == 0) {
                t->s = in->num[f];
                t->len = strlen(in->num[f]);
                return;
        }
        mark_bad(&in->malformed, in->bad_why, f, MS_CANON_BAD_TYPE);
}

/* Canonical decimal form of an optionally signed digit string: "020000" and
 * 20000 must name the same actor. */
static int canonical_integer_text(const char *s, size_t len, char *buf)
{
        int neg = 0;
        if (len > 0 && (s[0] == '-' || s[0] == '+')) {
                neg = s[0] == '-';
                s++;
                len--;
        }
        if (len == 0)
                return -1;
        for (size_t i = 0; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                        return -1;
        while (len > 1 && s[0] == '0') {
                s++;
                len--;
        }
        if (len == 1 && s[0] == '0')
                neg = 0;
        if (len + (size_t)neg > MS_CANON_ID_MAX)
                return -2;
        size_t o = 0;
        if (neg)
                buf[o++] = '-';
        memcpy(buf + o, s, len);
        buf[o + len] = '\0';
        return 0;
}

int ms_canon_in_id(const json_t *v, int numeric, char *buf, int *why)
{
        buf[0] = '\0';
        *why = MS_CANON_BAD_NONE;
        if (!v || json_is_null(v))
                return MS_CANON_ID_ABSENT;
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                trim(&s, &len);
                if (len == 0)
                        return MS_CANON_ID_ABSENT;
                if (numeric) {
                        int rc = canonical_integer_text(s, len, buf);
                        if (rc == 0)
                                return MS_CANON_ID_OK;
                        *why =
                            rc == -2 ? MS_CANON_BAD_TOO_LONG : MS_CANON_BAD_NOT_NUMERIC;
                        return MS_CANON_ID_BAD;
                }
                unsigned flags;
                if (scan_utf8(s, len, &flags) < 0) {
                        *why = MS_CANON_BAD_UTF8;
                        return MS_CANON_ID_BAD;
                }
                if (has_control(s, len)) {
                        *why = MS_CANON_BAD_CHARS;
                        return MS_CANON_ID_BAD;
                }
                if (len > MS_CANON_ID_MAX) {
                        *why = MS_CANON_BAD_TOO_LONG;
                        return MS_CANON_ID_BAD;
                }
                memcpy(buf, s, len);
                buf[len] = '\0';
                return MS_CANON_ID_OK;
        }
        if (number_text(v, buf, MS_CANON_ID_MAX + 1) == 0)
                return MS_CANON_ID_OK;
        *why = MS_CANON_BAD_TYPE;
        return MS_CANON_ID_BAD;
}

void ms_canon_in_local(ms_canon_input_t *in, const json_t *la, const char *idkey,
                       const char *namekey, int numeric_id)
{
        in->f[MS_CANON_F_LA_ID].s = NULL;
        in->f[MS_CANON_F_LA_NAME].s = NULL;
        if (!la || json_is_null(la))
                return;
        if (!json_is_object(la)) {
                mark_bad(&in->malformed, in->bad_why, MS_CANON_F_LA_ID,
                         MS_CANON_BAD_TYPE);
                return;
        }
        int why;
        int st = ms_canon_in_id(json_object_get(la, idkey), numeric_id, in->la_id, &why);
        if (st == MS_CANON_ID_BAD) {
                mark_bad(&in->malformed, in->bad_why, MS_CANON_F_LA_ID, why);
        } else if (st == MS_CANON_ID_OK) {
                in->f[MS_CANON_F_LA_ID].s = in->la_id;
                in->f[MS_CANON_F_LA_ID].len = strlen(in->la_id);
        }
        ms_canon_in_text(in, MS_CANON_F_LA_NAME, json_object_get(la, namekey));
}

int ms_canon_parse_local_datetime(const char *s, size_t len, int64_t *local_ms)
{
        int y, mo, d, h, mi, se, frac = 0;
        if (len < 19 || ms_digits(s, 4, &y) || s[4] != '-' || ms_digits(s + 5, 2, &mo) ||
            s[7] != '-' || ms_digits(s + 8, 2, &d) || (s[10] != ' ' && s[10] != 'T') ||
            ms_digits(s + 11, 2, &h) || s[13] != ':' || ms_digits(s + 14, 2, &mi) ||
            s[16] != ':' || ms_digits(s + 17, 2, &se))
                return -1;
        if (!ms_date_valid(y, mo, d) || h > 23 || mi > 59 || se > 59)
                return -1;
        size_t p = 19;
        if (p < len && s[p] == '.') {
                size_t digits = 0;
                p++;
                while (p < len && s[p] >= '0' && s[p] <= '9') {
                        if (digits < 3)
                                frac = frac * 10 + (s[p] - '0');
                        digits++;
                        p++;
                }
                if (digits == 0)
                        return -1;
                for (; digits < 3; digits++)
                        frac *= 10;
        }
        *local_ms =
            ((int64_t)ms_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) *
                1000 +
            frac;
        return (int)p;
}

/* ---- normalization -------------------------------------------------------- */

/* NFC of s into a UTF-8 buffer.  Uses the caller's stack buffer when the
 * decomposition fits, else the heap (*heap, freed by the caller).  Returns the
 * byte length, -1 on allocation failure, -2 when utf8proc rejects the text. */
static long nfc(const char *s, size_t len, int32_t *stackbuf, size_t stackcap,
                int32_t **heap, const char **outp)
{
        *heap = NULL;
        /* One slot stays free: utf8proc_reencode writes a NUL after the text,
         * which needs a byte past 4 * n when every code point takes 4. */
        utf8proc_ssize_t n =
            utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len,
                               stackbuf, (utf8proc_ssize_t)stackcap - 1, NFC_OPTS);
        if (n < 0)
                return -2;
        int32_t *buf = stackbuf;
        if ((size_t)n > stackcap - 1) {
                buf = malloc(((size_t)n + 1) * sizeof(int32_t));
                if (!buf)
                        return -1;
                *heap = buf;
                utf8proc_ssize_t m = utf8proc_decompose(
                    (const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, buf, n, NFC_OPTS);
                if (m != n)
                        return -2;
        }
        n = utf8proc_reencode(buf, n, NFC_OPTS);
        if (n < 0)
                return -2;
        *outp = (const char *)buf;
        return (long)n;
}

/* Name rules: NFC, spaces and controls collapsed, trimmed, cut to 200 code
 * points.  out holds NAME_BUF bytes.  Returns 0, -1 on allocation failure,
 * -2 when the text cannot be normalized. */
static int norm_name(const ms_canon_text_t *t, char *out, size_t *out_len, int *truncated)
{
        int32_t stackbuf[256];
        int32_t *heap = NULL;
        const unsigned char *src = (const unsigned char *)t->s;
        size_t srclen = t->len;
        int rc = 0;
        *truncated = 0;
        *out_len = 0;
        if (t->flags & MS_CANON_TXT_NEEDNFC) {
                const char *p;
                long n = nfc(t->s, t->len, stackbuf, sizeof stackbuf / sizeof stackbuf[0],
                             &heap, &p);
                if (n < 0) {
                        rc = (int)n;
                        goto out;
                }
                src = (const unsigned char *)p;
                srclen = (size_t)n;
        }
        size_t i = 0, o = 0;
        int count = 0, pending = 0;
        while (i < srclen) {
                int32_t cp;
                size_t n;
                if (src[i] < 0x80) {
                        cp = src[i];
                        n = 1;
                } else if ((n = utf8_decode(src + i, srclen - i, &cp)) == 0) {
                        rc = -2;
                        goto out;
                }
                if (is_space_cp(cp)) {
                        pending = count > 0;
                        i += n;
                        continue;
                }
                /* A pending space costs a code point too; a cut that would
                 * end on that space is trimmed away. */
                if (count + pending + 1 > NAME_MAX_CP) {
                        *truncated = 1;
                        break;
                }
                if (pending) {
                        out[o++] = ' ';
                        count++;
                        pending = 0;
                }
                memcpy(out + o, src + i, n);
                o += n;
                count++;
                i += n;
        }
        out[o] = '\0';
        *out_len = o;
out:
        free(heap);
        return rc;
}

/* Small text (status, role) trimmed and NFC'ed into out; -1 when it is too
 * long to be a vocabulary word or cannot be normalized. */
static long norm_word(const char *s, size_t len, unsigned flags, char *out, size_t outsz)
{
        trim(&s, &len);
        if (len >= outsz)
                return -1;
        if (flags & MS_CANON_TXT_NEEDNFC) {
                int32_t buf[64];
                int32_t *heap = NULL;
                const char *p;
                long n = nfc(s, len, buf, sizeof buf / sizeof buf[0], &heap, &p);
                if (n >= 0 && (size_t)n < outsz)
                        memcpy(out, p, (size_t)n);
                else
                        n = -1;
                free(heap);
                return n;
        }
        memcpy(out, s, len);
        return (long)len;
}

static int lookup_word(const char *const names[4], const char *s, size_t len)
{
        for (int i = 0; i < 4; i++)
                if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
                        return i;
        return -1;
}

/* 0 valid (out filled), 1 invalid, 2 blank. */
static int norm_email(const ms_canon_text_t *t, char *out, size_t *out_len)
{
        const char *s = t->s;
        size_t len = t->len;
        trim_spaces(&s, &len);
        if (len == 0)
                return 2;
        if (len > EMAIL_MAX)
                return 1;
        const unsigned char *p = (const unsigned char *)s;
        size_t at = len, i = 0;
        while (i < len) {
                int32_t cp;
                size_t n = utf8_decode(p + i, len - i, &cp);
                if (n == 0 || is_space_cp(cp))
                        return 1;
                if (cp == '@') {
                        if (at != len)
                                return 1;
                        at = i;
                }
                i += n;
        }
        if (at == len || at == 0 || at + 1 == len)
                return 1;
        const char *dom = s + at + 1;
        size_t dlen = len - at - 1;
        if (dom[0] == '.' || dom[dlen - 1] == '.' || !memchr(dom, '.', dlen))
                return 1;
        for (size_t k = 0; k + 1 < dlen; k++)
                if (dom[k] == '.' && dom[k + 1] == '.')
                        return 1;
        memcpy(out, s, at + 1);
        size_t o = at + 1;
        i = 0;
        while (i < dlen) {
                unsigned char c = (unsigned char)dom[i];
                if (c < 0x80) {
                        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                        i++;
                        continue;
                }
                int32_t cp;
                size_t n = utf8_decode((const unsigned char *)dom + i, dlen - i, &cp);
                if (n == 0 || o + 4 >= EMAIL_BUF)
                        return 1;
                o += (size_t)utf8proc_encode_char(utf8proc_tolower(cp),
                                                  (utf8proc_uint8_t *)out + o);
                i += n;
        }
        out[o] = '\0';
        *out_len = o;
        return 0;
}

/* 0 valid (out holds E.164), 1 invalid, 2 blank. */
static int norm_phone(const ms_canon_text_t *t, char *out)
{
        const char *s = t->s;
        size_t len = t->len;
        trim_spaces(&s, &len);
        if (len == 0)
                return 2;
        const unsigned char *p = (const unsigned char *)s;
        char d[32];
        size_t n = 0, i = 0;
        int plus = 0;
        while (i < len) {
                int32_t cp;
                size_t k = utf8_decode(p + i, len - i, &cp);
                if (k == 0)
                        return 1;
                i += k;
                if (is_phone_separator(cp))
                        continue;
                if (cp == '+' && !plus && n == 0) {
                        plus = 1;
                        continue;
                }
                if (cp < '0' || cp > '9' || n == sizeof d)
                        return 1;
                d[n++] = (char)cp;
        }
        const char *digits = d;
        size_t nd = n;
        if (!plus) {
                if (n == 8) {
                        /* A bare 8-digit number is Norwegian. */
                        memcpy(out, "+47", 3);
                        memcpy(out + 3, d, 8);
                        out[11] = '\0';
                        return 0;
                }
                if (n < 2 || d[0] != '0' || d[1] != '0')
                        return 1;
                digits += 2;
                nd -= 2;
        }
        if (nd < 8 || nd > 15 || digits[0] == '0')
                return 1;
        out[0] = '+';
        memcpy(out + 1, digits, nd);
        out[nd + 1] = '\0';
        return 0;
}

/* 0 ok, 1 blank, -1 not a date. */
static int read_date(const ms_canon_rules_t *r, const ms_canon_text_t *t, int32_t *days)
{
        const char *s = t->s;
        size_t len = t->len;
        if (!s)
                return 1;
        trim(&s, &len);
        if (len == 0)
                return 1;
        int y, m, d;
        if (r->parse_date(s, len, &y, &m, &d) != 0 || !ms_date_valid(y, m, d))
                return -1;
        *days = ms_days_from_civil(y, m, d);
        return 0;
}

/* ---- result --------------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
        size_t n = strlen(src);
        if (n >= size)
                n = size - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static void set_issue(ms_canon_issue_t *is, const char *code, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set_issue(ms_canon_issue_t *is, const char *code, const char *field,
                      const char *fmt, ...)
{
        va_list ap;
        copy_str(is->code, sizeof is->code, code);
        copy_str(is->field, sizeof is->field, field);
        va_start(ap, fmt);
        vsnprintf(is->message, sizeof is->message, fmt, ap);
        va_end(ap);
}

/* Returns the warning slot to fill, or NULL when the array is full. */
static ms_canon_issue_t *next_warning(ms_canon_result_t *out)
{
        if (out->n_warnings >= MS_CANON_MAX_WARNINGS)
                return NULL;
        return &out->warnings[out->n_warnings++];
}

#define WARN(out, code, field, ...)                                                      \
        do {                                                                             \
                ms_canon_issue_t *w_ = next_warning(out);                                \
                if (w_)                                                                  \
                        set_issue(w_, code, field, __VA_ARGS__);                         \
        } while (0)

void ms_canon_result_clear(ms_canon_result_t *r)
{
        if (!r)
                return;
        free(r->external_id);
        json_decref(r->member);
        memset(r, 0, sizeof *r);
}

void ms_canon_result_set_duplicate(ms_canon_result_t *r)
{
        if (strcmp(r->error.code, "MISSING_ID") == 0)
                return;
        json_decref(r->member);
        r->member = NULL;
        r->n_warnings = 0;
        set_issue(&r->error, "DUPLICATE_ID", "external_id",
                  "external id %s was already seen in this job; later copy skipped",
                  r->external_id ? r->external_id : "");
}

static const char *bad_reason(int why)
{
        switch (why) {
        case MS_CANON_BAD_UTF8:
                return "is not valid UTF-8";
        case MS_CANON_BAD_CHARS:
                return "holds control characters";
        case MS_CANON_BAD_TOO_LONG:
                return "is longer than 255 bytes";
        case MS_CANON_BAD_NOT_NUMERIC:
                return "is not an integer";
        default:
                return "has a JSON type that cannot be used";
        }
}

/* Canonical values of one record, before they become JSON. */
struct canon {
        const char *member_number;
        size_t member_number_len;
        char given[NAME_BUF];
        size_t given_len;
        char family[NAME_BUF];
        size_t family_len;
        char email[EMAIL_BUF];
        size_t email_len;
        int has_email;
        char phone[PHONE_BUF];
        int has_phone;
        int32_t birth;
        int has_birth;
        char la_name[NAME_BUF];
        size_t la_name_len;
        int status;
        int32_t valid_from, valid_to;
        int has_from, has_to;
        unsigned roles;
        int64_t updated;
        int has_updated;
};

static int set_str(json_t *o, const char *key, const char *s, size_t len)
{
        return json_object_set_new_nocheck(o, key, json_stringn_nocheck(s, len));
}

static int set_int_or_null(json_t *o, const char *key, int has, json_int_t v)
{
        return json_object_set_new_nocheck(o, key, has ? json_integer(v) : json_null());
}

static json_t *build_member(const char *external_id, const ms_canon_input_t *in,
                            const struct canon *c)
{
        json_t *m = json_object();
        json_t *roles = NULL;
        const ms_canon_text_t *la_id = &in->f[MS_CANON_F_LA_ID];
        if (!m)
                goto fail;
        if (set_str(m, "external_id", external_id, strlen(external_id)) ||
            set_str(m, "member_number", c->member_number, c->member_number_len) ||
            set_str(m, "given_name", c->given, c->given_len) ||
            set_str(m, "family_name", c->family, c->family_len) ||
            (c->has_email ? set_str(m, "email", c->email, c->email_len)
                          : json_object_set_new_nocheck(m, "email", json_null())) ||
            (c->has_phone ? set_str(m, "phone", c->phone, strlen(c->phone))
                          : json_object_set_new_nocheck(m, "phone", json_null())) ||
            set_int_or_null(m, "birth_date", c->has_birth, c->birth) ||
            (la_id->s
                 ? set_str(m, "local_association_id", la_id->s, la_id->len)
                 : json_object_set_new_nocheck(m, "local_association_id", json_null())) ||
            (c->la_name_len
                 ? set_str(m, "local_association_name", c->la_name, c->la_name_len)
                 : json_object_set_new_nocheck(m, "local_association_name",
                                               json_null())) ||
            set_str(m, "status", status_enum[c->status],
                    strlen(status_enum[c->status])) ||
            set_int_or_null(m, "valid_from", c->has_from, c->valid_from) ||
            set_int_or_null(m, "valid_to", c->has_to, c->valid_to))
                goto fail;
        roles = json_array();
        if (!roles)
                goto fail;
        for (int k = 0; k < 4; k++) {
                int r = role_sorted[k];
                if ((c->roles & (1u << r)) &&
                    json_array_append_new(roles, json_string_nocheck(role_enum[r])))
                        goto fail;
        }
        if (json_object_set_new_nocheck(m, "roles", roles)) {
                roles = NULL; /* set_new consumed it even on failure */
                goto fail;
        }
        roles = NULL;
        if (set_int_or_null(m, "source_updated_at", c->has_updated, c->updated))
                goto fail;
        return m;
fail:
        json_decref(roles);
        json_decref(m);
        return NULL;
}

/* Reads the roles value: known roles into *mask, one warning per dropped
 * element.  Returns 0, or an MS_CANON_BAD_* reason for MALFORMED. */
static int read_roles(const ms_canon_rules_t *r, const json_t *roles, unsigned *mask,
                      ms_canon_result_t *out)
{
        *mask = 0;
        if (!roles || json_is_null(roles))
                return 0;
        if (!json_is_array(roles))
                return MS_CANON_BAD_TYPE;
        size_t n = json_array_size(roles), last_pos = 0, extra = 0;
        for (size_t i = 0; i < n; i++) {
                const json_t *e = json_array_get(roles, i);
                int idx = -1;
                if (json_is_string(e)) {
                        char word[64];
                        unsigned flags;
                        const char *s = json_string_value(e);
                        size_t len = json_string_length(e);
                        if (scan_utf8(s, len, &flags) < 0)
                                return MS_CANON_BAD_UTF8;
                        long wl = norm_word(s, len, flags, word, sizeof word);
                        if (wl >= 0)
                                idx = lookup_word(r->role_names, word, (size_t)wl);
                }
                if (idx >= 0) {
                        *mask |= 1u << idx;
                        continue;
                }
                if (out->n_warnings < MS_CANON_MAX_WARNINGS) {
                        WARN(out, "UNKNOWN_ROLE", "roles",
                             "role at position %zu is not a known role; dropped", i + 1);
                        last_pos = i + 1;
                } else {
                        /* No slot left (only a hostile record gets here): the
                         * last role warning says how many more were dropped
                         * rather than losing them silently. */
                        extra++;
                        set_issue(
                            &out->warnings[MS_CANON_MAX_WARNINGS - 1], "UNKNOWN_ROLE",
                            "roles",
                            "role at position %zu and %zu later roles are not known "
                            "roles; dropped",
                            last_pos, extra);
                }
        }
        return 0;
}

int ms_canon_finish(const ms_canon_rules_t *rules, const ms_canon_input_t *in,
                    int32_t today_days, ms_canon_result_t *out)
{
        struct canon c;
        uint32_t bad = in->malformed;
        unsigned char why[MS_CANON_F_COUNT];
        int missing_number = 0, rc, trunc;
        const int32_t day_1900 = ms_days_from_civil(1900, 1, 1);

        memcpy(why, in->bad_why, sizeof why);
        if (in->id_state != MS_CANON_ID_OK) {
                if (in->id_state == MS_CANON_ID_BAD)
                        set_issue(&out->error, "MISSING_ID", "external_id",
                                  "record has no usable external id: it %s",
                                  bad_reason(why[MS_CANON_F_EXTERNAL_ID]));
                else
                        set_issue(&out->error, "MISSING_ID", "external_id",
                                  "record has no external id");
                return 0;
        }
        out->external_id = strdup(in->ext_id);
        if (!out->external_id)
                return -1;

        /* Member number: an identifier, trimmed, required. */
        c.member_number = NULL;
        c.member_number_len = 0;
        if (!(bad & (1u << MS_CANON_F_MEMBER_NUMBER))) {
                const char *s = in->f[MS_CANON_F_MEMBER_NUMBER].s;
                size_t len = in->f[MS_CANON_F_MEMBER_NUMBER].len;
                if (s)
                        trim(&s, &len);
                if (!s || len == 0)
                        missing_number = 1;
                else if (has_control(s, len))
                        mark_bad(&bad, why, MS_CANON_F_MEMBER_NUMBER, MS_CANON_BAD_CHARS);
                else if (len > MS_CANON_ID_MAX)
                        mark_bad(&bad, why, MS_CANON_F_MEMBER_NUMBER,
                                 MS_CANON_BAD_TOO_LONG);
                c.member_number = s;
                c.member_number_len = len;
        }

        /* Names. */
        static const ms_canon_field_t name_fields[2] = {MS_CANON_F_GIVEN_NAME,
                                                        MS_CANON_F_FAMILY_NAME};
        char *name_out[2] = {c.given, c.family};
        size_t *name_len[2] = {&c.given_len, &c.family_len};
        for (int k = 0; k < 2; k++) {
                ms_canon_field_t f = name_fields[k];
                *name_len[k] = 0;
                name_out[k][0] = '\0';
                if ((bad & (1u << f)) || !in->f[f].s)
                        continue;
                rc = norm_name(&in->f[f], name_out[k], name_len[k], &trunc);
                if (rc == -1)
                        return -1;
                if (rc < 0) {
                        mark_bad(&bad, why, f, MS_CANON_BAD_UTF8);
                        continue;
                }
                if (trunc)
                        WARN(out, "TRUNCATED", field_names[f],
                             "%s is longer than %d characters; cut to %d", field_names[f],
                             NAME_MAX_CP, NAME_MAX_CP);
        }

        /* Email and phone: invalid values become null with a warning. */
        c.has_email = 0;
        if (!(bad & (1u << MS_CANON_F_EMAIL)) && in->f[MS_CANON_F_EMAIL].s) {
                rc = norm_email(&in->f[MS_CANON_F_EMAIL], c.email, &c.email_len);
                if (rc == 0)
                        c.has_email = 1;
                else if (rc == 1)
                        WARN(out, "INVALID_EMAIL", "email",
                             "email is not a valid address (local@domain.tld); set to "
                             "null");
        }
        c.has_phone = 0;
        if (!(bad & (1u << MS_CANON_F_PHONE)) && in->f[MS_CANON_F_PHONE].s) {
                rc = norm_phone(&in->f[MS_CANON_F_PHONE], c.phone);
                if (rc == 0)
                        c.has_phone = 1;
                else if (rc == 1)
                        WARN(out, "INVALID_PHONE", "phone",
                             "phone is not 8 Norwegian digits or '+'/'00' and 8 to 15 "
                             "digits; set to null");
        }

        /* Birth date: a calendar date between 1900-01-01 and today. */
        c.has_birth = 0;
        if (!(bad & (1u << MS_CANON_F_BIRTH_DATE))) {
                rc = read_date(rules, &in->f[MS_CANON_F_BIRTH_DATE], &c.birth);
                if (rc < 0)
                        WARN(out, "INVALID_DATE", "birth_date",
                             "birth_date is not a calendar date; set to null");
                else if (rc == 0 && c.birth > today_days)
                        WARN(out, "INVALID_DATE", "birth_date",
                             "birth_date is in the future; set to null");
                else if (rc == 0 && c.birth < day_1900)
                        WARN(out, "INVALID_DATE", "birth_date",
                             "birth_date is before 1900-01-01; set to null");
                else if (rc == 0)
                        c.has_birth = 1;
        }

        /* Local association: the id was read by the mapping module; the name
         * follows the name rules and may be null. */
        c.la_name_len = 0;
        if (!(bad & (1u << MS_CANON_F_LA_NAME)) && in->f[MS_CANON_F_LA_NAME].s) {
                rc = norm_name(&in->f[MS_CANON_F_LA_NAME], c.la_name, &c.la_name_len,
                               &trunc);
                if (rc == -1)
                        return -1;
                if (rc < 0)
                        mark_bad(&bad, why, MS_CANON_F_LA_NAME, MS_CANON_BAD_UTF8);
                else if (trunc)
                        WARN(out, "TRUNCATED", "local_association_name",
                             "local_association_name is longer than %d characters; cut "
                             "to %d",
                             NAME_MAX_CP, NAME_MAX_CP);
        }

        /* Status. */
        c.status = -1;
        if (!(bad & (1u << MS_CANON_F_STATUS)) && in->f[MS_CANON_F_STATUS].s) {
                char word[64];
                const ms_canon_text_t *t = &in->f[MS_CANON_F_STATUS];
                long wl = norm_word(t->s, t->len, t->flags, word, sizeof word);
                if (wl >= 0)
                        c.status = lookup_word(rules->status_names, word, (size_t)wl);
        }

        /* Validity period. */
        c.has_from = c.has_to = 0;
        if (!(bad & (1u << MS_CANON_F_VALID_FROM))) {
                rc = read_date(rules, &in->f[MS_CANON_F_VALID_FROM], &c.valid_from);
                if (rc < 0)
                        WARN(out, "INVALID_DATE", "valid_from",
                             "valid_from is not a calendar date; set to null");
                c.has_from = rc == 0;
        }
        if (!(bad & (1u << MS_CANON_F_VALID_TO))) {
                rc = read_date(rules, &in->f[MS_CANON_F_VALID_TO], &c.valid_to);
                if (rc < 0)
                        WARN(out, "INVALID_DATE", "valid_to",
                             "valid_to is not a calendar date; set to null");
                else if (rc == 0 && c.has_from && c.valid_to < c.valid_from)
                        WARN(out, "INVALID_DATE", "valid_to",
                             "valid_to is before valid_from; set to null");
                c.has_to = rc == 0 && !(c.has_from && c.valid_to < c.valid_from);
        }

        /* Roles. */
        c.roles = 0;
        rc = read_roles(rules, in->roles, &c.roles, out);
        if (rc)
                mark_bad(&bad, why, MS_CANON_F_ROLES, rc);

        /* Source timestamp: metadata, unparseable means unknown. */
        c.has_updated = 0;
        if (!(bad & (1u << MS_CANON_F_SOURCE_UPDATED_AT)) &&
            in->f[MS_CANON_F_SOURCE_UPDATED_AT].s) {
                const char *s = in->f[MS_CANON_F_SOURCE_UPDATED_AT].s;
                size_t len = in->f[MS_CANON_F_SOURCE_UPDATED_AT].len;
                trim(&s, &len);
                c.has_updated = len > 0 && rules->parse_time(s, len, &c.updated) == 0;
        }

        /* One error per record, in the order of the design. */
        if (bad) {
                int f = __builtin_ctz(bad);
                set_issue(&out->error, "MALFORMED", field_names[f], "%s %s",
                          field_names[f], bad_reason(why[f]));
        } else if (missing_number) {
                set_issue(&out->error, "MISSING_FIELD", "member_number",
                          "member number is missing or empty");
        } else if (c.given_len == 0 && c.family_len == 0) {
                set_issue(&out->error, "MISSING_FIELD", "given_name",
                          "given name and family name are both empty");
        } else if (c.status < 0) {
                set_issue(&out->error, "INVALID_STATUS", "status",
                          in->f[MS_CANON_F_STATUS].s
                              ? "membership status is not one of the known values"
                              : "membership status is missing");
        }
        if (out->error.code[0]) {
                /* The record is skipped, so its field warnings do not count. */
                out->n_warnings = 0;
                return 0;
        }
        out->member = build_member(out->external_id, in, &c);
        return out->member ? 0 : -1;
}

/* ---- entry points ----------------------------------------------------------- */

int ms_canon_record(ms_system_t sys, const json_t *rec, int32_t today_days,
                    ms_canon_result_t *out)
{
        ms_canon_input_t in;
        const ms_canon_rules_t *rules;

        memset(out, 0, sizeof *out);
        switch (sys) {
        case MS_SYSTEM_CORNERSTONE:
                rules = &ms_cornerstone_map_rules;
                break;
        case MS_SYSTEM_CONSIO:
                rules = &ms_consio_map_rules;
                break;
        default:
                set_issue(&out->error, "MALFORMED", "", "unknown member system %d",
                          (int)sys);
                return -1;
        }
        if (!json_is_object(rec)) {
                set_issue(&out->error, "MISSING_ID", "external_id",
                          rec && !json_is_null(rec) ? "record is not a JSON object"
                                                    : "record is null");
                return 0;
        }
        ms_canon_input_init(&in);
        if (sys == MS_SYSTEM_CORNERSTONE)
                ms_cornerstone_map_read(rec, &in);
        else
                ms_consio_map_read(rec, &in);
        int rc = ms_canon_finish(rules, &in, today_days, out);
        if (rc < 0) {
                /* Allocation failure: leave nothing half-built behind. */
                ms_canon_result_clear(out);
                set_issue(&out->error, "MALFORMED", "", "out of memory");
        }
        return rc;
}

char *ms_canon_external_id(ms_system_t sys, const json_t *rec)
{
        char buf[MS_CANON_ID_MAX + 1];
        int st;
        if (!json_is_object(rec))
                return NULL;
        if (sys == MS_SYSTEM_CORNERSTONE)
                st = ms_cornerstone_map_id(rec, buf);
        else if (sys == MS_SYSTEM_CONSIO)
                st = ms_consio_map_id(rec, buf);
        else
                return NULL;
        return st == MS_CANON_ID_OK ? strdup(buf) : NULL;
}

/* ---- content hash and diff ------------------------------------------------ */

/* FNV-1a 64: simple, stable across platforms and versions (the hash is
 * stored in PostgreSQL, so it must never change for the same content). */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n)
{
        const unsigned char *p = data;
        for (size_t i = 0; i < n; i++) {
                h ^= p[i];
                h *= FNV_PRIME;
        }
        return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
        unsigned char b[8];
        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(v >> (8 * i));
        return fnv_bytes(h, b, 8);
}

static uint64_t fnv_tag(uint64_t h, char tag)
{
        return fnv_bytes(h, &tag, 1);
}

struct sv {
        const char *s;
        size_t len;
};

static int sv_cmp(const void *a, const void *b)
{
        const struct sv *x = a, *y = b;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->s, y->s, n);
        if (c)
                return c;
        return x->len < y->len ? -1 : x->len > y->len;
}

#define ROLES_CAP 64

/* The string elements of a roles array, sorted and without duplicates.
 * Returns the count, or -1 when the array is too large to sort here (not a
 * canonical Member: it has at most four roles). */
static int sorted_roles(const json_t *roles, struct sv *out)
{
        size_t n = json_array_size(roles), k = 0;
        if (n > ROLES_CAP)
                return -1;
        for (size_t i = 0; i < n; i++) {
                const json_t *e = json_array_get(roles, i);
                if (json_is_string(e)) {
                        out[k].s = json_string_value(e);
                        out[k].len = json_string_length(e);
                        k++;
                }
        }
        qsort(out, k, sizeof *out, sv_cmp);
        size_t u = 0;
        for (size_t i = 0; i < k; i++)
                if (u == 0 || sv_cmp(&out[u - 1], &out[i]) != 0)
                        out[u++] = out[i];
        return (int)u;
}

static uint64_t hash_value(uint64_t h, const json_t *v)
{
        switch (v ? json_typeof(v) : JSON_NULL) {
        case JSON_STRING:
                h = fnv_tag(h, 's');
                h = fnv_u64(h, json_string_length(v));
                return fnv_bytes(h, json_string_value(v), json_string_length(v));
        case JSON_INTEGER:
                h = fnv_tag(h, 'i');
                return fnv_u64(h, (uint64_t)json_integer_value(v));
        case JSON_REAL: {
                double d = json_real_value(v);
                if (d == floor(d) && fabs(d) < 9007199254740992.0) {
                        /* Same hash as the integer it equals. */
                        h = fnv_tag(h, 'i');
                        return fnv_u64(h, (uint64_t)(int64_t)d);
                }
                uint64_t bits;
                memcpy(&bits, &d, sizeof bits);
                h = fnv_tag(h, 'r');
                return fnv_u64(h, bits);
        }
        case JSON_TRUE:
                return fnv_tag(h, 't');
        case JSON_FALSE:
                return fnv_tag(h, 'f');
        case JSON_ARRAY:
                h = fnv_tag(h, 'a');
                h = fnv_u64(h, json_array_size(v));
                for (size_t i = 0; i < json_array_size(v); i++)
                        h = hash_value(h, json_array_get(v, i));
                return h;
        case JSON_OBJECT:
                /* Not part of a canonical Member; hashed by size only. */
                h = fnv_tag(h, 'o');
                return fnv_u64(h, json_object_size(v));
        case JSON_NULL:
        default:
                return fnv_tag(h, 'n');
        }
}

uint64_t ms_canon_member_hash(const json_t *member)
{
        uint64_t h = FNV_OFFSET;
        if (!json_is_object(member))
                return 0;
        /* Serialization: per field in schema order, the field index, then a
         * type tag ('n' null/missing, 's' + length + bytes, 'i' + 8 bytes
         * little endian, 'R' + sorted unique role strings). */
        for (int f = 0; f < MS_CANON_F_COUNT; f++) {
                if (f == MS_CANON_F_SOURCE_UPDATED_AT)
                        continue;
                const json_t *v = json_object_get(member, field_names[f]);
                h = fnv_tag(h, (char)f);
                if (f == MS_CANON_F_ROLES && json_is_array(v)) {
                        struct sv rs[ROLES_CAP];
                        int n = sorted_roles(v, rs);
                        if (n < 0) {
                                h = hash_value(h, v);
                                continue;
                        }
                        h = fnv_tag(h, 'R');
                        h = fnv_u64(h, (uint64_t)n);
                        for (int i = 0; i < n; i++) {
                                h = fnv_u64(h, rs[i].len);
                                h = fnv_bytes(h, rs[i].s, rs[i].len);
                        }
                        continue;
                }
                h = hash_value(h, v);
        }
        return h;
}

static int values_equal(const json_t *a, const json_t *b)
{
        int an = !a || json_is_null(a), bn = !b || json_is_null(b);
        if (an || bn)
                return an && bn;
        if (json_is_number(a) && json_is_number(b)) {
                if (json_is_integer(a) && json_is_integer(b))
                        return json_integer_value(a) == json_integer_value(b);
                return json_number_value(a) == json_number_value(b);
        }
        return json_equal((json_t *)a, (json_t *)b);
}

static int roles_equal(const json_t *a, const json_t *b)
{
        struct sv ra[ROLES_CAP], rb[ROLES_CAP];
        /* Missing or null roles mean no roles. */
        if ((!a || json_is_null(a)) && (!b || json_is_null(b)))
                return 1;
        if (!a || json_is_null(a))
                return json_is_array(b) && json_array_size(b) == 0;
        if (!b || json_is_null(b))
                return json_is_array(a) && json_array_size(a) == 0;
        if (!json_is_array(a) || !json_is_array(b))
                return json_equal((json_t *)a, (json_t *)b);
        int na = sorted_roles(a, ra), nb = sorted_roles(b, rb);
        if (na < 0 || nb < 0)
                return json_equal((json_t *)a, (json_t *)b);
        if (na != nb)
                return 0;
        for (int i = 0; i < na; i++)
                if (sv_cmp(&ra[i], &rb[i]) != 0)
                        return 0;
        return 1;
}

json_t *ms_canon_changed_fields(const json_t *before, const json_t *after)
{
        json_t *arr = json_array();
        if (!arr)
                return NULL;
        for (int f = 0; f < MS_CANON_F_COUNT; f++) {
                if (f == MS_CANON_F_SOURCE_UPDATED_AT)
                        continue;
                int differs;
                if (!before || !after) {
                        /* A member that appears or disappears changes every
                         * field. */
                        differs = before != after;
                } else {
                        const json_t *a = json_object_get(before, field_names[f]);
                        const json_t *b = json_object_get(after, field_names[f]);
                        differs = f == MS_CANON_F_ROLES ? !roles_equal(a, b)
                                                        : !values_equal(a, b);
                }
                if (differs &&
                    json_array_append_new(arr, json_string_nocheck(field_names[f]))) {
                        json_decref(arr);
                        return NULL;
                }
        }
        return arr;
}
