/*
 * The worker's own migrations, oldest first, and wk_schema_migrate (schema.h). They live apart
 * from the code that applies them (schema.c, in wk_core) because migrations 4-6 are the fault
 * and records pipelines' tables, whose SQL sits beside each pipeline: this file links all three
 * pipelines, so wk_core links none of them (library wk_migrations).
 */
#include "schema.h"

#include "pipeline-fault.h"
#include "pipeline-records.h"

/* ---- the migrations ------------------------------------------------------------------- */

static const char schema__v1[] =
    "CREATE TABLE results (\n"
    "  domain        text        NOT NULL,\n"
    "  event_id      text        NOT NULL,\n"
    "  key           text        NOT NULL DEFAULT '',\n"
    "  score         real        NOT NULL,\n"
    "  decision      text        NOT NULL CHECK (decision IN ('allow', 'review', 'block')),\n"
    "  model_version text        NOT NULL,\n"
    "  experts       jsonb       NOT NULL DEFAULT '[]',\n"
    "  top_features  jsonb       NOT NULL DEFAULT '[]',\n"
    "  input         real[]      NOT NULL,\n"
    "  event_time    timestamptz NOT NULL,\n"
    "  scored_at     timestamptz NOT NULL DEFAULT now(),\n"
    "  topic         text        NOT NULL,\n"
    "  partition     integer     NOT NULL,\n"
    "  \"offset\"      bigint      NOT NULL,\n"
    "  PRIMARY KEY (domain, event_id)\n"
    ");\n"
    "CREATE INDEX results_key_time ON results (domain, key, event_time);\n"
    "CREATE TABLE card_state (\n"
    "  card_id     text        PRIMARY KEY,\n"
    "  topic       text        NOT NULL,\n"
    "  partition   integer     NOT NULL,\n"
    "  last_offset bigint      NOT NULL,\n"
    "  state       bytea       NOT NULL,\n"
    "  updated_at  timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX card_state_partition ON card_state (topic, partition);\n"
    "CREATE TABLE outbox (\n"
    "  id           bigserial   PRIMARY KEY,\n"
    "  alert_id     text        NOT NULL UNIQUE,\n"
    "  domain       text        NOT NULL,\n"
    "  key          text        NOT NULL,\n"
    "  topic        text        NOT NULL,\n"
    "  payload      bytea       NOT NULL,\n"
    "  created_at   timestamptz NOT NULL DEFAULT now(),\n"
    "  published_at timestamptz\n"
    ");\n"
    "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;\n"
    "CREATE TABLE kafka_offsets (\n"
    "  consumer_group text        NOT NULL,\n"
    "  topic          text        NOT NULL,\n"
    "  partition      integer     NOT NULL,\n"
    "  next_offset    bigint      NOT NULL,\n"
    "  updated_at     timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (consumer_group, topic, partition)\n"
    ");\n";

/*
 * Byte-order ("C") collation for the text keys the batch statement looks up: every results
 * and card_state row costs several B-tree comparisons of these, and under a linguistic
 * collation (the database default, e.g. C.UTF-8 or en_US.UTF-8) each one is a strcoll call:
 * about 10 % of the statement's server time (bench/pipeline/README.md). Ids are compared for
 * equality only, so their order does not matter. card_state is upserted in place all the
 * time: free space on each page lets PostgreSQL update a row without new index entries (HOT).
 * Changing a column's collation rewrites the table and its indexes once.
 */
static const char schema__v2[] =
    "ALTER TABLE results ALTER COLUMN domain TYPE text COLLATE \"C\",\n"
    "  ALTER COLUMN event_id TYPE text COLLATE \"C\", ALTER COLUMN key TYPE text COLLATE \"C\",\n"
    "  ALTER COLUMN topic TYPE text COLLATE \"C\";\n"
    "ALTER TABLE card_state ALTER COLUMN card_id TYPE text COLLATE \"C\",\n"
    "  ALTER COLUMN topic TYPE text COLLATE \"C\", SET (fillfactor = 80);\n"
    "ALTER TABLE outbox ALTER COLUMN alert_id TYPE text COLLATE \"C\";\n"
    "ALTER TABLE kafka_offsets ALTER COLUMN consumer_group TYPE text COLLATE \"C\",\n"
    "  ALTER COLUMN topic TYPE text COLLATE \"C\";\n";

/*
 * results_key_time (domain, key, event_time) was created for per-card history queries that
 * nothing runs: no query of the worker, the CLI, the demo or the README uses it. It was one
 * of the four B-tree inserts every event paid for in the batch statement (about a quarter of
 * PostgreSQL's time went to index inserts; bench/pipeline/README.md). Whoever needs such a
 * query can create the index on their copy, or CONCURRENTLY here in a later migration.
 */
static const char schema__v3[] = "DROP INDEX IF EXISTS results_key_time;\n";

/*
 * The other pipelines' tables, in the same schema (every worker applies every migration:
 * one schema, all tables, whichever pipeline a worker runs). Their text lives beside each
 * pipeline (wk_fault_schema_sql, wk_records_schema_sql); like any migration it must never be
 * edited once applied: a change is a new migration here.
 */
const wk_migration_t wk_migrations[] = {
    {1, "results, card state, alert outbox and Kafka offsets", schema__v1},
    {2, "byte-order collation for the looked-up text keys; card_state fillfactor 80", schema__v2},
    {3, "drop results_key_time: no query uses it, and every event paid for it", schema__v3},
    {4, "fault pipeline: fault_results and fault_state", wk_fault_schema_sql},
    {5, "records pipeline: record_analysis", wk_records_schema_sql},
    {6, "records pipeline: text_hash, so that a corrected note is analysed again",
     wk_records_schema_v2_sql},
};
const size_t wk_n_migrations = sizeof wk_migrations / sizeof wk_migrations[0];

svc_err_t wk_schema_migrate(PGconn *conn, const char *schema, int *applied, char *errstr,
                            size_t errstr_size) {
  return wk_schema_migrate_list(conn, schema, wk_migrations, wk_n_migrations, applied, errstr,
                                errstr_size);
}
