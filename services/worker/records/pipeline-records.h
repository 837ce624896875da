/*
 * The records pipeline (sluice.records.events -> record_analysis): wk_pipeline_ops_t over the
 * pure pieces of records-input.h and records-analysis.h. accept decodes and validates one
 * ClinicalNote envelope (DLQ reasons as records-input.h says); process analyses each note of
 * the batch with the text model (sections, WordPiece, chunked scoring, evidence spans) and adds
 * one record_analysis row per note (ON CONFLICT (note_id) DO NOTHING: a note is analysed once,
 * the first committed analysis stays) plus, for a predicted label listed in
 * records.alert_labels, one outbox alert with the stable id "records:<note_id>:<label>".
 *
 * No per-key state: a note's analysis depends on the note alone, so restore_sql is NULL (the
 * core skips restore), discard/revoke do nothing and n_keys is 0. The batch statement with the
 * offsets is what makes every note land exactly once.
 *
 * Models: text classification models only (encoder "text", task binary or multiclass, with a
 * WordPiece tokenizer in the config), e.g. models/records-mtsamples.safetensors and
 * models/records-abstracts.safetensors; anything else is refused at model_open with SVC_ECONFIG
 * naming the file and what does not fit. A loaded model carries its own scorer (one moe
 * session); process is one call at a time, so one scorer per model serves every batch.
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
#include "svc/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The records pipeline's settings, filled by the worker's config table (types as svc/config.h
 * stores them). */
typedef struct wk_records_settings_s {
  int64_t max_chunks;      /* records.max_chunks: model rows per note at most (long notes) */
  int64_t top_evidence;    /* records.top_evidence: evidence spans per note; 0 = none */
  int64_t max_text_bytes;  /* records.max_text_bytes: longer notes are dead-lettered (oversize) */
  int evidence;            /* records.evidence: index into wk_records_evidence_names */
  double evidence_min_probability; /* records.evidence_min_probability: evidence only above */
  char *alert_labels;      /* records.alert_labels: comma list of labels that raise an alert */
  double alert_min_probability;    /* records.alert_min_probability: and only at or above this */
} wk_records_settings_t;

/* records.evidence: how evidence is computed (README.md says what each costs). */
#define WK_RECORDS_EVIDENCE_MAP(XX)                                                          \
  XX(WORDS, "words")   /* occlusion of sentence segments, then of the words of the best ones */ \
  XX(TOKENS, "tokens") /* occlusion of every token of every chunk (max_len + 1 rows a chunk) */

typedef enum {
#define WK__RECORDS_EV_ENUM(id, name) WK_RECORDS_EVIDENCE_##id,
  WK_RECORDS_EVIDENCE_MAP(WK__RECORDS_EV_ENUM)
#undef WK__RECORDS_EV_ENUM
  WK_RECORDS_EVIDENCE__COUNT
} wk_records_evidence_t;

/* NULL-terminated, in enum order, for the enum setting. */
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
   "evidence spans per note (words of the note that raised the predicted class); 0 = none",     \
   0, 64, NULL, NULL},                                                                          \
  {"records.evidence", SVC_CFG_ENUM, "words", "SLUICE_RECORDS_EVIDENCE", SVC_CFG_IMMUTABLE,     \
   offsetof(T, member.evidence),                                                                \
   "evidence by occlusion of: words (segments, then words of the best segments: cheap) or "     \
   "tokens (every token: exact, max_len+1 model rows per chunk)",                               \
   0, 0, wk_records_evidence_names, NULL},                                                      \
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
   0, 1, NULL, NULL},

/* The defaults of WK_RECORDS_CFG_ROWS as a struct (for tests and tools without a config). */
void wk_records_settings_default(wk_records_settings_t *s);

/*
 * The migration that creates record_analysis (unqualified: it runs with search_path set to the
 * worker's schema): one row per analysed note, keyed by note_id.
 */
extern const char wk_records_schema_sql[];

#ifdef __cplusplus
}
#endif
#endif /* WK_PIPELINE_RECORDS_H */
