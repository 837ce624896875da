/*
 * The records pipeline as wk_pipeline_ops_t: ClinicalNote envelopes in, one record_analysis row
 * (and optionally an outbox alert) per note out. The contract is in pipeline-records.h; the
 * analysis itself is records-analysis.c.
 */
#include "pipeline-records.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records-analysis.h"
#include "records-input.h"

const char *const wk_records_evidence_names[] = {
#define WK__RECORDS_EV_NAME(id, name) name,
    WK_RECORDS_EVIDENCE_MAP(WK__RECORDS_EV_NAME)
#undef WK__RECORDS_EV_NAME
        NULL};

const char wk_records_schema_sql[] =
    "CREATE TABLE record_analysis (\n"
    "  note_id         text COLLATE \"C\" PRIMARY KEY,\n"
    "  patient_id      text COLLATE \"C\",\n"
    "  model_version   text        NOT NULL,\n"
    "  predicted_label text        NOT NULL,\n"
    "  score           real        NOT NULL,\n"
    "  classes         jsonb       NOT NULL,\n"
    "  evidence        jsonb       NOT NULL,\n"
    "  sections        jsonb       NOT NULL,\n"
    "  n_tokens        integer     NOT NULL,\n"
    "  n_chunks        integer     NOT NULL,\n"
    "  truncated       boolean     NOT NULL,\n"
    "  n_dropped       integer     NOT NULL,\n"
    "  event_time      timestamptz NOT NULL,\n"
    "  topic           text COLLATE \"C\" NOT NULL,\n"
    "  partition       integer     NOT NULL,\n"
    "  \"offset\"        bigint      NOT NULL,\n"
    "  scored_at       timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX record_analysis_patient ON record_analysis (patient_id, event_time);\n"
    "CREATE INDEX record_analysis_label ON record_analysis (predicted_label, event_time);\n";

/* Migration 6: what a row was analysed from, so that a corrected note is analysed again. */
const char wk_records_schema_v2_sql[] =
    "ALTER TABLE record_analysis ADD COLUMN text_hash bigint;\n";

void wk_records_settings_default(wk_records_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->max_chunks = WK_RECORDS_DEFAULT_MAX_CHUNKS;
  s->top_evidence = WK_RECORDS_DEFAULT_TOP_EVIDENCE;
  s->max_text_bytes = WK_RECORDS_DEFAULT_MAX_TEXT;
  s->evidence = WK_RECORDS_EVIDENCE_SEGMENTS;
  s->evidence_chunks = 1;
  s->evidence_min_probability = 0.0;
  s->alert_labels = NULL;
  s->alert_min_probability = 0.0;
  s->threads = 2;
}

/* ---- tables and metrics ---------------------------------------------------------------- */

static const wk_col_t records__cols[] = {
    {"note_id", WK_COL_TEXT},      {"patient_id", WK_COL_TEXT},
    {"model_version", WK_COL_TEXT}, {"predicted_label", WK_COL_TEXT},
    {"score", WK_COL_FLOAT4},      {"classes", WK_COL_JSONB},
    {"evidence", WK_COL_JSONB},    {"sections", WK_COL_JSONB},
    {"n_tokens", WK_COL_INT4},     {"n_chunks", WK_COL_INT4},
    {"truncated", WK_COL_BOOL},    {"n_dropped", WK_COL_INT4},
    {"event_time", WK_COL_TIME_MS}, {"topic", WK_COL_TEXT},
    {"partition", WK_COL_INT4},    {"offset", WK_COL_INT8},
    {"text_hash", WK_COL_INT8}};

/*
 * One row per note id. A note sent again with other text (a correction), or analysed by
 * another model, replaces its row if it is not older than the stored one; a replay (same
 * text, same model: after a crash, or a re-sent note) changes nothing, so exactly once still
 * holds. Within a batch the note's latest version by event time wins (key note_id, merged by
 * event_time), as it would across batches.
 */
const wk_table_t wk_records_tables[] = {
    {"record_analysis", WK_TABLE_RESULTS, records__cols, sizeof records__cols / sizeof records__cols[0],
     1,
     "ON CONFLICT (note_id) DO UPDATE SET patient_id = EXCLUDED.patient_id,\n"
     "    model_version = EXCLUDED.model_version, predicted_label = EXCLUDED.predicted_label,\n"
     "    score = EXCLUDED.score, classes = EXCLUDED.classes, evidence = EXCLUDED.evidence,\n"
     "    sections = EXCLUDED.sections, n_tokens = EXCLUDED.n_tokens,\n"
     "    n_chunks = EXCLUDED.n_chunks, truncated = EXCLUDED.truncated,\n"
     "    n_dropped = EXCLUDED.n_dropped, event_time = EXCLUDED.event_time,\n"
     "    topic = EXCLUDED.topic, partition = EXCLUDED.partition, \"offset\" = EXCLUDED.\"offset\",\n"
     "    text_hash = EXCLUDED.text_hash, scored_at = now()\n"
     "  WHERE (t.text_hash IS DISTINCT FROM EXCLUDED.text_hash\n"
     "         OR t.model_version <> EXCLUDED.model_version)\n"
     "    AND t.event_time <= EXCLUDED.event_time",
     "event_time"}};

/* FNV-1a 64 of a note's text, as the bigint text_hash. */
static int64_t records__text_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
  return (int64_t)h;
}
const size_t wk_records_n_tables = sizeof wk_records_tables / sizeof wk_records_tables[0];

const svc_metric_def_t wk_records_metric_defs[] = {WK_RECORDS_METRICS(SVC_METRIC_DEF)};
const size_t wk_records_n_metric_defs = WK_RECORDS_M__COUNT;

/* ---- the pipeline ------------------------------------------------------------------------ */

struct wk_pipeline_s {
  const char *domain, *topic, *alerts_topic;
  size_t max_event_bytes, max_text_bytes;
  wk_records_cfg_t cfg;
  size_t threads; /* analysis threads per batch */
  char **alert_labels; /* (n_alert_labels) from records.alert_labels */
  size_t n_alert_labels;
  float alert_min_prob;
  svc_metrics_t *metrics;
  int metric_base;
  svc_series_t *m_truncated, *m_dropped, *m_tokens, *m_chunks, *m_evidence;
};

struct wk_pmodel_s {
  moe_model_t *model;
  wk_records_scorer_t *sc;     /* = scs[0] */
  wk_records_scorer_t **scs;   /* (n_scs) one per analysis thread */
  size_t n_scs;
  int n_classes;
  bool *alert;            /* (n_classes) label raises an alert */
  svc_series_t **m_notes; /* (n_classes) notes by predicted label */
};

static void records__destroy(wk_pipeline_t *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->n_alert_labels; i++) free(p->alert_labels[i]);
  free(p->alert_labels);
  free(p);
}

/* Splits "a, b,c" into trimmed, non-empty labels. SVC_OK or SVC_ENOMEM. */
static svc_err_t records__split_labels(wk_pipeline_t *p, const char *list) {
  for (const char *s = list; s != NULL && *s != '\0';) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    const char *a = s;
    while (n > 0 && (*a == ' ' || *a == '\t')) a++, n--;
    while (n > 0 && (a[n - 1] == ' ' || a[n - 1] == '\t')) n--;
    if (n > 0) {
      char **nl = realloc(p->alert_labels, (p->n_alert_labels + 1) * sizeof *nl);
      if (nl == NULL) return SVC_ENOMEM;
      p->alert_labels = nl;
      char *l = malloc(n + 1);
      if (l == NULL) return SVC_ENOMEM;
      memcpy(l, a, n);
      l[n] = '\0';
      p->alert_labels[p->n_alert_labels++] = l;
    }
    s = e ? e + 1 : NULL;
  }
  return SVC_OK;
}

static svc_err_t records__create(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                                 size_t errstr_size) {
  *out = NULL;
  wk_records_settings_t def;
  const wk_records_settings_t *st = env->settings;
  if (st == NULL) {
    wk_records_settings_default(&def);
    st = &def;
  }
  /* The config table's ranges, checked again for callers without it (tools, tests). */
  if (st->max_chunks < 1 || st->max_chunks > 4096 || st->top_evidence < 0 ||
      st->top_evidence > 64 || st->threads < 1 || st->threads > 64 || st->evidence < 0 ||
      st->evidence >= WK_RECORDS_EVIDENCE__COUNT ||
      st->evidence_chunks < 0 || st->max_text_bytes < 1 ||
      !(st->evidence_min_probability >= 0.0 && st->evidence_min_probability <= 1.0) ||
      !(st->alert_min_probability >= 0.0 && st->alert_min_probability <= 1.0)) {
    snprintf(errstr, errstr_size, "records settings out of range (max_chunks %lld, top_evidence "
             "%lld, evidence %d, evidence_chunks %lld, max_text_bytes %lld, threads %lld)",
             (long long)st->max_chunks, (long long)st->top_evidence, st->evidence,
             (long long)st->evidence_chunks, (long long)st->max_text_bytes,
             (long long)st->threads);
    return SVC_ECONFIG;
  }
  wk_pipeline_t *p = calloc(1, sizeof *p);
  if (p == NULL) return SVC_ENOMEM;
  p->domain = env->domain;
  p->topic = env->topic;
  p->alerts_topic = env->alerts_topic;
  p->max_event_bytes = env->max_event_bytes;
  p->max_text_bytes = (size_t)st->max_text_bytes;
  p->cfg = (wk_records_cfg_t){.max_chunks = (size_t)st->max_chunks,
                              .top_evidence = (size_t)st->top_evidence,
                              .evidence = (wk_records_evidence_t)st->evidence,
                              .evidence_min_prob = (float)st->evidence_min_probability,
                              .evidence_chunks = (size_t)st->evidence_chunks};
  p->alert_min_prob = (float)st->alert_min_probability;
  p->threads = (size_t)st->threads;
  if (records__split_labels(p, st->alert_labels) != SVC_OK) {
    records__destroy(p);
    return SVC_ENOMEM;
  }
  p->metrics = env->metrics;
  p->metric_base = env->metric_base;
  if (p->metrics != NULL) {
    int b = p->metric_base;
    p->m_truncated = svc_metrics_series(p->metrics, b + WK_RECORDS_M_TRUNCATED, NULL);
    p->m_dropped = svc_metrics_series(p->metrics, b + WK_RECORDS_M_DROPPED, NULL);
    p->m_tokens = svc_metrics_series(p->metrics, b + WK_RECORDS_M_TOKENS, NULL);
    p->m_chunks = svc_metrics_series(p->metrics, b + WK_RECORDS_M_CHUNKS, NULL);
    p->m_evidence = svc_metrics_series(p->metrics, b + WK_RECORDS_M_EVIDENCE, NULL);
  }
  *out = p;
  return SVC_OK;
}

static void records__model_free(wk_pmodel_t *m) {
  if (m == NULL) return;
  for (size_t i = 0; m->scs != NULL && i < m->n_scs; i++) wk_records_scorer_free(m->scs[i]);
  free(m->scs);
  moe_model_free(m->model);
  free(m->alert);
  free(m->m_notes);
  free(m);
}

static svc_err_t records__model_open(wk_pipeline_t *p, const char *path, wk_pmodel_t **out,
                                     char *errstr, size_t errstr_size) {
  *out = NULL;
  char why[256];
  wk_pmodel_t *m = calloc(1, sizeof *m);
  if (m == NULL) return SVC_ENOMEM;
  svc_err_t err = SVC_ENOMEM;
  int rc = moe_model_load(path, &m->model, why, sizeof why);
  if (rc != MOE_OK) {
    snprintf(errstr, errstr_size, "%s: %s", path, why);
    err = rc == MOE_ENOENT ? SVC_ENOENT : rc == MOE_EIO ? SVC_EIO : rc == MOE_ENOMEM ? SVC_ENOMEM
                                                                                     : SVC_ECONFIG;
    goto fail;
  }
  if (moe_model_encoder(m->model) != MOE_ENCODER_TEXT) {
    snprintf(errstr, errstr_size, "%s: model %s has a %s encoder; the records pipeline needs a "
             "text classifier (encoder text, e.g. models/records-mtsamples.safetensors)", path,
             moe_model_version(m->model),
             moe_model_encoder(m->model) == MOE_ENCODER_TABULAR ? "tabular" : "sensor");
    err = SVC_ECONFIG;
    goto fail;
  }
  m->scs = calloc(p->threads, sizeof *m->scs);
  if (m->scs == NULL) goto fail;
  for (; m->n_scs < p->threads; m->n_scs++) {
    err = wk_records_scorer_new(m->model, &p->cfg, &m->scs[m->n_scs], why, sizeof why);
    if (err != SVC_OK) {
      snprintf(errstr, errstr_size, "%s: %s", path, why);
      goto fail;
    }
  }
  m->sc = m->scs[0];
  m->n_classes = moe_model_task(m->model) == MOE_TASK_BINARY ? 2 : moe_model_n_labels(m->model);
  m->alert = calloc((size_t)m->n_classes, sizeof *m->alert);
  m->m_notes = calloc((size_t)m->n_classes, sizeof *m->m_notes);
  if (m->alert == NULL || m->m_notes == NULL) {
    err = SVC_ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i < p->n_alert_labels; i++) {
    int k = 0;
    while (k < m->n_classes && strcmp(wk_records_label(m->sc, k), p->alert_labels[i]) != 0) k++;
    if (k == m->n_classes) {
      snprintf(errstr, errstr_size, "%s: records.alert_labels names \"%s\", which is not a label "
               "of model %s (first label: \"%s\")", path, p->alert_labels[i],
               moe_model_version(m->model), wk_records_label(m->sc, 0));
      err = SVC_ECONFIG;
      goto fail;
    }
    m->alert[k] = true;
  }
  for (int k = 0; k < m->n_classes && p->metrics != NULL; k++)
    m->m_notes[k] = svc_metrics_series1(p->metrics, p->metric_base + WK_RECORDS_M_NOTES,
                                        wk_records_label(m->sc, k));
  *out = m;
  return SVC_OK;
fail:
  records__model_free(m);
  return err;
}

static const char *records__model_version(const wk_pmodel_t *m) {
  return moe_model_version(m->model);
}

static size_t records__model_load_size(const wk_pmodel_t *m) {
  (void)m;
  return 0; /* per-expert load is not collected across a note's chunks */
}

static size_t records__model_info(const wk_pmodel_t *m, char *buf, size_t size) {
  int n = snprintf(buf, size, "records_model_labels:%d\nrecords_model_max_len:%d\n",
                   m->n_classes, moe_model_text_max_len(m->model));
  if (n < 0) n = 0;
  return (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

static void *records__accept(wk_pipeline_t *p, const wk_pmodel_t *serving,
                             const rd_kafka_message_t *msg, const uint8_t *value, size_t len,
                             wk_reject_t *rej) {
  (void)serving, (void)msg;
  return wk_records_decode(value, len, p->max_event_bytes, p->max_text_bytes, rej);
}

static void records__event_free(wk_pipeline_t *p, void *ev) {
  (void)p;
  sluice__v1__envelope__free_unpacked(ev, NULL);
}

/* The outbox alert of a note predicted as an alert label. */
static svc_err_t records__alert(wk_pipeline_t *p, const wk_pmodel_t *m,
                                const Sluice__V1__Envelope *env, const wk_records_analysis_t *an,
                                wk_stmt_t *stmt) {
  const Sluice__V1__ClinicalNote *note = env->clinical_note;
  const char *label = wk_records_label(m->sc, an->predicted);
  size_t idn = strlen(note->note_id) + strlen(label) + 16;
  char *id = malloc(idn), msg[512];
  if (id == NULL) return SVC_ENOMEM;
  snprintf(id, idn, "records:%s:%s", note->note_id, label);
  snprintf(msg, sizeof msg, "note %.128s predicted %.128s with probability %.4f", note->note_id,
           label, (double)an->probs[an->predicted]);
  Sluice__V1__Alert a = SLUICE__V1__ALERT__INIT;
  a.alert_id = id;
  a.domain = (char *)p->domain;
  a.key = note->note_id;
  a.kind = (char *)label;
  a.has_state = 1;
  a.state = SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING;
  a.has_score = 1;
  a.score = an->probs[an->predicted];
  a.event_id = env->event_id;
  a.has_at_ms = 1;
  a.at_ms = env->event_time_ms;
  a.message = msg;
  a.model_version = (char *)moe_model_version(m->model);
  size_t n = sluice__v1__alert__get_packed_size(&a);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf == NULL) {
    free(id);
    return SVC_ENOMEM;
  }
  sluice__v1__alert__pack(&a, buf);
  wk_outbox_row_t o = {.alert_id = id, .domain = p->domain, .key = note->note_id,
                       .topic = p->alerts_topic, .payload = buf, .payload_len = n};
  wk_stmt_add_outbox(stmt, &o);
  free(buf);
  free(id);
  return SVC_OK;
}

/* The analyses of one batch, shared by its analysis threads: each takes the next note. */
typedef struct {
  const wk_pmodel_t *m;
  void *const *evs;
  size_t n;
  wk_records_analysis_t *an; /* (n) */
  atomic_size_t next;
  atomic_int failed;      /* first failure stops the others */
  size_t bad;             /* the note that failed (set by the thread that failed first) */
  svc_err_t err;
  char why[256];
} records__batch_t;

typedef struct {
  records__batch_t *b;
  wk_records_scorer_t *sc;
} records__worker_t;

static void *records__analyze_some(void *arg) {
  records__worker_t *w = arg;
  records__batch_t *b = w->b;
  for (;;) {
    size_t i = atomic_fetch_add(&b->next, 1);
    if (i >= b->n || atomic_load(&b->failed)) break;
    const Sluice__V1__ClinicalNote *note = ((const Sluice__V1__Envelope *)b->evs[i])->clinical_note;
    char why[256] = "";
    svc_err_t err = wk_records_analyze(w->sc, note->text, strlen(note->text), &b->an[i], why,
                                       sizeof why);
    if (err != SVC_OK) {
      int expect = 0;
      if (atomic_compare_exchange_strong(&b->failed, &expect, 1)) {
        b->bad = i;
        b->err = err;
        snprintf(b->why, sizeof b->why, "%s", why[0] ? why : svc_strerror(err));
      }
      break;
    }
  }
  return NULL;
}

/* Analyses every note of the batch, on up to m->n_scs threads (this one included). */
static svc_err_t records__analyze_batch(records__batch_t *b) {
  size_t nt = b->m->n_scs < b->n ? b->m->n_scs : b->n;
  records__worker_t w[64];
  pthread_t th[64];
  size_t started = 0;
  for (size_t t = 0; t < nt; t++) w[t] = (records__worker_t){b, b->m->scs[t]};
  for (size_t t = 1; t < nt; t++, started++)
    if (pthread_create(&th[t], NULL, records__analyze_some, &w[t]) != 0) break;
  records__analyze_some(&w[0]); /* the notes no thread took, if a thread could not start */
  for (size_t t = 1; t <= started; t++) pthread_join(th[t], NULL);
  return atomic_load(&b->failed) ? b->err : SVC_OK;
}

static svc_err_t records__process(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs,
                                  const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                                  wk_batch_stats_t *stats, char *errstr, size_t errstr_size) {
  records__batch_t b = {.m = m, .evs = evs, .n = n};
  b.an = calloc(n, sizeof *b.an);
  if (b.an == NULL) return SVC_ENOMEM;
  atomic_init(&b.next, 0);
  atomic_init(&b.failed, 0);
  svc_err_t err = records__analyze_batch(&b);
  if (err != SVC_OK) {
    const Sluice__V1__Envelope *env = evs[b.bad];
    snprintf(errstr, errstr_size, "note %s (%s [%d] offset %lld): %s", env->clinical_note->note_id,
             p->topic, (int)msgs[b.bad]->partition, (long long)msgs[b.bad]->offset, b.why);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    const Sluice__V1__Envelope *env = evs[i];
    const Sluice__V1__ClinicalNote *note = env->clinical_note;
    const wk_records_analysis_t *an = &b.an[i];
    char *classes = NULL, *evidence = NULL, *sections = NULL;
    err = wk_records_row_json(m->sc, an, note->text, &classes, &evidence, &sections);
    if (err != SVC_OK) {
      snprintf(errstr, errstr_size, "note %s: %s", note->note_id, svc_strerror(err));
      goto out;
    }
    wk_stmt_row_begin(stmt, 0);
    wk_stmt_text(stmt, note->note_id);
    wk_stmt_text(stmt, note->patient_id != NULL && note->patient_id[0] ? note->patient_id : NULL);
    wk_stmt_text(stmt, moe_model_version(m->model));
    wk_stmt_text(stmt, wk_records_label(m->sc, an->predicted));
    wk_stmt_float4(stmt, an->probs[an->predicted]);
    wk_stmt_text(stmt, classes);
    wk_stmt_text(stmt, evidence);
    wk_stmt_text(stmt, sections);
    wk_stmt_int4(stmt, (int32_t)an->n_tokens);
    wk_stmt_int4(stmt, (int32_t)an->n_chunks);
    wk_stmt_bool(stmt, an->truncated);
    wk_stmt_int4(stmt, (int32_t)an->n_dropped);
    wk_stmt_int8(stmt, env->event_time_ms);
    wk_stmt_text(stmt, p->topic);
    wk_stmt_int4(stmt, msgs[i]->partition);
    wk_stmt_int8(stmt, msgs[i]->offset);
    wk_stmt_int8(stmt, records__text_hash(note->text));
    wk_stmt_row_end(stmt);
    free(classes);
    free(evidence);
    free(sections);
    if (m->alert[an->predicted] && an->probs[an->predicted] >= p->alert_min_prob) {
      if ((err = records__alert(p, m, env, an, stmt)) != SVC_OK) {
        snprintf(errstr, errstr_size, "note %s: alert: %s", note->note_id, svc_strerror(err));
        goto out;
      }
      stats->n_alerts++;
    }
    stats->n_scored++;
    stats->n_explained += an->n_evidence_rows > 0;
    stats->infer_ns += an->score_ns;
    stats->explain_ns += an->evidence_ns;
    svc_counter_add(m->m_notes[an->predicted], 1);
    svc_histogram_observe(p->m_tokens, (double)an->n_tokens);
    svc_histogram_observe(p->m_chunks, (double)an->n_chunks);
    if (an->n_evidence_rows > 0)
      svc_histogram_observe(p->m_evidence, (double)an->evidence_ns * 1e-9);
    if (an->truncated) {
      svc_counter_add(p->m_truncated, 1);
      svc_counter_add(p->m_dropped, an->n_dropped);
    }
  }
out:
  for (size_t i = 0; i < n; i++) wk_records_analysis_free(&b.an[i]);
  free(b.an);
  return err;
}

/* No per-key state: the core skips restore (pipeline-records.h). */
static const char *records__restore_sql(wk_pipeline_t *p) {
  (void)p;
  return NULL;
}
static int records__restore(wk_pipeline_t *p, const PGresult *res) {
  (void)p, (void)res;
  return 0;
}
static void records__discard(wk_pipeline_t *p) { (void)p; }
static void records__revoke(wk_pipeline_t *p, const int32_t *partitions, size_t n) {
  (void)p, (void)partitions, (void)n;
}
static size_t records__n_keys(const wk_pipeline_t *p) {
  (void)p;
  return 0;
}

const wk_pipeline_ops_t wk_pipeline_records = {
    .domain = "records",
    .tables = wk_records_tables,
    .n_tables = sizeof wk_records_tables / sizeof wk_records_tables[0],
    .metric_defs = wk_records_metric_defs,
    .n_metric_defs = WK_RECORDS_M__COUNT,
    .create = records__create,
    .destroy = records__destroy,
    .model_open = records__model_open,
    .model_free = records__model_free,
    .model_version = records__model_version,
    .model_load_size = records__model_load_size,
    .model_info = records__model_info,
    .accept = records__accept,
    .event_free = records__event_free,
    .process = records__process,
    .committed = NULL,
    .restore_sql = records__restore_sql,
    .restore = records__restore,
    .discard = records__discard,
    .revoke = records__revoke,
    .n_keys = records__n_keys,
};
