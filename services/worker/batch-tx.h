/*
 * The per-batch PostgreSQL transaction, built as ONE parameterised statement: data-modifying
 * CTEs insert the batch's results, upsert the changed per-card state, insert alerts into the
 * outbox and upsert the next Kafka offset of every partition in the batch. One statement is
 * one atomic transaction and one round trip, it needs no escaping (every value is a text
 * parameter: arrays unnested on the server; the model inputs of all rows travel as one flat
 * real[] and the card states as one hex string, each cut per row by start and length, as
 * per-row array elements cost a third of the server's time), and it returns how many rows each part actually
 * changed, so that a re-applied batch can be seen to change nothing:
 *   - results: INSERT ... ON CONFLICT (domain, event_id) DO NOTHING (the second line of
 *     defence behind the stored offsets; duplicates inside one batch are skipped too);
 *   - card_state: upserted only when the stored row is older (last_offset) or belongs to
 *     another partition, so a stale or repeated batch cannot roll state back;
 *   - outbox: ON CONFLICT (alert_id) DO NOTHING, alert ids being stable;
 *   - kafka_offsets: next_offset only moves forward.
 * Within a batch the builder keeps one state row per card (the newest offset) and one offset
 * row per partition (the highest), as one statement may not upsert a row twice.
 *
 * Lifecycle: wk_batch_tx_init / wk_batch_tx_close; values are copied in. Threads: one at a
 * time; the result can be sent from the loop thread with db_conn_query.
 */
#ifndef WK_BATCH_TX_H
#define WK_BATCH_TX_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline-fraud.h"
#include "stmt.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* wk_decision_t, wk_result_row_t and wk_state_row_t are the fraud pipeline's
 * (pipeline-fraud.h), wk_outbox_row_t the generic builder's (stmt.h). */

typedef struct wk_offset_row_s {
  const char *topic;
  int32_t partition;
  int64_t next_offset;       /* the offset of the first event NOT in this batch */
} wk_offset_row_t;

typedef struct wk_batch_tx_s wk_batch_tx_t;

/* Number of parameters of the statement. */
#define WK_BATCH_TX_N_PARAMS 31

/*
 * Creates a builder for tables in `schema` (checked with wk_schema_name_check) and the Kafka
 * consumer group `group`. Returns SVC_OK, or SVC_ECONFIG with errstr. Aborts on out-of-memory.
 */
svc_err_t wk_batch_tx_new(const char *schema, const char *group, wk_batch_tx_t **out,
                          char *errstr, size_t errstr_size);
void wk_batch_tx_free(wk_batch_tx_t *tx);

/* Adds rows; every string and buffer is copied. NULL strings where required abort. */
void wk_batch_tx_add_result(wk_batch_tx_t *tx, const wk_result_row_t *r);
void wk_batch_tx_add_state(wk_batch_tx_t *tx, const wk_state_row_t *s);
void wk_batch_tx_add_outbox(wk_batch_tx_t *tx, const wk_outbox_row_t *o);
void wk_batch_tx_add_offset(wk_batch_tx_t *tx, const wk_offset_row_t *k);

/* Rows added so far (after the per-card / per-partition merging for states and offsets). */
size_t wk_batch_tx_n_results(const wk_batch_tx_t *tx);
size_t wk_batch_tx_n_states(const wk_batch_tx_t *tx);

/*
 * Renders the statement: *sql (borrowed; valid until the next finish or free) and the
 * WK_BATCH_TX_N_PARAMS text parameters in params[] (borrowed likewise; $18, all states, is
 * one bytea in hex form "\\x..."), ready for PQexecParams or db_conn_query. The builder keeps its rows; call it again after adding more.
 */
void wk_batch_tx_finish(wk_batch_tx_t *tx, const char **sql, const char *const **params);

/*
 * The same statement with its parameters in PostgreSQL's binary formats, for
 * db_conn_query_prepared or PQexecParams with paramFormats: every array ($1..$23, $25..$31)
 * as a one-dimensional binary array of its element type (text, float4, int4, int8), $18 as
 * the raw bytes of all states, and only $24 (the consumer group) as text (format 0). The
 * server then parses no number, quote or hex digit of the batch, and the builder formats
 * none. values/lengths/formats (WK_BATCH_TX_N_PARAMS each) are borrowed like *params, but
 * kept apart from them: both renderings may be used one after the other.
 */
void wk_batch_tx_finish_binary(wk_batch_tx_t *tx, const char **sql, const char *const **values,
                               const int **lengths, const int **formats);

/* What the statement changed: its single result row, parsed. */
typedef struct wk_batch_tx_counts_s {
  long results, states, outbox, offsets;
} wk_batch_tx_counts_t;

/*
 * Parses the statement's result row (4 columns of text counts, as PQgetvalue returns them).
 * Returns SVC_OK or SVC_EDECODE.
 */
svc_err_t wk_batch_tx_parse_counts(const char *const cols[4], wk_batch_tx_counts_t *out);

/* Resets the builder to no rows (keeps schema and group), for the next batch. */
void wk_batch_tx_reset(wk_batch_tx_t *tx);

#ifdef __cplusplus
}
#endif
#endif /* WK_BATCH_TX_H */
