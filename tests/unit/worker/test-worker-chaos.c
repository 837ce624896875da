/*
 * Chaos tests of sluice-worker against the real Kafka broker and PostgreSQL (the binary, not a
 * library): kill -9 in the middle of a stream and restart; poison records mixed into a good
 * stream; a model swap under load (a second valid model, then a corrupt file and SIGHUP).
 * Each ends by checking that every produced event has exactly one result with the score its
 * model gives for the stored input, a consistent decision and a gapless card history
 * (worker-harness.h).
 */
#include "worker-harness.h"

/* kill -9 mid-stream, restart: no missing and no duplicate result, card state continues. */
TEST(kill9_mid_stream_then_restart) {
  hx_ctx_t c;
  hx_init(&c, "k9");
  /* Static membership, as a pod restarted under the same name: the restarted worker takes the
   * partitions back at once instead of after the dead member's session timeout. */
  c.extra[0] = "--kafka-instance-id";
  c.extra[1] = c.group;
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-k9-1", 0.5, "binary");
  hx_model_t m;
  hx_model_open(&m, c.model);
  PGconn *conn = wp_db(&c);
  hx_produce(&c, 0, 3000);
  pid_t pid = hx_start(&c);
  hx_wait_results(conn, &c, 400, pid, 60);
  wp_kill9(pid);
  long at_kill = hx_results(conn, &c);
  fprintf(stderr, "results when killed: %ld of 3000\n", at_kill);
  ASSERT_OP(at_kill, <, 3000); /* killed in the middle, not after the end */

  pid = hx_start(&c);
  hx_produce(&c, 3000, 500); /* and the stream goes on */
  hx_wait_results(conn, &c, 3500, pid, 60);
  long per_version[1];
  wp_wait_offsets(conn, c.schema, 3500, 10);
  hx_check_results(conn, &c, 0, 3500, &m, 1, per_version);
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m);
  wp_drop(conn, &c);
  unlink(c.model);
}

/* What check_dlq's reader needs for each dead-lettered record. */
typedef struct dlq_check_s {
  const hx_ctx_t *c;
  int *by_reason;
  const char *const *reasons;
  int n_reasons;
} dlq_check_t;

/* One DLQ record: a known reason, origin headers, a detail, and the original value. */
static bool dlq_record(const rd_kafka_message_t *msg, void *arg) {
  const dlq_check_t *d = arg;
  const hx_ctx_t *c = d->c;
  char val[512];
  d->by_reason[wp_header_index(msg, "sluice-dlq-reason", d->reasons, d->n_reasons)]++;
  ASSERT_EQ(wp_header(msg, "sluice-origin-topic", val, sizeof val), strlen(c->topic));
  ASSERT_STR_EQ(val, c->topic);
  wp_header(msg, "sluice-origin-partition", val, sizeof val);
  int part = atoi(val);
  ASSERT(part >= 0 && part < HX_PARTS);
  wp_header(msg, "sluice-origin-offset", val, sizeof val);
  long long off = atoll(val);
  ASSERT_OP(off, >=, 0);
  ASSERT_OP(wp_header(msg, "sluice-dlq-detail", val, sizeof val), >, 0);
  /* The origin record at that offset holds exactly the dead-lettered value. */
  char err[512];
  rd_kafka_conf_t *oc = rd_kafka_conf_new();
  rd_kafka_conf_set(oc, "bootstrap.servers", c->brokers, err, sizeof err);
  rd_kafka_conf_set(oc, "group.id", c->group, err, sizeof err);
  rd_kafka_t *orig = rd_kafka_new(RD_KAFKA_CONSUMER, oc, err, sizeof err);
  ASSERT_NOT_NULL(orig);
  rd_kafka_topic_partition_list_t *op = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(op, c->topic, part)->offset = off;
  ASSERT_EQ(rd_kafka_assign(orig, op), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(op);
  rd_kafka_message_t *om = NULL;
  for (int k = 0; k < 100 && om == NULL; k++) {
    om = rd_kafka_consumer_poll(orig, 100);
    if (om && om->err) {
      rd_kafka_message_destroy(om);
      om = NULL;
    }
  }
  ASSERT_NOT_NULL(om);
  ASSERT_EQ(om->offset, off);
  ASSERT_EQ(om->len, msg->len);
  ASSERT(msg->len == 0 || memcmp(om->payload, msg->payload, msg->len) == 0);
  rd_kafka_message_destroy(om);
  rd_kafka_consumer_close(orig);
  rd_kafka_destroy(orig);
  return true;
}

/* Reads the DLQ: counts records per reason and checks origin headers and the original value. */
static void check_dlq(const hx_ctx_t *c, int want, int *by_reason, const char *const *reasons,
                      int n_reasons) {
  dlq_check_t d = {c, by_reason, reasons, n_reasons};
  ASSERT_EQ(wp_consume_all(c, c->dlq, want, 30, dlq_record, &d), want);
}

/* Poison records of every kind between good ones: each is dead-lettered with its reason and
 * origin; the good ones are all scored once and the stream never stops. */
TEST(poison_messages_go_to_the_dlq) {
  hx_ctx_t c;
  hx_init(&c, "poison");
  c.extra[0] = "--event-max-bytes";
  c.extra[1] = "1KiB";
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-poison-1", 0.5, "binary");
  hx_model_t m;
  hx_model_open(&m, c.model);
  PGconn *conn = wp_db(&c);
  pid_t pid = hx_start(&c);

  static const char *const reasons[] = {"decode", "wrong_payload", "invalid", "oversize"};
  int want[4] = {0};
  rd_kafka_t *rk = wp_producer(&c);
  for (int i = 0; i < 2000; i++) {
    uint8_t buf[512];
    char card[32];
    size_t len = hx_event(i, buf, card, sizeof card);
    wp_send(rk, c.topic, card, buf, len);
    if (i % 100 != 50) continue;
    int kind = (i / 100) % 5;
    if (kind == 0) { /* undecodable bytes */
      static const char junk[] = "\xff\xff\xff\xff\x0f not protobuf";
      wp_send(rk, c.topic, card, junk, sizeof junk - 1);
      want[0]++;
    } else if (kind == 1) { /* a valid envelope with a sensor reading, not a transaction */
      Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
      Sluice__V1__SensorReading sr = SLUICE__V1__SENSOR_READING__INIT;
      char id[32];
      snprintf(id, sizeof id, "bad-sensor-%d", i);
      env.event_id = id;
      env.has_event_time_ms = 1;
      env.event_time_ms = 1700000000000LL;
      env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
      env.sensor_reading = &sr;
      sr.device_id = (char *)"dev-1";
      uint8_t b[256];
      wp_send(rk, c.topic, card, b, sluice__v1__envelope__pack(&env, b));
      want[1]++;
    } else if (kind == 2 || kind == 3) { /* negative amount; a currency that is not ISO 4217 */
      Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, len, buf);
      ASSERT_NOT_NULL(env);
      char id[32];
      snprintf(id, sizeof id, "bad-field-%d", i);
      char *old_id = env->event_id;
      env->event_id = id;
      if (kind == 2) env->transaction->amount = -4;
      char *old_cur = env->transaction->currency;
      env->transaction->currency = (char *)"euros";
      if (kind == 2) env->transaction->currency = old_cur;
      uint8_t b[512];
      wp_send(rk, c.topic, card, b, sluice__v1__envelope__pack(env, b));
      env->event_id = old_id;
      env->transaction->currency = old_cur;
      sluice__v1__envelope__free_unpacked(env, NULL);
      want[2]++;
    } else { /* larger than event.max_bytes */
      static uint8_t big[3000];
      memcpy(big, buf, len);
      wp_send(rk, c.topic, card, big, sizeof big);
      want[3]++;
    }
  }
  wp_flush(rk);
  rd_kafka_destroy(rk);

  hx_wait_results(conn, &c, 2000, pid, 60);
  long per_version[1];
  hx_check_results(conn, &c, 0, 2000, &m, 1, per_version);
  int total = want[0] + want[1] + want[2] + want[3];
  /* Every record, poison included, is behind the stored offsets. */
  for (int i = 0; i < 200 && wp_count(conn, "SELECT coalesce(sum(next_offset), 0) FROM "
                                            "\"%s\".kafka_offsets", c.schema) != 2000 + total;
       i++)
    usleep(50000);
  ASSERT_EQ(wp_count(conn, "SELECT sum(next_offset) FROM \"%s\".kafka_offsets", c.schema),
            2000 + total);
  int got[4] = {0};
  check_dlq(&c, total, got, reasons, 4);
  for (int r = 0; r < 4; r++) {
    ASSERT_MSG(got[r] == want[r], "%s: %d dead letters, expected %d", reasons[r], got[r],
               want[r]);
    char series[96];
    snprintf(series, sizeof series, "sluice_events_dead_lettered_total{reason=\"%s\"} ",
             reasons[r]);
    ASSERT_EQ((int)wp_metric(c.port, series), want[r]);
  }
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m);
  wp_drop(conn, &c);
  unlink(c.model);
}

/*
 * A model swap under load: a second valid model replaces the file while events flow (the
 * watcher swaps it in), then a corrupt file and a SIGHUP are refused with the second model
 * still serving. No score fails or goes missing; results before the swap carry the first
 * version, after it the second, and every score is its own model's.
 */
TEST(model_swap_under_load) {
  hx_ctx_t c;
  hx_init(&c, "swap");
  c.extra[0] = "--model-watch-interval";
  c.extra[1] = "100ms";
  char path_a[300], path_b[300], corrupt[300];
  snprintf(path_a, sizeof path_a, "%s.a", c.model);
  snprintf(path_b, sizeof path_b, "%s.b", c.model);
  snprintf(corrupt, sizeof corrupt, "%s.bad", c.model);
  fm_write(path_a, hx_inputs, HX_N_INPUTS, "fraud-swap-a", 0.5, "binary");
  fm_write(path_b, hx_inputs, HX_N_INPUTS, "fraud-swap-b", 0.4, "binary");
  hx_install_model(&c, path_a);
  hx_model_t m[2];
  hx_model_open(&m[0], path_a);
  hx_model_open(&m[1], path_b);
  PGconn *conn = wp_db(&c);
  pid_t pid = hx_start(&c);

  hx_produce(&c, 0, 1000);
  hx_wait_results(conn, &c, 200, pid, 60);
  hx_install_model(&c, path_b); /* while the first thousand flow */
  hx_produce(&c, 1000, 1000);
  wp_wait_metric(c.port, "sluice_model_info{version=\"fraud-swap-b\"} ", 1, 30);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_reloads_total "), 1);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_info{version=\"fraud-swap-a\"} "), -1);

  /* A truncated model file: refused, counted, the second model keeps serving. */
  FILE *f = fopen(corrupt, "wb");
  ASSERT_NOT_NULL(f);
  static char head[200];
  int in = open(path_b, O_RDONLY);
  ASSERT(in >= 0 && read(in, head, sizeof head) == (ssize_t)sizeof head);
  close(in);
  ASSERT_EQ(fwrite(head, 1, sizeof head, f), sizeof head);
  fclose(f);
  hx_install_model(&c, corrupt);
  wp_wait_metric(c.port, "sluice_model_reload_failures_total ", 1, 30);
  ASSERT_OK(kill(pid, SIGHUP)); /* the same file again, on request */
  wp_wait_metric(c.port, "sluice_model_reload_failures_total ", 2, 30);
  /* Valid files that do not fit: a regression task, an input the builder does not produce. */
  char wrong[300];
  snprintf(wrong, sizeof wrong, "%s.wrong", c.model);
  fm_write(wrong, hx_inputs, HX_N_INPUTS, "fraud-swap-regression", -1, "regression");
  hx_install_model(&c, wrong);
  wp_wait_metric(c.port, "sluice_model_reload_failures_total ", 3, 30);
  static const char *const unknown[] = {"amount", "V14", "shoe_size"};
  fm_write(wrong, unknown, 3, "fraud-swap-unknown", 0.5, "binary");
  hx_install_model(&c, wrong);
  wp_wait_metric(c.port, "sluice_model_reload_failures_total ", 4, 30);
  unlink(wrong);
  static char body[65536];
  int status;
  wp_http(c.port, "/readyz", &status, body, sizeof body);
  ASSERT_EQ(status, 200); /* refused files do not touch readiness */
  wp_http(c.port, "/info", &status, body, sizeof body);
  ASSERT_STR_CONTAINS(body, "model_version:fraud-swap-b\n");
  ASSERT_STR_CONTAINS(body, "block_threshold:0.4\n"); /* the second model card's */
  hx_produce(&c, 2000, 1000);
  hx_wait_results(conn, &c, 3000, pid, 60);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_info{version=\"fraud-swap-b\"} "), 1);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_reloads_total "), 1);

  long per_version[2];
  hx_check_results(conn, &c, 0, 3000, m, 2, per_version);
  fprintf(stderr, "results per model: a=%ld b=%ld\n", per_version[0], per_version[1]);
  ASSERT_OP(per_version[0], >=, 200);
  ASSERT_OP(per_version[1], >=, 1000);
  /* Produced after the corrupt file was refused: all scored by the second model. */
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".results WHERE event_id >= 'ev-002000' "
                           "AND model_version <> 'fraud-swap-b'", c.schema), 0);
  /* Per partition, the versions switch once, in offset order: a batch never mixes back. */
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM (SELECT model_version, lag(model_version) OVER "
                           "(PARTITION BY partition ORDER BY \"offset\") AS prev FROM "
                           "\"%s\".results) t WHERE prev = 'fraud-swap-b' AND model_version = "
                           "'fraud-swap-a'", c.schema), 0);
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m[0]);
  hx_model_close(&m[1]);
  wp_drop(conn, &c);
  unlink(c.model);
  unlink(path_a);
  unlink(path_b);
  unlink(corrupt);
}

/* A broker that cannot be reached: after kafka.error_grace /readyz names kafka, and the worker
 * still stops cleanly. */
TEST(unreachable_kafka_reports_not_ready) {
  hx_ctx_t c;
  hx_init(&c, "nokafka");
  c.brokers = "127.0.0.1:1"; /* nothing listens on port 1 */
  c.extra[0] = "--kafka-error-grace";
  c.extra[1] = "500ms";
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-nokafka-1", 0.5, "binary");
  PGconn *conn = wp_db(&c);
  pid_t pid = hx_start(&c);
  wp_wait_metric(c.port, "sluice_kafka_unavailable ", 1, 30);
  int status;
  static char body[4096];
  wp_http(c.port, "/readyz", &status, body, sizeof body);
  ASSERT_EQ(status, 503);
  ASSERT_STR_CONTAINS(body, "kafka");
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c);
  unlink(c.model);
}

/* model.watch_interval is reloadable: off in the config file (only SIGHUP reloads), then set
 * to 100 ms and SIGHUP: from then on a replaced file is swapped in by the watcher. */
TEST(model_watch_interval_reloads_on_sighup) {
  hx_ctx_t c;
  hx_init(&c, "watch");
  char conf[300], path_a[300], path_b[300], path_c[300];
  snprintf(conf, sizeof conf, "%s.conf", c.model);
  snprintf(path_a, sizeof path_a, "%s.a", c.model);
  snprintf(path_b, sizeof path_b, "%s.b", c.model);
  snprintf(path_c, sizeof path_c, "%s.c", c.model);
  FILE *f = fopen(conf, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f, "model.watch_interval = 0\n");
  fclose(f);
  c.extra[0] = "--config";
  c.extra[1] = conf;
  fm_write(path_a, hx_inputs, HX_N_INPUTS, "fraud-watch-a", 0.5, "binary");
  fm_write(path_b, hx_inputs, HX_N_INPUTS, "fraud-watch-b", 0.5, "binary");
  fm_write(path_c, hx_inputs, HX_N_INPUTS, "fraud-watch-c", 0.5, "binary");
  hx_install_model(&c, path_a);
  PGconn *conn = wp_db(&c);
  pid_t pid = hx_start(&c);
  hx_produce(&c, 0, 200);
  hx_wait_results(conn, &c, 200, pid, 60);
  hx_install_model(&c, path_b);
  usleep(1500000); /* no watcher: nothing may happen */
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_reloads_total "), 0);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_info{version=\"fraud-watch-a\"} "), 1);

  f = fopen(conf, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f, "model.watch_interval = 100ms\n");
  fclose(f);
  ASSERT_OK(kill(pid, SIGHUP)); /* settings, then the file: b */
  wp_wait_metric(c.port, "sluice_model_info{version=\"fraud-watch-b\"} ", 1, 30);
  hx_install_model(&c, path_c); /* now the watcher sees it */
  wp_wait_metric(c.port, "sluice_model_info{version=\"fraud-watch-c\"} ", 1, 30);
  ASSERT_EQ((int)wp_metric(c.port, "sluice_model_reloads_total "), 2);
  hx_produce(&c, 200, 100);
  hx_wait_results(conn, &c, 300, pid, 60);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".results WHERE event_id >= 'ev-000200' "
                           "AND model_version <> 'fraud-watch-c'", c.schema), 0);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c);
  unlink(c.model);
  unlink(conf);
  unlink(path_a);
  unlink(path_b);
  unlink(path_c);
}

/* Crash-only stays the fallback: a batch statement that PostgreSQL rejects every time (here a
 * CHECK constraint no score meets) is retried through recoveries, then the worker exits 1;
 * restarted once the cause is gone, it stores every event exactly once. */
TEST(repeatedly_rejected_commit_exits_then_restart_completes) {
  hx_ctx_t c;
  hx_init(&c, "rej");
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-rej-1", 0.5, "binary");
  hx_model_t m;
  hx_model_open(&m, c.model);
  PGconn *conn = wp_db(&c);
  hx_produce(&c, 0, 300);
  pid_t pid = hx_start(&c);
  hx_wait_results(conn, &c, 300, pid, 60);
  PGresult *res = wp_query(conn, PGRES_COMMAND_OK,
      "ALTER TABLE \"%s\".results ADD CONSTRAINT no_scores CHECK (score < 0) NOT VALID",
      c.schema);
  PQclear(res);
  hx_produce(&c, 300, 300);
  int st = 0;
  bool exited = false;
  for (int i = 0; i < 600 && !exited; i++) {
    exited = waitpid(pid, &st, WNOHANG) == pid;
    if (!exited) usleep(50000);
  }
  ASSERT_MSG(exited, "the worker kept running with every commit rejected");
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  ASSERT_EQ(hx_results(conn, &c), 300);
  res = wp_query(conn, PGRES_COMMAND_OK,
      "ALTER TABLE \"%s\".results DROP CONSTRAINT no_scores", c.schema);
  PQclear(res);
  pid = hx_start(&c);
  hx_wait_results(conn, &c, 600, pid, 60);
  long per_version[1];
  hx_check_results(conn, &c, 0, 600, &m, 1, per_version);
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m);
  wp_drop(conn, &c);
  unlink(c.model);
}

/*
 * A model whose inputs are named as the ULB credit-card CSV names its columns (V1..V28 and
 * "Amount", as models/fraud.safetensors is trained): the worker starts with it, serves it, and
 * feeds "Amount" the transaction's amount (the alias in fraud-input.c) and V1..V28 the
 * transaction's precomputed features.
 */
TEST(csv_named_model_is_served) {
  hx_ctx_t c;
  hx_init(&c, "csv");
  char names[WK_FRAUD_N_PRECOMPUTED + 1][8];
  const char *inputs[WK_FRAUD_N_PRECOMPUTED + 1];
  for (int k = 0; k < WK_FRAUD_N_PRECOMPUTED; k++) {
    snprintf(names[k], sizeof names[k], "V%d", k + 1);
    inputs[k] = names[k];
  }
  inputs[WK_FRAUD_N_PRECOMPUTED] = "Amount";
  const int n_inputs = WK_FRAUD_N_PRECOMPUTED + 1;
  fm_write(c.model, inputs, n_inputs, "fraud-csv-1", 0.5, "binary");
  hx_model_t m;
  hx_model_open(&m, c.model);
  PGconn *conn = wp_db(&c);
  const int n = 200;
  hx_produce(&c, 0, n);
  pid_t pid = hx_start(&c);
  hx_wait_results(conn, &c, n, pid, 60);
  ASSERT_EQ(hx_results(conn, &c), n);
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT event_id, score, model_version, input FROM \"%s\".results ORDER BY event_id",
      c.schema);
  ASSERT_EQ(PQntuples(res), n);
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "ev-%06d", i);
    ASSERT_STR_EQ(PQgetvalue(res, i, 0), id);
    ASSERT_STR_EQ(PQgetvalue(res, i, 2), "fraud-csv-1");
    float x[WK_FRAUD_N_PRECOMPUTED + 1];
    ASSERT_EQ(wp_parse_reals(PQgetvalue(res, i, 3), x, n_inputs), n_inputs);
    /* What hx_event(i) put into the transaction. */
    ASSERT_EQ(x[WK_FRAUD_N_PRECOMPUTED], (float)(5.0 + (i * 37) % 400));
    for (int k = 0; k < WK_FRAUD_N_PRECOMPUTED; k++)
      ASSERT_EQ(x[k], (float)((i + k) % 7) - 3.0f);
    wk_score_t s;
    char err[256];
    ASSERT_OK(m.sc->score(m.sess, x, 1, &s, NULL, err, sizeof err));
    ASSERT_NEAR(atof(PQgetvalue(res, i, 1)), (double)s.score, 1e-5);
  }
  PQclear(res);
  ASSERT_EQ(wp_stop(pid), 0);
  hx_model_close(&m);
  wp_drop(conn, &c);
  unlink(c.model);
}
