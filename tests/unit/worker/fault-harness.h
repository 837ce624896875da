/*
 * Shared harness of the fault worker's tests (test-worker-fault-*.c): runs the real
 * sluice-worker binary with --pipeline=fault and the shipped C-MAPSS model against the real
 * Kafka broker and PostgreSQL, produces real C-MAPSS FD001 engines (each run to failure, then
 * overhauled: its first healthy cycles again, later in time), and checks the outcome from
 * PostgreSQL alone:
 *   - every reading from an engine's T-th on has exactly one result, nothing else is there;
 *   - each stored window is the file's T rows ending at that reading, and each stored score is
 *     the model's score of the stored window (the test loads the model itself);
 *   - the outbox holds exactly the alert transitions that the stored scores give, in offset
 *     order, under the test's own reading of the alert rules (fire at or below enter after
 *     min_fire, clear above clear after min_clear), each once, with the right event.
 * Generic helpers (ports, HTTP, metrics) follow worker-harness.h, which is fraud-specific.
 */
#ifndef TEST_FAULT_HARNESS_H
#define TEST_FAULT_HARNESS_H

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

#include "moe/moe.h"
#include "sluice/v1/envelope.pb-c.h"
#include "sluice/v1/results.pb-c.h"
#include "svc/kafka.h"

#define FH_PARTS 3
#define FH_MIN 60000LL
#define FH_T0 1700000000000LL
#define FH_MAX_UNITS 12
#define FH_MAX_CYCLES 400
#define FH_HEALTHY 30 /* cycles replayed after the overhaul */

/* The alert settings the tests run the worker with (and check against). */
#define FH_ENTER 40.0f
#define FH_CLEAR 70.0f
#define FH_MIN_FIRE_MS (2 * FH_MIN)
#define FH_MIN_CLEAR_MS (1 * FH_MIN)

static const char *const fh_names[24] = {
    "setting_1", "setting_2", "setting_3", "sensor_1",  "sensor_2",  "sensor_3",
    "sensor_4",  "sensor_5",  "sensor_6",  "sensor_7",  "sensor_8",  "sensor_9",
    "sensor_10", "sensor_11", "sensor_12", "sensor_13", "sensor_14", "sensor_15",
    "sensor_16", "sensor_17", "sensor_18", "sensor_19", "sensor_20", "sensor_21"};

typedef struct fh_ctx_s {
  const char *brokers, *dsn;
  char topic[128], dlq[128], alerts[128], group[128], schema[96], model[512];
  unsigned port;
  const char *extra[8]; /* more flags for the worker, NULL-terminated */
  bool no_alert_flags;  /* run without the FH_* alert flags (a probability model) */
  /* the data: units 1..n_units of FD001 */
  int n_units;
  int len[FH_MAX_UNITS];                        /* cycles of unit u+1 in the file */
  double rows[FH_MAX_UNITS][FH_MAX_CYCLES][24]; /* [unit][cycle - 1][channel] */
  int T;                                        /* the model's window */
} fh_ctx_t;

static inline unsigned fh_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  socklen_t len = sizeof sa;
  ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
  close(fd);
  return ntohs(sa.sin_port);
}

/* Readings per unit as streamed: the run to failure, then FH_HEALTHY healthy cycles. */
static inline int fh_stream_len(const fh_ctx_t *c, int u) { return c->len[u] + FH_HEALTHY; }

/* The file row (0-based cycle) behind reading k of unit u. */
static inline int fh_row(const fh_ctx_t *c, int u, int k) {
  return k < c->len[u] ? k : k - c->len[u];
}

static inline void fh_load_data(fh_ctx_t *c, int n_units) {
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  char path[512];
  snprintf(path, sizeof path, "%s/../shared/data/fault/cmapss/train_FD001.txt", dir ? dir : ".");
  FILE *f = fopen(path, "r");
  ASSERT_MSG(f != NULL, "cannot open %s", path);
  ASSERT(n_units <= FH_MAX_UNITS);
  c->n_units = n_units;
  memset(c->len, 0, sizeof c->len);
  int u, cyc;
  while (fscanf(f, "%d %d", &u, &cyc) == 2) {
    double v[24];
    for (int k = 0; k < 24; k++) ASSERT_EQ(fscanf(f, "%lf", &v[k]), 1);
    if (u > n_units) break;
    ASSERT(cyc == c->len[u - 1] + 1 && cyc <= FH_MAX_CYCLES);
    memcpy(c->rows[u - 1][cyc - 1], v, sizeof v);
    c->len[u - 1] = cyc;
  }
  fclose(f);
  for (int i = 0; i < n_units; i++) ASSERT_OP(c->len[i], >, 100);
}

/* Fresh topics, group, schema and port; `tag` names them. */
static inline void fh_init(fh_ctx_t *c, const char *tag, int n_units) {
  memset(c, 0, sizeof *c);
  c->brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c->dsn = test_require_env("SLUICE_PG_DSN");
  char p[64];
  snprintf(p, sizeof p, "wf-%s-events", tag);
  test_unique_name(c->topic, sizeof c->topic, p);
  snprintf(p, sizeof p, "wf-%s-dlq", tag);
  test_unique_name(c->dlq, sizeof c->dlq, p);
  snprintf(p, sizeof p, "wf-%s-alerts", tag);
  test_unique_name(c->alerts, sizeof c->alerts, p);
  snprintf(p, sizeof p, "wf-%s-group", tag);
  test_unique_name(c->group, sizeof c->group, p);
  snprintf(c->schema, sizeof c->schema, "wf_%s_%ld_%ld", tag, (long)getpid(), (long)time(NULL));
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  snprintf(c->model, sizeof c->model, "%s/models/fault-cmapss.safetensors", dir ? dir : ".");
  c->port = fh_free_port();
  char err[512];
  ASSERT_MSG(kq_topic_create(c->brokers, c->topic, FH_PARTS, 1, 20000, err, sizeof err) ==
                 SVC_OK, "%s", err);
  ASSERT_MSG(kq_topic_create(c->brokers, c->dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  ASSERT_MSG(kq_topic_create(c->brokers, c->alerts, 1, 1, 20000, err, sizeof err) == SVC_OK,
             "%s", err);
  fh_load_data(c, n_units);
  moe_model_t *m = NULL;
  ASSERT_MSG(moe_model_load(c->model, &m, err, sizeof err) == 0, "%s", err);
  c->T = moe_model_sensor_window(m);
  for (int k = 0; k < 24; k++) ASSERT_STR_EQ(moe_model_sensor_channel_name(m, k), fh_names[k]);
  moe_model_free(m);
}

static inline rd_kafka_t *fh_producer(const fh_ctx_t *c) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  return rk;
}

static inline void fh_send(rd_kafka_t *rk, const char *topic, const char *key, const void *val,
                           size_t len) {
  ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)val, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
}

static inline void fh_flush(rd_kafka_t *rk) {
  ASSERT_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* A reading as a packed Envelope into buf (at least 4096 bytes); returns its size. n_values
 * < 24 leaves channels out. */
static inline size_t fh_pack(const char *event_id, const char *device, int64_t t,
                             const double *vals, int n_values, uint8_t *buf, size_t size) {
  Sluice__V1__ChannelValue cv[24], *cvp[24];
  for (int i = 0; i < n_values; i++) {
    Sluice__V1__ChannelValue init = SLUICE__V1__CHANNEL_VALUE__INIT;
    cv[i] = init;
    cv[i].name = (char *)fh_names[i];
    cv[i].has_value = 1;
    cv[i].value = vals[i];
    cvp[i] = &cv[i];
  }
  Sluice__V1__SensorReading rd = SLUICE__V1__SENSOR_READING__INIT;
  rd.device_id = (char *)device;
  rd.n_values = (size_t)n_values;
  rd.values = cvp;
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  env.event_id = (char *)event_id;
  env.key = (char *)device;
  env.has_event_time_ms = 1;
  env.event_time_ms = t;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
  env.sensor_reading = &rd;
  size_t len = sluice__v1__envelope__get_packed_size(&env);
  ASSERT(len <= size);
  return sluice__v1__envelope__pack(&env, buf);
}

static inline void fh_device(char *buf, size_t size, int u) { snprintf(buf, size, "engine-%02d", u + 1); }

/*
 * Produces readings k_from .. k_to-1 of every unit (a unit shorter than that sends what it
 * has), interleaved by time (all units at reading k, then k + 1, ...). Returns how many.
 */
static inline long fh_produce(const fh_ctx_t *c, int k_from, int k_to) {
  rd_kafka_t *rk = fh_producer(c);
  long n = 0;
  for (int k = k_from; k < k_to; k++)
    for (int u = 0; u < c->n_units; u++) {
      if (k >= fh_stream_len(c, u)) continue;
      char id[48], dev[32];
      uint8_t buf[4096];
      snprintf(id, sizeof id, "fw-%02d-%03d", u + 1, k);
      fh_device(dev, sizeof dev, u);
      size_t len = fh_pack(id, dev, FH_T0 + (int64_t)(k + 1) * FH_MIN, c->rows[u][fh_row(c, u, k)],
                           24, buf, sizeof buf);
      fh_send(rk, c->topic, dev, buf, len);
      n++;
    }
  fh_flush(rk);
  rd_kafka_destroy(rk);
  return n;
}

/* Readings in the whole stream, and results expected (every reading from the T-th on). */
static inline long fh_total(const fh_ctx_t *c) {
  long n = 0;
  for (int u = 0; u < c->n_units; u++) n += fh_stream_len(c, u);
  return n;
}
static inline long fh_expected_results(const fh_ctx_t *c) {
  long n = 0;
  for (int u = 0; u < c->n_units; u++) n += fh_stream_len(c, u) - c->T + 1;
  return n;
}

static inline pid_t fh_start(const fh_ctx_t *c) {
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
    char *argv[64] = {bin,
                      "--pipeline", "fault",
                      "--kafka-group", (char *)c->group,
                      "--topic", (char *)c->topic,
                      "--dlq-topic", (char *)c->dlq,
                      "--alerts-topic", (char *)c->alerts,
                      "--pg-schema", (char *)c->schema,
                      "--http-address", "127.0.0.1",
                      "--http-port", port,
                      "--model-path", (char *)c->model,
                      "--batch-max", "64",
                      "--batch-wait", "10ms",
                      "--log-level", getenv("FH_LOG_LEVEL") ? getenv("FH_LOG_LEVEL") : "warn"};
    int n = 0;
    while (argv[n] != NULL) n++;
    if (!c->no_alert_flags) {
      static char *const alert[] = {"--fault-alert-enter", "40", "--fault-alert-clear", "70",
                                    "--fault-alert-min-fire", "2m", "--fault-alert-min-clear",
                                    "1m"};
      for (size_t i = 0; i < sizeof alert / sizeof alert[0]; i++) argv[n++] = alert[i];
    }
    for (int i = 0; i < 8 && c->extra[i]; i++) argv[n++] = (char *)c->extra[i];
    argv[n] = NULL;
    execv(bin, argv);
    perror("execv sluice-worker");
    _exit(127);
  }
  return pid;
}

static inline int fh_stop(pid_t pid) {
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

static inline void fh_kill9(pid_t pid) {
  ASSERT_OK(kill(pid, SIGKILL));
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static inline PGconn *fh_db(const fh_ctx_t *c) {
  PGconn *conn = PQconnectdb(c->dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  return conn;
}

/* A count query with the schema as the one %s; -1 when it fails (e.g. PostgreSQL down, or
 * the table not there yet). */
static inline long fh_count(PGconn *conn, const char *fmt, const char *schema) {
  char sql[512];
  int n = snprintf(sql, sizeof sql, fmt, schema);
  ASSERT(n > 0 && n < (int)sizeof sql);
  PGresult *res = PQexec(conn, sql);
  long v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static inline long fh_results(PGconn *conn, const fh_ctx_t *c) {
  if (PQstatus(conn) != CONNECTION_OK) PQreset(conn);
  return fh_count(conn, "SELECT count(*) FROM \"%s\".fault_results", c->schema);
}

/* Waits until fault_results holds at least `want` rows; fails after `secs` or if a worker
 * exits (pids[n_pids]). */
static inline void fh_wait_results(PGconn *conn, const fh_ctx_t *c, long want, const pid_t *pids,
                                   int n_pids, int secs) {
  long have = -1;
  for (int i = 0; i < secs * 50; i++) {
    have = fh_results(conn, c);
    if (have >= want) return;
    for (int k = 0; k < n_pids; k++) {
      int status;
      ASSERT_MSG(waitpid(pids[k], &status, WNOHANG) == 0, "worker exited early (status %d)",
                 status);
    }
    usleep(20000);
  }
  ASSERT_MSG(0, "fault_results: %ld rows after %d s, expected %ld", have, secs, want);
}

/* GET path; *status 0 when nothing listens (yet). */
static inline void fh_http(unsigned port, const char *path, int *status, char *body, size_t size) {
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

/* The value of a metric line starting with `series` (e.g. "sluice_fault_devices "), or -1. */
static inline double fh_metric(unsigned port, const char *series) {
  static char body[262144];
  int status;
  fh_http(port, "/metrics", &status, body, sizeof body);
  if (status != 200) return -1;
  const char *p = body;
  size_t n = strlen(series);
  while ((p = strstr(p, series)) != NULL) {
    if (p == body || p[-1] == '\n') return atof(p + n);
    p += n;
  }
  return -1;
}

/* Parses a real[] literal "{1,2.5,...}" into out[n]; returns the count. */
static inline int fh_parse_reals(const char *s, float *out, int n) {
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

/* The test's own reading of the alert rules for remaining useful life (low is bad). */
typedef struct fh_alert_s {
  int phase; /* 0 idle, 1 pending, 2 firing, 3 clearing */
  int64_t since;
  int seq;
} fh_alert_t;

/* Returns 1 when the score fires an alert, 2 when it clears one, else 0. */
static inline int fh_alert_step(fh_alert_t *a, float s, int64_t t) {
  bool bad = s <= FH_ENTER, good = s > FH_CLEAR;
  if (a->phase == 0 && bad) { /* entering: a zero minimum would fire at once */
    a->phase = 1;
    a->since = t;
  } else if (a->phase == 2 && good) {
    a->phase = 3;
    a->since = t;
  }
  if (a->phase == 1) {
    if (!bad) {
      a->phase = 0;
    } else if (t - a->since >= FH_MIN_FIRE_MS) {
      a->phase = 2;
      a->seq++;
      return 1;
    }
  } else if (a->phase == 3) {
    if (!good) {
      a->phase = 2;
    } else if (t - a->since >= FH_MIN_CLEAR_MS) {
      a->phase = 0;
      return 2;
    }
  }
  return 0;
}

/*
 * The whole check (see the header comment). Returns the alert transitions found in *n_fired
 * and *n_cleared.
 */
static inline void fh_check(PGconn *conn, const fh_ctx_t *c, int *n_fired, int *n_cleared) {
  long want = fh_expected_results(c);
  ASSERT_EQ(fh_results(conn, c), want);
  ASSERT_EQ(fh_count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".fault_results",
                     c->schema),
            want);
  char err[512];
  moe_model_t *mm = NULL;
  ASSERT_MSG(moe_model_load(c->model, &mm, err, sizeof err) == 0, "%s", err);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(mm, 1, &sess));
  int T = c->T;
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT event_id, device_id, score, input::text, kind, "
           "(extract(epoch FROM event_time) * 1000)::bigint FROM \"%s\".fault_results "
           "ORDER BY device_id, partition, kafka_offset",
           c->schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  static float win[24 * 64];
  /* expected transitions per unit, in order: (event id, 1 fire / 2 clear, seq) */
  static char exp_ids[FH_MAX_UNITS][16][48];
  static int exp_kind[FH_MAX_UNITS][16], exp_seq[FH_MAX_UNITS][16], n_exp[FH_MAX_UNITS];
  memset(n_exp, 0, sizeof n_exp);
  fh_alert_t al[FH_MAX_UNITS];
  memset(al, 0, sizeof al);
  int prev_u = -1, prev_k = -1;
  for (int i = 0; i < PQntuples(res); i++) {
    const char *id = PQgetvalue(res, i, 0);
    int u, k;
    ASSERT_EQ(sscanf(id, "fw-%d-%d", &u, &k), 2);
    u--;
    ASSERT(u >= 0 && u < c->n_units && k >= T - 1 && k < fh_stream_len(c, u));
    char dev[32];
    fh_device(dev, sizeof dev, u);
    ASSERT_STR_EQ(PQgetvalue(res, i, 1), dev);
    ASSERT_STR_EQ(PQgetvalue(res, i, 4), "rul");
    ASSERT_EQ(atoll(PQgetvalue(res, i, 5)), FH_T0 + (int64_t)(k + 1) * FH_MIN);
    /* in offset order per device: readings k = T-1, T, ... with no gap or repeat */
    ASSERT_MSG(u == prev_u ? k == prev_k + 1 : k == T - 1, "%s after %d-%d", id, prev_u + 1,
               prev_k);
    prev_u = u;
    prev_k = k;
    ASSERT_EQ(fh_parse_reals(PQgetvalue(res, i, 3), win, T * 24), T * 24);
    for (int t = 0; t < T; t++) {
      const double *row = c->rows[u][fh_row(c, u, k - T + 1 + t)];
      for (int ch = 0; ch < 24; ch++)
        ASSERT_MSG(win[t * 24 + ch] == (float)row[ch], "%s: window[%d][%d] %g, file %g", id, t,
                   ch, (double)win[t * 24 + ch], row[ch]);
    }
    moe_input_t in = {.window = win};
    float score;
    moe_output_t out = {.scores = &score};
    ASSERT_OK(moe_session_run(sess, &in, 1, &out));
    float stored = strtof(PQgetvalue(res, i, 2), NULL);
    ASSERT_MSG(fabsf(stored - score) <= 1e-4f * fmaxf(1.0f, fabsf(score)),
               "%s: stored score %g, model gives %g", id, (double)stored, (double)score);
    int tr = fh_alert_step(&al[u], stored, FH_T0 + (int64_t)(k + 1) * FH_MIN);
    if (tr != 0) {
      ASSERT(n_exp[u] < 16);
      snprintf(exp_ids[u][n_exp[u]], sizeof exp_ids[u][0], "%s", id);
      exp_kind[u][n_exp[u]] = tr;
      exp_seq[u][n_exp[u]] = al[u].seq;
      n_exp[u]++;
    }
  }
  PQclear(res);
  moe_session_free(sess);
  moe_model_free(mm);

  /* The outbox: exactly the expected transitions, each once. */
  int total = 0;
  *n_fired = *n_cleared = 0;
  for (int u = 0; u < c->n_units; u++) total += n_exp[u];
  snprintf(sql, sizeof sql,
           "SELECT alert_id, key, topic, payload FROM \"%s\".outbox WHERE domain = 'fault' "
           "ORDER BY key, id",
           c->schema);
  res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  ASSERT_MSG(PQntuples(res) == total, "outbox holds %d fault alerts, the scores give %d",
             PQntuples(res), total);
  int seen[FH_MAX_UNITS] = {0};
  for (int i = 0; i < PQntuples(res); i++) {
    int u;
    ASSERT_EQ(sscanf(PQgetvalue(res, i, 1), "engine-%d", &u), 1);
    u--;
    ASSERT(u >= 0 && u < c->n_units && seen[u] < n_exp[u]);
    int j = seen[u]++;
    char want_id[128];
    snprintf(want_id, sizeof want_id, "fault:%s:rul:%d:%s", PQgetvalue(res, i, 1), exp_seq[u][j],
             exp_kind[u][j] == 1 ? "firing" : "cleared");
    ASSERT_STR_EQ(PQgetvalue(res, i, 0), want_id);
    ASSERT_STR_EQ(PQgetvalue(res, i, 2), c->alerts);
    size_t len;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 3), &len);
    Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, len, b);
    ASSERT_NOT_NULL(a);
    ASSERT_STR_EQ(a->event_id, exp_ids[u][j]);
    ASSERT_EQ(a->state, exp_kind[u][j] == 1 ? SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING
                                            : SLUICE__V1__ALERT_STATE__ALERT_STATE_CLEARED);
    if (exp_kind[u][j] == 1) (*n_fired)++;
    else (*n_cleared)++;
    sluice__v1__alert__free_unpacked(a, NULL);
    PQfreemem(b);
  }
  PQclear(res);
}

static inline void fh_drop(PGconn *conn, const fh_ctx_t *c) {
  char sql[256];
  snprintf(sql, sizeof sql, "SET client_min_messages TO warning; DROP SCHEMA \"%s\" CASCADE",
           c->schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
}

#endif /* TEST_FAULT_HARNESS_H */
