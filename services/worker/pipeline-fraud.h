/*
 * The fraud pipeline of sluice-worker (wk_pipeline_fraud, the ops of pipeline.h): Transaction
 * envelopes of sluice.fraud.events decoded and validated (fraud-input.h), each card's velocity
 * state folded in (card-store.h, velocity.h), the model input built by name, scored with a
 * binary tabular libmoe model (scorer.h), explained above a threshold, decided (allow / review
 * / block) and written as one results row per event, the newest card_state row per card and,
 * for a block, one alert into the outbox (alert id "fraud:<event_id>", stable).
 *
 * Tables (migrations 1-3 of schema.c, unchanged by the move onto the generic core):
 *   results(domain, event_id, key, score, decision, model_version, experts, top_features,
 *           input real[], event_time, topic, partition, offset)  ON CONFLICT DO NOTHING
 *   card_state(card_id, topic, partition, last_offset, state bytea)  upserted only forward
 *
 * Settings (wk_fraud_settings_t, WK_FRAUD_CFG_ROWS): the review, block and explain thresholds
 * (fraud.review_threshold, fraud.block_threshold, fraud.explain_threshold). Metrics of its
 * own: sluice_decisions_total{decision}, sluice_cards_in_memory.
 *
 * The row helpers below (wk_fraud_add_result / wk_fraud_add_state) are what process uses to
 * write the two tables; tests and bench/pipeline use them to build the same statement.
 *
 * Threads: as pipeline.h says; the helpers are pure (any thread, one builder at a time).
 */
#ifndef WK_PIPELINE_FRAUD_H
#define WK_PIPELINE_FRAUD_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "stmt.h"
#include "svc/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  WK_DECISION_ALLOW = 1, /* the numbers of sluice.v1.Decision */
  WK_DECISION_REVIEW = 2,
  WK_DECISION_BLOCK = 3
} wk_decision_t;

/* "allow", "review", "block" (the results.decision column); NULL for anything else. */
const char *wk_decision_name(wk_decision_t d);

/* One results row. */
typedef struct wk_result_row_s {
  const char *domain;        /* "fraud" */
  const char *event_id;
  const char *key;           /* NULL is stored as "" */
  float score;
  wk_decision_t decision;
  const char *model_version;
  const char *experts_json;  /* JSON array, e.g. [{"layer":0,"expert":3,"weight":0.61}]; NULL = [] */
  const char *top_features_json; /* JSON array, e.g. [{"name":"V14","contribution":0.2}]; NULL = [] */
  const float *input;        /* (n_input) the model input vector */
  size_t n_input;
  int64_t event_time_ms;
  const char *topic;
  int32_t partition;
  int64_t offset;
} wk_result_row_t;

/* One card_state row. */
typedef struct wk_state_row_s {
  const char *card_id;
  const char *topic;
  int32_t partition;
  int64_t last_offset;       /* offset of the newest event folded into this state */
  const uint8_t *state;      /* (state_len) e.g. wk_velocity_encode's bytes */
  size_t state_len;
} wk_state_row_t;

/* The fraud tables, in wk_stmt order. */
enum { WK_FRAUD_TABLE_RESULTS = 0, WK_FRAUD_TABLE_CARDS = 1, WK_FRAUD_N_TABLES = 2 };
extern const wk_table_t wk_fraud_tables[WK_FRAUD_N_TABLES];

/* Adds a results row / a card_state row to a builder made with wk_fraud_tables (values are
 * copied; a card already in the batch is replaced by the newer row). A NULL required string
 * or an unknown decision aborts (a programming error). */
void wk_fraud_add_result(wk_stmt_t *st, const wk_result_row_t *r);
void wk_fraud_add_state(wk_stmt_t *st, const wk_state_row_t *s);

/* The pipeline's settings (env.settings points at one). */
typedef struct wk_fraud_settings_s {
  double review_threshold;  /* < 0: half the block threshold */
  double block_threshold;   /* < 0: the model card's threshold */
  double explain_threshold; /* explain rows scoring at least this; < 0: the review threshold */
} wk_fraud_settings_t;

/* The defaults of WK_FRAUD_CFG_ROWS (every threshold from the model card). */
void wk_fraud_settings_default(wk_fraud_settings_t *s);

/* svc_cfg_def_t rows of the fraud settings for a table whose target T holds a
 * wk_fraud_settings_t at `member`; each row followed by a comma. */
#define WK_FRAUD_CFG_ROWS(T, member)                                                           \
  {.name = "fraud.review_threshold", .type = SVC_CFG_DOUBLE, .def = "-1",                     \
   .env = "SLUICE_FRAUD_REVIEW_THRESHOLD", .offset = offsetof(T, member.review_threshold),    \
   .min = -1, .max = 1,                                                                        \
   .help = "score from which a transaction is sent to review (-1: half the block threshold)"}, \
  {.name = "fraud.block_threshold", .type = SVC_CFG_DOUBLE, .def = "-1",                      \
   .env = "SLUICE_FRAUD_BLOCK_THRESHOLD", .offset = offsetof(T, member.block_threshold),      \
   .min = -1, .max = 1,                                                                        \
   .help = "score from which a transaction is blocked and alerted (-1: the model card's "     \
           "threshold)"},                                                                      \
  {.name = "fraud.explain_threshold", .type = SVC_CFG_DOUBLE, .def = "-1",                    \
   .env = "SLUICE_FRAUD_EXPLAIN_THRESHOLD", .offset = offsetof(T, member.explain_threshold),  \
   .min = -1, .max = 2,                                                                        \
   .help = "store the top contributing features of results scoring at least this (-1: the "   \
           "review threshold; 2: never)"},

#ifdef __cplusplus
}
#endif
#endif /* WK_PIPELINE_FRAUD_H */
