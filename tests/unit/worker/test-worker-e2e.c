/*
 * End-to-end test of sluice-worker against the real Kafka broker and PostgreSQL: the test
 * writes a tiny model, produces valid and bad events, runs the worker binary, and checks that
 * every valid event was scored and stored once with its card's velocity state carried from
 * event to event, that bad events went to the DLQ with reason and origin headers without
 * stopping the stream, that /metrics and /readyz report it, that SIGTERM stops the worker
 * cleanly, and that a restarted worker resumes from the offsets and card state stored in
 * PostgreSQL (no event scored twice, velocity counts continuing).
 */
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "fraud-input.h"
#include "sluice/v1/results.pb-c.h"
#include "fraud-model.h"
#include "svc/kafka.h"

#define N_CARDS 10
#define N_PARTS 3

static const char *const model_inputs[] = {"amount", "log_amount", "V14", "has_card",
                                           "v_count_1h", "v_amount_z", "v_n_seen"};

typedef struct ctx_s {
  const char *brokers, *dsn;
  char topic[128], dlq[128], alerts[128], group[128], schema[96], model[256];
  const char *block; /* --fraud-block-threshold */
  const char *max_queued; /* --backpressure-max-events */
  unsigned port;
} ctx_t;

static unsigned free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  socklen_t len = sizeof sa;
  ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
  close(fd);
  return ntohs(sa.sin_port);
}

static void produce(const ctx_t *c, int first, int n, int with_bad) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_MSG(rk != NULL, "%s", err);
  float v[WK_FRAUD_N_PRECOMPUTED];
  for (int i = first; i < first + n; i++) {
    char id[32], card[32];
    snprintf(id, sizeof id, "ev-%06d", i);
    snprintf(card, sizeof card, "card-%02d", i % N_CARDS);
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
    uint8_t buf[512];
    size_t len = sluice__v1__envelope__pack(&env, buf);
    ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_KEY(card, strlen(card)),
                                RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    if (with_bad && i == first + n / 2) {
      /* Undecodable bytes, and a transaction without an amount. */
      const char junk[] = "\xff\xff\xff\xff\x0f not protobuf";
      ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_KEY("bad", 3),
                                  RD_KAFKA_V_VALUE((void *)junk, sizeof junk - 1),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      tx.has_amount = 0;
      snprintf(id, sizeof id, "ev-noamount");
      len = sluice__v1__envelope__pack(&env, buf);
      ASSERT_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_KEY(card, strlen(card)),
                                  RD_KAFKA_V_VALUE(buf, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  }
  ASSERT_EQ(rd_kafka_flush(rk, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(rk);
}

static pid_t start_worker_on(const ctx_t *c, unsigned http_port) {
  char bin[512], port[16];
  const char *bdir = getenv("SLUICE_BINARY_DIR");
  ASSERT_NOT_NULL(bdir);
  snprintf(bin, sizeof bin, "%s/bin/sluice-worker", bdir);
  snprintf(port, sizeof port, "%u", http_port);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    /* A failing test aborts: the worker must not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setenv("SLUICE_KAFKA_BROKERS", c->brokers, 1);
    setenv("SLUICE_PG_DSN", c->dsn, 1);
    char *argv[] = {bin,
                    "--kafka-group", (char *)c->group,
                    "--fraud-topic", (char *)c->topic,
                    "--fraud-dlq-topic", (char *)c->dlq,
                    "--fraud-alerts-topic", (char *)(c->alerts[0] ? c->alerts : "sluice.fraud.alerts"),
                    "--fraud-block-threshold", (char *)(c->block ? c->block : "-1"),
                    "--backpressure-max-events", (char *)(c->max_queued ? c->max_queued : "20000"),
                    "--pg-schema", (char *)c->schema,
                    "--http-address", "127.0.0.1",
                    "--http-port", port,
                    "--model-path", (char *)c->model,
                    "--batch-max", "32",
                    "--batch-wait", "20ms",
                    "--log-level", "warn",
                    NULL};
    execv(bin, argv);
    perror("execv sluice-worker");
    _exit(127);
  }
  return pid;
}

static pid_t start_worker(const ctx_t *c) { return start_worker_on(c, c->port); }

static int stop_worker(pid_t pid) {
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

static long count(PGconn *conn, const char *fmt, const char *schema) {
  char sql[512];
  snprintf(sql, sizeof sql, fmt, schema);
  PGresult *res = PQexec(conn, sql);
  long v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) v = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

/* Waits until the results table holds `want` rows; fails after 60 s. */
static void wait_results(PGconn *conn, const ctx_t *c, long want, pid_t pid) {
  long have = -1;
  for (int i = 0; i < 1200; i++) {
    have = count(conn, "SELECT count(*) FROM \"%s\".results", c->schema);
    if (have == want) return;
    int status;
    ASSERT_MSG(waitpid(pid, &status, WNOHANG) == 0, "worker exited early (status %d)", status);
    usleep(50000);
  }
  ASSERT_MSG(0, "results: %ld rows after 60 s, expected %ld", have, want);
}

static void http_get(unsigned port, const char *path, int *status, char *body, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof sa));
  char req[256];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  ASSERT_EQ(write(fd, req, strlen(req)), (ssize_t)strlen(req));
  static char buf[65536];
  size_t len = 0;
  ssize_t k;
  while ((k = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
  buf[len] = '\0';
  close(fd);
  ASSERT_EQ(sscanf(buf, "HTTP/1.%*d %d", status), 1);
  const char *b = strstr(buf, "\r\n\r\n");
  snprintf(body, size, "%s", b ? b + 4 : "");
}

/* The v_n_seen input of each card's results, in offset order, must count 0, 1, 2, ... */
static void check_velocity_chain(PGconn *conn, const ctx_t *c, long per_card) {
  int idx = 6; /* v_n_seen is model input 7 (1-based in SQL) */
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT key, input[%d] FROM \"%s\".results ORDER BY key, partition, \"offset\"",
           idx + 1, c->schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  ASSERT_EQ(PQntuples(res), N_CARDS * per_card);
  for (int i = 0; i < PQntuples(res); i++) {
    long want = i % per_card;
    ASSERT_MSG(atof(PQgetvalue(res, i, 1)) == (double)want, "%s: v_n_seen %s, expected %ld",
               PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), want);
  }
  PQclear(res);
}

static void check_dlq(const ctx_t *c) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", c->group, err, sizeof err);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_NOT_NULL(rk);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, c->dlq, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  ASSERT_EQ(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  int got = 0, decode = 0, invalid = 0;
  for (int i = 0; i < 100 && got < 2; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (m == NULL) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      got++;
      rd_kafka_headers_t *hdrs = NULL;
      ASSERT_EQ(rd_kafka_message_headers(m, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
      const void *val;
      size_t len;
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-dlq-reason", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      if (len == 6 && memcmp(val, "decode", 6) == 0) decode++;
      if (len == 7 && memcmp(val, "invalid", 7) == 0) invalid++;
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-origin-topic", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      ASSERT_EQ(len, strlen(c->topic));
      ASSERT_EQ(memcmp(val, c->topic, len), 0);
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-origin-partition", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-origin-offset", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-dlq-detail", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      ASSERT_OP(len, >, 0);
    }
    rd_kafka_message_destroy(m);
  }
  ASSERT_EQ(got, 2);
  ASSERT_EQ(decode, 1);
  ASSERT_EQ(invalid, 1);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

/* Waits until every outbox row is marked published, then reads the alerts topic: each alert
 * id is there (at least once), with the Alert payload of its event. */
static void check_alerts(PGconn *conn, const ctx_t *c, long want) {
  for (int i = 0; i < 600 && count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE published_at "
                                         "IS NULL", c->schema) != 0; i++)
    usleep(50000);
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE published_at IS NULL", c->schema), 0);
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".outbox", c->schema), want);
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", c->group, err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  ASSERT_NOT_NULL(rk);
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, c->alerts, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  ASSERT_EQ(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(parts);
  static char seen[100000];
  memset(seen, 0, sizeof seen);
  long distinct = 0;
  for (int i = 0; i < 200 && distinct < want; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m == NULL) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_t *hdrs = NULL;
      const void *val;
      size_t len;
      ASSERT_EQ(rd_kafka_message_headers(m, &hdrs), RD_KAFKA_RESP_ERR_NO_ERROR);
      ASSERT_EQ(rd_kafka_header_get_last(hdrs, "sluice-alert-id", &val, &len),
                RD_KAFKA_RESP_ERR_NO_ERROR);
      Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, m->len, m->payload);
      ASSERT_NOT_NULL(a);
      ASSERT_EQ(len, strlen(a->alert_id));
      ASSERT_EQ(memcmp(val, a->alert_id, len), 0);
      char want_id[64];
      snprintf(want_id, sizeof want_id, "fraud:%s", a->event_id);
      ASSERT_STR_EQ(a->alert_id, want_id); /* stable: derived from the event */
      ASSERT_EQ(a->state, SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING);
      int k = atoi(a->event_id + 3);
      ASSERT(k >= 0 && k < (int)sizeof seen);
      if (!seen[k]) distinct++;
      seen[k] = 1;
      sluice__v1__alert__free_unpacked(a, NULL);
    }
    rd_kafka_message_destroy(m);
  }
  ASSERT_EQ(distinct, want);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

TEST(worker_end_to_end) {
  ctx_t c = {0};
  c.brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c.dsn = test_require_env("SLUICE_PG_DSN");
  test_unique_name(c.topic, sizeof c.topic, "wk-e2e-events");
  test_unique_name(c.dlq, sizeof c.dlq, "wk-e2e-dlq");
  test_unique_name(c.alerts, sizeof c.alerts, "wk-e2e-alerts");
  c.block = "0"; /* every event is blocked: one alert each */
  /* A bound of one event: any batch waiting behind the one in flight pauses fetching (whether
   * the backlog makes one wait depends on timing; the restart below forces it). */
  c.max_queued = "1";
  test_unique_name(c.group, sizeof c.group, "wk-e2e-group");
  snprintf(c.schema, sizeof c.schema, "wk_e2e_%ld_%ld", (long)getpid(), (long)time(NULL));
  snprintf(c.model, sizeof c.model, "/tmp/wk-e2e-%ld.safetensors", (long)getpid());
  c.port = free_port();
  char err[512];
  ASSERT_MSG(kq_topic_create(c.brokers, c.topic, N_PARTS, 1, 20000, err, sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_MSG(kq_topic_create(c.brokers, c.dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  ASSERT_MSG(kq_topic_create(c.brokers, c.alerts, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  fm_write(c.model, model_inputs, 7, "fraud-e2e-1", 0.5, "binary");

  /* 10 cards x 12 events, plus two bad records in the middle. */
  produce(&c, 0, 120, 1);
  pid_t pid = start_worker(&c);
  PGconn *conn = PQconnectdb(c.dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
  wait_results(conn, &c, 120, pid);
  check_velocity_chain(conn, &c, 12);
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".card_state", c.schema), N_CARDS);
  /* Every record, bad ones included, is behind the stored offsets. */
  for (int i = 0; i < 100 && count(conn, "SELECT coalesce(sum(next_offset), 0) FROM \"%s\".kafka_offsets",
                                   c.schema) != 122; i++)
    usleep(50000);
  ASSERT_EQ(count(conn, "SELECT sum(next_offset) FROM \"%s\".kafka_offsets", c.schema), 122);
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".results WHERE decision NOT IN "
                        "('allow','review','block') OR model_version <> 'fraud-e2e-1' OR "
                        "array_length(input, 1) <> 7 OR jsonb_array_length(experts) <> 2 OR "
                        "jsonb_array_length(top_features) <> 5 OR "
                        "top_features->0->>'name' NOT IN ('amount', 'log_amount', 'V14', "
                        "'has_card', 'v_count_1h', 'v_amount_z', 'v_n_seen')",
                  c.schema),
            0);
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".outbox", c.schema),
            count(conn, "SELECT count(*) FROM \"%s\".results WHERE decision = 'block'", c.schema));

  int status;
  static char body[65536];
  http_get(c.port, "/readyz", &status, body, sizeof body);
  ASSERT_EQ(status, 200);
  /* The worker counts a batch right after PostgreSQL answers; the test may look first. */
  for (int i = 0; i < 100; i++) {
    http_get(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, "sluice_events_scored_total 120\n")) break;
    usleep(50000);
  }
  ASSERT_EQ(status, 200);
  ASSERT_STR_CONTAINS(body, "sluice_events_scored_total 120\n");
  ASSERT_STR_CONTAINS(body, "sluice_events_dead_lettered_total{reason=\"decode\"} 1\n");
  ASSERT_STR_CONTAINS(body, "sluice_events_dead_lettered_total{reason=\"invalid\"} 1\n");
  ASSERT_STR_CONTAINS(body, "sluice_model_info{version=\"fraud-e2e-1\"} 1\n");
  ASSERT_STR_CONTAINS(body, "sluice_inference_seconds_count ");
  ASSERT_STR_CONTAINS(body, "sluice_decisions_total{decision=\"block\"} 120\n");
  ASSERT_STR_CONTAINS(body, "sluice_consumer_paused 0\n"); /* resumed once drained */
  const char *pauses = strstr(body, "sluice_backpressure_pauses_total ");
  ASSERT_NOT_NULL(pauses);
  fprintf(stderr, "back-pressure pauses during the backlog: %ld\n",
          atol(pauses + strlen("sluice_backpressure_pauses_total ")));
  /* Lag per partition, refreshed every 2 s: caught up, so 0 on each of the three. */
  char lag[3][256];
  for (int p = 0; p < N_PARTS; p++)
    snprintf(lag[p], sizeof lag[p], "sluice_consumer_lag{topic=\"%s\",partition=\"%d\"} 0\n",
             c.topic, p);
  for (int i = 0; i < 200; i++) {
    http_get(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, lag[0]) && strstr(body, lag[1]) && strstr(body, lag[2])) break;
    usleep(50000);
  }
  for (int p = 0; p < N_PARTS; p++) ASSERT_STR_CONTAINS(body, lag[p]);
  ASSERT_STR_CONTAINS(body, "sluice_partitions_assigned 3\n");
  http_get(c.port, "/info", &status, body, sizeof body);
  ASSERT_EQ(status, 200);
  ASSERT_STR_CONTAINS(body, "# worker\nstate:running\n");
  ASSERT_STR_CONTAINS(body, "model_version:fraud-e2e-1\n");
  ASSERT_STR_CONTAINS(body, "block_threshold:0\n");
  ASSERT_STR_CONTAINS(body, "sluice_batch_size:count=");
  check_dlq(&c);

  ASSERT_EQ(stop_worker(pid), 0);

  /* Restart: more events for the same cards; the worker resumes from PostgreSQL. The results
   * table is locked meanwhile, so the first batch waits in PostgreSQL, the next one queues
   * behind it and back-pressure must pause fetching until the lock goes. */
  PGconn *locker = PQconnectdb(c.dsn);
  ASSERT_MSG(PQstatus(locker) == CONNECTION_OK, "%s", PQerrorMessage(locker));
  char lock_sql[256];
  snprintf(lock_sql, sizeof lock_sql, "BEGIN; LOCK TABLE \"%s\".results IN EXCLUSIVE MODE",
           c.schema);
  PGresult *lr = PQexec(locker, lock_sql);
  ASSERT_MSG(PQresultStatus(lr) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(lr));
  PQclear(lr);
  produce(&c, 120, 60, 0);
  pid = start_worker(&c);
  bool paused = false;
  for (int i = 0; i < 400 && !paused; i++) {
    usleep(50000);
    int st;
    ASSERT_MSG(waitpid(pid, &st, WNOHANG) == 0, "worker exited early (status %d)", st);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int up = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (!up) continue;
    http_get(c.port, "/metrics", &status, body, sizeof body);
    paused = strstr(body, "sluice_consumer_paused 1\n") != NULL;
  }
  ASSERT_MSG(paused, "fetching never paused while PostgreSQL was blocked");
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".results", c.schema), 120);
  lr = PQexec(locker, "COMMIT");
  PQclear(lr);
  PQfinish(locker);
  wait_results(conn, &c, 180, pid);
  for (int i = 0; i < 100; i++) {
    http_get(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, "sluice_consumer_paused 0\n")) break;
    usleep(50000);
  }
  ASSERT_STR_CONTAINS(body, "sluice_consumer_paused 0\n"); /* resumed */
  check_velocity_chain(conn, &c, 18);
  ASSERT_EQ(count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".results", c.schema), 180);
  check_alerts(conn, &c, 180);
  ASSERT_EQ(stop_worker(pid), 0);

  char sql[256];
  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", c.schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
  unlink(c.model);
}

/*
 * Two workers in one group: the second joins mid-stream (cooperative rebalance moves some
 * partitions to it), then the first stops (its partitions move over). Each move hands the
 * partition over through PostgreSQL, so every event is scored exactly once and every card's
 * velocity state continues without a gap across owners.
 */
TEST(rebalance_hands_state_over) {
  ctx_t c = {0};
  c.brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c.dsn = test_require_env("SLUICE_PG_DSN");
  test_unique_name(c.topic, sizeof c.topic, "wk-rb-events");
  test_unique_name(c.dlq, sizeof c.dlq, "wk-rb-dlq");
  test_unique_name(c.group, sizeof c.group, "wk-rb-group");
  snprintf(c.schema, sizeof c.schema, "wk_rb_%ld_%ld", (long)getpid(), (long)time(NULL));
  snprintf(c.model, sizeof c.model, "/tmp/wk-rb-%ld.safetensors", (long)getpid());
  char err[512];
  ASSERT_MSG(kq_topic_create(c.brokers, c.topic, N_PARTS, 1, 20000, err, sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_MSG(kq_topic_create(c.brokers, c.dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  fm_write(c.model, model_inputs, 7, "fraud-rb-1", 0.5, "binary");
  PGconn *conn = PQconnectdb(c.dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));

  unsigned port_a = free_port(), port_b = free_port();
  pid_t a = start_worker_on(&c, port_a);
  produce(&c, 0, 100, 0);
  wait_results(conn, &c, 100, a);

  pid_t b = start_worker_on(&c, port_b);
  /* Wait until the second worker owns partitions (it is ready only then). */
  int status = 0;
  static char body[4096];
  for (int i = 0; i < 400; i++) {
    usleep(50000);
    int st;
    if (waitpid(b, &st, WNOHANG) != 0) ASSERT_MSG(0, "second worker exited (status %d)", st);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_b)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int up = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (!up) continue;
    http_get(port_b, "/readyz", &status, body, sizeof body);
    if (status == 200) break;
  }
  ASSERT_EQ(status, 200);
  produce(&c, 100, 100, 0);
  wait_results(conn, &c, 200, a);

  ASSERT_EQ(stop_worker(a), 0);
  produce(&c, 200, 100, 0);
  wait_results(conn, &c, 300, b);
  check_velocity_chain(conn, &c, 30);
  ASSERT_EQ(count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".results", c.schema), 300);
  ASSERT_EQ(stop_worker(b), 0);

  char sql[256];
  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", c.schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
  unlink(c.model);
}

/*
 * In-process recovery: the worker's PostgreSQL sessions are terminated while it works. A batch
 * in flight then has an unknown outcome; the worker must not exit but discard what is not
 * committed, reconnect, restore offsets and card states from PostgreSQL and go on, so that in
 * the end every event is stored exactly once with a gapless card history.
 */
TEST(database_loss_recovers) {
  ctx_t c = {0};
  c.brokers = test_require_env("SLUICE_KAFKA_BROKERS");
  c.dsn = test_require_env("SLUICE_PG_DSN");
  test_unique_name(c.topic, sizeof c.topic, "wk-db-events");
  test_unique_name(c.dlq, sizeof c.dlq, "wk-db-dlq");
  test_unique_name(c.group, sizeof c.group, "wk-db-group");
  snprintf(c.schema, sizeof c.schema, "wk_db_%ld_%ld", (long)getpid(), (long)time(NULL));
  snprintf(c.model, sizeof c.model, "/tmp/wk-db-%ld.safetensors", (long)getpid());
  c.port = free_port();
  char err[512];
  ASSERT_MSG(kq_topic_create(c.brokers, c.topic, N_PARTS, 1, 20000, err, sizeof err) == SVC_OK,
             "%s", err);
  ASSERT_MSG(kq_topic_create(c.brokers, c.dlq, 1, 1, 20000, err, sizeof err) == SVC_OK, "%s",
             err);
  fm_write(c.model, model_inputs, 7, "fraud-db-1", 0.5, "binary");
  PGconn *conn = PQconnectdb(c.dsn);
  ASSERT_MSG(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));

  produce(&c, 0, 300, 0);
  pid_t pid = start_worker(&c);
  /* Once some results are in, cut every session that touches this test's schema. */
  for (int i = 0; i < 600 && count(conn, "SELECT count(*) FROM \"%s\".results", c.schema) < 30;
       i++)
    usleep(20000);
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> "
           "pg_backend_pid() AND query LIKE '%%%s%%'",
           c.schema);
  PGresult *res = PQexec(conn, sql);
  ASSERT_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
  fprintf(stderr, "terminated %s worker session(s)\n", PQgetvalue(res, 0, 0));
  PQclear(res);

  wait_results(conn, &c, 300, pid); /* fails if the worker exits */
  int status;
  static char body[65536];
  /* The results may all be committed before the worker notices that its idle session was
   * terminated: wait (bounded) for the recovery to be counted. */
  double deadline = test_now_s() + 15;
  do {
    http_get(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, "sluice_recoveries_total{cause=\"connection_lost\"} ") != NULL) break;
    usleep(100 * 1000);
  } while (test_now_s() < deadline);
  ASSERT_STR_CONTAINS(body, "sluice_recoveries_total{cause=\"connection_lost\"} ");
  ASSERT_EQ(count(conn, "SELECT count(*) FROM \"%s\".results", c.schema), 300);
  check_velocity_chain(conn, &c, 30);
  ASSERT_EQ(count(conn, "SELECT sum(next_offset) FROM \"%s\".kafka_offsets", c.schema), 300);
  ASSERT_EQ(stop_worker(pid), 0);

  snprintf(sql, sizeof sql, "DROP SCHEMA \"%s\" CASCADE", c.schema);
  PQclear(PQexec(conn, sql));
  PQfinish(conn);
  unlink(c.model);
}
