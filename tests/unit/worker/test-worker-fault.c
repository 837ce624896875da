/*
 * The fault pipeline in the real sluice-worker binary (--pipeline=fault, models/fault-cmapss),
 * against the real Kafka broker and PostgreSQL, fed with real C-MAPSS engines run to failure
 * and overhauled (fault-harness.h): kill -9 mid-stream and restart; poison records of every
 * kind mixed into the stream; two workers sharing the partitions through two rebalances. Each
 * ends with the harness's check: every reading from the T-th on scored exactly once with the
 * model's score of its stored window (the file's rows), and the outbox holding exactly the
 * alert transitions those scores give, once each.
 */
#include "test.h"

#include "fault-harness.h"

#define N_UNITS 6

static fh_ctx_t ctx; /* large: the data set */

/* kill -9 in the middle, restart: nothing missing, nothing twice, alerts exactly once. */
TEST(kill9_mid_stream_then_restart) {
  fh_ctx_t *c = &ctx;
  fh_init(c, "k9", N_UNITS);
  /* Static membership, as a pod restarted under the same name: the restarted worker takes the
   * partitions back at once instead of after the dead member's session timeout. */
  c->w.extra[0] = "--kafka-instance-id";
  c->w.extra[1] = c->w.group;
  PGconn *conn = wp_db(&c->w);
  /* A first part, scored while the group settles (a member killed during its first rebalance
   * holds the partitions until its session times out, static membership or not), then the
   * rest, and the kill while that is being scored. The first part ends 50 readings after each
   * engine's first window (fh_init: every engine has T + 20 or more before its overhaul). */
  int cut = c->T + 50;
  long total = fh_produce(c, 0, cut);
  pid_t pid = fh_start(c);
  long want = fh_expected_results(c), first = N_UNITS * (cut - c->T + 1);
  fh_wait_results(conn, c, first, &pid, 1, 90);
  usleep(500000);
  total += fh_produce(c, cut, FH_MAX_CYCLES + FH_HEALTHY);
  /* Killed as soon as the first batch of the rest is in (polled every 2 ms): waiting for 100
   * more results at the harness's 20 ms polling let a fast worker finish everything first. */
  for (int i = 0; i < 45000 && fh_results(conn, c) <= first; i++) {
    int status;
    ASSERT_MSG(waitpid(pid, &status, WNOHANG) == 0, "worker exited (status %d)", status);
    usleep(2000);
  }
  wp_kill9(pid);
  long at_kill = fh_results(conn, c);
  fprintf(stderr, "results when killed: %ld of %ld\n", at_kill, want);
  ASSERT_OP(at_kill, <, want); /* killed in the middle, not after the end */

  double t0 = test_now_s();
  pid = fh_start(c);
  fh_wait_results(conn, c, want, &pid, 1, 90);
  fprintf(stderr, "restart to the last result: %.2f s\n", test_now_s() - t0);
  int fired, cleared;
  fh_check(conn, c, &fired, &cleared);
  fprintf(stderr, "%ld readings, %ld results, %d alerts fired, %d cleared\n", total, want, fired,
          cleared);
  ASSERT_OP(fired, >=, N_UNITS); /* every engine fails in this data */
  ASSERT_OP(cleared, >=, 1);     /* and the overhauls clear */
  wp_wait_offsets(conn, c->w.schema, total, 10);
  /* the restarted worker restored its devices instead of starting them afresh */
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".fault_state", c->w.schema), N_UNITS);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c->w);
}

/* What read_dlq's reader counts: DLQ records per reason header, and details saying that a
 * reading had no sequence. */
typedef struct dlq_count_s {
  const char *const *reasons;
  int n_reasons;
  int *by_reason;
  int n_no_sequence;
} dlq_count_t;

/* One DLQ record: a known reason and a detail. */
static bool dlq_record(const rd_kafka_message_t *msg, void *arg) {
  dlq_count_t *d = arg;
  char val[512];
  d->by_reason[wp_header_index(msg, "sluice-dlq-reason", d->reasons, d->n_reasons)]++;
  ASSERT_OP(wp_header(msg, "sluice-dlq-detail", val, sizeof val), >, 0u);
  d->n_no_sequence += strstr(val, "no sequence") != NULL;
  return true;
}

/* Reads `want` records of the DLQ and counts them per reason header; returns how many details
 * said "no sequence". */
static int read_dlq(const fh_ctx_t *c, int want, const char *const *reasons, int n_reasons,
                    int *by_reason) {
  dlq_count_t d = {reasons, n_reasons, by_reason, 0};
  ASSERT_EQ(wp_consume_all(&c->w, c->w.dlq, want, 30, dlq_record, &d), want);
  return d.n_no_sequence;
}

/* Poison of every kind among good readings: each goes to the DLQ with its reason, the good
 * stream is scored exactly as without them. */
TEST(poison_messages_go_to_the_dlq) {
  fh_ctx_t *c = &ctx;
  fh_init(c, "poison", 3);
  PGconn *conn = wp_db(&c->w);
  pid_t pid = fh_start(c);
  long total = fh_produce(c, 0, 100);
  rd_kafka_t *rk = wp_producer(&c->w);
  uint8_t buf[4096];
  /* decode: not a protobuf Envelope */
  wp_send(rk, c->w.topic, "engine-01", "\xff\xff\xff\xff garbage", 12);
  /* wrong_payload: an Envelope carrying a Transaction */
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  env.event_id = "p-tx";
  env.has_event_time_ms = 1;
  env.event_time_ms = FH_T0;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env.transaction = &tx;
  tx.has_amount = 1;
  tx.amount = 3;
  wp_send(rk, c->w.topic, "engine-01", buf, sluice__v1__envelope__pack(&env, buf));
  /* invalid: a reading without the file's last four channels (sensor_18..21; the shipped
   * model reads sensor_20 and sensor_21) */
  int64_t seq = 51;
  size_t len = fh_pack("p-missing", "engine-01", FH_T0 + 101 * FH_MIN, &seq, c->rows[0][50], 20,
                       buf, sizeof buf);
  wp_send(rk, c->w.topic, "engine-01", buf, len);
  /* invalid: every channel but no sequence, which the model's "cycle" channel reads */
  len = fh_pack("p-noseq", "engine-01", FH_T0 + 101 * FH_MIN, NULL, c->rows[0][50], 24, buf,
                sizeof buf);
  wp_send(rk, c->w.topic, "engine-01", buf, len);
  /* late: 90 minutes behind engine-01's newest reading (lateness 5m) */
  seq = 10;
  len = fh_pack("p-late", "engine-01", FH_T0 + 10 * FH_MIN, &seq, c->rows[0][9], 24, buf,
                sizeof buf);
  wp_send(rk, c->w.topic, "engine-01", buf, len);
  /* duplicate: the event time of engine-01's newest reading (k = 99) */
  seq = 6;
  len = fh_pack("p-dup", "engine-01", FH_T0 + 100 * FH_MIN, &seq, c->rows[0][5], 24, buf,
                sizeof buf);
  wp_send(rk, c->w.topic, "engine-01", buf, len);
  wp_flush(rk);
  rd_kafka_destroy(rk);
  total += fh_produce(c, 100, FH_MAX_CYCLES + FH_HEALTHY);

  fh_wait_results(conn, c, fh_expected_results(c), &pid, 1, 90);
  static const char *const reasons[] = {"decode", "wrong_payload", "invalid", "late",
                                        "duplicate"};
  static const int want_by[5] = {1, 1, 2, 1, 1}; /* two invalid: a channel missing, no sequence */
  int by[5] = {0};
  ASSERT_EQ(read_dlq(c, 6, reasons, 5, by), 1);
  for (int r = 0; r < 5; r++)
    ASSERT_MSG(by[r] == want_by[r], "%d records with reason %s", by[r], reasons[r]);
  int fired, cleared;
  fh_check(conn, c, &fired, &cleared);
  ASSERT_OP(fired, >=, 3);
  /* every record, poison included, is committed past */
  wp_wait_offsets(conn, c->w.schema, total + 6, 5);
  ASSERT_EQ(wp_metric(c->w.port, "sluice_fault_window_events_total{status=\"late\"} "), 1);
  ASSERT_EQ(wp_metric(c->w.port, "sluice_fault_window_events_total{status=\"duplicate\"} "), 1);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c->w);
}

/* Two workers in one group: the second joins mid-stream, the first leaves later; the devices'
 * windows and alerts move with their partitions through fault_state. */
TEST(two_workers_and_rebalances) {
  fh_ctx_t *c = &ctx;
  fh_init(c, "rb", N_UNITS);
  PGconn *conn = wp_db(&c->w);
  pid_t pids[2];
  /* Cut points: 20 scored readings per engine before the second worker joins, 100 before the
   * first leaves (every engine has at least T + 20 readings before its overhaul, and 30 after). */
  int cut1 = c->T + 20, cut2 = c->T + 100;
  for (int u = 0; u < N_UNITS; u++) ASSERT_OP(fh_stream_len(c, u), >=, cut2);
  pids[0] = fh_start(c);
  long total = fh_produce(c, 0, cut1);
  fh_wait_results(conn, c, N_UNITS * (cut1 - c->T + 1), pids, 1, 90);

  fh_ctx_t *c2 = malloc(sizeof *c2); /* the second worker: same group, own HTTP port */
  ASSERT_NOT_NULL(c2);
  memcpy(c2, c, sizeof *c2);
  c2->w.port = wp_free_port();
  pids[1] = fh_start(c2);
  for (int i = 0; i < 200 && wp_metric(c2->w.port, "sluice_partitions_assigned ") < 1; i++)
    usleep(50000);
  total += fh_produce(c, cut1, cut2);
  fh_wait_results(conn, c, N_UNITS * (cut2 - c->T + 1), pids, 2, 90);
  double w2 = wp_metric(c2->w.port, "sluice_fault_window_events_total{status=\"ok\"} ");
  fprintf(stderr, "second worker folded %g readings\n", w2);
  ASSERT_OP(w2, >, 0); /* it took part */

  ASSERT_EQ(wp_stop(pids[0]), 0); /* the first leaves: the second takes every partition */
  total += fh_produce(c, cut2, FH_MAX_CYCLES + FH_HEALTHY);
  fh_wait_results(conn, c, fh_expected_results(c), pids + 1, 1, 90);
  int fired, cleared;
  fh_check(conn, c, &fired, &cleared);
  ASSERT_OP(fired, >=, N_UNITS);
  wp_wait_offsets(conn, c->w.schema, total, 10);
  ASSERT_EQ(wp_stop(pids[1]), 0);
  free(c2);
  wp_drop(conn, &c->w);
}

/* The tabular model in the worker: AI4I machines (one reading each, as `sluice replay` sends
 * them: device = Product ID, device_type = Type), every reading scored once with the model's
 * probability of its stored input, and one FIRING alert for every machine at or above the
 * model card's threshold (the default enter; one reading cannot stay anywhere for long). */
TEST(ai4i_tabular_every_reading_once) {
  fh_ctx_t *c = &ctx;
  fh_init(c, "ai", 1);
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  snprintf(c->w.model, sizeof c->w.model, "%s/models/fault-ai4i.safetensors", dir ? dir : ".");
  c->no_alert_flags = true;
  char path[512], line[512], err[512];
  snprintf(path, sizeof path, "%s/../shared/data/fault/ai4i2020_train.csv", dir ? dir : ".");
  FILE *f = fopen(path, "r");
  ASSERT_MSG(f != NULL, "cannot open %s", path);
  ASSERT_NOT_NULL(fgets(line, sizeof line, f));
  static const char *const names[5] = {"Air temperature [K]", "Process temperature [K]",
                                       "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"};
  PGconn *conn = wp_db(&c->w);
  pid_t pid = fh_start(c);
  rd_kafka_t *rk = wp_producer(&c->w);
  int n = 0;
  while (n < 2000 && fgets(line, sizeof line, f) != NULL) {
    int udi;
    char pid_s[32], type[8];
    double v[5];
    ASSERT_EQ(sscanf(line, "%d,%31[^,],%7[^,],%lf,%lf,%lf,%lf,%lf", &udi, pid_s, type, &v[0],
                     &v[1], &v[2], &v[3], &v[4]),
              8);
    char id[48];
    snprintf(id, sizeof id, "ai4i:%d", n);
    uint8_t buf[1024];
    size_t len = test_pack_reading(id, pid_s, type, FH_T0 + (int64_t)udi * FH_MIN, names, v, 5, buf,
                                 sizeof buf);
    wp_send(rk, c->w.topic, pid_s, buf, len);
    n++;
  }
  fclose(f);
  wp_flush(rk);
  rd_kafka_destroy(rk);
  fh_wait_results(conn, c, n, &pid, 1, 90);

  moe_model_t *mm = NULL;
  ASSERT_MSG(moe_model_load(c->w.model, &mm, err, sizeof err) == 0, "%s", err);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(mm, 1, &sess));
  float thr = moe_model_threshold(mm);
  ASSERT_EQ(wp_count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".fault_results",
                     c->w.schema),
            n);
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT event_id, score, input::text, alert_phase, "
      "kind FROM \"%s\".fault_results", c->w.schema);
  int firing = 0;
  for (int i = 0; i < PQntuples(res); i++) {
    float in[8];
    ASSERT_EQ(wp_parse_reals(PQgetvalue(res, i, 2), in, 8), 6); /* 5 numeric + Type's id */
    int32_t cat = (int32_t)in[5];
    ASSERT(cat >= 1 && cat < moe_model_categorical_vocab_size(mm, 0)); /* L, M or H: known */
    moe_input_t row = {.numeric = in, .categorical = &cat};
    float p;
    moe_output_t out = {.scores = &p};
    ASSERT_OK(moe_session_run(sess, &row, 1, &out));
    float stored = strtof(PQgetvalue(res, i, 1), NULL);
    ASSERT_MSG(fabsf(stored - p) <= 1e-5f, "%s: stored %g, model %g", PQgetvalue(res, i, 0),
               (double)stored, (double)p);
    ASSERT_STR_EQ(PQgetvalue(res, i, 4), "failure");
    bool fire = stored >= thr;
    ASSERT_STR_EQ(PQgetvalue(res, i, 3), fire ? "firing" : "idle");
    firing += fire;
  }
  PQclear(res);
  moe_session_free(sess);
  moe_model_free(mm);
  fprintf(stderr, "%d readings, %d at or above the threshold %.4f\n", n, firing, (double)thr);
  ASSERT_OP(firing, >, 0);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE alert_id LIKE "
                           "'fault:%%:failure:1:firing'", c->w.schema),
            firing);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox", c->w.schema), firing);
  ASSERT_EQ(wp_stop(pid), 0);
  wp_drop(conn, &c->w);
}
