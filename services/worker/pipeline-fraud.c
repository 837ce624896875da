/*
 * The fraud pipeline as wk_pipeline_ops_t: decoding and validation, the card store and its
 * velocity state, the model adapter (scorer, feature map, thresholds), scoring and
 * explanations on the thread pool, decisions, alerts, and its rows of the batch statement.
 * The contract is in pipeline-fraud.h and pipeline.h.
 */
#include "pipeline-fraud.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "card-store.h"
#include "fraud-input.h"
#include "scorer.h"
#include "sluice/v1/results.pb-c.h"
#include "svc/log.h"
#include <uv.h>

/* ---- the tables and their rows -------------------------------------------------------- */

static const wk_col_t fraud__result_cols[] = {
    {"domain", WK_COL_TEXT},        {"event_id", WK_COL_TEXT},      {"key", WK_COL_TEXT},
    {"score", WK_COL_FLOAT4},       {"decision", WK_COL_TEXT},      {"model_version", WK_COL_TEXT},
    {"experts", WK_COL_JSONB},      {"top_features", WK_COL_JSONB}, {"input", WK_COL_REALS},
    {"event_time", WK_COL_TIME_MS}, {"topic", WK_COL_TEXT},         {"partition", WK_COL_INT4},
    {"offset", WK_COL_INT8}};

static const wk_col_t fraud__card_cols[] = {{"card_id", WK_COL_TEXT},
                                            {"topic", WK_COL_TEXT},
                                            {"partition", WK_COL_INT4},
                                            {"last_offset", WK_COL_INT8},
                                            {"state", WK_COL_BYTEA}};

/*
 * results: the stored offsets are the first defence against a replay, ON CONFLICT the second
 * (duplicates inside one batch are skipped too). card_state: one row per card per batch (the
 * builder merges on card_id, the highest last_offset winning), upserted only when the stored row is older or belongs to
 * another partition, so that a stale or repeated batch cannot roll a card back.
 */
const wk_table_t wk_fraud_tables[WK_FRAUD_N_TABLES] = {
    {.name = "results", .role = WK_TABLE_RESULTS, .cols = fraud__result_cols,
     .n_cols = sizeof fraud__result_cols / sizeof fraud__result_cols[0], .key_cols = 0,
     .on_conflict = "ON CONFLICT (domain, event_id) DO NOTHING"},
    {.name = "card_state", .role = WK_TABLE_STATE, .cols = fraud__card_cols,
     .n_cols = sizeof fraud__card_cols / sizeof fraud__card_cols[0], .key_cols = 1,
     .on_conflict = "ON CONFLICT (card_id) DO UPDATE SET topic = EXCLUDED.topic,\n"
                    "    partition = EXCLUDED.partition, last_offset = EXCLUDED.last_offset,\n"
                    "    state = EXCLUDED.state, updated_at = now()\n"
                    "  WHERE (t.topic, t.partition) IS DISTINCT FROM (EXCLUDED.topic, "
                    "EXCLUDED.partition)\n"
                    "     OR t.last_offset < EXCLUDED.last_offset",
     .merge_by = "last_offset"},
};

const char *wk_decision_name(wk_decision_t d) {
  switch (d) {
  case WK_DECISION_ALLOW: return "allow";
  case WK_DECISION_REVIEW: return "review";
  case WK_DECISION_BLOCK: return "block";
  }
  return NULL;
}

static const char *fraud__required(const char *s, const char *field) {
  if (s == NULL) {
    fprintf(stderr, "wk_fraud: required field %s is NULL\n", field);
    abort();
  }
  return s;
}

void wk_fraud_add_result(wk_stmt_t *st, const wk_result_row_t *r) {
  const char *decision = wk_decision_name(r->decision);
  if (decision == NULL) {
    fprintf(stderr, "wk_fraud_add_result: decision %d is not allow/review/block\n",
            (int)r->decision);
    abort();
  }
  wk_stmt_row_begin(st, WK_FRAUD_TABLE_RESULTS);
  wk_stmt_text(st, fraud__required(r->domain, "domain"));
  wk_stmt_text(st, fraud__required(r->event_id, "event_id"));
  wk_stmt_text(st, r->key ? r->key : "");
  wk_stmt_float4(st, r->score);
  wk_stmt_text(st, decision);
  wk_stmt_text(st, fraud__required(r->model_version, "model_version"));
  wk_stmt_text(st, r->experts_json ? r->experts_json : "[]");
  wk_stmt_text(st, r->top_features_json ? r->top_features_json : "[]");
  wk_stmt_reals(st, r->input, r->n_input);
  wk_stmt_int8(st, r->event_time_ms);
  wk_stmt_text(st, fraud__required(r->topic, "topic"));
  wk_stmt_int4(st, r->partition);
  wk_stmt_int8(st, r->offset);
  wk_stmt_row_end(st);
}

void wk_fraud_add_state(wk_stmt_t *st, const wk_state_row_t *s) {
  wk_stmt_row_begin(st, WK_FRAUD_TABLE_CARDS);
  wk_stmt_text(st, fraud__required(s->card_id, "card_id"));
  wk_stmt_text(st, fraud__required(s->topic, "topic"));
  wk_stmt_int4(st, s->partition);
  wk_stmt_int8(st, s->last_offset);
  wk_stmt_bytes(st, s->state, s->state_len);
  wk_stmt_row_end(st);
}

void wk_fraud_settings_default(wk_fraud_settings_t *s) {
  s->review_threshold = -1;
  s->block_threshold = -1;
  s->explain_threshold = -1;
}

/* ---- metrics -------------------------------------------------------------------------- */

#define FRAUD_METRICS(XX)                                                                    \
  XX(FRAUD_M_DECISIONS, "sluice_decisions_total", SVC_COUNTER, "events", "decision", 4,      \
     SVC_BUCKETS_NONE, "Fraud decisions taken, by decision.")                                \
  XX(FRAUD_M_CARDS, "sluice_cards_in_memory", SVC_GAUGE, "cards", "", 0, SVC_BUCKETS_NONE,   \
     "Cards whose velocity state is held in memory.")

enum { FRAUD_METRICS(SVC_METRIC_ENUM) FRAUD_M__COUNT };
static const svc_metric_def_t fraud__metric_defs[] = {FRAUD_METRICS(SVC_METRIC_DEF)};

/* ---- state ---------------------------------------------------------------------------- */

struct wk_pipeline_s {
  const char *domain, *topic, *alerts_topic, *pg_schema;
  size_t max_event_bytes, batch_max;
  wk_fraud_settings_t set;
  wk_card_store_t cards;
  struct fraud_event_s *free_events; /* recycled events (loop thread; see fraud_accept) */
  char restore_sql[512];
  svc_series_t *m_decision[4];
  svc_series_t *m_cards;
  /* Scratch of process (one call at a time): model inputs and scores of one batch. */
  float *x;
  size_t x_cap;
  wk_score_t *scores;
  size_t scores_cap;
};

/*
 * A loaded model with what is derived from it: the scorer (which refuses a file that is not
 * a binary tabular model over fraud features), the feature map (which refuses inputs the
 * builder does not produce), one session (process is one call at a time) and the thresholds.
 */
struct wk_pmodel_s {
  wk_scorer_t *scorer;
  wk_scorer_session_t *sess;
  wk_feature_map_t fmap;
  int fmap_open;
  float review_thr, block_thr, explain_thr;
};

typedef struct fraud_event_s {
  struct fraud_event_s *next_free; /* in wk_pipeline_s.free_events */
  Sluice__V1__Envelope *env;
  int32_t partition;
  int64_t offset;
  int has_state;
  uint16_t state_len;
  wk_decision_t decision;             /* set by process, read by committed */
  uint8_t state[WK_VEL_ENCODED_MAX];  /* (state_len) the card's state after this event */
  float feats[WK_FRAUD_N_FEATURES];
} fraud_event_t;

static svc_err_t fraud_create(const wk_pipeline_env_t *env, wk_pipeline_t **out, char *errstr,
                              size_t errstr_size) {
  wk_pipeline_t *p = calloc(1, sizeof *p);
  if (p == NULL) return SVC_ENOMEM;
  p->domain = env->domain;
  p->topic = env->topic;
  p->alerts_topic = env->alerts_topic;
  p->pg_schema = env->pg_schema;
  p->max_event_bytes = env->max_event_bytes;
  p->batch_max = env->batch_max;
  if (env->settings) p->set = *(const wk_fraud_settings_t *)env->settings;
  else wk_fraud_settings_default(&p->set);
  if (p->set.review_threshold >= 0 && p->set.block_threshold >= 0 &&
      p->set.review_threshold > p->set.block_threshold) {
    snprintf(errstr, errstr_size,
             "fraud.review_threshold %.3f is above fraud.block_threshold %.3f",
             p->set.review_threshold, p->set.block_threshold);
    free(p);
    return SVC_ECONFIG;
  }
  wk_card_store_init(&p->cards);
  snprintf(p->restore_sql, sizeof p->restore_sql,
           "SELECT card_id, partition, last_offset, encode(state, 'hex') FROM \"%s\".card_state "
           "WHERE topic = $1 AND partition = ANY($2::integer[])",
           env->pg_schema);
  for (int d = WK_DECISION_ALLOW; d <= WK_DECISION_BLOCK; d++)
    p->m_decision[d] = svc_metrics_series1(env->metrics, env->metric_base + FRAUD_M_DECISIONS,
                                           wk_decision_name(d));
  p->m_cards = svc_metrics_series(env->metrics, env->metric_base + FRAUD_M_CARDS, NULL);
  svc_gauge_set(p->m_cards, 0);
  *out = p;
  return SVC_OK;
}

static void fraud_destroy(wk_pipeline_t *p) {
  if (p == NULL) return;
  while (p->free_events) {
    struct fraud_event_s *e = p->free_events;
    p->free_events = e->next_free;
    free(e);
  }
  wk_card_store_close(&p->cards);
  free(p->x);
  free(p->scores);
  free(p);
}

/* ---- the model ------------------------------------------------------------------------ */

static void fraud_model_free(wk_pmodel_t *m) {
  if (m == NULL) return;
  if (m->scorer && m->sess) m->scorer->session_free(m->sess);
  if (m->fmap_open) wk_feature_map_close(&m->fmap);
  wk_scorer_free(m->scorer);
  free(m);
}

static svc_err_t fraud_model_open(wk_pipeline_t *p, const char *path, wk_pmodel_t **out,
                                  char *errstr, size_t errstr_size) {
  wk_pmodel_t *m = calloc(1, sizeof *m);
  if (m == NULL) return SVC_ENOMEM;
  svc_err_t err = wk_scorer_moe_open(path, p->batch_max, &m->scorer, errstr, errstr_size);
  if (err) goto fail;
  err = wk_feature_map_init(&m->fmap, m->scorer->input_names, m->scorer->n_inputs, errstr,
                            errstr_size);
  if (err) goto fail;
  m->fmap_open = 1;
  err = m->scorer->session_new(m->scorer, &m->sess);
  if (err) {
    snprintf(errstr, errstr_size, "%s: scorer session: %s", path, svc_strerror(err));
    goto fail;
  }
  const wk_fraud_settings_t *s = &p->set;
  m->block_thr = (float)(s->block_threshold >= 0 ? s->block_threshold : m->scorer->threshold);
  m->review_thr = (float)(s->review_threshold >= 0 ? s->review_threshold : m->block_thr / 2);
  m->explain_thr = (float)(s->explain_threshold >= 0 ? s->explain_threshold : m->review_thr);
  if (m->review_thr > m->block_thr) {
    snprintf(errstr, errstr_size, "%s: review threshold %.3f is above the block threshold %.3f",
             path, (double)m->review_thr, (double)m->block_thr);
    err = SVC_ECONFIG;
    goto fail;
  }
  *out = m;
  return SVC_OK;
fail:
  fraud_model_free(m);
  return err;
}

static const char *fraud_model_version(const wk_pmodel_t *m) { return m->scorer->version; }
static size_t fraud_model_load_size(const wk_pmodel_t *m) { return m->scorer->load_size; }

static size_t fraud_model_info(const wk_pmodel_t *m, char *buf, size_t size) {
  int n = snprintf(buf, size,
                   "model_inputs:%zu\nblock_threshold:%g\nreview_threshold:%g\n"
                   "explain_threshold:%g\n",
                   m->scorer->n_inputs, (double)m->block_thr, (double)m->review_thr,
                   (double)m->explain_thr);
  return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static wk_decision_t fraud__decide(const wk_pmodel_t *m, float score) {
  if (score >= m->block_thr) return WK_DECISION_BLOCK;
  if (score >= m->review_thr) return WK_DECISION_REVIEW;
  return WK_DECISION_ALLOW;
}

/* ---- events --------------------------------------------------------------------------- */

static void fraud_event_free(wk_pipeline_t *p, void *ev) {
  fraud_event_t *e = ev;
  if (e == NULL) return;
  if (e->env) sluice__v1__envelope__free_unpacked(e->env, NULL);
  e->env = NULL;
  e->next_free = p->free_events;
  p->free_events = e;
}

static void *fraud_accept(wk_pipeline_t *p, const wk_pmodel_t *serving,
                          const rd_kafka_message_t *msg, const uint8_t *value, size_t len,
                          wk_reject_t *rej) {
  (void)serving;
  /* Events are recycled (accept and event_free both run on the loop thread): an allocation
   * and a free per event were a measurable share of the worker's CPU. */
  Sluice__V1__Envelope *env = wk_fraud_decode(value, len, p->max_event_bytes, rej);
  if (env == NULL) return NULL;
  fraud_event_t *ev = p->free_events;
  if (ev != NULL) {
    p->free_events = ev->next_free;
  } else if ((ev = malloc(sizeof *ev)) == NULL) {
    /* not the event's fault: no dead letter (the card store aborts too) */
    fprintf(stderr, "wk_fraud: out of memory\n");
    abort();
  }
  ev->next_free = NULL;
  ev->env = env;
  ev->has_state = 0;
  ev->decision = 0;
  ev->partition = msg->partition;
  ev->offset = msg->offset;
  const Sluice__V1__Transaction *tx = ev->env->transaction;
  float vel[WK_VEL_N_FEATURES];
  const float *velp = NULL;
  if (tx->card_id != NULL && tx->card_id[0] != '\0') {
    int created = 0;
    wk_card_t *card = wk_card_store_get(&p->cards, tx->card_id, msg->partition, &created);
    if (msg->offset > card->last_offset) {
      wk_velocity_observe(&card->vel, ev->env->event_time_ms, tx->amount, vel);
      card->last_offset = msg->offset;
    } else {
      /* Already folded into the restored state (a replay): features only. */
      wk_velocity_features(&card->vel, ev->env->event_time_ms, tx->amount, vel);
    }
    card->partition = msg->partition;
    ev->state_len = (uint16_t)wk_velocity_encode(&card->vel, ev->state, sizeof ev->state);
    ev->has_state = 1;
    velp = vel;
    if (created) svc_gauge_set(p->m_cards, (double)p->cards.n);
  }
  wk_fraud_build(ev->env, velp, ev->feats);
  return ev;
}

/* ---- scoring and rows ----------------------------------------------------------------- */

static bool fraud__scratch(wk_pipeline_t *p, size_t n, size_t width) {
  if (n * width > p->x_cap) {
    float *x = realloc(p->x, n * width * sizeof *x);
    if (x == NULL) return false;
    p->x = x;
    p->x_cap = n * width;
  }
  if (n > p->scores_cap) {
    wk_score_t *s = realloc(p->scores, n * sizeof *s);
    if (s == NULL) return false;
    p->scores = s;
    p->scores_cap = n;
  }
  memset(p->scores, 0, n * sizeof *p->scores);
  return true;
}

/* The block alert of one event into the outbox. */
static void fraud__alert(wk_pipeline_t *p, const wk_pmodel_t *m, const fraud_event_t *ev,
                         float score, wk_stmt_t *stmt) {
  char alert_id[256], text[128];
  snprintf(alert_id, sizeof alert_id, "%s:%s", p->domain, ev->env->event_id);
  snprintf(text, sizeof text, "score %.3f at or above the block threshold %.3f", (double)score,
           (double)m->block_thr);
  Sluice__V1__Alert a = SLUICE__V1__ALERT__INIT;
  a.alert_id = alert_id;
  a.domain = (char *)p->domain;
  a.key = ev->env->key ? ev->env->key : (char *)"";
  a.kind = (char *)"fraud";
  a.has_state = 1;
  a.state = SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING;
  a.has_score = 1;
  a.score = score;
  a.event_id = ev->env->event_id;
  a.has_at_ms = 1;
  a.at_ms = ev->env->event_time_ms;
  a.message = text;
  a.model_version = (char *)m->scorer->version;
  uint8_t payload[1024];
  size_t len = sluice__v1__alert__get_packed_size(&a);
  if (len > sizeof payload) return; /* ids are at most 128 bytes: cannot happen */
  sluice__v1__alert__pack(&a, payload);
  wk_outbox_row_t o = {.alert_id = alert_id, .domain = p->domain, .key = a.key,
                       .topic = p->alerts_topic, .payload = payload, .payload_len = len};
  wk_stmt_add_outbox(stmt, &o);
}

static svc_err_t fraud_process(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs,
                               const rd_kafka_message_t *const *msgs, size_t n, wk_stmt_t *stmt,
                               wk_batch_stats_t *stats, char *errstr, size_t errstr_size) {
  (void)msgs;
  const wk_scorer_t *sc = m->scorer;
  size_t width = sc->n_inputs;
  if (!fraud__scratch(p, n, width)) {
    snprintf(errstr, errstr_size, "fraud: out of memory for a batch of %zu", n);
    return SVC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const fraud_event_t *ev = evs[i];
    wk_feature_map_apply(&m->fmap, ev->feats, &p->x[i * width]);
  }
  uint64_t t0 = uv_hrtime();
  svc_err_t err = sc->score(m->sess, p->x, n, p->scores, stats->expert_load, errstr,
                            errstr_size);
  stats->infer_ns = uv_hrtime() - t0;
  if (err != SVC_OK) return err;
  /* Explanations cost about one scoring per input: only for the rows someone will look at. */
  if (sc->explain != NULL) {
    uint64_t t1 = uv_hrtime();
    for (size_t i = 0; i < n; i++) {
      if (p->scores[i].score < m->explain_thr) continue;
      err = sc->explain(m->sess, &p->x[i * width], &p->scores[i], errstr, errstr_size);
      if (err != SVC_OK) return err;
      stats->n_explained++;
    }
    stats->explain_ns = uv_hrtime() - t1;
  }
  for (size_t i = 0; i < n; i++) {
    fraud_event_t *ev = evs[i];
    const wk_score_t *s = &p->scores[i];
    const Sluice__V1__Transaction *tx = ev->env->transaction;
    ev->decision = fraud__decide(m, s->score);
    char experts[512], features[1024];
    wk_score_experts_json(s, experts, sizeof experts);
    wk_score_features_json(s, sc->input_names, features, sizeof features);
    wk_result_row_t r = {.domain = p->domain, .event_id = ev->env->event_id,
                         .key = ev->env->key, .score = s->score, .decision = ev->decision,
                         .model_version = sc->version, .experts_json = experts,
                         .top_features_json = features, .input = &p->x[i * width],
                         .n_input = width, .event_time_ms = ev->env->event_time_ms,
                         .topic = p->topic, .partition = ev->partition, .offset = ev->offset};
    wk_fraud_add_result(stmt, &r);
    if (ev->has_state) {
      wk_state_row_t st = {.card_id = tx->card_id, .topic = p->topic,
                           .partition = ev->partition, .last_offset = ev->offset,
                           .state = ev->state, .state_len = ev->state_len};
      wk_fraud_add_state(stmt, &st);
    }
    if (ev->decision == WK_DECISION_BLOCK) {
      fraud__alert(p, m, ev, s->score, stmt);
      stats->n_alerts++;
    }
    stats->n_scored++;
  }
  return SVC_OK;
}

static void fraud_committed(wk_pipeline_t *p, const wk_pmodel_t *m, void *const *evs, size_t n) {
  (void)m;
  for (size_t i = 0; i < n; i++) {
    const fraud_event_t *ev = evs[i];
    if (ev->decision >= WK_DECISION_ALLOW && ev->decision <= WK_DECISION_BLOCK)
      svc_counter_add(p->m_decision[ev->decision], 1);
  }
}

/* ---- restore -------------------------------------------------------------------------- */

static const char *fraud_restore_sql(wk_pipeline_t *p) { return p->restore_sql; }

static int fraud__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Loads card_state rows (card_id, partition, last_offset, hex state) into the card store. */
static int fraud_restore(wk_pipeline_t *p, const PGresult *res) {
  int n = PQntuples(res), bad = 0;
  for (int i = 0; i < n; i++) {
    const char *id = PQgetvalue(res, i, 0);
    int32_t part = (int32_t)atoi(PQgetvalue(res, i, 1));
    int64_t last = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    const char *hex = PQgetvalue(res, i, 3);
    size_t hl = strlen(hex);
    uint8_t buf[WK_VEL_ENCODED_MAX];
    wk_card_t *card = wk_card_store_get(&p->cards, id, part, NULL);
    char derr[256] = "hex length";
    svc_err_t de = SVC_EDECODE;
    if (hl % 2 == 0 && hl <= 2 * sizeof buf) {
      size_t j = 0, n_bytes = hl / 2;
      for (; j < n_bytes; j++) {
        int hi = fraud__hexval(hex[2 * j]), lo = fraud__hexval(hex[2 * j + 1]);
        if (hi < 0 || lo < 0) break;
        buf[j] = (uint8_t)(hi << 4 | lo);
      }
      if (j == n_bytes) de = wk_velocity_decode(&card->vel, buf, n_bytes, derr, sizeof derr);
    }
    if (de != SVC_OK) {
      /* A state this worker cannot read starts afresh rather than stopping the partition. */
      bad++;
      wk_velocity_init(&card->vel);
      SVC_LOG(SVC_LOG_WARN, "card state unreadable, starting it empty", "card=\"%s\" err=\"%s\"",
              id, derr);
    }
    card->partition = part;
    card->last_offset = last;
  }
  svc_gauge_set(p->m_cards, (double)p->cards.n);
  return bad;
}

static void fraud_discard(wk_pipeline_t *p) {
  wk_card_store_close(&p->cards);
  wk_card_store_init(&p->cards);
  svc_gauge_set(p->m_cards, 0);
}

static void fraud_revoke(wk_pipeline_t *p, const int32_t *partitions, size_t n) {
  for (size_t i = 0; i < n; i++) wk_card_store_drop_partition(&p->cards, partitions[i]);
  svc_gauge_set(p->m_cards, (double)p->cards.n);
}

static size_t fraud_n_keys(const wk_pipeline_t *p) { return p->cards.n; }

const wk_pipeline_ops_t wk_pipeline_fraud = {
    .domain = "fraud",
    .tables = wk_fraud_tables,
    .n_tables = WK_FRAUD_N_TABLES,
    .metric_defs = fraud__metric_defs,
    .n_metric_defs = FRAUD_M__COUNT,
    .create = fraud_create,
    .destroy = fraud_destroy,
    .model_open = fraud_model_open,
    .model_free = fraud_model_free,
    .model_version = fraud_model_version,
    .model_load_size = fraud_model_load_size,
    .model_info = fraud_model_info,
    .accept = fraud_accept,
    .event_free = fraud_event_free,
    .process = fraud_process,
    .committed = fraud_committed,
    .restore_sql = fraud_restore_sql,
    .restore = fraud_restore,
    .discard = fraud_discard,
    .revoke = fraud_revoke,
    .n_keys = fraud_n_keys,
};
