/*
 * The worker's PostgreSQL schema as versioned migrations, applied at start. Each migration is
 * a numbered SQL script run in its own transaction, recorded in schema_migrations with a
 * checksum of its text, so that starting again applies only what is new, concurrent starts of
 * several workers serialise on an advisory lock, and a migration edited after it was applied
 * is refused instead of silently diverging.
 *
 * All tables live in one PostgreSQL schema (namespace) chosen by configuration (default
 * "sluice"), which also lets tests run side by side in one database:
 *   results(domain, event_id PK, key, score, decision, model_version, experts, top_features,
 *           input real[], event_time, scored_at, topic, partition, offset)
 *   card_state(card_id PK, topic, partition, last_offset, state bytea, updated_at)
 *   outbox(id, alert_id UNIQUE, domain, key, topic, payload bytea, created_at, published_at)
 *   kafka_offsets(consumer_group, topic, partition PK, next_offset, updated_at)
 *   fault_results, fault_state (migration 4: wk_fault_schema_sql, fault/pipeline-fault.h)
 *   record_analysis (migration 5: wk_records_schema_sql, records/pipeline-records.h)
 *   schema_migrations(version PK, name, checksum, applied_at)
 *
 * Migration runs before the event loop starts, on its own blocking libpq connection; it is the
 * one place where the worker waits on PostgreSQL. Threads: any, one connection per call.
 */
#ifndef WK_SCHEMA_H
#define WK_SCHEMA_H

#include <libpq-fe.h>
#include <stddef.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_migration_s {
  int version;      /* 1, 2, ... strictly increasing */
  const char *name; /* one line saying what it does */
  const char *sql;  /* unqualified names: it runs with search_path set to the schema */
} wk_migration_t;

/* The worker's migrations, oldest first (migrations.c, library wk_migrations: it links the
 * pipelines whose tables migrations 4-6 create). */
extern const wk_migration_t wk_migrations[];
extern const size_t wk_n_migrations;

/* Longest accepted schema name (PostgreSQL's identifier limit). */
#define WK_SCHEMA_NAME_MAX 63

/*
 * Checks that a schema name is a plain identifier: [a-z_][a-z0-9_]*, at most
 * WK_SCHEMA_NAME_MAX bytes. Returns SVC_OK or SVC_ECONFIG with the reason in errstr.
 */
svc_err_t wk_schema_name_check(const char *schema, char *errstr, size_t errstr_size);

/*
 * Creates `schema` if needed and applies every migration of `list` not yet recorded in its
 * schema_migrations, in order, each in one transaction under a per-schema advisory lock.
 * Returns SVC_OK with the number newly applied in *applied (may be NULL); SVC_ECONFIG for a
 * bad schema name or list (versions not increasing); SVC_ESTATE when a recorded migration's
 * checksum differs from the list's (it was edited after being applied) or the database has a
 * version this list does not know (a newer worker migrated it); SVC_EDB when a statement fails
 * (that migration is rolled back; earlier ones stay). errstr names the migration and the
 * server's message.
 */
svc_err_t wk_schema_migrate_list(PGconn *conn, const char *schema, const wk_migration_t *list,
                                 size_t n, int *applied, char *errstr, size_t errstr_size);

/* wk_schema_migrate_list with the worker's own migrations (migrations.c, wk_migrations). */
svc_err_t wk_schema_migrate(PGconn *conn, const char *schema, int *applied, char *errstr,
                            size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* WK_SCHEMA_H */
