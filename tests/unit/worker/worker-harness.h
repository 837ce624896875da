/*
 * Shared harness of the worker's chaos tests (test-worker-chaos.c, test-worker-pg-restart.c):
 * runs the real sluice-worker binary against the real Kafka broker and PostgreSQL, produces
 * numbered card transactions (event id "ev-%06d", 10 cards, 3 partitions), and checks the
 * outcome from PostgreSQL: every produced event has exactly one result row, its score is what
 * the model of the row's version gives for the stored input (the test loads the model files
 * itself), its decision agrees with the thresholds, and each card's velocity history has no
 * gap and no repeat (v_n_seen counts 0, 1, 2, ... in offset order). Starting and stopping
 * the worker, HTTP, counts and Kafka producing are worker-proc.h's (wp_*).
 */
#ifndef TEST_WORKER_HARNESS_H
#define TEST_WORKER_HARNESS_H

#include <fcntl.h>
#include <math.h>

#include "fraud-input.h"
#include "fraud-model.h"
#include "scorer.h"
#include "sluice/v1/results.pb-c.h"
#include "worker-proc.h"

#define HX_CARDS 10
#define HX_PARTS 3

static const char *const hx_inputs[] = {"amount", "log_amount", "V14", "has_card",
                                        "v_count_1h", "v_amount_z", "v_n_seen"};
#define HX_N_INPUTS 7
#define HX_N_SEEN_INPUT 6 /* v_n_seen's index in hx_inputs */

/* The fraud worker needs nothing beyond the common context (its model file is c->model, a
 * temporary file the test writes). */
typedef wp_ctx_t hx_ctx_t;

#define HX_RESULTS_SQL "SELECT count(*) FROM \"%s\".results"

/* Fresh topics, group, schema and port for one test; `tag` names them. */
static inline void hx_init(hx_ctx_t *c, const char *tag) {
  wp_init(c, "wk", tag, HX_PARTS, false);
  snprintf(c->model, sizeof c->model, "/tmp/wk-%s-%ld.safetensors", tag, (long)getpid());
}

/* Event i as a packed Envelope into buf (card i % HX_CARDS, key = card). Returns its size. */
static inline size_t hx_event(int i, uint8_t *buf, char *card, size_t card_size) {
  char id[32];
  float v[WK_FRAUD_N_PRECOMPUTED];
  snprintf(id, sizeof id, "ev-%06d", i);
  snprintf(card, card_size, "card-%02d", i % HX_CARDS);
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  env.event_id = id;
  env.key = card;
  env.has_event_time_ms = 1;
  env.event_time_ms = 1700000000000LL + (int64_t)i * 7000;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env.transaction = &tx;
  tx.has_amount = 1;
  tx.amount = 5.0 + (i * 37) % 400;
  tx.card_id = card;
  for (int k = 0; k < WK_FRAUD_N_PRECOMPUTED; k++) v[k] = (float)((i + k) % 7) - 3.0f;
  tx.n_features = WK_FRAUD_N_PRECOMPUTED;
  tx.features = v;
  return sluice__v1__envelope__pack(&env, buf);
}

/* Produces good events first .. first+n-1. */
static inline void hx_produce(const hx_ctx_t *c, int first, int n) {
  rd_kafka_t *rk = wp_producer(c);
  for (int i = first; i < first + n; i++) {
    uint8_t buf[512];
    char card[32];
    size_t len = hx_event(i, buf, card, sizeof card);
    wp_send(rk, c->topic, card, buf, len);
  }
  wp_flush(rk);
  rd_kafka_destroy(rk);
}

/* Starts the fraud worker (the fraud-only topic flags, batches of 64). */
static inline pid_t hx_start(const hx_ctx_t *c) {
  const char *const flags[] = {"--fraud-topic", c->topic, "--fraud-dlq-topic", c->dlq,
                               "--batch-max", "64", NULL};
  return wp_start(c, c->port, flags);
}

static inline long hx_results(PGconn *conn, const hx_ctx_t *c) {
  return wp_count(conn, HX_RESULTS_SQL, c->schema);
}

/* Waits until the results table holds at least `want` rows; fails after `secs` or if the
 * worker exits. */
static inline void hx_wait_results(PGconn *conn, const hx_ctx_t *c, long want, pid_t pid,
                                   int secs) {
  wp_wait_count(conn, c, HX_RESULTS_SQL, want, &pid, 1, secs);
}

static inline void hx_copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(in >= 0 && out >= 0);
  char buf[65536];
  ssize_t k;
  while ((k = read(in, buf, sizeof buf)) > 0) ASSERT_EQ(write(out, buf, (size_t)k), k);
  close(in);
  close(out);
}

/* Replaces the worker's model file atomically (a watcher never sees half a file). */
static inline void hx_install_model(const hx_ctx_t *c, const char *from) {
  char tmp[sizeof c->model + 8];
  snprintf(tmp, sizeof tmp, "%s.tmp", c->model);
  hx_copy_file(from, tmp);
  ASSERT_OK(rename(tmp, c->model));
}

/* A model the test scores with itself, with the worker's default thresholds. */
typedef struct hx_model_s {
  const char *version;
  wk_scorer_t *sc;
  wk_scorer_session_t *sess;
} hx_model_t;

static inline void hx_model_open(hx_model_t *m, const char *path) {
  char err[512];
  ASSERT_MSG(wk_scorer_moe_open(path, 1, &m->sc, err, sizeof err) == SVC_OK, "%s", err);
  ASSERT_OK(m->sc->session_new(m->sc, &m->sess));
  m->version = m->sc->version;
}

static inline void hx_model_close(hx_model_t *m) {
  m->sc->session_free(m->sess);
  wk_scorer_free(m->sc);
}

/*
 * Every event first .. first+n-1 has exactly one result and nothing else is there; each row's
 * score is its model's score of the stored input (models[] by version), its decision follows
 * the thresholds (block from the model card's threshold, review from half of it), and the
 * velocity history of every card counts 0, 1, 2, ... in offset order. Returns the rows per
 * model version in per_version[] (same order as models).
 */
static inline void hx_check_results(PGconn *conn, const hx_ctx_t *c, int first, int n,
                             hx_model_t *models, int n_models, long *per_version) {
  ASSERT_EQ(hx_results(conn, c), n);
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT count(DISTINCT event_id), min(event_id), max(event_id) FROM \"%s\".results",
      c->schema);
  char lo[32], hi[32];
  snprintf(lo, sizeof lo, "ev-%06d", first);
  snprintf(hi, sizeof hi, "ev-%06d", first + n - 1);
  ASSERT_EQ(atol(PQgetvalue(res, 0, 0)), n); /* n distinct ids in [lo, hi]: each exactly once */
  ASSERT_STR_EQ(PQgetvalue(res, 0, 1), lo);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 2), hi);
  PQclear(res);
  res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT key, event_id, score, decision, model_version, input FROM \"%s\".results "
      "ORDER BY key, partition, \"offset\"",
      c->schema);
  for (int v = 0; v < n_models; v++) per_version[v] = 0;
  char prev_key[64] = "";
  long seen = 0;
  for (int i = 0; i < PQntuples(res); i++) {
    const char *key = PQgetvalue(res, i, 0), *id = PQgetvalue(res, i, 1);
    const char *version = PQgetvalue(res, i, 4), *decision = PQgetvalue(res, i, 3);
    int v = 0;
    while (v < n_models && strcmp(models[v].version, version) != 0) v++;
    ASSERT_MSG(v < n_models, "%s: unknown model version %s", id, version);
    per_version[v]++;
    float x[HX_N_INPUTS];
    ASSERT_EQ(wp_parse_reals(PQgetvalue(res, i, 5), x, HX_N_INPUTS), HX_N_INPUTS);
    wk_score_t s;
    char err[256];
    ASSERT_OK(models[v].sc->score(models[v].sess, x, 1, &s, NULL, err, sizeof err));
    double stored = atof(PQgetvalue(res, i, 2));
    ASSERT_MSG(fabs(stored - (double)s.score) <= 1e-5, "%s: stored score %g, model %s gives %g",
               id, stored, version, (double)s.score);
    float block = models[v].sc->threshold, review = block / 2;
    const char *want = s.score >= block ? "block" : s.score >= review ? "review" : "allow";
    ASSERT_MSG(strcmp(decision, want) == 0, "%s: decision %s for score %g, expected %s", id,
               decision, (double)s.score, want);
    if (strcmp(key, prev_key) != 0) {
      snprintf(prev_key, sizeof prev_key, "%s", key);
      seen = 0;
    }
    ASSERT_MSG(x[HX_N_SEEN_INPUT] == (float)seen, "%s (%s): v_n_seen %g, expected %ld", id, key,
               (double)x[HX_N_SEEN_INPUT], seen);
    seen++;
  }
  PQclear(res);
}

#endif /* TEST_WORKER_HARNESS_H */
