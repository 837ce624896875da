/*
 * The pipeline-neutral half of the tests that drive the real sluice-worker binary against the
 * real Kafka broker and PostgreSQL (worker-harness.h for fraud, fault-harness.h, and
 * records-harness.h build on it): one test's fresh names (topics, group, schema, HTTP port),
 * starting the worker as a child process and stopping it (SIGTERM with a timeout, or kill -9),
 * its HTTP endpoints (/readyz, /metrics), queries and counts in the test's schema and waiting
 * for a count, restarting PostgreSQL for real, producing to Kafka, reading a dead-letter or
 * alerts topic back with its headers, and dropping the schema at the end. What a pipeline's
 * events look like and how its results are checked stays in that pipeline's harness.
 *
 * Every helper fails the test (ASSERT_*) on anything unexpected, except where its comment says
 * it reports a failure instead (a count that cannot run while PostgreSQL restarts, an HTTP port
 * nobody listens on yet). The worker's log goes to the test's stderr at level warn;
 * WP_LOG_LEVEL=debug (or info, ...) in the environment raises it when a test needs a closer look.
 */
#ifndef TEST_WORKER_PROC_H
#define TEST_WORKER_PROC_H

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svc/kafka.h"
#include "test.h"

#define WP_MAX_EXTRA 12    /* worker flags a test may add (wp_ctx_t.extra) */
#define WP_HTTP_MAX 262144 /* the largest HTTP response read (a full /metrics page fits) */

/* One test's servers and names, and the flags every pipeline's worker gets from them. */
typedef struct wp_ctx_s {
  const char *brokers, *dsn; /* SLUICE_KAFKA_BROKERS, SLUICE_PG_DSN */
  char topic[128];           /* the input topic: wp_init's `partitions` partitions */
  char dlq[128];             /* the dead-letter topic: 1 partition */
  char alerts[128];          /* the alerts topic (1 partition), or "" when wp_init made none */
  char group[128];           /* --kafka-group */
  char schema[96];           /* --pg-schema; wp_drop drops it */
  char model[256];           /* --model-path; the pipeline's harness sets it */
  unsigned port;             /* --http-port on 127.0.0.1: a free port */
  const char *extra[WP_MAX_EXTRA]; /* more worker flags (after all others), NULL-terminated */
} wp_ctx_t;

/* ---- names and topics ---- */

/* A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
static inline unsigned wp_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  socklen_t len = sizeof sa;
  ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
  close(fd);
  return ntohs(sa.sin_port);
}

static inline void wp_topic_create(const char *brokers, const char *topic, int partitions) {
  char err[512];
  ASSERT_MSG(kq_topic_create(brokers, topic, partitions, 1, 20000, err, sizeof err) == SVC_OK,
             "topic %s: %s", topic, err);
}

/*
 * Fresh names for one test: topics "<prefix>-<tag>-events", "-dlq" (and "-alerts" when
 * `alerts`) and group "<prefix>-<tag>-group", each made unique by test_unique_name; schema
 * "<prefix>_<tag>_<pid>_<time>"; a free HTTP port. Creates the topics (the events topic with
 * `partitions` partitions). Leaves model and extra empty. Needs the servers' environment
 * (test_require_env: skips outside CI without it).
 */
static inline void wp_init(wp_ctx_t *w, const char *prefix, const char *tag, int partitions,
                           bool alerts) {
  memset(w, 0, sizeof *w);
  w->brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  w->dsn = test_require_env("SLUICE_PG_DSN");
  char p[64];
  snprintf(p, sizeof p, "%s-%s-events", prefix, tag);
  test_unique_name(w->topic, sizeof w->topic, p);
  snprintf(p, sizeof p, "%s-%s-dlq", prefix, tag);
  test_unique_name(w->dlq, sizeof w->dlq, p);
  if (alerts) {
    snprintf(p, sizeof p, "%s-%s-alerts", prefix, tag);
    test_unique_name(w->alerts, sizeof w->alerts, p);
  }
  snprintf(p, sizeof p, "%s-%s-group", prefix, tag);
  test_unique_name(w->group, sizeof w->group, p);
  snprintf(w->schema, sizeof w->schema, "%s_%s_%ld_%ld", prefix, tag, (long)getpid(),
           (long)time(NULL));
  w->port = wp_free_port();
  wp_topic_create(w->brokers, w->topic, partitions);
  wp_topic_create(w->brokers, w->dlq, 1);
  if (alerts) wp_topic_create(w->brokers, w->alerts, 1);
}

/* ---- the worker process ---- */

/*
 * Starts sluice-worker (from SLUICE_BINARY_DIR/bin) with the servers of `w` in its environment
 * and the flags: --kafka-group, --pg-schema, --model-path from `w`, HTTP on 127.0.0.1:`port`,
 * --batch-wait 10ms, --log-level (WP_LOG_LEVEL, else warn); then `flags` (the pipeline's own,
 * NULL-terminated: topics, batch size, ...); then w->extra, last so that a test's flag wins.
 * The worker gets SIGKILL when the test process dies (a failing test aborts: no worker may
 * outlive it). Returns its pid; wp_stop or wp_kill9 reaps it.
 */
static inline pid_t wp_start(const wp_ctx_t *w, unsigned port, const char *const *flags) {
  char bin[512], port_s[16];
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_NOT_NULL(bdir);
  snprintf(bin, sizeof bin, "%s/bin/sluice-worker", bdir);
  snprintf(port_s, sizeof port_s, "%u", port);
  const char *level = getenv("WP_LOG_LEVEL");
  const char *common[] = {bin,
                          "--kafka-group", w->group,
                          "--pg-schema", w->schema,
                          "--model-path", w->model,
                          "--http-address", "127.0.0.1",
                          "--http-port", port_s,
                          "--batch-wait", "10ms",
                          "--log-level", level != NULL ? level : "warn",
                          NULL};
  /* Built before the fork, so that a bad list fails the test rather than the child. */
  const char *argv[96];
  int n = 0;
  for (int i = 0; common[i] != NULL; i++) argv[n++] = common[i];
  for (int i = 0; flags != NULL && flags[i] != NULL; i++) {
    ASSERT(n < 96 - WP_MAX_EXTRA - 1);
    argv[n++] = flags[i];
  }
  for (int i = 0; i < WP_MAX_EXTRA && w->extra[i] != NULL; i++) argv[n++] = w->extra[i];
  argv[n] = NULL;
  ASSERT_MSG(w->model[0] != '\0', "no model path for the worker");
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setenv("SLUICE_KAFKA_BROKERS", w->brokers, 1);
    setenv("SLUICE_PG_DSN", w->dsn, 1);
    execv(bin, (char *const *)argv);
    perror("execv sluice-worker");
    _exit(127);
  }
  return pid;
}

/* SIGTERM, then waits up to 30 s: the worker must exit on its own (not by a signal). Returns
 * its exit status. */
static inline int wp_stop(pid_t pid) {
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

/* kill -9 and reap: the worker must have died of that SIGKILL (not of something before it). */
static inline void wp_kill9(pid_t pid) {
  ASSERT_OK(kill(pid, SIGKILL));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* ---- HTTP ---- */

/* GET path from 127.0.0.1:port: *status and the body (cut to `size`); *status 0 when nothing
 * listens (yet) or the answer is not HTTP. */
static inline void wp_http(unsigned port, const char *path, int *status, char *body, size_t size) {
  *status = 0;
  body[0] = '\0';
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
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
  char *buf = malloc(WP_HTTP_MAX);
  ASSERT_NOT_NULL(buf);
  size_t len = 0;
  ssize_t k;
  while (len < WP_HTTP_MAX - 1 && (k = read(fd, buf + len, WP_HTTP_MAX - 1 - len)) > 0)
    len += (size_t)k;
  buf[len] = '\0';
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) *status = 0;
  const char *b = strstr(buf, "\r\n\r\n");
  snprintf(body, size, "%s", b ? b + 4 : "");
  free(buf);
}

/* The value of the /metrics line starting with `series` (the name with its labels and the
 * space, e.g. "sluice_recovering "), or -1 when there is no such line or no answer. Not
 * thread-safe (one static page). */
static inline double wp_metric(unsigned port, const char *series) {
  static char body[WP_HTTP_MAX];
  int status;
  wp_http(port, "/metrics", &status, body, sizeof body);
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
static inline void wp_wait_metric(unsigned port, const char *series, double want, int secs) {
  double v = -1;
  for (int i = 0; i < secs * 20; i++) {
    v = wp_metric(port, series);
    if (v >= want) return;
    usleep(50000);
  }
  ASSERT_MSG(0, "%s is %g after %d s, expected at least %g", series, v, secs, want);
}

/* Waits until /readyz answers 200; fails after `secs` with the last answer. */
static inline void wp_wait_ready(unsigned port, int secs) {
  static char body[4096];
  int status = 0;
  for (int i = 0; i < secs * 20; i++) {
    wp_http(port, "/readyz", &status, body, sizeof body);
    if (status == 200) break;
    usleep(50000);
  }
  ASSERT_MSG(status == 200, "worker on port %u not ready after %d s: %d %s", port, secs,
             status, body);
  /* The *-lanes2 runs of these tests (SLUICE_PG_LANES=2, tests/unit/worker/CMakeLists.txt)
   * must really run the worker that way, not silently fall back to the default. */
  const char *lanes = getenv("SLUICE_PG_LANES");
  if (lanes != NULL && lanes[0] != '\0') {
    char want[32];
    snprintf(want, sizeof want, "pg_lanes:%s\n", lanes);
    wp_http(port, "/info", &status, body, sizeof body);
    ASSERT_MSG(status == 200 && strstr(body, want) != NULL,
               "worker on port %u: /info does not say %s", port, want);
  }
}

/* ---- PostgreSQL ---- */

/* A connection to the test's database (notices off: DROP ... CASCADE lists every table). */
static inline PGconn *wp_db(const wp_ctx_t *w) {
  PGconn *conn = PQconnectdb(w->dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  PQclear(PQexec(conn, "SET client_min_messages TO warning"));
  return conn;
}

/* A one-value query with the schema as its one %s (a count, a sum); -1 when it fails: the
 * table is not there yet, or PostgreSQL is down (a restart under test). */
static inline long wp_count(PGconn *conn, const char *fmt, const char *schema) {
  char sql[512];
  int n = snprintf(sql, sizeof sql, fmt, schema);
  ASSERT(n > 0 && n < (int)sizeof sql);
  PGresult *res = PQexec(conn, sql);
  long v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
    v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

/*
 * Waits (up to `secs`) until the stored next offsets of `schema` add up to at least `want`,
 * then asserts they add up to exactly `want`. With pg.lanes 2 a batch's results commit before
 * its state and offsets, so a test that waited for results waits for the offsets here before
 * it checks state or offsets; with one lane this returns at once.
 */
static inline void wp_wait_offsets(PGconn *conn, const char *schema, long want, int secs) {
  const char *sql = "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".kafka_offsets";
  for (int i = 0; i < secs * 20 && wp_count(conn, sql, schema) < want; i++) usleep(50000);
  ASSERT_EQ(wp_count(conn, sql, schema), want);
}

/*
 * Waits until wp_count(fmt) gives at least `want`. Fails after `secs`, or as soon as one of
 * the workers pids[0 .. n_pids-1] has exited (none may while a test waits for its output).
 * A connection lost on the way (PostgreSQL restarted under test) is opened again.
 */
static inline void wp_wait_count(PGconn *conn, const wp_ctx_t *w, const char *fmt, long want,
                                 const pid_t *pids, int n_pids, int secs) {
  long have = -1;
  for (int i = 0; i < secs * 50; i++) {
    if (PQstatus(conn) != CONNECTION_OK) PQreset(conn);
    have = wp_count(conn, fmt, w->schema);
    if (have >= want) return;
    for (int k = 0; k < n_pids; k++) {
      int status = 0;
      ASSERT_MSG(waitpid(pids[k], &status, WNOHANG) == 0,
                 "worker %d exited early (status %d) at %ld of %ld", (int)pids[k], status, have,
                 want);
    }
    usleep(20000);
  }
  char what[512];
  snprintf(what, sizeof what, fmt, w->schema);
  ASSERT_MSG(0, "%s: %ld after %d s, expected at least %ld", what, have, secs, want);
}

/*
 * Runs the SQL that printf(fmt, ...) makes and fails the test, with PostgreSQL's error, unless
 * the answer is `want` (PGRES_TUPLES_OK for a query, PGRES_COMMAND_OK for a command). Returns
 * the result; the caller PQclears it.
 */
__attribute__((format(printf, 3, 4))) static inline PGresult *
wp_query(PGconn *conn, ExecStatusType want, const char *fmt, ...) {
  char sql[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(sql, sizeof sql, fmt, ap);
  va_end(ap);
  ASSERT_MSG(n > 0 && n < (int)sizeof sql, "SQL longer than %zu bytes: %s", sizeof sql, fmt);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == want, "%s: %s", sql, PQresultErrorMessage(res));
  return res;
}

/* Parses a PostgreSQL real[] literal "{1,2.5,...}" into out[n]; returns how many it read. */
static inline int wp_parse_reals(const char *s, float *out, int n) {
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
 * Restarts the test's PostgreSQL for real (pg_ctl restart -m fast, as the postgres user, waiting
 * until it accepts connections again): every session, the worker's and the test's, is cut.
 * Needs SLUICE_RUN_DIR and SLUICE_PG_CTL (test_require_env: skips outside CI without them).
 */
static inline void wp_pg_restart(void) {
  const char *run_dir = test_require_env("SLUICE_RUN_DIR");
  const char *pg_ctl = test_require_env("SLUICE_PG_CTL");
  char cmd[1024];
  int n = snprintf(cmd, sizeof cmd,
                   "runuser -u postgres -- %s -D %s/pg/data -m fast -w restart >/dev/null 2>&1",
                   pg_ctl, run_dir);
  ASSERT(n > 0 && n < (int)sizeof cmd);
  ASSERT_EQ(system(cmd), 0);
}

/* Drops the test's schema (if the worker made it) and closes the connection. */
static inline void wp_drop(PGconn *conn, const wp_ctx_t *w) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS \"%s\" CASCADE", w->schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
}

/* ---- Kafka ---- */

/* A producer to the test's broker; the caller destroys it (after wp_flush). */
static inline rd_kafka_t *wp_producer(const wp_ctx_t *w) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", w->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  return rk;
}

/*
 * Waits (up to `secs`) until the offsets the worker's group committed to Kafka (for lag tools;
 * PostgreSQL holds the truth) on w->topic's `partitions` partitions add up to `want`, and
 * asserts that they do. Reads them without joining the group (OffsetFetch only).
 */
static inline void wp_wait_kafka_committed(const wp_ctx_t *w, int partitions, long want,
                                           int secs) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", w->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "group.id", w->group, err, sizeof err), RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  long sum = -1;
  for (int i = 0; i < secs * 4 && sum != want; i++) {
    if (i) usleep(250000);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(parts, w->topic, p);
    if (rd_kafka_committed(rk, parts, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      sum = 0;
      for (int p = 0; p < parts->cnt; p++)
        if (parts->elems[p].offset > 0) sum += parts->elems[p].offset;
    }
    rd_kafka_topic_partition_list_destroy(parts);
  }
  rd_kafka_destroy(rk);
  ASSERT_EQ(sum, want);
}

/* Queues one record (copied; key may be NULL); the partition follows the key. */
static inline void wp_send(rd_kafka_t *rk, const char *topic, const char *key, const void *val,
                           size_t len) {
  ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Waits (up to 30 s) until every queued record is in the broker. */
static inline void wp_flush(rd_kafka_t *rk) {
  ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/*
 * Reads partition 0 of `topic` (the dead-letter and alerts topics have one) from the beginning
 * and hands every record to each(m, arg), which checks it (headers: wp_header) and returns
 * whether it counts. Stops once `want` records counted or after `secs` s; returns how many
 * counted (the caller asserts it is `want`). The consumer commits nothing (group w->group).
 */
static inline int wp_consume_all(const wp_ctx_t *w, const char *topic, int want, int secs,
                                 bool (*each)(const rd_kafka_message_t *m, void *arg),
                                 void *arg) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", w->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "group.id", w->group, err, sizeof err), RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  ASSERT_EQ(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  int got = 0;
  double deadline = test_now_s() + secs;
  while (got < want && test_now_s() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m == NULL) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && each(m, arg)) got++;
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return got;
}

/* Header `name` of m, which must be there, as a string into out (cut to `size`); returns its
 * length (before any cut). */
static inline size_t wp_header(const rd_kafka_message_t *m, const char *name, char *out,
                               size_t size) {
  rd_kafka_headers_t *hdrs = NULL;
  ASSERT_EQ(rd_kafka_message_headers(m, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
  const void *val;
  size_t len;
  ASSERT_MSG(rd_kafka_header_get_last(hdrs, name, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR,
             "record at offset %lld has no header %s", (long long)m->offset, name);
  snprintf(out, size, "%.*s", (int)len, val != NULL ? (const char *)val : "");
  return len;
}

/* Which of names[0 .. n-1] header `name` of m is (a DLQ reason, say); fails the test when it
 * is missing or none of them. */
static inline int wp_header_index(const rd_kafka_message_t *m, const char *name,
                                  const char *const *names, int n) {
  char val[512];
  size_t len = wp_header(m, name, val, sizeof val);
  for (int i = 0; i < n; i++)
    if (strlen(names[i]) == len && strcmp(val, names[i]) == 0) return i;
  ASSERT_MSG(0, "unexpected %s %s", name, val);
  return -1;
}

#endif /* TEST_WORKER_PROC_H */
