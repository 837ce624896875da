/*
 * The records pipeline's ops driven directly, with real MTSamples notes (no servers): which
 * models model_open takes and refuses, which records accept dead-letters and why, and that the
 * analysis process writes matches an independent scoring of the same tokens (records-fixture.h):
 * probabilities, chunks, truncation, and evidence spans that point into the note and whose
 * weights are the occlusion effects they claim. The checks run on the shipped text model,
 * whatever its architecture and max_len, and on a small model with a short max_len (64 tokens)
 * trained here by the built `sluice train` from the first 200 notes, so that chunking,
 * chunk means and truncation are exercised on every note whatever the shipped model does
 * with them. The rows' round trip through PostgreSQL is test-records-pipeline-db.
 */
#include "records-fixture.h"

#include <ctype.h>
#include <sys/wait.h>
#include <unistd.h>

#include "records-analysis.h"
#include "svc/config.h"

#define SMALL_MAX_LEN 64

static char small_dir[256], small_path[320];

static void small_model_remove(void) {
  char p[400];
  snprintf(p, sizeof p, "%s/notes.csv", small_dir);
  unlink(p);
  unlink(small_path);
  rmdir(small_dir);
}

/* The first `rows` notes of the MTSamples CSV (header included) copied as they are: records
 * end at a newline outside quotes. */
static void write_head_csv(const char *to, int rows) {
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  char from[512];
  snprintf(from, sizeof from, "%s/../shared/data/clinical/mtsamples_train.csv", dir ? dir : ".");
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  ASSERT_MSG(in != NULL, "cannot open %s", from);
  ASSERT_MSG(out != NULL, "cannot create %s", to);
  bool quoted = false;
  int ended = 0, ch;
  while (ended <= rows && (ch = fgetc(in)) != EOF) {
    ASSERT(fputc(ch, out) != EOF);
    if (ch == '"') quoted = !quoted;
    else if (ch == '\n' && !quoted) ended++;
  }
  fclose(in);
  ASSERT_OK(fclose(out));
  ASSERT_EQ(ended, rows + 1);
}

/* A text classifier with max_len SMALL_MAX_LEN (attention, one layer, 500 pieces, one
 * epoch: its quality does not matter, only that it is a real model of another shape than the
 * shipped one), trained once per run with the built sluice binary. */
static const char *small_model(void) {
  if (small_path[0] != '\0') return small_path;
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_MSG(bdir != NULL, "SLUICE_BINARY_DIR is not set (run under ctest)");
  char bin[512];
  snprintf(bin, sizeof bin, "%s/bin/sluice", bdir);
  ASSERT_MSG(access(bin, X_OK) == 0, "%s is missing: build the sluice target first", bin);
  snprintf(small_dir, sizeof small_dir, "/tmp/sluice-trp-XXXXXX");
  ASSERT_MSG(mkdtemp(small_dir) != NULL, "cannot make a directory like %s", small_dir);
  char csv[400];
  snprintf(csv, sizeof csv, "%s/notes.csv", small_dir);
  snprintf(small_path, sizeof small_path, "%s/small.safetensors", small_dir);
  atexit(small_model_remove);
  write_head_csv(csv, 200);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (freopen("/dev/null", "w", stdout) == NULL) _exit(126);
    char *argv[] = {bin, "train", "--task", "records-mtsamples", "--data", csv, "--out",
                    small_path, "--max-len", "64", "--vocab", "500", "--d-model", "16",
                    "--layers", "1", "--epochs", "1", "--seed", "7", "--version",
                    "records-small-test", NULL};
    execv(bin, argv);
    perror("execv sluice");
    _exit(127);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sluice train failed (status %d)", st);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_MSG(moe_model_load(small_path, &m, err, sizeof err) == MOE_OK, "%s", err);
  ASSERT_EQ(moe_model_text_max_len(m), SMALL_MAX_LEN);
  moe_model_free(m);
  return small_path;
}

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

typedef struct {
  size_t long_notes, truncated, spans_checked;
} counts_t;

/*
 * Analyses notes with `path`'s model (segments evidence, max_chunks, evidence_chunks 0 or 1)
 * and checks each against the independent scoring: tokens, chunks, truncation and dropped
 * tokens, the probabilities, and spans inside the note, on word boundaries, by weight, the
 * first two's weights equal to re-measured occlusions.
 */
static counts_t check_analyses(const char *path, char **notes, size_t nn, size_t max_chunks,
                               size_t evidence_chunks) {
  moe_model_t *m = NULL;
  char err[512];
  ASSERT_MSG(moe_model_load(path, &m, err, sizeof err) == MOE_OK, "%s", err);
  int nk = moe_model_n_labels(m);
  ASSERT_OP(nk, <=, 64);
  wk_records_cfg_t cfg = {.max_chunks = max_chunks, .top_evidence = 5,
                          .evidence = WK_RECORDS_EVIDENCE_SEGMENTS,
                          .evidence_chunks = evidence_chunks};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &cfg, &sc, err, sizeof err));
  counts_t k = {0};
  for (size_t i = 0; i < nn; i++) {
    float want[64];
    size_t nt, nc, nd;
    rf_score_at(m, notes[i], max_chunks, want, &nt, &nc, &nd);
    wk_records_analysis_t an;
    ASSERT_OK(wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err));
    ASSERT_EQ(an.n_tokens, nt);
    ASSERT_EQ(an.n_chunks, nc);
    ASSERT_EQ(an.truncated, nd > 0);
    ASSERT_EQ(an.n_dropped, nd);
    for (int c = 0; c < nk; c++) ASSERT_NEAR(an.probs[c], want[c], 1e-5);
    k.long_notes += nc > 1;
    k.truncated += nd > 0;
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
      /* The weight is the effect of occluding the span's tokens on the mean probability (on
       * every chunk, or on the chunk that speaks most for the prediction). */
      if (e < 2) {
        float eff = rf_occlusion_at(m, notes[i], an.predicted, sp->start, sp->end, max_chunks,
                                    evidence_chunks == 0);
        ASSERT_NEAR(sp->weight, eff, 1e-5);
        k.spans_checked++;
      }
    }
    wk_records_analysis_free(&an);
  }
  wk_records_scorer_free(sc);
  moe_model_free(m);
  printf("%s: %zu notes, %zu longer than one chunk, %zu truncated (max_chunks %zu); %zu span "
         "weights re-measured (evidence_chunks %zu)\n", path, nn, k.long_notes, k.truncated,
         max_chunks, k.spans_checked, evidence_chunks);
  return k;
}

/* The shipped model, whatever its max_len: the analyses match the independent scoring, and
 * process adds one row per note and counts them. */
TEST(process_matches_an_independent_scoring_shipped_model) {
  size_t nn = 0;
  char **notes = rf_notes(16, &nn);
  ASSERT_OP(nn, >=, 16);
  counts_t k = check_analyses(RF_MODEL, notes, nn, 16, 1);
  ASSERT_OP(k.spans_checked, >=, nn);
  wk_records_settings_t s = settings();
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  char err[512];
  wk_pmodel_t *pm = NULL;
  ASSERT_MSG(wk_pipeline_records.model_open(rp.p, RF_MODEL, &pm, err, sizeof err) == SVC_OK, "%s",
             err);
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
  wk_pipeline_records.model_free(pm);
  rf_pipeline_close(&rp);
  rf_notes_free(notes, nn);
}

/* A model of max_len 64: nearly every note takes several chunks, and the chunk means, the
 * evidence weights (on the chunk that speaks most, or summed over all chunks) and the
 * truncation past max_chunks all match the independent scoring. */
TEST(a_short_model_scores_long_notes_as_chunks) {
  const char *small = small_model();
  size_t nn = 0;
  char **notes = rf_notes(16, &nn);
  ASSERT_OP(nn, >=, 16);
  counts_t k = check_analyses(small, notes, nn, 4096, 1);
  ASSERT_OP(k.long_notes, >=, nn * 3 / 4);
  ASSERT_EQ(k.truncated, 0);
  ASSERT_OP(k.spans_checked, >=, nn);
  k = check_analyses(small, notes, 6, 4096, 0);
  ASSERT_OP(k.long_notes, >=, 4);
  k = check_analyses(small, notes, 8, 4, 1);
  ASSERT_OP(k.truncated, >=, 4);
  rf_notes_free(notes, nn);
}

/* Beyond max_chunks a note is cut and says so; below it, never; the pipeline counts them. On
 * the short model (two chunks of 63 tokens see 94) most notes are cut. */
TEST(long_notes_are_chunked_and_truncation_is_counted) {
  const char *small = small_model();
  size_t nn = 0;
  char **notes = rf_notes(60, &nn);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(small, &m, err, sizeof err), MOE_OK);
  wk_records_cfg_t cfg = {.max_chunks = 2, .top_evidence = 0};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &cfg, &sc, err, sizeof err));
  size_t body = (size_t)moe_model_text_max_len(m) - 1, cut = 0, whole = 0;
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
      whole++;
    }
    wk_records_analysis_free(&an);
  }
  printf("%zu of %zu notes cut at 2 chunks of %zu tokens\n", cut, nn, body);
  ASSERT_OP(cut, >=, nn / 2);
  /* The pipeline counts them. */
  wk_records_settings_t s = settings();
  s.max_chunks = 2;
  s.top_evidence = 0;
  rf_pipeline_t rp;
  rf_pipeline_init(&rp, &s, "t");
  wk_pmodel_t *pm = NULL;
  ASSERT_OK(wk_pipeline_records.model_open(rp.p, small, &pm, err, sizeof err));
  wk_stmt_t *st = NULL;
  ASSERT_OK(wk_stmt_new("sluice", "g", wk_records_tables, wk_records_n_tables, &st, err, sizeof err));
  size_t n_done = 0;
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
    ASSERT_EQ(wk_stmt_n_rows(st, 0), 1);
    wk_pipeline_records.event_free(rp.p, ev);
    wk_stmt_reset(st);
    n_done++;
  }
  ASSERT_EQ(n_done, nn);
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

/* records.evidence = words: each span is one word whose weight is its occlusion effect on the
 * chunk that speaks most for the prediction (the tokens way is checked on a closed-form model
 * in test-records-analysis); on the shipped model and on the short one (several chunks). */
static void check_words(const char *path, size_t n_notes) {
  size_t nn = 0;
  char **notes = rf_notes(n_notes, &nn);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_MSG(moe_model_load(path, &m, err, sizeof err) == MOE_OK, "%s", err);
  wk_records_cfg_t wcfg = {.max_chunks = 16, .top_evidence = 3,
                           .evidence = WK_RECORDS_EVIDENCE_WORDS, .evidence_chunks = 1};
  wk_records_scorer_t *sc = NULL;
  ASSERT_OK(wk_records_scorer_new(m, &wcfg, &sc, err, sizeof err));
  size_t checked = 0, spans = 0;
  for (size_t i = 0; i < nn && checked < 3; i++) {
    wk_records_analysis_t an;
    ASSERT_OK(wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err));
    if (an.n_evidence > 0) {
      checked++;
      for (size_t e = 0; e < an.n_evidence; e++) {
        const wk_records_span_t *sp = &an.evidence[e];
        for (uint32_t b = sp->start; b < sp->end; b++)
          ASSERT_MSG(notes[i][b] != ' ', "span [%u, %u) is more than a word", sp->start, sp->end);
        ASSERT_NEAR(sp->weight, rf_occlusion_at(m, notes[i], an.predicted, sp->start, sp->end,
                                                16, false), 1e-5);
        spans++;
      }
    }
    wk_records_analysis_free(&an);
  }
  ASSERT_EQ(checked, 3);
  ASSERT_OP(spans, >=, 3);
  wk_records_scorer_free(sc);
  rf_notes_free(notes, nn);
  moe_model_free(m);
}

TEST(words_evidence_spans_are_words_with_their_effect) {
  check_words(RF_MODEL, 16);
  check_words(small_model(), 16);
}
