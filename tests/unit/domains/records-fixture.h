/*
 * Shared by the records pipeline tests: real MTSamples notes from ../shared/data, ClinicalNote
 * envelopes, the records pipeline created the way the worker creates it (own metrics registry),
 * and an independent scoring of a note (the model's own tokenizer, chunks cut here by the
 * documented rule, one moe_session_run per chunk, mean of the probabilities).
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

/* Independent scoring: class probabilities (n_classes) of `text` as the mean over chunks. */
static inline void rf_score(const moe_model_t *m, const char *text, float *probs, size_t *n_tokens,
                     size_t *n_chunks) {
  const char *tj = moe_model_tokenizer_json(m);
  ASSERT_NOT_NULL(tj);
  moe_wordpiece_t *wp = NULL;
  char why[256];
  ASSERT_EQ(moe_wordpiece_from_json(tj, strlen(tj), &wp, why, sizeof why), MOE_OK);
  moe_token_t *toks = NULL;
  size_t n = 0;
  ASSERT_EQ(moe_wordpiece_encode(wp, text, strlen(text), &toks, &n), MOE_OK);
  int max_len = moe_model_text_max_len(m), n_out = moe_model_n_outputs(m);
  bool binary = moe_model_task(m) == MOE_TASK_BINARY;
  int n_classes = binary ? 2 : n_out;
  size_t body = (size_t)max_len - 1, half = body / 2;
  /* Chunk starts: 0, half, 2*half, ... while the chunk does not reach the end; the last one
   * ends at the last token. */
  size_t starts[4096], nc = 0;
  if (n <= body) {
    starts[nc++] = 0;
  } else {
    for (size_t s = 0; s + body < n; s += half) starts[nc++] = s;
    starts[nc++] = n - body;
  }
  moe_session_t *sess = NULL;
  ASSERT_EQ(moe_session_new(m, 1, &sess), MOE_OK);
  int32_t *ids = malloc((size_t)max_len * sizeof *ids);
  float *sc = malloc((size_t)n_out * sizeof *sc);
  ASSERT(ids != NULL && sc != NULL);
  for (int k = 0; k < n_classes; k++) probs[k] = 0;
  for (size_t c = 0; c < nc; c++) {
    size_t len = n - starts[c] < body ? n - starts[c] : body;
    ids[0] = MOE_TOKEN_CLS;
    for (size_t j = 0; j < len; j++) ids[1 + j] = toks[starts[c] + j].id;
    moe_input_t row = {.tokens = ids, .n_tokens = (int32_t)(len + 1)};
    moe_output_t out = {.scores = sc};
    ASSERT_EQ(moe_session_run(sess, &row, 1, &out), MOE_OK);
    if (binary) {
      probs[1] += sc[0] / (float)nc;
    } else {
      for (int k = 0; k < n_classes; k++) probs[k] += sc[k] / (float)nc;
    }
  }
  if (binary) probs[0] = 1.0f - probs[1];
  *n_tokens = n;
  *n_chunks = nc;
  free(ids);
  free(sc);
  moe_session_free(sess);
  moe_text_free(toks);
  moe_wordpiece_free(wp);
}

/* The effect on the one-chunk note's predicted probability of replacing every token inside
 * [start, end) by id 0 (what a segment's evidence weight is for a note of one chunk). */
static inline float rf_occlusion(const moe_model_t *m, const char *text, int output, uint32_t start,
                          uint32_t end) {
  const char *tj = moe_model_tokenizer_json(m);
  moe_wordpiece_t *wp = NULL;
  char why[256];
  ASSERT_EQ(moe_wordpiece_from_json(tj, strlen(tj), &wp, why, sizeof why), MOE_OK);
  moe_token_t *toks = NULL;
  size_t n = 0;
  ASSERT_EQ(moe_wordpiece_encode(wp, text, strlen(text), &toks, &n), MOE_OK);
  ASSERT_OP(n + 1, <=, (size_t)moe_model_text_max_len(m));
  int32_t *ids = malloc((n + 1) * 2 * sizeof *ids);
  float *sc = malloc(2 * (size_t)moe_model_n_outputs(m) * sizeof *sc);
  ASSERT(ids != NULL && sc != NULL);
  ids[0] = ids[n + 1] = MOE_TOKEN_CLS;
  size_t hidden = 0;
  for (size_t j = 0; j < n; j++) {
    ids[1 + j] = toks[j].id;
    bool in = toks[j].start >= start && toks[j].end <= end;
    ids[n + 2 + j] = in ? 0 : toks[j].id;
    hidden += in;
  }
  ASSERT_OP(hidden, >, 0);
  moe_session_t *sess = NULL;
  ASSERT_EQ(moe_session_new(m, 2, &sess), MOE_OK);
  moe_input_t rows[2] = {{.tokens = ids, .n_tokens = (int32_t)(n + 1)},
                         {.tokens = ids + n + 1, .n_tokens = (int32_t)(n + 1)}};
  moe_output_t out = {.scores = sc};
  ASSERT_EQ(moe_session_run(sess, rows, 2, &out), MOE_OK);
  int no = moe_model_n_outputs(m);
  float effect = sc[output] - sc[no + output];
  free(ids);
  free(sc);
  moe_session_free(sess);
  moe_text_free(toks);
  moe_wordpiece_free(wp);
  return effect;
}

#endif /* RECORDS_FIXTURE_H */
