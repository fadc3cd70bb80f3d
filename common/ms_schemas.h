/* Avro schema sources compiled into the binary from schemas/avro (every .avsc file).
 * The table ends with a {NULL, NULL} entry.  Static storage; never freed. */
#ifndef MS_SCHEMAS_H
#define MS_SCHEMAS_H

typedef struct ms_schema_src {
        const char *name; /* file name without .avsc, e.g. "SyncEvent" */
        const char *json; /* schema text */
} ms_schema_src_t;

extern const ms_schema_src_t ms_schema_srcs[];
/* SQL migrations from schemas/sql, applied in name order by ms_pg_migrate. */
extern const ms_schema_src_t ms_migration_srcs[];

#endif
