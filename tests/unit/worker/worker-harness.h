/*
 * Shared harness of the worker's chaos tests (test-worker-chaos.c, test-worker-pg-restart.c):
 * runs the real sluice-worker binary against the real Kafka broker and PostgreSQL, produces
 * numbered card transactions (event id "ev-%06d", 10 cards, 3 partitions), and checks the
 * outcome from PostgreSQL: every produced event has exactly one result row, its score is what
 * the model of the row's version gives for the stored input (the test loads the model files
 * itself), its decision agrees with the thresholds, and each card's velocity history has no
 * gap and no repeat (v_n_seen counts 0, 1, 2, ... in offset order).
 */
#ifndef TEST_WORKER_HARNESS_H
#define TEST_WORKER_HARNESS_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "fraud-input.h"
#include "fraud-model.h"
#include "scorer.h"
#include "sluice/v1/results.pb-c.h"
#include "svc/kafka.h"

#define HX_CARDS 10
#define HX_PARTS 3

static const char *const hx_inputs[] = {"amount", "log_amount", "V14", "has_card",
                                        "v_count_1h", "v_amount_z", "v_n_seen"};
#define HX_N_INPUTS 7
#define HX_N_SEEN_INPUT 6 /* v_n_seen's index in hx_inputs */

typedef struct hx_ctx_s {
  const char *brokers, *dsn;
  char topic[128], dlq[128], group[128], schema[96], model[256];
  unsigned port;
  const char *extra[8]; /* more flags for the worker, NULL-terminated */
} hx_ctx_t;

static inline unsigned hx_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  socklen_t len = sizeof sa;
  ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
  close(fd);
  return ntohs(sa.sin_port);
}

/* Fresh topics, group, schema and port for one test; `tag` names them. */
static inline void hx_init(hx_ctx_t *c, const char *tag) {
  memset(c, 0, sizeof *c);
  c->brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c->dsn = test_require_env("SLUICE_PG_DSN");
  char p[64];
  snprintf(p, sizeof p, "wk-%s-events", tag);
  test_unique_name(c->topic, sizeof c->topic, p);
  snprintf(p, sizeof p, "wk-%s-dlq", tag);
  test_unique_name(c->dlq, sizeof c->dlq, p);
  snprintf(p, sizeof p, "wk-%s-group", tag);
  test_unique_name(c->group, sizeof c->group, p);
  snprintf(c->schema, sizeof c->schema, "wk_%s_%ld_%ld", tag, (long)getpid(), (long)time(NULL));
  snprintf(c->model, sizeof c->model, "/tmp/wk-%s-%ld.safetensors", tag, (long)getpid());
  c->port = hx_free_port();
  char err[512];
  ASSERT_MSG(kq_topic_create(c->brokers, c->topic, HX_PARTS, 1, 20000, err, sizeof err) ==
                 SVC_OK, "%s", err);
  ASSERT_MSG(kq_topic_create(c->brokers, c->dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
}

static inline rd_kafka_t *hx_producer(const hx_ctx_t *c) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  return rk;
}

static inline void hx_send(rd_kafka_t *rk, const hx_ctx_t *c, const char *key, const void *val,
                    size_t len) {
  ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
}

static inline void hx_flush(rd_kafka_t *rk) {
  ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
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
  rd_kafka_t *rk = hx_producer(c);
  for (int i = first; i < first + n; i++) {
    uint8_t buf[512];
    char card[32];
    size_t len = hx_event(i, buf, card, sizeof card);
    hx_send(rk, c, card, buf, len);
  }
  hx_flush(rk);
  rd_kafka_destroy(rk);
}

static inline pid_t hx_start(const hx_ctx_t *c) {
  char bin[512], port[16];
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_NOT_NULL(bdir);
  snprintf(bin, sizeof bin, "%s/bin/sluice-worker", bdir);
  snprintf(port, sizeof port, "%u", c->port);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failing test aborts: the worker must not outlive it */
    setenv("SLUICE_KAFKA_BROKERS", c->brokers, 1);
    setenv("SLUICE_PG_DSN", c->dsn, 1);
    char *argv[48] = {bin,
                      "--kafka-group", (char *)c->group,
                      "--fraud-topic", (char *)c->topic,
                      "--fraud-dlq-topic", (char *)c->dlq,
                      "--pg-schema", (char *)c->schema,
                      "--http-address", "127.0.0.1",
                      "--http-port", port,
                      "--model-path", (char *)c->model,
                      "--batch-max", "64",
                      "--batch-wait", "10ms",
                      "--log-level", "warn"};
    int n = 21;
    for (int i = 0; c->extra[i] && i < 8; i++) argv[n++] = (char *)c->extra[i];
    argv[n] = NULL;
    execv(bin, argv);
    perror("execv sluice-worker");
    _exit(127);
  }
  return pid;
}

static inline int hx_stop(pid_t pid) {
  ASSERT_OK(kill(pid, SIGTERM));
  int status = 0;
  for (int i = 0; i < 600; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      ASSERT_MSG(WIFEXITED(status), "worker died by signal %d", WTERMSIG(status));
      return WEXITSTATUS(status);
    }
    usleep(50000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  ASSERT_MSG(0, "worker did not stop within 30 s of SIGTERM");
  return -1;
}

static inline PGconn *hx_db(const hx_ctx_t *c) {
  PGconn *conn = PQconnectdb(c->dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  return conn;
}

/* A count query with the schema as the one %s; -1 when it fails (e.g. PostgreSQL down). */
static inline long hx_count(PGconn *conn, const char *fmt, const char *schema) {
  char sql[512];
  snprintf(sql, sizeof sql, fmt, schema);
  PGresult *res = PQexec(conn, sql);
  long v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static inline long hx_results(PGconn *conn, const hx_ctx_t *c) {
  return hx_count(conn, "SELECT count(*) FROM \"%s\".results", c->schema);
}

/* Waits until the results table holds at least `want` rows; fails after `secs` or if the
 * worker exits. */
static inline void hx_wait_results(PGconn *conn, const hx_ctx_t *c, long want, pid_t pid, int secs) {
  long have = -1;
  for (int i = 0; i < secs * 50; i++) {
    have = hx_results(conn, c);
    if (have >= want) return;
    int status;
    ASSERT_MSG(waitpid(pid, &status, WNOHANG) == 0, "worker exited early (status %d)", status);
    usleep(20000);
  }
  ASSERT_MSG(0, "results: %ld rows after %d s, expected %ld", have, secs, want);
}

/* GET path; *status 0 when nothing listens (yet). */
static inline void hx_http(unsigned port, const char *path, int *status, char *body, size_t size) {
  *status = 0;
  body[0] = '\0';
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return;
  }
  char req[256];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
    close(fd);
    return;
  }
  char *buf = malloc(262144);
  ASSERT_NOT_NULL(buf);
  size_t len = 0;
  ssize_t k;
  while (len < 262143 && (k = read(fd, buf + len, 262143 - len)) > 0) len += (size_t)k;
  buf[len] = '\0';
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) *status = 0;
  const char *b = strstr(buf, "\r\n\r\n");
  snprintf(body, size, "%s", b ? b + 4 : "");
  free(buf);
}

/* The value of a metric line starting with `series` (e.g. "sluice_recovering "), or -1. */
static inline double hx_metric(unsigned port, const char *series) {
  static char body[262144];
  int status;
  hx_http(port, "/metrics", &status, body, sizeof body);
  if (status != 200) return -1;
  const char *p = body;
  size_t n = strlen(series);
  while ((p = strstr(p, series)) != NULL) {
    if (p == body || p[-1] == '\n') return atof(p + n);
    p += n;
  }
  return -1;
}

/* Waits until a metric reaches at least `want`; fails after `secs`. */
static inline void hx_wait_metric(unsigned port, const char *series, double want, int secs) {
  double v = -1;
  for (int i = 0; i < secs * 20; i++) {
    v = hx_metric(port, series);
    if (v >= want) return;
    usleep(50000);
  }
  ASSERT_MSG(0, "%s is %g after %d s, expected at least %g", series, v, secs, want);
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
  char tmp[300];
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

/* Parses a PostgreSQL real[] literal "{1,2.5,...}" into out[n]; returns the count. */
static inline int hx_parse_array(const char *s, float *out, int n) {
  int k = 0;
  if (*s == '{') s++;
  while (*s && *s != '}' && k < n) {
    char *end;
    out[k++] = strtof(s, &end);
    s = end;
    if (*s == ',') s++;
  }
  return k;
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
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT count(DISTINCT event_id), min(event_id), max(event_id) FROM \"%s\".results",
           c->schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  char lo[32], hi[32];
  snprintf(lo, sizeof lo, "ev-%06d", first);
  snprintf(hi, sizeof hi, "ev-%06d", first + n - 1);
  ASSERT_EQ(atol(PQgetvalue(res, 0, 0)), n); /* n distinct ids in [lo, hi]: each exactly once */
  ASSERT_STR_EQ(PQgetvalue(res, 0, 1), lo);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 2), hi);
  PQclear(res);
  snprintf(sql, sizeof sql,
           "SELECT key, event_id, score, decision, model_version, input FROM \"%s\".results "
           "ORDER BY key, partition, \"offset\"",
           c->schema);
  res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
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
    ASSERT_EQ(hx_parse_array(PQgetvalue(res, i, 5), x, HX_N_INPUTS), HX_N_INPUTS);
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

static inline void hx_drop(PGconn *conn, const hx_ctx_t *c) {
  char sql[256];
  snprintf(sql, sizeof sql, "SET client_min_messages TO warning; DROP SCHEMA \"%s\" CASCADE",
           c->schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
}

#endif /* TEST_WORKER_HARNESS_H */
