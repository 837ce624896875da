/*
 * Shared harness of the records worker tests (test-worker-records.c,
 * test-worker-records-pg-restart.c): runs the real sluice-worker binary with --pipeline=records
 * and the shipped records-mtsamples model against the real Kafka broker and PostgreSQL,
 * produces numbered notes (note ids "note-%05d", the beginnings of real MTSamples notes, 3
 * partitions, key = note id), and checks the outcome from PostgreSQL: every produced note has
 * exactly one record_analysis row, stored at the partition and offset it was produced to (every
 * offset of the topic holds one row or one dead letter: nothing analysed twice, nothing
 * skipped), with the label and probability an independent scoring of its text gives.
 */
#ifndef TEST_RECORDS_HARNESS_H
#define TEST_RECORDS_HARNESS_H

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svc/kafka.h"
#include "unit/domains/records-fixture.h"

#define RH_PARTS 3
#define RH_MAX_NOTES 1000
#define RH_NOTE_BYTES 500 /* notes are cut to about this (one model row each: fast) */

typedef struct rh_ctx_s {
  const char *brokers, *dsn;
  char topic[128], dlq[128], alerts[128], group[128], schema[96];
  unsigned port;
  char **src; /* real notes */
  size_t n_src;
  const char *top_evidence; /* --records-top-evidence ("0" unless set) */
  const char *model;        /* --model-path (RF_MODEL unless set) */
  const char *extra[12]; /* more worker flags, NULL-terminated */
} rh_ctx_t;

static inline unsigned rh_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  socklen_t len = sizeof sa;
  ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
  close(fd);
  return ntohs(sa.sin_port);
}

static inline void rh_init(rh_ctx_t *c, const char *tag) {
  memset(c, 0, sizeof *c);
  c->brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c->dsn = test_require_env("SLUICE_PG_DSN");
  char p[64];
  snprintf(p, sizeof p, "wr-%s-events", tag);
  test_unique_name(c->topic, sizeof c->topic, p);
  snprintf(p, sizeof p, "wr-%s-dlq", tag);
  test_unique_name(c->dlq, sizeof c->dlq, p);
  snprintf(p, sizeof p, "wr-%s-alerts", tag);
  test_unique_name(c->alerts, sizeof c->alerts, p);
  snprintf(p, sizeof p, "wr-%s-group", tag);
  test_unique_name(c->group, sizeof c->group, p);
  snprintf(c->schema, sizeof c->schema, "wr_%s_%ld_%ld", tag, (long)getpid(), (long)time(NULL));
  c->port = rh_free_port();
  char err[512];
  ASSERT_MSG(kq_topic_create(c->brokers, c->topic, RH_PARTS, 1, 20000, err, sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_MSG(kq_topic_create(c->brokers, c->dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  ASSERT_MSG(kq_topic_create(c->brokers, c->alerts, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  c->src = rf_notes(24, &c->n_src);
  ASSERT_OP(c->n_src, >=, 10);
}

static inline void rh_close(rh_ctx_t *c) { rf_notes_free(c->src, c->n_src); }

/* The text of note i: the beginning of a real note, cut at a space before RH_NOTE_BYTES. */
static inline void rh_text(const rh_ctx_t *c, int i, char *buf, size_t size) {
  const char *s = c->src[(size_t)i % c->n_src];
  size_t n = strlen(s), cap = size - 1 < RH_NOTE_BYTES ? size - 1 : RH_NOTE_BYTES;
  if (n > cap) {
    n = cap;
    while (n > 0 && s[n] != ' ') n--;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
}

static inline void rh_note_id(int i, char *buf, size_t size) { snprintf(buf, size, "note-%05d", i); }

static inline rd_kafka_t *rh_producer(const rh_ctx_t *c) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  return rk;
}

static inline void rh_send(rd_kafka_t *rk, const rh_ctx_t *c, const char *key, const void *val,
                           size_t len) {
  ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Produces notes first .. first+n-1 (patient "patient-<i % 7>"). */
static inline void rh_produce(const rh_ctx_t *c, int first, int n) {
  rd_kafka_t *rk = rh_producer(c);
  for (int i = first; i < first + n; i++) {
    char id[32], patient[32], text[RH_NOTE_BYTES + 1];
    rh_note_id(i, id, sizeof id);
    snprintf(patient, sizeof patient, "patient-%d", i % 7);
    rh_text(c, i, text, sizeof text);
    size_t len;
    uint8_t *v = rf_envelope(id, patient, text, 1700000000000LL + 1000LL * i, &len);
    rh_send(rk, c, id, v, len);
    free(v);
  }
  ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
}

/* Starts a worker serving HTTP on `http_port`. */
static inline pid_t rh_start_on(const rh_ctx_t *c, unsigned http_port) {
  char bin[512], port[16];
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_NOT_NULL(bdir);
  snprintf(bin, sizeof bin, "%s/bin/sluice-worker", bdir);
  snprintf(port, sizeof port, "%u", http_port);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failing test aborts: the worker must not outlive it */
    setenv("SLUICE_KAFKA_BROKERS", c->brokers, 1);
    setenv("SLUICE_PG_DSN", c->dsn, 1);
    char *argv[64] = {bin,
                      "--pipeline", "records",
                      "--kafka-group", (char *)c->group,
                      "--topic", (char *)c->topic,
                      "--dlq-topic", (char *)c->dlq,
                      "--alerts-topic", (char *)c->alerts,
                      "--pg-schema", (char *)c->schema,
                      "--http-address", "127.0.0.1",
                      "--http-port", port,
                      "--model-path", (char *)(c->model ? c->model : RF_MODEL),
                      "--batch-max", "16",
                      "--batch-wait", "10ms",
                      "--records-top-evidence", (char *)(c->top_evidence ? c->top_evidence : "0"),
                      "--log-level", "warn"};
    int n = 27;
    for (int i = 0; i < 12 && c->extra[i]; i++) argv[n++] = (char *)c->extra[i];
    argv[n] = NULL;
    execv(bin, argv);
    perror("execv sluice-worker");
    _exit(127);
  }
  return pid;
}

static inline pid_t rh_start(const rh_ctx_t *c) { return rh_start_on(c, c->port); }

/* GET path from 127.0.0.1:port into body (status 0 when unreachable). */
static inline void rh_http(unsigned port, const char *path, int *status, char *body, size_t size) {
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
  size_t len = 0;
  ssize_t k;
  while (len + 1 < size && (k = read(fd, body + len, size - 1 - len)) > 0) len += (size_t)k;
  body[len] = '\0';
  close(fd);
  if (sscanf(body, "HTTP/1.%*d %d", status) != 1) *status = 0;
  const char *b = strstr(body, "\r\n\r\n");
  if (b != NULL) memmove(body, b + 4, strlen(b + 4) + 1);
}

/* The value of the metric line starting with `series` (e.g. "sluice_events_scored_total "),
 * or -1. */
static inline double rh_metric(unsigned port, const char *series) {
  static char body[262144];
  int status;
  rh_http(port, "/metrics", &status, body, sizeof body);
  if (status != 200) return -1;
  const char *p = body;
  size_t n = strlen(series);
  while ((p = strstr(p, series)) != NULL) {
    if (p == body || p[-1] == '\n') return atof(p + n);
    p += n;
  }
  return -1;
}

/* Waits until /readyz answers 200; fails after `secs`. */
static inline void rh_wait_ready(unsigned port, int secs) {
  static char body[4096];
  int status = 0;
  for (int i = 0; i < secs * 20; i++) {
    rh_http(port, "/readyz", &status, body, sizeof body);
    if (status == 200) return;
    usleep(50000);
  }
  ASSERT_MSG(0, "worker on port %u not ready after %d s: %d %s", port, secs, status, body);
}

static inline int rh_stop(pid_t pid) {
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

static inline void rh_kill9(pid_t pid) {
  ASSERT_OK(kill(pid, SIGKILL));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFSIGNALED(status));
}

static inline PGconn *rh_db(const rh_ctx_t *c) {
  PGconn *conn = PQconnectdb(c->dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  return conn;
}

/* A count query with the schema as the one %s; -1 when it fails (e.g. PostgreSQL down, or the
 * table not migrated yet). */
static inline long rh_count(PGconn *conn, const char *fmt, const char *schema) {
  char sql[512];
  snprintf(sql, sizeof sql, fmt, schema);
  PGresult *res = PQexec(conn, sql);
  long v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static inline long rh_rows(PGconn *conn, const rh_ctx_t *c) {
  return rh_count(conn, "SELECT count(*) FROM \"%s\".record_analysis", c->schema);
}

/* Waits until at least `want` rows; fails after `secs` or when a worker exits. */
static inline void rh_wait_rows(PGconn *conn, const rh_ctx_t *c, long want, const pid_t *pids,
                                int n_pids, int secs) {
  long got = -1;
  for (int i = 0; i < secs * 20; i++) {
    got = rh_rows(conn, c);
    if (got >= want) return;
    for (int k = 0; k < n_pids; k++) {
      int status;
      ASSERT_MSG(waitpid(pids[k], &status, WNOHANG) == 0, "worker %d exited (status %d) at %ld "
                 "rows of %ld", (int)pids[k], status, got, want);
    }
    if (got < 0) PQreset(conn);
    usleep(50000);
  }
  ASSERT_MSG(0, "%ld record_analysis rows after %d s, expected %ld", got, secs, want);
}

/*
 * Checks notes first .. first+n-1: one row each, with the independent scoring's label and
 * probability; every (partition, offset) of the rows distinct, and together with `n_dead`
 * dead letters they cover each partition's offsets 0 .. next_offset - 1 exactly (and
 * kafka_offsets says so).
 */
static inline void rh_check(PGconn *conn, const rh_ctx_t *c, int first, int n, long n_dead) {
  char sql[768];
  snprintf(sql, sizeof sql,
           "SELECT note_id, predicted_label, score, partition, \"offset\", patient_id, "
           "(extract(epoch FROM event_time) * 1000)::bigint FROM \"%s\".record_analysis "
           "ORDER BY note_id",
           c->schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  ASSERT_EQ(PQntuples(res), n);
  moe_model_t *m = NULL;
  char err[256];
  ASSERT_EQ(moe_model_load(RF_MODEL, &m, err, sizeof err), MOE_OK);
  int nk = moe_model_n_labels(m);
  for (int r = 0; r < n; r++) {
    int i = first + r;
    char id[32], text[RH_NOTE_BYTES + 1], patient[32];
    rh_note_id(i, id, sizeof id);
    ASSERT_STR_EQ(PQgetvalue(res, r, 0), id);
    rh_text(c, i, text, sizeof text);
    float probs[64];
    size_t nt, nc;
    rf_score(m, text, probs, &nt, &nc);
    int best = 0;
    for (int k = 1; k < nk; k++)
      if (probs[k] > probs[best]) best = k;
    ASSERT_STR_EQ(PQgetvalue(res, r, 1), moe_model_label(m, best));
    ASSERT_NEAR(atof(PQgetvalue(res, r, 2)), probs[best], 1e-5);
    snprintf(patient, sizeof patient, "patient-%d", i % 7);
    ASSERT_STR_EQ(PQgetvalue(res, r, 5), patient);
    ASSERT_EQ(atoll(PQgetvalue(res, r, 6)), 1700000000000LL + 1000LL * i);
  }
  PQclear(res);
  moe_model_free(m);
  /* Offsets: distinct per partition, and rows + dead letters fill every partition. */
  snprintf(sql, sizeof sql,
           "SELECT count(*) = count(DISTINCT (partition, \"offset\")) FROM \"%s\".record_analysis",
           c->schema);
  res = PQexec(conn, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  long next = rh_count(conn, "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".kafka_offsets",
                       c->schema);
  ASSERT_EQ(next, (long)n + n_dead);
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM \"%s\".record_analysis r JOIN \"%s\".kafka_offsets o "
           "ON o.partition = r.partition AND o.topic = r.topic WHERE r.\"offset\" >= o.next_offset",
           c->schema, c->schema);
  res = PQexec(conn, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "0");
  PQclear(res);
}

static inline void rh_drop(PGconn *conn, const rh_ctx_t *c) {
  char sql[256];
  snprintf(sql, sizeof sql, "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS \"%s\" "
           "CASCADE", c->schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
}

#endif /* TEST_RECORDS_HARNESS_H */
