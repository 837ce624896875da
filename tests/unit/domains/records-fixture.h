/*
 * Shared by the records pipeline tests: real MTSamples notes from ../shared/data, ClinicalNote
 * envelopes, the records pipeline created the way the worker creates it (own metrics registry),
 * and an independent scoring of a note (the model's own tokenizer, chunks cut here by the
 * documented rule, at most max_chunks of them, one moe_session_run per chunk, mean of the
 * probabilities) and of the effect of occluding part of it (evidence weights).
 */
#ifndef RECORDS_FIXTURE_H
#define RECORDS_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe/moe.h"
#include "moe/text.h"
#include "pipeline-records.h"
#include "sluice/v1/envelope.pb-c.h"
#include "svc/metrics.h"
#include "test.h"

#define RF_MODEL "models/records-mtsamples.safetensors"

/* Notes of the CSV's text column (4), non-empty, at most `max`; *n gets the count. */
static inline char **rf_notes(size_t max, size_t *n) {
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  char path[512];
  snprintf(path, sizeof path, "%s/../shared/data/clinical/mtsamples_train.csv", dir ? dir : ".");
  FILE *f = fopen(path, "rb");
  ASSERT_MSG(f != NULL, "cannot open %s", path);
  size_t cap = 1u << 20;
  char *data = malloc(cap + 1);
  ASSERT_NOT_NULL(data);
  size_t got = fread(data, 1, cap, f);
  data[got] = '\0';
  fclose(f);
  char **out = calloc(max, sizeof *out);
  ASSERT_NOT_NULL(out);
  *n = 0;
  const char *s = data;
  int col = 0;
  bool header = true;
  while (*s != '\0' && *n < max) {
    char *field = malloc(strlen(s) + 1);
    ASSERT_NOT_NULL(field);
    size_t k = 0;
    bool quoted = *s == '"', closed = !quoted;
    if (quoted) s++;
    while (*s != '\0') {
      if (quoted && *s == '"' && s[1] == '"') field[k++] = '"', s += 2;
      else if (quoted && *s == '"') quoted = false, closed = true, s++;
      else if (!quoted && (*s == ',' || *s == '\n')) break;
      else field[k++] = *s++;
    }
    field[k] = '\0';
    if (!header && col == 4 && k > 0 && closed && *s != '\0') out[(*n)++] = field;
    else free(field);
    if (*s == ',') col++, s++;
    else if (*s == '\n') col = 0, header = false, s++;
  }
  free(data);
  return out;
}

static inline void rf_notes_free(char **notes, size_t n) {
  for (size_t i = 0; i < n; i++) free(notes[i]);
  free(notes);
}

/* A packed envelope of a note (caller frees *buf). patient may be NULL. */
static inline uint8_t *rf_envelope(const char *note_id, const char *patient, const char *text,
                            int64_t time_ms, size_t *len) {
  Sluice__V1__ClinicalNote note = SLUICE__V1__CLINICAL_NOTE__INIT;
  note.note_id = (char *)note_id;
  note.patient_id = (char *)patient;
  note.text = (char *)text;
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  char eid[160];
  snprintf(eid, sizeof eid, "ev-%s", note_id);
  env.event_id = eid;
  env.key = (char *)note_id;
  env.has_event_time_ms = 1;
  env.event_time_ms = time_ms;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE;
  env.clinical_note = &note;
  *len = sluice__v1__envelope__get_packed_size(&env);
  uint8_t *buf = malloc(*len ? *len : 1);
  ASSERT_NOT_NULL(buf);
  sluice__v1__envelope__pack(&env, buf);
  return buf;
}

typedef struct {
  svc_metrics_t *metrics;
  wk_records_settings_t settings;
  wk_pipeline_env_t env;
  wk_pipeline_t *p;
} rf_pipeline_t;

/* The pipeline with `settings` (its metrics in a registry of their own, base 0). */
static inline void rf_pipeline_init(rf_pipeline_t *rp, const wk_records_settings_t *settings,
                             const char *topic) {
  char err[256];
  memset(rp, 0, sizeof *rp);
  rp->metrics = svc_metrics_new(wk_records_metric_defs, wk_records_n_metric_defs, err, sizeof err);
  ASSERT_MSG(rp->metrics != NULL, "%s", err);
  rp->settings = *settings;
  rp->env = (wk_pipeline_env_t){.domain = "records", .topic = topic,
                                .alerts_topic = "sluice.records.alerts", .pg_schema = "sluice",
                                .max_event_bytes = 1u << 20, .batch_max = 64,
                                .settings = &rp->settings, .metrics = rp->metrics,
                                .metric_base = 0, .group = "g-records"};
  ASSERT_MSG(wk_pipeline_records.create(&rp->env, &rp->p, err, sizeof err) == SVC_OK, "%s", err);
}

static inline void rf_pipeline_close(rf_pipeline_t *rp) {
  wk_pipeline_records.destroy(rp->p);
  svc_metrics_free(rp->metrics);
}

/* The model's tokens of `text` (caller frees with moe_text_free); *n gets their count. */
static inline moe_token_t *rf_tokens(const moe_model_t *m, const char *text, size_t *n) {
  const char *tj = moe_model_tokenizer_json(m);
  ASSERT_NOT_NULL(tj);
  moe_wordpiece_t *wp = NULL;
  char why[256];
  ASSERT_MSG(moe_wordpiece_from_json(tj, strlen(tj), &wp, why, sizeof why) == MOE_OK, "%s", why);
  moe_token_t *toks = NULL;
  ASSERT_EQ(moe_wordpiece_encode(wp, text, strlen(text), &toks, n), MOE_OK);
  moe_wordpiece_free(wp);
  return toks;
}

/* The documented chunking of n tokens at body = max_len - 1 tokens a row: starts 0, body / 2,
 * 2 * (body / 2), ... while a chunk does not reach the end, then one flush with the end; past
 * max_chunks only the first max_chunks are kept and *dropped gets the tokens none of them
 * sees. Returns the number of chunks (starts must hold max_chunks). */
static inline size_t rf_chunks(size_t n, size_t body, size_t max_chunks, size_t *starts,
                               size_t *dropped) {
  size_t half = body / 2 ? body / 2 : 1, nc = 0;
  *dropped = 0;
  if (n <= body) {
    starts[nc++] = 0;
    return nc;
  }
  size_t s = 0;
  for (; s + body < n; s += half) {
    if (nc == max_chunks) {
      *dropped = n - (starts[nc - 1] + body);
      return nc;
    }
    starts[nc++] = s;
  }
  if (nc == max_chunks) {
    *dropped = n - (starts[nc - 1] + body);
    return nc;
  }
  starts[nc++] = n - body;
  return nc;
}

/* The scores (n_chunks, n_outputs) of the note's chunks, each chunk's tokens inside the bytes
 * [occ_start, occ_end) replaced by id 0 (occ_end 0: none). */
static inline float *rf_chunk_scores(const moe_model_t *m, const moe_token_t *toks, size_t n,
                                     const size_t *starts, size_t nc, uint32_t occ_start,
                                     uint32_t occ_end) {
  int max_len = moe_model_text_max_len(m), n_out = moe_model_n_outputs(m);
  size_t body = (size_t)max_len - 1;
  moe_session_t *sess = NULL;
  ASSERT_EQ(moe_session_new(m, 1, &sess), MOE_OK);
  int32_t *ids = malloc((size_t)max_len * sizeof *ids);
  float *sc = malloc(nc * (size_t)n_out * sizeof *sc);
  ASSERT(ids != NULL && sc != NULL);
  for (size_t c = 0; c < nc; c++) {
    size_t len = n - starts[c] < body ? n - starts[c] : body;
    ids[0] = MOE_TOKEN_CLS;
    for (size_t j = 0; j < len; j++) {
      const moe_token_t *t = &toks[starts[c] + j];
      ids[1 + j] = t->start >= occ_start && t->end <= occ_end ? 0 : t->id;
    }
    moe_input_t row = {.tokens = ids, .n_tokens = (int32_t)(len + 1)};
    moe_output_t out = {.scores = sc + c * (size_t)n_out};
    ASSERT_EQ(moe_session_run(sess, &row, 1, &out), MOE_OK);
  }
  free(ids);
  moe_session_free(sess);
  return sc;
}

/* Independent scoring: class probabilities (n_classes) of `text` as the mean over its chunks,
 * at most max_chunks of them (*n_dropped: tokens past them). */
static inline void rf_score_at(const moe_model_t *m, const char *text, size_t max_chunks,
                               float *probs, size_t *n_tokens, size_t *n_chunks,
                               size_t *n_dropped) {
  size_t n = 0;
  moe_token_t *toks = rf_tokens(m, text, &n);
  int n_out = moe_model_n_outputs(m);
  bool binary = moe_model_task(m) == MOE_TASK_BINARY;
  int n_classes = binary ? 2 : n_out;
  size_t *starts = malloc(max_chunks * sizeof *starts);
  ASSERT_NOT_NULL(starts);
  size_t nc = rf_chunks(n, (size_t)moe_model_text_max_len(m) - 1, max_chunks, starts, n_dropped);
  float *sc = rf_chunk_scores(m, toks, n, starts, nc, 0, 0);
  for (int k = 0; k < n_classes; k++) probs[k] = 0;
  for (size_t c = 0; c < nc; c++) {
    const float *sr = sc + c * (size_t)n_out;
    if (binary) {
      probs[1] += sr[0] / (float)nc;
    } else {
      for (int k = 0; k < n_classes; k++) probs[k] += sr[k] / (float)nc;
    }
  }
  if (binary) probs[0] = 1.0f - probs[1];
  *n_tokens = n;
  *n_chunks = nc;
  free(sc);
  free(starts);
  moe_text_free(toks);
}

/* rf_score_at without a chunk limit (the notes the tests use are far below 4096 chunks). */
static inline void rf_score(const moe_model_t *m, const char *text, float *probs, size_t *n_tokens,
                            size_t *n_chunks) {
  size_t dropped;
  rf_score_at(m, text, 4096, probs, n_tokens, n_chunks, &dropped);
  ASSERT_EQ(dropped, 0);
}

/* The effect on a multi-class model's mean probability of `output` of replacing the tokens
 * inside the bytes [start, end) by id 0: the change of each chunk's probability divided by the
 * number of chunks, summed over every chunk (all_chunks) or taken on the one chunk whose own
 * probability of `output` is highest (the first of equals): what a segment's evidence weight is
 * with evidence_chunks 0 or 1. */
static inline float rf_occlusion_at(const moe_model_t *m, const char *text, int output,
                                    uint32_t start, uint32_t end, size_t max_chunks,
                                    bool all_chunks) {
  size_t n = 0, dropped;
  moe_token_t *toks = rf_tokens(m, text, &n);
  size_t hidden = 0;
  for (size_t j = 0; j < n; j++) hidden += toks[j].start >= start && toks[j].end <= end;
  ASSERT_OP(hidden, >, 0);
  size_t *starts = malloc(max_chunks * sizeof *starts);
  ASSERT_NOT_NULL(starts);
  size_t nc = rf_chunks(n, (size_t)moe_model_text_max_len(m) - 1, max_chunks, starts, &dropped);
  float *base = rf_chunk_scores(m, toks, n, starts, nc, 0, 0);
  float *occ = rf_chunk_scores(m, toks, n, starts, nc, start, end);
  size_t no = (size_t)moe_model_n_outputs(m), best = 0;
  for (size_t c = 1; c < nc; c++)
    if (base[c * no + (size_t)output] > base[best * no + (size_t)output]) best = c;
  float effect = 0;
  for (size_t c = 0; c < nc; c++)
    if (all_chunks || c == best)
      effect += (base[c * no + (size_t)output] - occ[c * no + (size_t)output]) / (float)nc;
  free(base);
  free(occ);
  free(starts);
  moe_text_free(toks);
  return effect;
}

/* The effect on the one-chunk note's predicted probability of replacing every token inside
 * [start, end) by id 0 (what a segment's evidence weight is for a note of one chunk). */
static inline float rf_occlusion(const moe_model_t *m, const char *text, int output, uint32_t start,
                                 uint32_t end) {
  size_t n = 0;
  moe_token_t *toks = rf_tokens(m, text, &n);
  moe_text_free(toks);
  ASSERT_OP(n + 1, <=, (size_t)moe_model_text_max_len(m));
  return rf_occlusion_at(m, text, output, start, end, 1, true);
}

#endif /* RECORDS_FIXTURE_H */
