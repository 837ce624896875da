/*
 * The records pipeline's ops driven directly, with the shipped text model and real MTSamples
 * notes (no servers): which models model_open takes and refuses, which records accept
 * dead-letters and why, and that the analysis process writes matches an independent scoring
 * of the same tokens (short notes, long notes as chunks, evidence spans that point into the
 * note and whose weights are the occlusion effects they claim). The rows' round trip through
 * PostgreSQL is test-records-pipeline-db.
 */
#include "records-fixture.h"

#include <ctype.h>

#include "records-analysis.h"
#include "svc/config.h"

static wk_records_settings_t settings(void) {
  wk_records_settings_t s;
  wk_records_settings_default(&s);
  return s;
}

TEST(model_open_takes_text_classifiers_and_refuses_others) {
  wk_records_settings_t s = settings();
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  char err[512];
  wk_pmodel_t *m = NULL;
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, RF_MODEL, &m, err, sizeof err) == SVC_OK, "%s",
             err);
  ASSERT_STR_CONTAINS(wk_pipeline_records.model_version(m), "records-mtsamples");
  wk_pipeline_records.model_free(m);
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, "models/records-abstracts.safetensors", &m, err,
                                            sizeof err) == SVC_OK, "%s", err);
  wk_pipeline_records.model_free(m);
  m = NULL;
  ASSERT_EQ(wk_pipeline_records.model_open(rp.p, "models/fraud.safetensors", &m, err, sizeof err),
            SVC_ECONFIG);
  ASSERT_NULL(m);
  ASSERT_STR_CONTAINS(err, "models/fraud.safetensors");
  ASSERT_STR_CONTAINS(err, "tabular encoder");
  ASSERT_EQ(wk_pipeline_records.model_open(rp.p, "models/fault-cmapss.safetensors", &m, err,
                                           sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "sensor encoder");
  ASSERT_EQ(wk_pipeline_records.model_open(rp.p, "models/no-such.safetensors", &m, err, sizeof err),
            SVC_ENOENT);
  ASSERT_STR_CONTAINS(err, "no-such");
  rf_pipeline_close(&rp);
  /* An alert label the model does not have is named. */
  s.alert_labels = "Urology, Cardiology";
  rf_pipeline_init(&rp, &s, "t");
  ASSERT_EQ(wk_pipeline_records.model_open(rp.p, RF_MODEL, &m, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "\"Cardiology\", which is not a label");
  rf_pipeline_close(&rp);
}

static void expect_reject(wk_pipeline_t *p, const uint8_t *v, size_t len, wk_reject_reason_t r,
                          const char *detail) {
  wk_reject_t rej;
  void *ev = wk_pipeline_records.accept(p, NULL, NULL, v, len, &rej);
  ASSERT_NULL(ev);
  ASSERT_MSG(rej.reason == r, "reason %s, want %s (%s)", wk_reject_name(rej.reason),
             wk_reject_name(r), rej.detail);
  ASSERT_STR_CONTAINS(rej.detail, detail);
}

TEST(accept_dead_letters_bad_notes_with_their_reason) {
  wk_records_settings_t s = settings();
  s.max_text_bytes = 1000;
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  size_t len;
  uint8_t *v = rf_envelope("n1", "p1", "HISTORY: chest pain.", 1700000000000, &len);
  wk_reject_t rej;
  void *ev = wk_pipeline_records.accept(rp.p, NULL, NULL, v, len, &rej);
  ASSERT_NOT_NULL(ev);
  wk_pipeline_records.event_free(rp.p, ev);
  free(v);
  expect_reject(rp.p, (const uint8_t *)"\xff\xff\xff", 3, WK_REJECT_DECODE, "not a sluice.v1.Envelope");
  v = rf_envelope("n2", NULL, "", 1700000000000, &len);
  expect_reject(rp.p, v, len, WK_REJECT_INVALID, "clinical_note.text is empty");
  free(v);
  v = rf_envelope("n3", NULL, " \n\t ", 1700000000000, &len);
  expect_reject(rp.p, v, len, WK_REJECT_INVALID, "blank");
  free(v);
  v = rf_envelope("n4", NULL, "caf\xc3 au lait", 1700000000000, &len);
  expect_reject(rp.p, v, len, WK_REJECT_INVALID, "not valid UTF-8 at byte 3");
  free(v);
  char big[1200];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  v = rf_envelope("n5", NULL, big, 1700000000000, &len);
  expect_reject(rp.p, v, len, WK_REJECT_OVERSIZE, "1199 bytes, the limit is 1000");
  free(v);
  v = rf_envelope("", NULL, "text", 1700000000000, &len);
  expect_reject(rp.p, v, len, WK_REJECT_INVALID, "note_id");
  free(v);
  v = rf_envelope("n6", NULL, "text", 5, &len);
  expect_reject(rp.p, v, len, WK_REJECT_INVALID, "event_time_ms");
  free(v);
  /* A fraud event on the records topic. */
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  env.event_id = "e";
  env.has_event_time_ms = 1;
  env.event_time_ms = 1700000000000;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env.transaction = &tx;
  uint8_t buf[256];
  len = sluice__v1__envelope__pack(&env, buf);
  expect_reject(rp.p, buf, len, WK_REJECT_WRONG_PAYLOAD, "not a clinical_note");
  rf_pipeline_close(&rp);
}

/* Runs notes through accept + process and checks each analysis against rf_score. */
TEST(process_matches_an_independent_scoring_short_and_long_notes) {
  size_t nn = 0;
  char **notes = rf_notes(16, &nn);
  ASSERT_OP(nn, >=, 16);
  wk_records_settings_t s = settings();
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  char err[512];
  wk_pmodel_t *pm = NULL;
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, RF_MODEL, &pm, err, sizeof err) == SVC_OK, "%s",
             err);
  moe_model_t *m = NULL;
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  int nk = moe_model_n_labels(m);
  /* The analysis the pipeline runs, with its settings, against the independent scoring. */
  wk_records_cfg_t cfg = {.max_chunks = 16, .top_evidence = 5,
                          .evidence = WK_RECORDS_EVIDENCE_SEGMENTS, .evidence_chunks = 1};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &cfg, &sc, err, sizeof err));
  size_t long_notes = 0, short_checked = 0;
  for (size_t i = 0; i < nn; i++) {
    float want[64];
    size_t nt, nc;
    rf_score(m, notes[i], want, &nt, &nc);
    wk_records_analysis_t an;
    ASSERT_OK(wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err));
    ASSERT_EQ(an.n_tokens, nt);
    ASSERT_EQ(an.n_chunks, nc);
    ASSERT(!an.truncated);
    for (int k = 0; k < nk; k++) ASSERT_NEAR(an.probs[k], want[k], 1e-5);
    long_notes += nc > 1;
    /* Evidence spans lie in the note, start and end on word boundaries, by weight. */
    ASSERT_OP(an.n_evidence, >=, 1);
    for (size_t e = 0; e < an.n_evidence; e++) {
      const wk_records_span_t *sp = &an.evidence[e];
      ASSERT(sp->start < sp->end && sp->end <= strlen(notes[i]));
      ASSERT(sp->weight > 0);
      if (e > 0) ASSERT(sp->weight <= an.evidence[e - 1].weight);
      unsigned char c0 = (unsigned char)notes[i][sp->start];
      unsigned char c1 = (unsigned char)notes[i][sp->end - 1];
      ASSERT_MSG(c0 > ' ' && c1 > ' ', "span [%u, %u) starts or ends with a space", sp->start,
                 sp->end);
      /* Segments start at a word, not at the punctuation that ended the previous one. */
      ASSERT_MSG(isalnum(c0) || sp->start == 0, "span [%u, %u) starts with '%c'",
                 sp->start, sp->end, c0);
      /* A one-chunk note: the weight is the effect of occluding the span's tokens. */
      if (nc == 1 && e < 2) {
        float eff = rf_occlusion(m, notes[i], an.predicted, sp->start, sp->end);
        ASSERT_NEAR(sp->weight, eff, 1e-5);
        short_checked++;
      }
    }
    wk_records_analysis_free(&an);
  }
  printf("%zu notes, %zu of them longer than one chunk; %zu span weights re-measured\n", nn,
         long_notes, short_checked);
  ASSERT_OP(long_notes, >=, 4);
  ASSERT_OP(short_checked, >=, 4);
  /* process adds one row per note, and counts notes by label and tokens. */
  wk_stmt_t *st = NULL;
  ASSERT_OK(wk_stmt_new("sluice", "g", wk_records_tables, wk_records_n_tables, &st, err, sizeof err));
  void *evs[40];
  rd_kafka_message_t msgs[40];
  const rd_kafka_message_t *mp[40];
  for (size_t i = 0; i < nn; i++) {
    char id[32];
    snprintf(id, sizeof id, "note-%zu", i);
    size_t len;
    uint8_t *v = rf_envelope(id, "p", notes[i], 1700000000000 + (int64_t)i, &len);
    wk_reject_t rej;
    evs[i] = wk_pipeline_records.accept(rp.p, pm, NULL, v, len, &rej);
    ASSERT_MSG(evs[i] != NULL, "%s", rej.detail);
    free(v);
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].partition = 0;
    msgs[i].offset = (int64_t)i;
    mp[i] = &msgs[i];
  }
  wk_batch_stats_t stats = {0};
  ASSERT_MSG(wk_pipeline_records.process(rp.p, pm, evs, mp, nn, st, &stats, err, sizeof err) ==
                 SVC_OK, "%s", err);
  ASSERT_EQ(wk_stmt_n_rows(st, 0), nn);
  ASSERT_EQ(stats.n_scored, nn);
  ASSERT_EQ(stats.n_explained, nn);
  ASSERT_EQ(stats.n_alerts, 0);
  ASSERT_OP(stats.infer_ns, >, 0);
  ASSERT_OP(stats.explain_ns, >, 0);
  svc_hist_stats_t hs;
  svc_hist_stats(svc_series_hist(svc_metrics_series(rp.metrics, WK_RECORDS_M_TOKENS, NULL)), &hs);
  ASSERT_EQ(hs.count, nn);
  for (size_t i = 0; i < nn; i++) wk_pipeline_records.event_free(rp.p, evs[i]);
  wk_stmt_free(st);
  wk_records_scorer_free(sc);
  moe_model_free(m);
  wk_pipeline_records.model_free(pm);
  rf_pipeline_close(&rp);
  rf_notes_free(notes, nn);
}

/* Beyond max_chunks a note is cut and says so; below it, never. */
TEST(long_notes_are_chunked_and_truncation_is_counted) {
  size_t nn = 0;
  char **notes = rf_notes(60, &nn);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  wk_records_cfg_t cfg = {.max_chunks = 2, .top_evidence = 0};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &cfg, &sc, err, sizeof err));
  size_t body = (size_t)moe_model_text_max_len(m) - 1, cut = 0;
  for (size_t i = 0; i < nn; i++) {
    wk_records_analysis_t an;
    ASSERT_OK(wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err));
    /* Two chunks see body + body / 2 tokens. */
    size_t seen = body + body / 2;
    if (an.n_tokens > seen) {
      ASSERT(an.truncated);
      ASSERT_EQ(an.n_chunks, 2);
      ASSERT_EQ(an.n_dropped, an.n_tokens - seen);
      cut++;
    } else {
      ASSERT(!an.truncated);
      ASSERT_EQ(an.n_dropped, 0);
    }
    wk_records_analysis_free(&an);
  }
  ASSERT_OP(cut, >=, 3);
  /* The pipeline counts them. */
  wk_records_settings_t s = settings();
  s.max_chunks = 2;
  s.top_evidence = 0;
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  wk_pmodel_t *pm = NULL;
  ASSERT_OK(wk_pipeline_records.model_open(rp.p, RF_MODEL, &pm, err, sizeof err));
  wk_stmt_t *st = NULL;
  ASSERT_OK(wk_stmt_new("sluice", "g", wk_records_tables, wk_records_n_tables, &st, err, sizeof err));
  size_t n_cut = 0;
  for (size_t i = 0; i < nn; i++) {
    size_t len;
    uint8_t *v = rf_envelope("n", NULL, notes[i], 1700000000000, &len);
    wk_reject_t rej;
    void *ev = wk_pipeline_records.accept(rp.p, pm, NULL, v, len, &rej);
    ASSERT_NOT_NULL(ev);
    free(v);
    rd_kafka_message_t msg = {0};
    const rd_kafka_message_t *mp = &msg;
    wk_batch_stats_t stats = {0};
    ASSERT_OK(wk_pipeline_records.process(rp.p, pm, &ev, &mp, 1, st, &stats, err, sizeof err));
    ASSERT_EQ(stats.n_explained, 0);
    wk_pipeline_records.event_free(rp.p, ev);
    wk_stmt_reset(st);
    n_cut++;
  }
  ASSERT_EQ(n_cut, nn);
  ASSERT_EQ(svc_counter_value(svc_metrics_series(rp.metrics, WK_RECORDS_M_TRUNCATED, NULL)), cut);
  ASSERT_OP(svc_counter_value(svc_metrics_series(rp.metrics, WK_RECORDS_M_DROPPED, NULL)), >, 0);
  wk_stmt_free(st);
  wk_pipeline_records.model_free(pm);
  rf_pipeline_close(&rp);
  wk_records_scorer_free(sc);
  moe_model_free(m);
  rf_notes_free(notes, nn);
}

/* WK_RECORDS_CFG_ROWS as the worker's table holds them: defaults = wk_records_settings_default,
 * flags land in the struct, out-of-range values are refused by name. */
typedef struct {
  wk_records_settings_t records;
} cfg_target_t;

static const svc_cfg_def_t cfg_defs[] = {WK_RECORDS_CFG_ROWS(cfg_target_t, records){NULL}};

TEST(config_rows_defaults_flags_and_ranges) {
  cfg_target_t t;
  memset(&t, 0, sizeof t);
  svc_cfg_t *cfg = NULL;
  char err[512];
  ASSERT_MSG(svc_cfg_new(&cfg, "test", "records settings", cfg_defs, &t, NULL, err, sizeof err) ==
                 SVC_OK, "%s", err);
  char *none[] = {"test"};
  ASSERT_MSG(svc_cfg_load(cfg, 1, none, err, sizeof err) == SVC_OK, "%s", err);
  wk_records_settings_t d;
  wk_records_settings_default(&d);
  ASSERT_EQ(t.records.max_chunks, d.max_chunks);
  ASSERT_EQ(t.records.top_evidence, d.top_evidence);
  ASSERT_EQ(t.records.evidence, d.evidence);
  ASSERT_EQ(t.records.evidence_chunks, d.evidence_chunks);
  ASSERT_EQ(t.records.max_text_bytes, d.max_text_bytes);
  ASSERT_EQ(t.records.threads, d.threads);
  ASSERT_NEAR(t.records.evidence_min_probability, d.evidence_min_probability, 0);
  ASSERT_NEAR(t.records.alert_min_probability, d.alert_min_probability, 0);
  ASSERT(t.records.alert_labels == NULL || t.records.alert_labels[0] == '\0');
  svc_cfg_free(cfg);
  memset(&t, 0, sizeof t);
  ASSERT_OK(svc_cfg_new(&cfg, "test", "records settings", cfg_defs, &t, NULL, err, sizeof err));
  char *flags[] = {"test", "--records-evidence=words", "--records-threads=3",
                   "--records-alert-labels=Urology, Neurology", "--records-max-text-bytes=10KiB"};
  ASSERT_MSG(svc_cfg_load(cfg, 5, flags, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_EQ(t.records.evidence, WK_RECORDS_EVIDENCE_WORDS);
  ASSERT_EQ(t.records.threads, 3);
  ASSERT_EQ(t.records.max_text_bytes, 10240);
  ASSERT_STR_EQ(t.records.alert_labels, "Urology, Neurology");
  /* The pipeline takes them: two alert labels of the model, three scorers. */
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &t.records, "t");
  wk_pmodel_t *m = NULL;
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, RF_MODEL, &m, err, sizeof err) == SVC_OK, "%s",
             err);
  wk_pipeline_records.model_free(m);
  rf_pipeline_close(&rp);
  svc_cfg_free(cfg);
  memset(&t, 0, sizeof t);
  ASSERT_OK(svc_cfg_new(&cfg, "test", "records settings", cfg_defs, &t, NULL, err, sizeof err));
  char *bad[] = {"test", "--records-threads=0"};
  ASSERT_EQ(svc_cfg_load(cfg, 2, bad, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "records.threads");
  svc_cfg_free(cfg);
  /* Out of range without the table: create refuses. */
  wk_records_settings_t s;
  wk_records_settings_default(&s);
  s.threads = 0;
  wk_pipeline_env_t env = {.domain = "records", .topic = "t", .settings = &s};
  wk_pipeline_t *p = NULL;
  ASSERT_EQ(wk_pipeline_records.create(&env, &p, err, sizeof err), SVC_ECONFIG);
  ASSERT_NULL(p);
  ASSERT_STR_CONTAINS(err, "threads 0");
}

/* records.evidence = words: each span is one word whose weight is its occlusion effect (the
 * tokens way is checked on a closed-form model in test-records-analysis). */
TEST(words_evidence_spans_are_words_with_their_effect) {
  size_t nn = 0;
  char **notes = rf_notes(16, &nn);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  wk_records_cfg_t wcfg = {.max_chunks = 16, .top_evidence = 3,
                           .evidence = WK_RECORDS_EVIDENCE_WORDS, .evidence_chunks = 1};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &wcfg, &sc, err, sizeof err));
  size_t checked = 0;
  for (size_t i = 0; i < nn && checked < 3; i++) {
    wk_records_analysis_t an;
    ASSERT_OK(wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err));
    if (an.n_chunks == 1 && an.n_evidence > 0) {
      checked++;
      for (size_t e = 0; e < an.n_evidence; e++) {
        const wk_records_span_t *sp = &an.evidence[e];
        for (uint32_t b = sp->start; b < sp->end; b++)
          ASSERT_MSG(notes[i][b] != ' ', "span [%u, %u) is more than a word", sp->start, sp->end);
        ASSERT_NEAR(sp->weight, rf_occlusion(m, notes[i], an.predicted, sp->start, sp->end), 1e-5);
      }
    }
    wk_records_analysis_free(&an);
  }
  ASSERT_EQ(checked, 3);
  wk_records_scorer_free(sc);
  rf_notes_free(notes, nn);
  moe_model_free(m);
}
