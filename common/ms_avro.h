/* ms_avro: the event codec.
 *
 * Holds the Avro schemas compiled into the binary (ms_schemas.h), their
 * Parsing Canonical Form and CRC-64-AVRO fingerprints, and converts between
 * the JSON-in-memory shape of docs/modules.md and Avro binary with one of two
 * framings:
 *   - single-object encoding: 0xC3 0x01 + 8-byte little-endian fingerprint
 *     + Avro binary (default, no registry configured);
 *   - Confluent wire format: 0x00 + 4-byte big-endian schema id + Avro binary
 *     (when a schema registry URL is configured).
 * Decoders accept both, choose by the first bytes, find the writer schema
 * (by fingerprint, or by id through the registry) and resolve it to the
 * reader schema, so a newer writer with added defaulted fields decodes.
 *
 * Thread rules: a codec may be shared by threads once created; encode and
 * decode take an internal lock where they touch caches. */
#ifndef MS_AVRO_H
#define MS_AVRO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_avro ms_avro_t;

/* registry_url may be NULL (single-object encoding). */
int ms_avro_new(const char *registry_url, ms_avro_t **out, char *errstr,
                size_t errstr_size);
void ms_avro_destroy(ms_avro_t *codec);

/* Registers an extra writer schema (JSON text) under its fingerprint so that
 * single-object messages written with it decode (schema evolution).  The
 * reader side stays the compiled-in schema of the same full name. */
int ms_avro_add_writer_schema(ms_avro_t *codec, const char *schema_json, char *errstr,
                              size_t errstr_size);

/* Maps a Confluent schema id to a schema (JSON text) without asking the
 * registry, as if the registry had returned it for that id.  Meant for tests
 * and for pre-seeding a codec; a mapping that exists is kept. */
int ms_avro_register_id(ms_avro_t *codec, int32_t id, const char *schema_json,
                        char *errstr, size_t errstr_size);

/* Encodes value (borrowed) as schema `name` ("SyncEvent", ...).  topic is used
 * for the registry subject "<topic>-value" (TopicNameStrategy) and may be NULL
 * without a registry.  *out is malloc'ed; the caller frees it.  Returns
 * MS_ERR_GENERIC (with the field path in errstr) when value does not fit the
 * schema or the registry refuses the schema, MS_ERR_HTTP when the registry
 * cannot be reached or fails (transient: retry). */
int ms_avro_encode(ms_avro_t *codec, const char *name, const char *topic, json_t *value,
                   unsigned char **out, size_t *out_len, char *errstr,
                   size_t errstr_size);

/* Decodes buf with reader schema `name`.  *out is a new reference. Returns
 * MS_ERR_DECODE with a message for unknown framing, unknown fingerprint/id,
 * truncated or invalid data (a poison message: dead-letter it).  Returns
 * MS_ERR_HTTP when a schema id had to be fetched and the registry could not
 * answer (transient: retry, do not dead-letter). */
int ms_avro_decode(ms_avro_t *codec, const char *name, const void *buf, size_t len,
                   json_t **out, char *errstr, size_t errstr_size);

/* Parsing Canonical Form of a schema (Avro spec, "Parsing Canonical Form for
 * Schemas").  *out is malloc'ed. */
int ms_avro_canonical_form(const char *schema_json, char **out, char *errstr,
                           size_t errstr_size);
/* CRC-64-AVRO (Rabin) fingerprint of bytes, as defined by the Avro spec. */
uint64_t ms_avro_crc64(const void *buf, size_t len);
/* Fingerprint of the compiled-in schema `name`; 0 when unknown. */
uint64_t ms_avro_fingerprint(ms_avro_t *codec, const char *name);

#endif
