/* ms_avro: the event codec (see ms_avro.h for the contract).
 *
 * Layout of the codec:
 *   - every schema we know is a "writer" entry (parsed avro-c schema, its
 *     CRC-64-AVRO fingerprint over the Parsing Canonical Form, the compact
 *     JSON text we register with a schema registry);
 *   - the compiled-in schemas are also the "readers": decode always produces
 *     the shape of the compiled-in schema the caller names;
 *   - caches: registry id -> writer entry, (subject, fingerprint) -> id, and
 *     per (writer, reader) an avro-c resolved-writer interface.
 *
 * avro-c is used for parsing schemas, building values, binary encoding and
 * writer->reader resolution.  It trusts its input far more than a Kafka
 * consumer may: a negative string length makes it write before its buffer,
 * a huge array count makes it allocate without bound and an unknown enum
 * index is looked up in uninitialised memory.  So every body is first walked
 * against the writer schema by skim(), which proves that each length, count,
 * union branch and enum index is in range and that the datum ends exactly at
 * the end of the buffer; only then does avro-c read it. */
#include "ms_avro.h"

#include "ms_schemas.h"
#include "ms_util.h"

#include <avro.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SOE_MAGIC0      0xC3
#define SOE_MAGIC1      0x01
#define SOE_HDR_LEN     10
#define CONFLUENT_MAGIC 0x00
#define CONFLUENT_HDR   5
/* Our schemas nest a handful of levels; anything deeper is hostile input or
 * a recursive schema we do not use. */
#define MAX_DEPTH 64
/* Registry answers are small JSON documents; cap what we buffer. */
#define HTTP_MAX_BODY    (1024 * 1024)
#define HTTP_CONNECT_MS  5000L
#define HTTP_TOTAL_MS    15000L
#define CRC64_AVRO_EMPTY UINT64_C(0xc15d213aa4d7a795)
#define PATH_MAX_LEN     256

typedef struct writer {
        uint64_t fp;
        char *fullname;  /* full name of the top-level type */
        char *json_text; /* compact schema JSON, as sent to a registry */
        avro_schema_t schema;
        /* Per reader index: resolved-writer interface once built, or the
         * reason it cannot be built (so hostile input cannot make us retry an
         * expensive failing resolution on every message). */
        avro_value_iface_t **resolved;
        char **resolve_err;
} writer_t;

typedef struct reader {
        const char *name; /* static, from ms_schema_srcs */
        writer_t *w;      /* the compiled-in schema as a writer entry */
        avro_value_iface_t *iface;
} reader_t;

typedef struct id_entry {
        int32_t id;
        writer_t *w;
} id_entry_t;

typedef struct subject_entry {
        char *subject;
        uint64_t fp;
        int32_t id;
} subject_entry_t;

struct ms_avro {
        pthread_mutex_t lock;
        char *registry_url; /* NULL without registry; no trailing slash */
        reader_t *readers;
        size_t n_readers;
        writer_t **writers;
        size_t n_writers, cap_writers;
        id_entry_t *ids;
        size_t n_ids, cap_ids;
        subject_entry_t *subjects;
        size_t n_subjects, cap_subjects;
};

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
        va_list ap;

        if (!errstr || errstr_size == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static avro_schema_t skip_links(avro_schema_t s)
{
        while (s && is_avro_link(s))
                s = avro_schema_link_target(s);
        return s;
}

/* ------------------------------------------------------------------------
 * CRC-64-AVRO and Parsing Canonical Form
 */

uint64_t ms_avro_crc64(const void *buf, size_t len)
{
        const unsigned char *p = buf;
        uint64_t fp = CRC64_AVRO_EMPTY;

        /* Bitwise form of the spec's table-driven Rabin fingerprint: the
         * table entry for a byte is exactly these eight shift/xor rounds, and
         * the rounds are linear, so both give the same result.  Fingerprints
         * are computed once per schema, so speed does not matter here. */
        for (size_t i = 0; i < len; i++) {
                fp ^= p[i];
                for (int j = 0; j < 8; j++)
                        fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & (0 - (fp & 1)));
        }
        return fp;
}

static bool is_primitive_name(const char *s)
{
        static const char *const prims[] = {"null",  "boolean", "int",   "long",
                                            "float", "double",  "bytes", "string"};
        for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++)
                if (strcmp(s, prims[i]) == 0)
                        return true;
        return false;
}

/* Full name of a reference or definition `name` seen in namespace ns. */
static char *full_name(const char *name, const char *ns)
{
        char *out;

        if (strchr(name, '.') || !ns || !*ns)
                return strdup(name);
        if (asprintf(&out, "%s.%s", ns, name) < 0)
                return NULL;
        return out;
}

/* Namespace part of a full name ("" when it has none); malloc'ed. */
static char *namespace_of(const char *fullname)
{
        const char *dot = strrchr(fullname, '.');
        return dot ? strndup(fullname, (size_t)(dot - fullname)) : strdup("");
}

static json_t *pcf_build(json_t *s, const char *ns, int depth, char *errstr,
                         size_t errstr_size);

static json_t *pcf_named(json_t *s, const char *type, const char *ns, int depth,
                         char *errstr, size_t errstr_size)
{
        json_t *out = NULL, *res = NULL;
        json_t *jname = json_object_get(s, "name");
        json_t *jns = json_object_get(s, "namespace");
        const char *use_ns = ns;
        char *full = NULL, *inner_ns = NULL;

        if (!json_is_string(jname)) {
                seterr(errstr, errstr_size, "%s without a \"name\"", type);
                goto out;
        }
        /* FULLNAMES: a dotted name is already full; else an explicit
         * "namespace" (even "") wins over the enclosing one. */
        if (json_is_string(jns))
                use_ns = json_string_value(jns);
        full = full_name(json_string_value(jname), use_ns);
        inner_ns = full ? namespace_of(full) : NULL;
        if (!full || !inner_ns) {
                seterr(errstr, errstr_size, "out of memory");
                goto out;
        }
        /* ORDER: name, type, then fields / symbols / size; STRIP drops doc,
         * aliases, namespace, logicalType and every other attribute. */
        out = json_object();
        json_object_set_new(out, "name", json_string(full));
        json_object_set_new(out, "type", json_string(type));
        if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
                json_t *fields = json_object_get(s, "fields");
                json_t *ofields = json_array();
                size_t i;
                json_t *f;

                json_object_set_new(out, "fields", ofields);
                if (!json_is_array(fields)) {
                        seterr(errstr, errstr_size, "record %s without \"fields\" array",
                               full);
                        goto out;
                }
                json_array_foreach(fields, i, f)
                {
                        json_t *fname = json_object_get(f, "name");
                        json_t *ftype = json_object_get(f, "type");
                        json_t *of, *ot;

                        if (!json_is_string(fname) || !ftype) {
                                seterr(errstr, errstr_size,
                                       "record %s: field %zu needs \"name\" and \"type\"",
                                       full, i);
                                goto out;
                        }
                        ot = pcf_build(ftype, inner_ns, depth + 1, errstr, errstr_size);
                        if (!ot)
                                goto out;
                        of = json_object();
                        json_object_set(of, "name", fname);
                        json_object_set_new(of, "type", ot);
                        json_array_append_new(ofields, of);
                }
        } else if (strcmp(type, "enum") == 0) {
                json_t *syms = json_object_get(s, "symbols");
                if (!json_is_array(syms)) {
                        seterr(errstr, errstr_size, "enum %s without \"symbols\"", full);
                        goto out;
                }
                json_object_set(out, "symbols", syms);
        } else {
                json_t *size = json_object_get(s, "size");
                if (!json_is_integer(size)) {
                        seterr(errstr, errstr_size, "fixed %s without integer \"size\"",
                               full);
                        goto out;
                }
                /* INTEGERS: re-emitting the parsed value drops quotes and
                 * leading zeros. */
                json_object_set_new(out, "size", json_integer(json_integer_value(size)));
        }
        res = out;
        out = NULL;
out:
        json_decref(out);
        free(full);
        free(inner_ns);
        return res;
}

static json_t *pcf_build(json_t *s, const char *ns, int depth, char *errstr,
                         size_t errstr_size)
{
        if (depth > MAX_DEPTH) {
                seterr(errstr, errstr_size, "schema nested too deeply");
                return NULL;
        }
        if (json_is_string(s)) {
                const char *name = json_string_value(s);
                char *full;
                json_t *out;

                if (is_primitive_name(name))
                        return json_string(name);
                full = full_name(name, ns);
                if (!full) {
                        seterr(errstr, errstr_size, "out of memory");
                        return NULL;
                }
                out = json_string(full);
                free(full);
                return out;
        }
        if (json_is_array(s)) {
                json_t *out = json_array(), *b;
                size_t i;
                json_array_foreach(s, i, b)
                {
                        json_t *ob = pcf_build(b, ns, depth + 1, errstr, errstr_size);
                        if (!ob) {
                                json_decref(out);
                                return NULL;
                        }
                        json_array_append_new(out, ob);
                }
                return out;
        }
        if (json_is_object(s)) {
                json_t *jtype = json_object_get(s, "type");
                const char *type;

                /* A type given as a nested schema ({"type": {...}}) stands for
                 * that schema. */
                if (json_is_object(jtype) || json_is_array(jtype))
                        return pcf_build(jtype, ns, depth + 1, errstr, errstr_size);
                if (!json_is_string(jtype)) {
                        seterr(errstr, errstr_size, "schema object without \"type\"");
                        return NULL;
                }
                type = json_string_value(jtype);
                /* PRIMITIVES: {"type":"int", ...} is just "int". */
                if (is_primitive_name(type))
                        return json_string(type);
                if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0 ||
                    strcmp(type, "enum") == 0 || strcmp(type, "fixed") == 0)
                        return pcf_named(s, type, ns, depth, errstr, errstr_size);
                if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
                        const char *key = type[0] == 'a' ? "items" : "values";
                        json_t *sub = json_object_get(s, key), *osub, *out;
                        if (!sub) {
                                seterr(errstr, errstr_size, "%s without \"%s\"", type,
                                       key);
                                return NULL;
                        }
                        osub = pcf_build(sub, ns, depth + 1, errstr, errstr_size);
                        if (!osub)
                                return NULL;
                        out = json_object();
                        json_object_set_new(out, "type", json_string(type));
                        json_object_set_new(out, key, osub);
                        return out;
                }
                /* {"type": "SomeName"} refers to a named type. */
                return pcf_build(jtype, ns, depth + 1, errstr, errstr_size);
        }
        seterr(errstr, errstr_size, "schema must be a string, array or object");
        return NULL;
}

/* Canonical form of a parsed schema; also reports the full name of the
 * top-level type (type name for unnamed types).  Both malloc'ed. */
static int pcf_of(json_t *root, char **canon, char **fullname, char *errstr,
                  size_t errstr_size)
{
        json_t *c = pcf_build(root, "", 0, errstr, errstr_size);
        int rc = MS_ERR_GENERIC;

        *canon = NULL;
        if (fullname)
                *fullname = NULL;
        if (!c)
                goto out;
        /* WHITESPACE and STRINGS: compact output, UTF-8 left unescaped. */
        *canon = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*canon) {
                seterr(errstr, errstr_size, "cannot serialize canonical form");
                goto out;
        }
        if (fullname) {
                const char *n = json_is_object(c)
                                    ? json_string_value(json_object_get(c, "name"))
                                    : NULL;
                if (!n)
                        n = json_is_object(c)
                                ? json_string_value(json_object_get(c, "type"))
                            : json_is_string(c) ? json_string_value(c)
                                                : "union";
                *fullname = strdup(n ? n : "");
                if (!*fullname) {
                        free(*canon);
                        *canon = NULL;
                        seterr(errstr, errstr_size, "out of memory");
                        goto out;
                }
        }
        rc = 0;
out:
        json_decref(c);
        return rc;
}

int ms_avro_canonical_form(const char *schema_json, char **out, char *errstr,
                           size_t errstr_size)
{
        json_error_t jerr;
        json_t *root;
        int rc;

        *out = NULL;
        if (!schema_json) {
                seterr(errstr, errstr_size, "no schema given");
                return MS_ERR_GENERIC;
        }
        root = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
        if (!root) {
                seterr(errstr, errstr_size, "schema is not JSON: line %d: %s", jerr.line,
                       jerr.text);
                return MS_ERR_GENERIC;
        }
        rc = pcf_of(root, out, NULL, errstr, errstr_size);
        json_decref(root);
        return rc;
}

/* ------------------------------------------------------------------------
 * Writer entries
 */

static void writer_free(writer_t *w, size_t n_readers)
{
        if (!w)
                return;
        if (w->resolved) {
                for (size_t i = 0; i < n_readers; i++)
                        if (w->resolved[i])
                                avro_value_iface_decref(w->resolved[i]);
                free(w->resolved);
        }
        if (w->resolve_err) {
                for (size_t i = 0; i < n_readers; i++)
                        free(w->resolve_err[i]);
                free(w->resolve_err);
        }
        if (w->schema)
                avro_schema_decref(w->schema);
        free(w->fullname);
        free(w->json_text);
        free(w);
}

static int writer_new(const char *schema_json, size_t n_readers, writer_t **out,
                      char *errstr, size_t errstr_size)
{
        json_error_t jerr;
        json_t *root = NULL;
        writer_t *w = NULL;
        char *canon = NULL;
        int rc = MS_ERR_GENERIC;

        *out = NULL;
        root = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
        if (!root) {
                seterr(errstr, errstr_size, "schema is not JSON: line %d: %s", jerr.line,
                       jerr.text);
                goto out;
        }
        w = calloc(1, sizeof(*w));
        if (!w)
                goto oom;
        if (pcf_of(root, &canon, &w->fullname, errstr, errstr_size) != 0)
                goto out;
        w->fp = ms_avro_crc64(canon, strlen(canon));
        w->json_text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
        w->resolved = calloc(n_readers ? n_readers : 1, sizeof(*w->resolved));
        w->resolve_err = calloc(n_readers ? n_readers : 1, sizeof(*w->resolve_err));
        if (!w->json_text || !w->resolved || !w->resolve_err)
                goto oom;
        if (avro_schema_from_json_length(w->json_text, strlen(w->json_text),
                                         &w->schema) != 0) {
                w->schema = NULL;
                seterr(errstr, errstr_size, "invalid Avro schema %s: %s", w->fullname,
                       avro_strerror());
                goto out;
        }
        *out = w;
        w = NULL;
        rc = 0;
        goto out;
oom:
        seterr(errstr, errstr_size, "out of memory");
out:
        writer_free(w, n_readers);
        free(canon);
        json_decref(root);
        return rc;
}

static writer_t *find_writer_fp(ms_avro_t *c, uint64_t fp)
{
        for (size_t i = 0; i < c->n_writers; i++)
                if (c->writers[i]->fp == fp)
                        return c->writers[i];
        return NULL;
}

/* Adds w unless a writer with the same fingerprint exists; either way
 * returns the entry to use and takes ownership of w.  Lock held. */
static writer_t *add_writer_locked(ms_avro_t *c, writer_t *w)
{
        writer_t *have = find_writer_fp(c, w->fp);

        if (have) {
                writer_free(w, c->n_readers);
                return have;
        }
        if (c->n_writers == c->cap_writers) {
                size_t ncap = c->cap_writers ? c->cap_writers * 2 : 8;
                writer_t **nw = realloc(c->writers, ncap * sizeof(*nw));
                if (!nw) {
                        writer_free(w, c->n_readers);
                        return NULL;
                }
                c->writers = nw;
                c->cap_writers = ncap;
        }
        c->writers[c->n_writers++] = w;
        return w;
}

static writer_t *find_id_locked(ms_avro_t *c, int32_t id)
{
        for (size_t i = 0; i < c->n_ids; i++)
                if (c->ids[i].id == id)
                        return c->ids[i].w;
        return NULL;
}

static int add_id_locked(ms_avro_t *c, int32_t id, writer_t *w)
{
        if (find_id_locked(c, id))
                return 0;
        if (c->n_ids == c->cap_ids) {
                size_t ncap = c->cap_ids ? c->cap_ids * 2 : 8;
                id_entry_t *n = realloc(c->ids, ncap * sizeof(*n));
                if (!n)
                        return MS_ERR_GENERIC;
                c->ids = n;
                c->cap_ids = ncap;
        }
        c->ids[c->n_ids].id = id;
        c->ids[c->n_ids].w = w;
        c->n_ids++;
        return 0;
}

static int find_subject_locked(ms_avro_t *c, const char *subject, uint64_t fp,
                               int32_t *id)
{
        for (size_t i = 0; i < c->n_subjects; i++) {
                if (c->subjects[i].fp == fp &&
                    strcmp(c->subjects[i].subject, subject) == 0) {
                        *id = c->subjects[i].id;
                        return 1;
                }
        }
        return 0;
}

static int add_subject_locked(ms_avro_t *c, const char *subject, uint64_t fp, int32_t id)
{
        int32_t have;
        char *s;

        if (find_subject_locked(c, subject, fp, &have))
                return 0;
        if (c->n_subjects == c->cap_subjects) {
                size_t ncap = c->cap_subjects ? c->cap_subjects * 2 : 8;
                subject_entry_t *n = realloc(c->subjects, ncap * sizeof(*n));
                if (!n)
                        return MS_ERR_GENERIC;
                c->subjects = n;
                c->cap_subjects = ncap;
        }
        s = strdup(subject);
        if (!s)
                return MS_ERR_GENERIC;
        c->subjects[c->n_subjects].subject = s;
        c->subjects[c->n_subjects].fp = fp;
        c->subjects[c->n_subjects].id = id;
        c->n_subjects++;
        return 0;
}

static int reader_index(ms_avro_t *c, const char *name)
{
        if (!name)
                return -1;
        for (size_t i = 0; i < c->n_readers; i++)
                if (strcmp(c->readers[i].name, name) == 0 ||
                    strcmp(c->readers[i].w->fullname, name) == 0)
                        return (int)i;
        return -1;
}

/* ------------------------------------------------------------------------
 * Resolution
 */

static bool same_named(avro_schema_t a, avro_schema_t b)
{
        const char *na, *nb;

        if (avro_typeof(a) != avro_typeof(b))
                return false;
        if (!is_avro_named_type(a))
                return true;
        na = avro_schema_name(a);
        nb = avro_schema_name(b);
        return na && nb && strcmp(na, nb) == 0;
}

/* avro-c's resolver copies enum indexes from writer to reader without
 * mapping symbols, so an enum whose symbols were reordered (or had one
 * inserted in the middle) would decode to the wrong symbol.  Backward
 * compatible evolution only appends symbols; refuse anything else. */
static int check_enum_order(avro_schema_t w, avro_schema_t r, int depth, char *errstr,
                            size_t errstr_size)
{
        w = skip_links(w);
        r = skip_links(r);
        /* Links make schemas recursive; the first levels show any problem. */
        if (depth > 16 || !w || !r)
                return 0;
        if (is_avro_union(w)) {
                for (size_t i = 0; i < avro_schema_union_size(w); i++)
                        if (check_enum_order(avro_schema_union_branch(w, (int)i), r,
                                             depth + 1, errstr, errstr_size))
                                return -1;
                return 0;
        }
        if (is_avro_union(r)) {
                for (size_t i = 0; i < avro_schema_union_size(r); i++) {
                        avro_schema_t rb =
                            skip_links(avro_schema_union_branch(r, (int)i));
                        if (rb && same_named(w, rb))
                                return check_enum_order(w, rb, depth + 1, errstr,
                                                        errstr_size);
                }
                return 0;
        }
        if (!same_named(w, r))
                return 0;
        switch (avro_typeof(w)) {
        case AVRO_ENUM: {
                int nw = avro_schema_enum_number_of_symbols(w);
                int nr = avro_schema_enum_number_of_symbols(r);
                for (int i = 0; i < nw && i < nr; i++) {
                        const char *sw = avro_schema_enum_get(w, i);
                        const char *sr = avro_schema_enum_get(r, i);
                        if (strcmp(sw, sr) != 0) {
                                seterr(
                                    errstr, errstr_size,
                                    "enum %s: writer symbol %d is %s but reader's is %s "
                                    "(symbols may only be appended)",
                                    avro_schema_name(w), i, sw, sr);
                                return -1;
                        }
                }
                return 0;
        }
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(r); i++) {
                        const char *fname = avro_schema_record_field_name(r, (int)i);
                        int wi = avro_schema_record_field_get_index(w, fname);
                        if (wi < 0)
                                continue;
                        if (check_enum_order(
                                avro_schema_record_field_get_by_index(w, wi),
                                avro_schema_record_field_get_by_index(r, (int)i),
                                depth + 1, errstr, errstr_size))
                                return -1;
                }
                return 0;
        case AVRO_ARRAY:
                return check_enum_order(avro_schema_array_items(w),
                                        avro_schema_array_items(r), depth + 1, errstr,
                                        errstr_size);
        case AVRO_MAP:
                return check_enum_order(avro_schema_map_values(w),
                                        avro_schema_map_values(r), depth + 1, errstr,
                                        errstr_size);
        default:
                return 0;
        }
}

/* Resolved-writer interface for writer w into reader ri; *out = NULL when
 * w is the reader itself (read directly).  Lock held. */
static int resolver_get_locked(ms_avro_t *c, writer_t *w, size_t ri,
                               avro_value_iface_t **out, char *errstr, size_t errstr_size)
{
        reader_t *r = &c->readers[ri];
        char msg[512];

        *out = NULL;
        if (w == r->w)
                return 0;
        if (w->resolved[ri]) {
                *out = w->resolved[ri];
                return 0;
        }
        if (w->resolve_err[ri]) {
                seterr(errstr, errstr_size, "%s", w->resolve_err[ri]);
                return MS_ERR_DECODE;
        }
        msg[0] = '\0';
        if (strcmp(w->fullname, r->w->fullname) != 0) {
                snprintf(msg, sizeof(msg), "message schema %s cannot be read as %s",
                         w->fullname, r->w->fullname);
        } else if (check_enum_order(w->schema, r->w->schema, 0, msg, sizeof(msg)) == 0) {
                w->resolved[ri] = avro_resolved_writer_new(w->schema, r->w->schema);
                if (w->resolved[ri]) {
                        *out = w->resolved[ri];
                        return 0;
                }
                snprintf(msg, sizeof(msg),
                         "writer schema %016" PRIx64 " does not resolve to reader %s: %s",
                         w->fp, r->name, avro_strerror());
        }
        w->resolve_err[ri] = strdup(msg);
        seterr(errstr, errstr_size, "%s", msg);
        return MS_ERR_DECODE;
}

/* ------------------------------------------------------------------------
 * Validating walk of Avro binary against the writer schema
 */

typedef struct cursor {
        const unsigned char *start, *p, *end;
        char *errstr;
        size_t errstr_size;
} cursor_t;

static int skim_fail(cursor_t *cur, const char *what)
{
        seterr(cur->errstr, cur->errstr_size, "%s at byte %zu", what,
               (size_t)(cur->p - cur->start));
        return -1;
}

static int skim_long(cursor_t *cur, int64_t *out)
{
        uint64_t v = 0;

        for (int i = 0; i < 10; i++) {
                unsigned b;
                if (cur->p >= cur->end)
                        return skim_fail(cur, "truncated varint");
                b = *cur->p++;
                /* The tenth byte carries only the 64th bit. */
                if (i == 9 && (b & 0xFE))
                        return skim_fail(cur, "varint overflows 64 bits");
                v |= (uint64_t)(b & 0x7F) << (7 * i);
                if (!(b & 0x80)) {
                        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
                        return 0;
                }
        }
        return skim_fail(cur, "varint longer than 10 bytes");
}

static int skim_bytes(cursor_t *cur, int64_t n)
{
        if (n < 0)
                return skim_fail(cur, "negative length");
        if ((uint64_t)n > (uint64_t)(cur->end - cur->p))
                return skim_fail(cur, "truncated data");
        cur->p += n;
        return 0;
}

/* True when a value of schema s may encode to zero bytes, so that a block
 * count cannot be bounded by the bytes left. */
static bool may_be_empty(avro_schema_t s, int depth)
{
        s = skip_links(s);
        if (!s || depth > MAX_DEPTH)
                return false;
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return true;
        case AVRO_FIXED:
                return avro_schema_fixed_size(s) == 0;
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if (!may_be_empty(
                                avro_schema_record_field_get_by_index(s, (int)i),
                                depth + 1))
                                return false;
                return true;
        default:
                return false;
        }
}

static int skim(cursor_t *cur, avro_schema_t s, int depth);

static int skim_blocks(cursor_t *cur, avro_schema_t item, bool is_map, int depth)
{
        bool empty_ok = may_be_empty(item, 0);
        uint64_t total = 0;

        for (;;) {
                int64_t count, size;
                if (skim_long(cur, &count))
                        return -1;
                if (count == 0)
                        return 0;
                if (count < 0) {
                        if (count == INT64_MIN)
                                return skim_fail(cur, "invalid block count");
                        count = -count;
                        if (skim_long(cur, &size))
                                return -1;
                        if (size < 0)
                                return skim_fail(cur, "negative block size");
                }
                /* Every item takes at least a byte unless it can be empty;
                 * then a fixed cap stops a count-only allocation bomb. */
                total += (uint64_t)count;
                if (empty_ok ? total > 65536
                             : (uint64_t)count > (uint64_t)(cur->end - cur->p))
                        return skim_fail(cur, "block count exceeds data");
                for (int64_t i = 0; i < count; i++) {
                        if (is_map) {
                                int64_t klen;
                                if (skim_long(cur, &klen) || skim_bytes(cur, klen))
                                        return -1;
                        }
                        if (skim(cur, item, depth + 1))
                                return -1;
                }
        }
}

static int skim(cursor_t *cur, avro_schema_t s, int depth)
{
        int64_t v;

        s = skip_links(s);
        if (!s)
                return skim_fail(cur, "schema without type");
        if (depth > MAX_DEPTH)
                return skim_fail(cur, "data nested too deeply");
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN:
                if (cur->p >= cur->end)
                        return skim_fail(cur, "truncated boolean");
                if (*cur->p > 1)
                        return skim_fail(cur, "invalid boolean");
                cur->p++;
                return 0;
        case AVRO_INT32:
                if (skim_long(cur, &v))
                        return -1;
                if (v < INT32_MIN || v > INT32_MAX)
                        return skim_fail(cur, "int out of range");
                return 0;
        case AVRO_INT64:
                return skim_long(cur, &v);
        case AVRO_FLOAT:
                return skim_bytes(cur, 4);
        case AVRO_DOUBLE:
                return skim_bytes(cur, 8);
        case AVRO_STRING:
        case AVRO_BYTES:
                if (skim_long(cur, &v))
                        return -1;
                return skim_bytes(cur, v);
        case AVRO_FIXED:
                return skim_bytes(cur, avro_schema_fixed_size(s));
        case AVRO_ENUM:
                if (skim_long(cur, &v))
                        return -1;
                if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
                        return skim_fail(cur, "enum index out of range");
                return 0;
        case AVRO_UNION:
                if (skim_long(cur, &v))
                        return -1;
                if (v < 0 || (uint64_t)v >= avro_schema_union_size(s))
                        return skim_fail(cur, "union branch out of range");
                return skim(cur, avro_schema_union_branch(s, (int)v), depth + 1);
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if (skim(cur, avro_schema_record_field_get_by_index(s, (int)i),
                                 depth + 1))
                                return -1;
                return 0;
        case AVRO_ARRAY:
                return skim_blocks(cur, avro_schema_array_items(s), false, depth);
        case AVRO_MAP:
                return skim_blocks(cur, avro_schema_map_values(s), true, depth);
        default:
                return skim_fail(cur, "unsupported schema type");
        }
}

/* ------------------------------------------------------------------------
 * JSON <-> avro_value_t
 */

typedef struct path {
        char buf[PATH_MAX_LEN];
        size_t len;
} path_t;

/* Appends ".name" (or "name" at the root) and returns the old length. */
static size_t path_push(path_t *p, const char *sep, const char *name)
{
        size_t old = p->len;
        int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "%s%s",
                         p->len ? sep : "", name);
        if (n > 0)
                p->len = p->len + (size_t)n < sizeof(p->buf) ? p->len + (size_t)n
                                                             : sizeof(p->buf) - 1;
        return old;
}

static void path_pop(path_t *p, size_t old)
{
        p->len = old;
        p->buf[old] = '\0';
}

static const char *path_str(const path_t *p)
{
        return p->len ? p->buf : "(root)";
}

static const char *json_kind(const json_t *j)
{
        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "boolean";
        default:
                return "null";
        }
}

/* Name a union branch goes by in JSON: short name for named types, type name
 * otherwise. */
static const char *branch_name(avro_schema_t b)
{
        b = skip_links(b);
        if (is_avro_named_type(b))
                return avro_schema_name(b);
        switch (avro_typeof(b)) {
        case AVRO_NULL:
                return "null";
        case AVRO_BOOLEAN:
                return "boolean";
        case AVRO_INT32:
                return "int";
        case AVRO_INT64:
                return "long";
        case AVRO_FLOAT:
                return "float";
        case AVRO_DOUBLE:
                return "double";
        case AVRO_BYTES:
                return "bytes";
        case AVRO_STRING:
                return "string";
        case AVRO_ARRAY:
                return "array";
        case AVRO_MAP:
                return "map";
        default:
                return "?";
        }
}

static bool branch_matches(avro_schema_t b, const char *key)
{
        const char *ns;
        size_t nl;

        b = skip_links(b);
        if (strcmp(branch_name(b), key) == 0)
                return true;
        /* Accept the full name too, as the Avro JSON encoding uses it. */
        if (!is_avro_named_type(b))
                return false;
        ns = avro_schema_namespace(b);
        if (!ns || !*ns)
                return false;
        nl = strlen(ns);
        return strncmp(key, ns, nl) == 0 && key[nl] == '.' &&
               strcmp(key + nl + 1, avro_schema_name(b)) == 0;
}

/* Index of the null branch of a union schema, -1 if none. */
static int null_branch(avro_schema_t u)
{
        for (size_t i = 0; i < avro_schema_union_size(u); i++)
                if (is_avro_null(skip_links(avro_schema_union_branch(u, (int)i))))
                        return (int)i;
        return -1;
}

/* ---- encoding: JSON straight to Avro binary ----
 * The encoder walks the schema and the JSON value together and appends the
 * binary encoding (Avro spec, "Binary Encoding") to a growing buffer.  Going
 * through avro-c's generic values instead allocated a whole value tree per
 * event and was half of the connector's cost of emitting a MemberChanged. */
typedef struct obuf {
        unsigned char *p;
        size_t len, cap;
} obuf_t;

static int ob_reserve(obuf_t *o, size_t more)
{
        if (o->len + more <= o->cap)
                return 0;
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + more)
                cap *= 2;
        unsigned char *np = realloc(o->p, cap);
        if (!np)
                return -1;
        o->p = np;
        o->cap = cap;
        return 0;
}

static int ob_put(obuf_t *o, const void *data, size_t n)
{
        if (ob_reserve(o, n))
                return -1;
        memcpy(o->p + o->len, data, n);
        o->len += n;
        return 0;
}

/* Zig-zag variable-length long. */
static int ob_long(obuf_t *o, int64_t v)
{
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        if (ob_reserve(o, 10))
                return -1;
        while (z & ~(uint64_t)0x7f) {
                o->p[o->len++] = (unsigned char)((z & 0x7f) | 0x80);
                z >>= 7;
        }
        o->p[o->len++] = (unsigned char)z;
        return 0;
}

static int ob_fail(char *errstr, size_t errstr_size)
{
        seterr(errstr, errstr_size, "out of memory");
        return -1;
}

static int enc_json(obuf_t *o, avro_schema_t s, json_t *j, path_t *path, char *errstr,
                    size_t errstr_size, int depth);

static int union_enc(obuf_t *o, avro_schema_t us, json_t *j, path_t *path, char *errstr,
                     size_t errstr_size, int depth)
{
        size_t nb = avro_schema_union_size(us);
        int nullb = null_branch(us);
        int idx = -1;
        json_t *inner = j;

        if (json_is_null(j)) {
                if (nullb < 0) {
                        seterr(errstr, errstr_size, "%s: null not allowed",
                               path_str(path));
                        return -1;
                }
                idx = nullb;
        } else if (nullb >= 0 && nb == 2) {
                /* ["null", X] is written as the plain value. */
                idx = nullb == 0 ? 1 : 0;
        } else {
                const char *key;
                json_t *val;

                if (!json_is_object(j) || json_object_size(j) != 1) {
                        seterr(errstr, errstr_size,
                               "%s: expected an object with exactly one key naming the "
                               "union "
                               "branch, got %s",
                               path_str(path), json_kind(j));
                        return -1;
                }
                json_object_foreach(j, key, val)
                {
                        for (size_t i = 0; i < nb; i++) {
                                if (branch_matches(avro_schema_union_branch(us, (int)i),
                                                   key)) {
                                        idx = (int)i;
                                        break;
                                }
                        }
                        if (idx < 0) {
                                seterr(errstr, errstr_size,
                                       "%s: unknown union branch \"%s\"", path_str(path),
                                       key);
                                return -1;
                        }
                        inner = val;
                }
        }
        if (ob_long(o, idx))
                return ob_fail(errstr, errstr_size);
        avro_schema_t bs = skip_links(avro_schema_union_branch(us, idx));
        if (inner != j) {
                size_t old = path_push(path, ".", branch_name(bs));
                int rc = enc_json(o, bs, inner, path, errstr, errstr_size, depth + 1);
                path_pop(path, old);
                return rc;
        }
        return enc_json(o, bs, inner, path, errstr, errstr_size, depth + 1);
}

static int record_enc(obuf_t *o, avro_schema_t rs, json_t *j, path_t *path, char *errstr,
                      size_t errstr_size, int depth)
{
        const char *key;
        json_t *val;

        if (!json_is_object(j)) {
                seterr(errstr, errstr_size, "%s: expected object for %s, got %s",
                       path_str(path), avro_schema_name(rs), json_kind(j));
                return -1;
        }
        size_t nfields = avro_schema_record_size(rs);
        for (size_t i = 0; i < nfields; i++) {
                const char *fname = avro_schema_record_field_name(rs, (int)i);
                avro_schema_t fs =
                    skip_links(avro_schema_record_field_get_by_index(rs, (int)i));
                json_t *fj = json_object_get(j, fname);
                size_t old = path_push(path, ".", fname);
                int rc;

                if (!fj) {
                        /* An absent nullable field means null; anything else
                         * must be present. */
                        if (!is_avro_union(fs) || null_branch(fs) < 0) {
                                seterr(errstr, errstr_size, "%s: missing required field",
                                       path_str(path));
                                return -1;
                        }
                        fj = json_null();
                }
                rc = enc_json(o, fs, fj, path, errstr, errstr_size, depth + 1);
                path_pop(path, old);
                if (rc)
                        return rc;
        }
        /* Unknown keys are usually typos of optional fields, which would
         * otherwise silently become null.  Counting first keeps the common
         * case (every key known) to one comparison. */
        if (json_object_size(j) <= nfields) {
                size_t known = 0;
                for (size_t i = 0; i < nfields; i++)
                        known += json_object_get(j, avro_schema_record_field_name(
                                                        rs, (int)i)) != NULL;
                if (known == json_object_size(j))
                        return 0;
        }
        json_object_foreach(j, key, val)
        {
                (void)val;
                if (avro_schema_record_field_get_index(rs, key) < 0) {
                        size_t old = path_push(path, ".", key);
                        seterr(errstr, errstr_size, "%s: unknown field", path_str(path));
                        path_pop(path, old);
                        return -1;
                }
        }
        return 0;
}

static int enc_json(obuf_t *o, avro_schema_t s, json_t *j, path_t *path, char *errstr,
                    size_t errstr_size, int depth)
{
        int rc = 0;

        if (depth > MAX_DEPTH) {
                seterr(errstr, errstr_size, "%s: value nested too deeply",
                       path_str(path));
                return -1;
        }
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                if (!json_is_null(j))
                        goto wrong;
                break;
        case AVRO_BOOLEAN: {
                if (!json_is_boolean(j))
                        goto wrong;
                unsigned char b = json_is_true(j) ? 1 : 0;
                rc = ob_put(o, &b, 1);
                break;
        }
        case AVRO_INT32: {
                json_int_t n;
                if (!json_is_integer(j))
                        goto wrong;
                n = json_integer_value(j);
                if (n < INT32_MIN || n > INT32_MAX) {
                        seterr(errstr, errstr_size,
                               "%s: %" JSON_INTEGER_FORMAT " out of int range",
                               path_str(path), n);
                        return -1;
                }
                rc = ob_long(o, (int64_t)n);
                break;
        }
        case AVRO_INT64:
                if (!json_is_integer(j))
                        goto wrong;
                rc = ob_long(o, (int64_t)json_integer_value(j));
                break;
        case AVRO_FLOAT: {
                if (!json_is_number(j))
                        goto wrong;
                float f = (float)json_number_value(j);
                uint32_t u;
                memcpy(&u, &f, 4);
                u = htole32(u);
                rc = ob_put(o, &u, 4);
                break;
        }
        case AVRO_DOUBLE: {
                if (!json_is_number(j))
                        goto wrong;
                double d = json_number_value(j);
                uint64_t u;
                memcpy(&u, &d, 8);
                u = htole64(u);
                rc = ob_put(o, &u, 8);
                break;
        }
        case AVRO_STRING:
        case AVRO_BYTES:
                if (!json_is_string(j))
                        goto wrong;
                rc = ob_long(o, (int64_t)json_string_length(j)) ||
                     ob_put(o, json_string_value(j), json_string_length(j));
                break;
        case AVRO_ENUM: {
                int idx;
                if (!json_is_string(j))
                        goto wrong;
                idx = avro_schema_enum_get_by_name(s, json_string_value(j));
                if (idx < 0) {
                        seterr(errstr, errstr_size,
                               "%s: \"%s\" is not a symbol of enum %s", path_str(path),
                               json_string_value(j), avro_schema_name(s));
                        return -1;
                }
                rc = ob_long(o, idx);
                break;
        }
        case AVRO_FIXED: {
                int64_t size = avro_schema_fixed_size(s);
                if (!json_is_string(j))
                        goto wrong;
                if ((int64_t)json_string_length(j) != size) {
                        seterr(errstr, errstr_size,
                               "%s: fixed %s needs %" PRId64 " bytes", path_str(path),
                               avro_schema_name(s), size);
                        return -1;
                }
                rc = ob_put(o, json_string_value(j), (size_t)size);
                break;
        }
        case AVRO_ARRAY: {
                size_t i;
                json_t *item;
                avro_schema_t is = skip_links(avro_schema_array_items(s));
                if (!json_is_array(j))
                        goto wrong;
                /* One block with every item, then the empty block. */
                if (json_array_size(j) > 0 && ob_long(o, (int64_t)json_array_size(j)))
                        return ob_fail(errstr, errstr_size);
                json_array_foreach(j, i, item)
                {
                        char idx[32];
                        size_t old;
                        snprintf(idx, sizeof(idx), "[%zu]", i);
                        old = path_push(path, "", idx);
                        rc = enc_json(o, is, item, path, errstr, errstr_size, depth + 1);
                        path_pop(path, old);
                        if (rc)
                                return rc;
                }
                rc = ob_long(o, 0);
                break;
        }
        case AVRO_MAP: {
                const char *key;
                json_t *item;
                avro_schema_t vs = skip_links(avro_schema_map_values(s));
                if (!json_is_object(j))
                        goto wrong;
                if (json_object_size(j) > 0 && ob_long(o, (int64_t)json_object_size(j)))
                        return ob_fail(errstr, errstr_size);
                json_object_foreach(j, key, item)
                {
                        size_t old;
                        size_t klen = strlen(key);
                        if (ob_long(o, (int64_t)klen) || ob_put(o, key, klen))
                                return ob_fail(errstr, errstr_size);
                        old = path_push(path, ".", key);
                        rc = enc_json(o, vs, item, path, errstr, errstr_size, depth + 1);
                        path_pop(path, old);
                        if (rc)
                                return rc;
                }
                rc = ob_long(o, 0);
                break;
        }
        case AVRO_RECORD:
                return record_enc(o, s, j, path, errstr, errstr_size, depth);
        case AVRO_UNION:
                return union_enc(o, s, j, path, errstr, errstr_size, depth);
        default:
                seterr(errstr, errstr_size, "%s: unsupported Avro type", path_str(path));
                return -1;
        }
        if (rc)
                return ob_fail(errstr, errstr_size);
        return 0;
wrong:
        seterr(errstr, errstr_size, "%s: expected %s, got %s", path_str(path),
               branch_name(s), json_kind(j));
        return -1;
}

static int to_json(avro_value_t *v, json_t **out, path_t *path, char *errstr,
                   size_t errstr_size, int depth);

static int to_json_fail(path_t *path, char *errstr, size_t errstr_size, const char *what)
{
        seterr(errstr, errstr_size, "%s: %s", path_str(path), what);
        return -1;
}

static int to_json(avro_value_t *v, json_t **out, path_t *path, char *errstr,
                   size_t errstr_size, int depth)
{
        avro_schema_t s = skip_links(avro_value_get_schema(v));
        json_t *o = NULL;

        *out = NULL;
        if (depth > MAX_DEPTH)
                return to_json_fail(path, errstr, errstr_size, "value nested too deeply");
        switch (avro_value_get_type(v)) {
        case AVRO_NULL:
                o = json_null();
                break;
        case AVRO_BOOLEAN: {
                int b;
                if (avro_value_get_boolean(v, &b))
                        goto avro_fail;
                o = json_boolean(b);
                break;
        }
        case AVRO_INT32: {
                int32_t n;
                if (avro_value_get_int(v, &n))
                        goto avro_fail;
                o = json_integer(n);
                break;
        }
        case AVRO_INT64: {
                int64_t n;
                if (avro_value_get_long(v, &n))
                        goto avro_fail;
                o = json_integer(n);
                break;
        }
        case AVRO_FLOAT: {
                float f;
                if (avro_value_get_float(v, &f))
                        goto avro_fail;
                o = json_real(f);
                if (!o)
                        return to_json_fail(path, errstr, errstr_size,
                                            "float not finite");
                break;
        }
        case AVRO_DOUBLE: {
                double d;
                if (avro_value_get_double(v, &d))
                        goto avro_fail;
                o = json_real(d);
                if (!o)
                        return to_json_fail(path, errstr, errstr_size,
                                            "double not finite");
                break;
        }
        case AVRO_STRING: {
                const char *str;
                size_t size;
                if (avro_value_get_string(v, &str, &size))
                        goto avro_fail;
                o = json_stringn(str ? str : "", size ? size - 1 : 0);
                if (!o)
                        return to_json_fail(path, errstr, errstr_size,
                                            "string is not valid UTF-8");
                break;
        }
        case AVRO_BYTES: {
                const void *buf;
                size_t size;
                if (avro_value_get_bytes(v, &buf, &size))
                        goto avro_fail;
                o = json_stringn(buf ? buf : "", size);
                if (!o)
                        return to_json_fail(path, errstr, errstr_size,
                                            "bytes are not valid UTF-8");
                break;
        }
        case AVRO_FIXED: {
                const void *buf;
                size_t size;
                if (avro_value_get_fixed(v, &buf, &size))
                        goto avro_fail;
                o = json_stringn(buf ? buf : "", size);
                if (!o)
                        return to_json_fail(path, errstr, errstr_size,
                                            "fixed is not valid UTF-8");
                break;
        }
        case AVRO_ENUM: {
                int idx;
                if (avro_value_get_enum(v, &idx))
                        goto avro_fail;
                /* The resolver passes writer indexes through; a symbol the
                 * writer appended is unknown to this reader. */
                if (idx < 0 || idx >= avro_schema_enum_number_of_symbols(s))
                        return to_json_fail(path, errstr, errstr_size,
                                            "enum symbol unknown to the reader schema");
                o = json_string(avro_schema_enum_get(s, idx));
                break;
        }
        case AVRO_ARRAY: {
                size_t n;
                if (avro_value_get_size(v, &n))
                        goto avro_fail;
                o = json_array();
                for (size_t i = 0; i < n; i++) {
                        avro_value_t child;
                        json_t *cj;
                        char idx[32];
                        size_t old;
                        if (avro_value_get_by_index(v, i, &child, NULL))
                                goto avro_fail;
                        snprintf(idx, sizeof(idx), "[%zu]", i);
                        old = path_push(path, "", idx);
                        if (to_json(&child, &cj, path, errstr, errstr_size, depth + 1)) {
                                json_decref(o);
                                return -1;
                        }
                        path_pop(path, old);
                        json_array_append_new(o, cj);
                }
                break;
        }
        case AVRO_MAP:
        case AVRO_RECORD: {
                size_t n;
                if (avro_value_get_size(v, &n))
                        goto avro_fail;
                o = json_object();
                for (size_t i = 0; i < n; i++) {
                        avro_value_t child;
                        const char *name = NULL;
                        json_t *cj;
                        size_t old;
                        if (avro_value_get_by_index(v, i, &child, &name) || !name) {
                                json_decref(o);
                                goto avro_fail;
                        }
                        old = path_push(path, ".", name);
                        if (to_json(&child, &cj, path, errstr, errstr_size, depth + 1)) {
                                json_decref(o);
                                return -1;
                        }
                        path_pop(path, old);
                        json_object_set_new(o, name, cj);
                }
                break;
        }
        case AVRO_UNION: {
                int disc;
                avro_value_t branch;
                avro_schema_t bs;
                json_t *bj;
                size_t old;
                if (avro_value_get_discriminant(v, &disc) || disc < 0 ||
                    avro_value_get_current_branch(v, &branch))
                        return to_json_fail(path, errstr, errstr_size,
                                            "union without value");
                bs = skip_links(avro_schema_union_branch(s, disc));
                if (is_avro_null(bs)) {
                        o = json_null();
                        break;
                }
                if (avro_schema_union_size(s) == 2 && null_branch(s) >= 0)
                        return to_json(&branch, out, path, errstr, errstr_size,
                                       depth + 1);
                old = path_push(path, ".", branch_name(bs));
                if (to_json(&branch, &bj, path, errstr, errstr_size, depth + 1))
                        return -1;
                path_pop(path, old);
                o = json_object();
                json_object_set_new(o, branch_name(bs), bj);
                break;
        }
        default:
                return to_json_fail(path, errstr, errstr_size, "unsupported Avro type");
        }
        if (!o)
                return to_json_fail(path, errstr, errstr_size, "out of memory");
        *out = o;
        return 0;
avro_fail:
        return to_json_fail(path, errstr, errstr_size, avro_strerror());
}

/* ------------------------------------------------------------------------
 * Schema registry (Confluent REST API)
 */

typedef struct http_buf {
        char *data;
        size_t len;
        bool overflow;
} http_buf_t;

static size_t http_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
        http_buf_t *b = ud;
        size_t n = size * nmemb;
        char *nd;

        if (b->len + n > HTTP_MAX_BODY) {
                b->overflow = true;
                return 0;
        }
        nd = realloc(b->data, b->len + n + 1);
        if (!nd)
                return 0;
        b->data = nd;
        memcpy(b->data + b->len, ptr, n);
        b->len += n;
        b->data[b->len] = '\0';
        return n;
}

/* One registry call.  Returns 0 with *status and *resp (parsed JSON or NULL)
 * whenever an HTTP answer arrived, MS_ERR_HTTP when none did.  The URL is
 * never put into errstr: it may carry credentials. */
static int http_call(const char *url, const char *what, const char *post_body,
                     long *status, json_t **resp, char *errstr, size_t errstr_size)
{
        CURL *curl = NULL;
        struct curl_slist *hdrs = NULL;
        http_buf_t buf = {0};
        CURLcode cc;
        int rc = MS_ERR_HTTP;

        *status = 0;
        *resp = NULL;
        curl = curl_easy_init();
        if (!curl) {
                seterr(errstr, errstr_size, "schema registry %s: curl init failed", what);
                goto out;
        }
        hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                       "application/json");
        if (post_body) {
                hdrs = curl_slist_append(
                    hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
                /* No "Expect: 100-continue" round trip for a small body. */
                hdrs = curl_slist_append(hdrs, "Expect:");
        }
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_write);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, HTTP_CONNECT_MS);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, HTTP_TOTAL_MS);
        /* Signals would interrupt other threads; timeouts do not need them. */
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        if (post_body) {
                curl_easy_setopt(curl, CURLOPT_POST, 1L);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post_body);
        }
        cc = curl_easy_perform(curl);
        if (cc != CURLE_OK) {
                seterr(errstr, errstr_size, "schema registry %s: %s", what,
                       buf.overflow ? "response too large" : curl_easy_strerror(cc));
                goto out;
        }
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
        if (buf.data)
                *resp = json_loads(buf.data, 0, NULL);
        rc = 0;
out:
        curl_slist_free_all(hdrs);
        if (curl)
                curl_easy_cleanup(curl);
        free(buf.data);
        return rc;
}

static void registry_errmsg(json_t *resp, char *out, size_t size)
{
        const char *m = json_string_value(json_object_get(resp, "message"));
        snprintf(out, size, "%s", m ? m : "no message");
}

/* Registers the schema of writer w under subject; returns its id. */
static int registry_register(ms_avro_t *c, const char *subject, const writer_t *w,
                             int32_t *id, char *errstr, size_t errstr_size)
{
        char *url = NULL, *esc = NULL, *body = NULL;
        json_t *req = NULL, *resp = NULL;
        long status;
        char msg[256];
        int rc = MS_ERR_GENERIC;
        CURL *curl = curl_easy_init();

        if (!curl) {
                seterr(errstr, errstr_size, "schema registry: curl init failed");
                rc = MS_ERR_HTTP;
                goto out;
        }
        esc = curl_easy_escape(curl, subject, 0);
        req = json_pack("{s:s}", "schema", w->json_text);
        body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        if (!esc || !body ||
            asprintf(&url, "%s/subjects/%s/versions", c->registry_url, esc) < 0) {
                url = NULL;
                seterr(errstr, errstr_size, "out of memory");
                goto out;
        }
        rc = http_call(url, "register", body, &status, &resp, errstr, errstr_size);
        if (rc)
                goto out;
        if (status == 200 && json_is_integer(json_object_get(resp, "id"))) {
                json_int_t n = json_integer_value(json_object_get(resp, "id"));
                if (n < 0 || n > INT32_MAX) {
                        seterr(errstr, errstr_size,
                               "schema registry returned id out of range");
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
                *id = (int32_t)n;
                rc = 0;
                goto out;
        }
        registry_errmsg(resp, msg, sizeof(msg));
        seterr(errstr, errstr_size,
               "schema registry refused %s for subject %s: HTTP %ld: %s", w->fullname,
               subject, status, msg);
        /* 5xx and 429 are worth retrying; 4xx (incompatible, invalid) is not. */
        rc = (status >= 500 || status == 429 || status == 0) ? MS_ERR_HTTP
                                                             : MS_ERR_GENERIC;
out:
        curl_free(esc);
        if (curl)
                curl_easy_cleanup(curl);
        free(url);
        free(body);
        json_decref(req);
        json_decref(resp);
        return rc;
}

/* Fetches the schema text of registry id; *schema_json is malloc'ed. */
static int registry_fetch(ms_avro_t *c, int32_t id, char **schema_json, char *errstr,
                          size_t errstr_size)
{
        char *url = NULL;
        json_t *resp = NULL;
        const char *type, *text;
        long status;
        char msg[256];
        int rc;

        *schema_json = NULL;
        if (asprintf(&url, "%s/schemas/ids/%" PRId32, c->registry_url, id) < 0) {
                seterr(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        rc = http_call(url, "lookup", NULL, &status, &resp, errstr, errstr_size);
        free(url);
        if (rc)
                goto out;
        if (status == 200) {
                type = json_string_value(json_object_get(resp, "schemaType"));
                text = json_string_value(json_object_get(resp, "schema"));
                if (type && strcmp(type, "AVRO") != 0) {
                        seterr(errstr, errstr_size,
                               "schema id %" PRId32 " is %s, not Avro", id, type);
                        rc = MS_ERR_DECODE;
                } else if (!text) {
                        seterr(errstr, errstr_size,
                               "schema registry answer for id %" PRId32 " has no schema",
                               id);
                        rc = MS_ERR_HTTP;
                } else if (!(*schema_json = strdup(text))) {
                        seterr(errstr, errstr_size, "out of memory");
                        rc = MS_ERR_GENERIC;
                }
                goto out;
        }
        registry_errmsg(resp, msg, sizeof(msg));
        seterr(errstr, errstr_size,
               "schema id %" PRId32 " not found in registry: HTTP %ld: %s", id, status,
               msg);
        /* Only a definite "not found" makes the message undecodable; other
         * failures are the registry's and the caller should retry. */
        rc = (status == 404) ? MS_ERR_DECODE : MS_ERR_HTTP;
out:
        json_decref(resp);
        return rc;
}

/* ------------------------------------------------------------------------
 * Codec
 */

int ms_avro_new(const char *registry_url, ms_avro_t **out, char *errstr,
                size_t errstr_size)
{
        ms_avro_t *c;
        size_t n = 0;
        int rc = MS_ERR_GENERIC;

        *out = NULL;
        c = calloc(1, sizeof(*c));
        if (!c) {
                seterr(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        pthread_mutex_init(&c->lock, NULL);
        if (registry_url && *registry_url) {
                size_t l;
                c->registry_url = strdup(registry_url);
                if (!c->registry_url) {
                        seterr(errstr, errstr_size, "out of memory");
                        goto out;
                }
                l = strlen(c->registry_url);
                while (l > 0 && c->registry_url[l - 1] == '/')
                        c->registry_url[--l] = '\0';
                /* Reference-counted by libcurl, so pairing it with our
                 * destroy is safe next to other users. */
                curl_global_init(CURL_GLOBAL_DEFAULT);
        }
        while (ms_schema_srcs[n].name)
                n++;
        c->readers = calloc(n ? n : 1, sizeof(*c->readers));
        if (!c->readers) {
                seterr(errstr, errstr_size, "out of memory");
                goto out;
        }
        c->n_readers = n;
        for (size_t i = 0; i < n; i++) {
                reader_t *r = &c->readers[i];
                writer_t *w;
                char err[256];

                r->name = ms_schema_srcs[i].name;
                if (writer_new(ms_schema_srcs[i].json, n, &w, err, sizeof(err))) {
                        seterr(errstr, errstr_size, "schema %s: %s", r->name, err);
                        goto out;
                }
                r->w = add_writer_locked(c, w);
                if (!r->w) {
                        seterr(errstr, errstr_size, "out of memory");
                        goto out;
                }
                r->iface = avro_generic_class_from_schema(r->w->schema);
                if (!r->iface) {
                        seterr(errstr, errstr_size, "schema %s: %s", r->name,
                               avro_strerror());
                        goto out;
                }
        }
        *out = c;
        c = NULL;
        rc = 0;
out:
        ms_avro_destroy(c);
        return rc;
}

void ms_avro_destroy(ms_avro_t *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_readers; i++)
                if (c->readers[i].iface)
                        avro_value_iface_decref(c->readers[i].iface);
        /* Resolvers hold schema references, so they go before the schemas:
         * writer_free releases its own resolvers first. */
        for (size_t i = 0; i < c->n_writers; i++)
                writer_free(c->writers[i], c->n_readers);
        for (size_t i = 0; i < c->n_subjects; i++)
                free(c->subjects[i].subject);
        free(c->subjects);
        free(c->ids);
        free(c->writers);
        free(c->readers);
        if (c->registry_url) {
                free(c->registry_url);
                curl_global_cleanup();
        }
        pthread_mutex_destroy(&c->lock);
        free(c);
}

uint64_t ms_avro_fingerprint(ms_avro_t *c, const char *name)
{
        int ri = c ? reader_index(c, name) : -1;
        return ri < 0 ? 0 : c->readers[ri].w->fp;
}

/* Parses schema_json into a writer entry and adds it (or finds the
 * existing one with the same fingerprint). */
static int add_schema(ms_avro_t *c, const char *schema_json, writer_t **out, int errcode,
                      char *errstr, size_t errstr_size)
{
        writer_t *w;
        char err[384];

        *out = NULL;
        if (!schema_json) {
                seterr(errstr, errstr_size, "no schema given");
                return MS_ERR_GENERIC;
        }
        if (writer_new(schema_json, c->n_readers, &w, err, sizeof(err))) {
                seterr(errstr, errstr_size, "%s", err);
                return errcode;
        }
        pthread_mutex_lock(&c->lock);
        *out = add_writer_locked(c, w);
        pthread_mutex_unlock(&c->lock);
        if (!*out) {
                seterr(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        return 0;
}

int ms_avro_add_writer_schema(ms_avro_t *c, const char *schema_json, char *errstr,
                              size_t errstr_size)
{
        writer_t *w;
        avro_value_iface_t *iface;
        int ri = -1, rc;

        rc = add_schema(c, schema_json, &w, MS_ERR_GENERIC, errstr, errstr_size);
        if (rc)
                return rc;
        /* Check now that it resolves, rather than at the first message. */
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_readers; i++)
                if (strcmp(c->readers[i].w->fullname, w->fullname) == 0)
                        ri = (int)i;
        if (ri < 0) {
                seterr(errstr, errstr_size, "no compiled-in schema named %s",
                       w->fullname);
                rc = MS_ERR_GENERIC;
        } else if (resolver_get_locked(c, w, (size_t)ri, &iface, errstr, errstr_size)) {
                rc = MS_ERR_GENERIC;
        }
        pthread_mutex_unlock(&c->lock);
        return rc;
}

int ms_avro_register_id(ms_avro_t *c, int32_t id, const char *schema_json, char *errstr,
                        size_t errstr_size)
{
        writer_t *w;
        int rc = add_schema(c, schema_json, &w, MS_ERR_GENERIC, errstr, errstr_size);

        if (rc)
                return rc;
        pthread_mutex_lock(&c->lock);
        rc = add_id_locked(c, id, w);
        pthread_mutex_unlock(&c->lock);
        if (rc)
                seterr(errstr, errstr_size, "out of memory");
        return rc;
}

/* Encodes value as reader ri's schema into a malloc'ed body.  Lock held. */
static int encode_body_locked(ms_avro_t *c, size_t ri, size_t hdr, json_t *value,
                              unsigned char **out, size_t *out_len, char *errstr,
                              size_t errstr_size)
{
        reader_t *r = &c->readers[ri];
        path_t path = {{0}, 0};
        char err[384];
        obuf_t o = {NULL, 0, 0};

        /* The framing header is written by the caller into the first hdr
         * bytes. */
        if (ob_reserve(&o, hdr + 64)) {
                seterr(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        o.len = hdr;
        if (enc_json(&o, skip_links(r->w->schema), value, &path, err, sizeof(err), 0)) {
                seterr(errstr, errstr_size, "encode %s: %s", r->name, err);
                free(o.p);
                return MS_ERR_GENERIC;
        }
        *out = o.p;
        *out_len = o.len;
        return 0;
}

int ms_avro_encode(ms_avro_t *c, const char *name, const char *topic, json_t *value,
                   unsigned char **out, size_t *out_len, char *errstr, size_t errstr_size)
{
        unsigned char *buf = NULL;
        size_t len = 0;
        char *subject = NULL;
        int32_t id = 0;
        int ri, rc;
        writer_t *w;

        *out = NULL;
        *out_len = 0;
        ri = c ? reader_index(c, name) : -1;
        if (ri < 0) {
                seterr(errstr, errstr_size, "unknown schema %s", name ? name : "(null)");
                return MS_ERR_GENERIC;
        }
        if (!value) {
                seterr(errstr, errstr_size, "encode %s: no value", name);
                return MS_ERR_GENERIC;
        }
        w = c->readers[ri].w;
        if (c->registry_url && (!topic || !*topic)) {
                seterr(errstr, errstr_size,
                       "encode %s: a topic is needed with a registry", name);
                return MS_ERR_GENERIC;
        }
        pthread_mutex_lock(&c->lock);
        rc = encode_body_locked(c, (size_t)ri,
                                c->registry_url ? CONFLUENT_HDR : SOE_HDR_LEN, value,
                                &buf, &len, errstr, errstr_size);
        pthread_mutex_unlock(&c->lock);
        if (rc)
                return rc;

        if (!c->registry_url) {
                buf[0] = SOE_MAGIC0;
                buf[1] = SOE_MAGIC1;
                for (int i = 0; i < 8; i++)
                        buf[2 + i] = (unsigned char)(w->fp >> (8 * i));
                goto done;
        }

        if (asprintf(&subject, "%s-value", topic) < 0) {
                subject = NULL;
                seterr(errstr, errstr_size, "out of memory");
                rc = MS_ERR_GENERIC;
                goto fail;
        }
        pthread_mutex_lock(&c->lock);
        rc = find_subject_locked(c, subject, w->fp, &id) ? 0 : 1;
        pthread_mutex_unlock(&c->lock);
        if (rc) {
                /* The HTTP call runs unlocked; two threads may both register,
                 * which the registry answers idempotently with the same id. */
                rc = registry_register(c, subject, w, &id, errstr, errstr_size);
                if (rc)
                        goto fail;
                pthread_mutex_lock(&c->lock);
                if (add_subject_locked(c, subject, w->fp, id) || add_id_locked(c, id, w))
                        rc = MS_ERR_GENERIC;
                pthread_mutex_unlock(&c->lock);
                if (rc) {
                        seterr(errstr, errstr_size, "out of memory");
                        goto fail;
                }
        }
        buf[0] = CONFLUENT_MAGIC;
        buf[1] = (unsigned char)((uint32_t)id >> 24);
        buf[2] = (unsigned char)((uint32_t)id >> 16);
        buf[3] = (unsigned char)((uint32_t)id >> 8);
        buf[4] = (unsigned char)(uint32_t)id;
done:
        free(subject);
        *out = buf;
        *out_len = len;
        return 0;
fail:
        free(subject);
        free(buf);
        return rc;
}

/* Reads body (written with w) as reader ri.  Lock held. */
static int decode_body_locked(ms_avro_t *c, writer_t *w, size_t ri,
                              const unsigned char *body, size_t body_len, json_t **out,
                              char *errstr, size_t errstr_size)
{
        reader_t *r = &c->readers[ri];
        avro_value_iface_t *riface = NULL;
        avro_value_t rv = {0}, resolved = {0};
        avro_reader_t ar = NULL;
        cursor_t cur = {body, body, body + body_len, NULL, 0};
        path_t path = {{0}, 0};
        char err[384];
        int rc = MS_ERR_DECODE;

        cur.errstr = err;
        cur.errstr_size = sizeof(err);
        if (skim(&cur, w->schema, 0)) {
                seterr(errstr, errstr_size, "decode %s: invalid data: %s", r->name, err);
                goto out;
        }
        if (cur.p != cur.end) {
                seterr(errstr, errstr_size,
                       "decode %s: %zu trailing bytes after the datum at byte %zu",
                       r->name, (size_t)(cur.end - cur.p), (size_t)(cur.p - cur.start));
                goto out;
        }
        if (resolver_get_locked(c, w, ri, &riface, err, sizeof(err))) {
                seterr(errstr, errstr_size, "decode %s: %s", r->name, err);
                goto out;
        }
        if (avro_generic_value_new(r->iface, &rv)) {
                rv.iface = NULL;
                seterr(errstr, errstr_size, "decode %s: %s", r->name, avro_strerror());
                rc = MS_ERR_GENERIC;
                goto out;
        }
        if (riface) {
                if (avro_resolved_writer_new_value(riface, &resolved)) {
                        resolved.iface = NULL;
                        seterr(errstr, errstr_size, "decode %s: %s", r->name,
                               avro_strerror());
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
                avro_resolved_writer_set_dest(&resolved, &rv);
        }
        ar = avro_reader_memory((const char *)body, (int64_t)body_len);
        if (!ar) {
                seterr(errstr, errstr_size, "out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        if (avro_value_read(ar, riface ? &resolved : &rv)) {
                seterr(errstr, errstr_size, "decode %s: %s", r->name, avro_strerror());
                goto out;
        }
        if (to_json(&rv, out, &path, err, sizeof(err), 0)) {
                seterr(errstr, errstr_size, "decode %s: %s", r->name, err);
                goto out;
        }
        rc = 0;
out:
        if (ar)
                avro_reader_free(ar);
        if (resolved.iface)
                avro_value_decref(&resolved);
        if (rv.iface)
                avro_value_decref(&rv);
        return rc;
}

int ms_avro_decode(ms_avro_t *c, const char *name, const void *buf, size_t len,
                   json_t **out, char *errstr, size_t errstr_size)
{
        const unsigned char *p = buf;
        const unsigned char *body;
        size_t body_len;
        writer_t *w = NULL;
        int ri, rc;

        *out = NULL;
        ri = c ? reader_index(c, name) : -1;
        if (ri < 0) {
                seterr(errstr, errstr_size, "unknown schema %s", name ? name : "(null)");
                return MS_ERR_GENERIC;
        }
        if (!p && len) {
                seterr(errstr, errstr_size, "decode %s: no buffer", name);
                return MS_ERR_DECODE;
        }
        if (len >= 1 && p[0] == SOE_MAGIC0 && (len < 2 || p[1] == SOE_MAGIC1)) {
                uint64_t fp = 0;
                if (len < SOE_HDR_LEN) {
                        seterr(errstr, errstr_size,
                               "decode %s: truncated single-object header (%zu bytes)",
                               name, len);
                        return MS_ERR_DECODE;
                }
                for (int i = 0; i < 8; i++)
                        fp |= (uint64_t)p[2 + i] << (8 * i);
                body = p + SOE_HDR_LEN;
                body_len = len - SOE_HDR_LEN;
                pthread_mutex_lock(&c->lock);
                w = find_writer_fp(c, fp);
                if (!w) {
                        pthread_mutex_unlock(&c->lock);
                        seterr(errstr, errstr_size,
                               "decode %s: unknown schema fingerprint %016" PRIx64, name,
                               fp);
                        return MS_ERR_DECODE;
                }
        } else if (len >= 1 && p[0] == CONFLUENT_MAGIC) {
                int32_t id;
                if (len < CONFLUENT_HDR) {
                        seterr(errstr, errstr_size,
                               "decode %s: truncated Confluent header (%zu bytes)", name,
                               len);
                        return MS_ERR_DECODE;
                }
                id = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                               ((uint32_t)p[3] << 8) | (uint32_t)p[4]);
                body = p + CONFLUENT_HDR;
                body_len = len - CONFLUENT_HDR;
                pthread_mutex_lock(&c->lock);
                w = find_id_locked(c, id);
                if (!w) {
                        char *text = NULL;
                        pthread_mutex_unlock(&c->lock);
                        if (!c->registry_url) {
                                seterr(errstr, errstr_size,
                                       "decode %s: unknown schema id %" PRId32
                                       " and no schema registry configured",
                                       name, id);
                                return MS_ERR_DECODE;
                        }
                        rc = registry_fetch(c, id, &text, errstr, errstr_size);
                        if (rc)
                                return rc;
                        rc = add_schema(c, text, &w, MS_ERR_DECODE, errstr, errstr_size);
                        free(text);
                        if (rc)
                                return rc;
                        pthread_mutex_lock(&c->lock);
                        if (add_id_locked(c, id, w)) {
                                pthread_mutex_unlock(&c->lock);
                                seterr(errstr, errstr_size, "out of memory");
                                return MS_ERR_GENERIC;
                        }
                }
        } else {
                if (len == 0)
                        seterr(errstr, errstr_size, "decode %s: empty message", name);
                else
                        seterr(errstr, errstr_size,
                               "decode %s: unknown framing (first byte 0x%02x; expected "
                               "0xC3 0x01 or 0x00)",
                               name, p[0]);
                return MS_ERR_DECODE;
        }
        /* Lock held here: avro-c values and resolver caches are used under
         * it. */
        rc = decode_body_locked(c, w, (size_t)ri, body, body_len, out, errstr,
                                errstr_size);
        pthread_mutex_unlock(&c->lock);
        return rc;
}
