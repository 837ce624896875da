/*
 * The records pipeline (sluice.records.events -> record_analysis): wk_pipeline_ops_t over the
 * pure pieces of records-input.h and records-analysis.h. accept decodes and validates one
 * ClinicalNote envelope (DLQ reasons as records-input.h says); process analyses each note of
 * the batch with the text model (sections, WordPiece, chunked scoring, evidence spans) and adds
 * one record_analysis row per note id (a re-sent or replayed note changes nothing; a corrected
 * one, with other text, or one analysed by another model replaces the row unless it is older
 * by event time: wk_records_tables) plus, for a predicted label listed in
 * records.alert_labels (at probability >= records.alert_min_probability), one outbox alert with
 * the stable id "records:<note_id>:<label>". Notes longer than the model's max_len are scored
 * as overlapping chunks, truncated (and counted) only past records.max_chunks chunks
 * (records-analysis.h).
 *
 * No per-key state: a note's analysis depends on the note alone, so restore_sql returns NULL
 * (the core skips restore), discard/revoke do nothing and n_keys is 0. The batch statement with the
 * offsets is what makes every note land exactly once.
 *
 * Models: text classification models only (encoder "text", task binary or multiclass, with a
 * WordPiece tokenizer in the config), e.g. models/records-mtsamples.safetensors and
 * models/records-abstracts.safetensors; anything else is refused at model_open with SVC_ECONFIG
 * naming the file and what does not fit. A loaded model carries records.threads scorers (one
 * moe session each); process is one call at a time, and analyses the batch's notes on that many
 * threads (its own and records.threads - 1 it starts and joins), then adds the rows in order.
 *
 * Settings (wk_records_settings_t, WK_RECORDS_CFG_ROWS): see README.md next to this file.
 * Threads: as pipeline.h says; process is the only heavy call and runs on the core's pool.
 */
#ifndef WK_PIPELINE_RECORDS_H
#define WK_PIPELINE_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "records-analysis.h"
#include "svc/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The records pipeline's settings, filled by the worker's config table (types as svc/config.h
 * stores them). */
typedef struct wk_records_settings_s {
  int64_t max_chunks;      /* records.max_chunks: model rows per note at most (long notes) */
  int64_t top_evidence;    /* records.top_evidence: evidence spans per note; 0 = none */
  int evidence;            /* records.evidence: a wk_records_evidence_t */
  int64_t evidence_chunks; /* records.evidence_chunks: chunks evidence looks at (0: all) */
  double evidence_min_probability; /* records.evidence_min_probability: evidence only above */
  int64_t max_text_bytes;  /* records.max_text_bytes: longer notes are dead-lettered (oversize) */
  char *alert_labels;      /* records.alert_labels: comma list of labels that raise an alert */
  double alert_min_probability;    /* records.alert_min_probability: and only at or above this */
  int64_t threads;         /* records.threads: notes of one batch analysed side by side */
} wk_records_settings_t;

/* records.evidence's words, in wk_records_evidence_t order (records-analysis.h), NULL-terminated
 * (README.md says what each costs). */
extern const char *const wk_records_evidence_names[];

/*
 * The svc_cfg_def_t rows of the records settings, for the worker's config table: T is the
 * config target struct and member the wk_records_settings_t inside it. Expands to rows each
 * followed by a comma.
 */
#define WK_RECORDS_CFG_ROWS(T, member)                                                          \
  {"records.max_chunks", SVC_CFG_INT, "16", "SLUICE_RECORDS_MAX_CHUNKS", SVC_CFG_IMMUTABLE,     \
   offsetof(T, member.max_chunks),                                                              \
   "model rows per note at most: longer notes are scored as overlapping chunks; tokens past "   \
   "this many chunks are dropped and counted (truncated)",                                      \
   1, 4096, NULL, NULL},                                                                        \
  {"records.top_evidence", SVC_CFG_INT, "5", "SLUICE_RECORDS_TOP_EVIDENCE", SVC_CFG_IMMUTABLE, \
   offsetof(T, member.top_evidence),                                                            \
   "evidence spans per note (parts of the note that raised the predicted class); 0 = none",     \
   0, 64, NULL, NULL},                                                                          \
  {"records.evidence", SVC_CFG_ENUM, "segments", "SLUICE_RECORDS_EVIDENCE", SVC_CFG_IMMUTABLE,  \
   offsetof(T, member.evidence),                                                                \
   "evidence by occlusion of: segments (sentences/lines: cheap), words (segments, then the "    \
   "words of the best ones) or tokens (every token: exact, max_len+1 model rows per chunk)",    \
   0, 0, wk_records_evidence_names, NULL},                                                      \
  {"records.evidence_chunks", SVC_CFG_INT, "1", "SLUICE_RECORDS_EVIDENCE_CHUNKS",               \
   SVC_CFG_IMMUTABLE, offsetof(T, member.evidence_chunks),                                      \
   "segments/words evidence looks at this many chunks of a long note (those that speak most "   \
   "for the prediction); 0 = all",                                                              \
   0, 4096, NULL, NULL},                                                                        \
  {"records.evidence_min_probability", SVC_CFG_DOUBLE, "0", "SLUICE_RECORDS_EVIDENCE_MIN_PROB", \
   SVC_CFG_IMMUTABLE, offsetof(T, member.evidence_min_probability),                             \
   "compute evidence only when the predicted class's probability is at least this",            \
   0, 1, NULL, NULL},                                                                           \
  {"records.max_text_bytes", SVC_CFG_SIZE, "256KiB", "SLUICE_RECORDS_MAX_TEXT_BYTES",           \
   SVC_CFG_IMMUTABLE, offsetof(T, member.max_text_bytes),                                       \
   "longest note text accepted; longer notes are dead-lettered as oversize",                    \
   1, 16777216, NULL, NULL},                                                                    \
  {"records.alert_labels", SVC_CFG_STRING, "", "SLUICE_RECORDS_ALERT_LABELS", SVC_CFG_IMMUTABLE, \
   offsetof(T, member.alert_labels),                                                            \
   "comma list of the model's labels whose prediction raises an alert (empty: no alerts)",      \
   0, 0, NULL, NULL},                                                                           \
  {"records.alert_min_probability", SVC_CFG_DOUBLE, "0", "SLUICE_RECORDS_ALERT_MIN_PROB",       \
   SVC_CFG_IMMUTABLE, offsetof(T, member.alert_min_probability),                                \
   "an alert label raises an alert only when its probability is at least this",                \
   0, 1, NULL, NULL},                                                                           \
  {"records.threads", SVC_CFG_INT, "2", "SLUICE_RECORDS_THREADS", SVC_CFG_IMMUTABLE,            \
   offsetof(T, member.threads),                                                                 \
   "threads analysing the notes of one batch side by side (each with its own model session)",   \
   1, 64, NULL, NULL},

/* The table process writes (index 0): record_analysis, one row per note (wk_records_schema_sql). */
extern const wk_table_t wk_records_tables[];
extern const size_t wk_records_n_tables;

/* The pipeline's own metrics (ops.metric_defs: ids env->metric_base + WK_RECORDS_M_*). */
#define WK_RECORDS_METRICS(XX)                                                                 \
  XX(WK_RECORDS_M_NOTES, "sluice_records_notes_total", SVC_COUNTER, "notes", "label", 256,      \
     SVC_BUCKETS_NONE, "Notes analysed, by predicted label.")                                  \
  XX(WK_RECORDS_M_TRUNCATED, "sluice_records_truncated_total", SVC_COUNTER, "notes", "", 0,     \
     SVC_BUCKETS_NONE, "Notes longer than records.max_chunks chunks: their tail was not seen.") \
  XX(WK_RECORDS_M_DROPPED, "sluice_records_dropped_tokens_total", SVC_COUNTER, "tokens", "", 0, \
     SVC_BUCKETS_NONE, "Tokens of truncated notes that no chunk saw.")                         \
  XX(WK_RECORDS_M_TOKENS, "sluice_records_note_tokens", SVC_HISTOGRAM, "tokens", "", 0,         \
     SVC_BUCKETS_EXP(16, 2, 12), "WordPiece tokens per note.")                                 \
  XX(WK_RECORDS_M_CHUNKS, "sluice_records_note_chunks", SVC_HISTOGRAM, "rows", "", 0,           \
     SVC_BUCKETS_EXP(1, 2, 13), "Model rows (chunks) scored per note.")                        \
  XX(WK_RECORDS_M_EVIDENCE, "sluice_records_evidence_seconds", SVC_HISTOGRAM, "seconds", "", 0, \
     SVC_BUCKETS_EXP(1e-4, 2, 20), "Time to compute one note's evidence.")

enum { WK_RECORDS_METRICS(SVC_METRIC_ENUM) WK_RECORDS_M__COUNT };
extern const svc_metric_def_t wk_records_metric_defs[];
extern const size_t wk_records_n_metric_defs;

/* The defaults of WK_RECORDS_CFG_ROWS as a struct (for tests and tools without a config). */
void wk_records_settings_default(wk_records_settings_t *s);

/*
 * The migration that creates record_analysis (unqualified: it runs with search_path set to the
 * worker's schema): one row per analysed note, keyed by note_id.
 */
extern const char wk_records_schema_sql[];
/* Migration 6: record_analysis.text_hash (a corrected note is analysed again). */
extern const char wk_records_schema_v2_sql[];

#ifdef __cplusplus
}
#endif
#endif /* WK_PIPELINE_RECORDS_H */
