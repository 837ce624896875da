/*
 * The batch statement, for any pipeline: ONE parameterised statement of data-modifying CTEs
 * that inserts the rows of the tables a pipeline declares (its results, its per-key state),
 * the alerts into the outbox and the next Kafka offset of every partition in the batch, and
 * returns how many rows each part changed. One statement is one atomic transaction and one
 * round trip; every column travels as one binary array parameter (unnested on the server),
 * so the server parses no value and the builder formats none (bench/pipeline/README.md says
 * why this shape: per-row parameters and text formats cost most of the server's time).
 *
 * A pipeline declares its tables once (wk_table_t: name, columns with types, the ON CONFLICT
 * clause, how many leading columns form the key within a batch) and adds rows column by
 * column in declaration order. The core adds outbox rows (also a pipeline may) and offsets.
 *
 * Column types and what the server receives:
 *   WK_COL_TEXT   text[]            WK_COL_JSONB  text[] cast to jsonb (must be valid JSON)
 *   WK_COL_FLOAT4 real[]            WK_COL_INT4   integer[]      WK_COL_INT8 bigint[]
 *   WK_COL_BOOL   boolean[]         WK_COL_TIME_MS bigint[] of Unix ms, stored as timestamptz
 *   WK_COL_BYTEA  one bytea of all rows' bytes, cut per row by start and length
 *   WK_COL_REALS  one real[] of all rows' values, cut per row (a real[] column per row)
 * NULL: text/jsonb columns accept NULL (stored as SQL NULL); wk_stmt_null adds NULL to any
 * column, bytea and reals included (a column declared NOT NULL makes the statement fail).
 *
 * Key merging (key_cols > 0): within one batch a row whose first key_cols column values equal
 * those of an earlier row of the same table replaces it (one statement may not upsert a row
 * twice; the newest state wins). With merge_by naming an INT4/INT8 column (e.g. last_offset),
 * it replaces it only when its value there is not smaller, so that a row added out of order
 * cannot win over a newer one. Results tables use key_cols 0 and ON CONFLICT DO NOTHING.
 *
 * Changes by CORE: wk_table_t.merge_by (optional; NULL keeps "the last added row wins");
 * wk_stmt_null is accepted for every column type; the core's own tables (outbox,
 * kafka_offsets) cannot be declared; the outbox payloads travel as one flat bytea.
 *
 * Lifecycle: wk_stmt_new / wk_stmt_free; wk_stmt_reset between batches. Threads: one at a
 * time (the core builds on the thread pool and sends from the loop).
 */
#ifndef WK_STMT_H
#define WK_STMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  WK_COL_TEXT = 0,
  WK_COL_JSONB,
  WK_COL_FLOAT4,
  WK_COL_INT4,
  WK_COL_INT8,
  WK_COL_BOOL,
  WK_COL_TIME_MS,
  WK_COL_BYTEA,
  WK_COL_REALS
} wk_col_type_t;

typedef struct wk_col_s {
  const char *name; /* column name in the table (a plain lower-case identifier) */
  wk_col_type_t type;
} wk_col_t;

typedef enum {
  WK_TABLE_RESULTS = 0, /* its inserted rows are counted as results */
  WK_TABLE_STATE = 1    /* its inserted or updated rows are counted as states */
} wk_table_role_t;

typedef struct wk_table_s {
  const char *name;       /* unqualified table name; the statement qualifies it by schema */
  wk_table_role_t role;
  const wk_col_t *cols;   /* (n_cols) in the order rows are added */
  size_t n_cols;
  size_t key_cols;        /* leading columns merged within a batch (0: no merging) */
  /* Verbatim after "INSERT INTO schema.name AS t (cols) SELECT ...", e.g.
   * "ON CONFLICT (domain, event_id) DO NOTHING" or "ON CONFLICT (device_id) DO UPDATE SET
   * ... WHERE t.last_offset < EXCLUDED.last_offset OR t.partition <> EXCLUDED.partition". */
  const char *on_conflict;
  /* Optional (NULL: the last added row of a key wins): an INT4/INT8/TIME_MS column whose
   * larger value wins the merge of a key's rows (ties: the later row). */
  const char *merge_by;
} wk_table_t;

typedef struct wk_outbox_row_s {
  const char *alert_id;      /* stable: the same alert always gets the same id */
  const char *domain;
  const char *key;
  const char *topic;         /* where the relay publishes it, e.g. "sluice.fault.alerts" */
  const uint8_t *payload;    /* (payload_len) a packed sluice.v1.Alert */
  size_t payload_len;
} wk_outbox_row_t;

typedef struct wk_stmt_s wk_stmt_t;

/*
 * A builder for `tables` (borrowed, must outlive it) in `schema` for consumer group `group`.
 * SVC_OK, or SVC_ECONFIG with errstr (bad schema or table declaration). Aborts on OOM.
 */
svc_err_t wk_stmt_new(const char *schema, const char *group, const wk_table_t *tables,
                      size_t n_tables, wk_stmt_t **out, char *errstr, size_t errstr_size);
void wk_stmt_free(wk_stmt_t *st);
void wk_stmt_reset(wk_stmt_t *st);

/* One row of table `table` (index into tables): begin, one value per column in order, end.
 * A wrong number or type of values aborts (a programming error, caught by every test). */
void wk_stmt_row_begin(wk_stmt_t *st, size_t table);
void wk_stmt_text(wk_stmt_t *st, const char *s);  /* TEXT or JSONB; NULL = SQL NULL */
void wk_stmt_float4(wk_stmt_t *st, float v);
void wk_stmt_int4(wk_stmt_t *st, int32_t v);
void wk_stmt_int8(wk_stmt_t *st, int64_t v);      /* INT8 or TIME_MS */
void wk_stmt_bool(wk_stmt_t *st, bool v);
void wk_stmt_bytes(wk_stmt_t *st, const uint8_t *p, size_t n);
void wk_stmt_reals(wk_stmt_t *st, const float *v, size_t n);
void wk_stmt_null(wk_stmt_t *st);
void wk_stmt_row_end(wk_stmt_t *st);

void wk_stmt_add_outbox(wk_stmt_t *st, const wk_outbox_row_t *o);
void wk_stmt_add_offset(wk_stmt_t *st, const char *topic, int32_t partition, int64_t next_offset);

/* Rows held for a table after merging. */
size_t wk_stmt_n_rows(const wk_stmt_t *st, size_t table);

/*
 * Renders the statement and its parameters (binary formats; borrowed until the next reset,
 * render or free) for db_conn_query_prepared. The SQL text depends only on the declaration,
 * so one prepared statement name per builder serves every batch.
 */
void wk_stmt_render(wk_stmt_t *st, const char **sql, int *n_params, const char *const **values,
                    const int **lengths, const int **formats);

/*
 * The batch in two statements, for a worker with two PostgreSQL sessions (pg.lanes 2):
 * RESULTS inserts the rows of the results tables and the outbox (both idempotent: ON CONFLICT
 * DO NOTHING on their ids); STATE writes the state tables and the offsets. Committing RESULTS
 * first and STATE only after it keeps the invariant a restore relies on (every event below a
 * stored offset has its results and alerts; the stored state matches the stored offsets),
 * while the RESULTS of the next batch can run beside the STATE of this one. ALL is the one
 * statement wk_stmt_render returns. Valid after wk_stmt_render, until the next reset, render
 * or free; the counts row has the same four columns (0 for what a part does not write).
 */
typedef enum { WK_STMT_ALL = 0, WK_STMT_RESULTS = 1, WK_STMT_STATE = 2 } wk_stmt_part_t;
void wk_stmt_part(const wk_stmt_t *st, wk_stmt_part_t part, const char **sql, int *n_params,
                  const char *const **values, const int **lengths, const int **formats);

typedef struct wk_stmt_counts_s {
  long results, states, outbox, offsets;
} wk_stmt_counts_t;

/* Parses the statement's one result row (4 text columns). SVC_OK or SVC_EDECODE. */
svc_err_t wk_stmt_parse_counts(const char *const cols[4], wk_stmt_counts_t *out);

#ifdef __cplusplus
}
#endif
#endif /* WK_STMT_H */
