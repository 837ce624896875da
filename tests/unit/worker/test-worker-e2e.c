/*
 * End-to-end test of sluice-worker against the real Kafka broker and PostgreSQL: the test
 * writes a tiny model, produces valid and bad events, runs the worker binary, and checks that
 * every valid event was scored and stored once with its card's velocity state carried from
 * event to event, that bad events went to the DLQ with reason and origin headers without
 * stopping the stream, that /metrics and /readyz report it, that SIGTERM stops the worker
 * cleanly, and that a restarted worker resumes from the offsets and card state stored in
 * PostgreSQL (no event scored twice, velocity counts continuing). Also: two workers handing
 * partitions over through a rebalance, and the worker's PostgreSQL sessions cut mid-stream.
 * The events, names and worker process are worker-harness.h's and worker-proc.h's (hx_, wp_).
 */
#include "worker-harness.h"

/* Fresh names (prefix "wk", `tag`), the events topic with HX_PARTS partitions, an alerts topic
 * when `alerts`, and the model path /tmp/wk-<tag>-<pid>.safetensors. */
static void e2e_init(hx_ctx_t *c, const char *tag, bool alerts) {
  wp_init(c, "wk", tag, HX_PARTS, alerts);
  snprintf(c->model, sizeof c->model, "/tmp/wk-%s-%ld.safetensors", tag, (long)getpid());
}

/*
 * Produces good events first .. first+n-1 (hx_produce); with `with_bad`, after event first+n/2
 * two bad records: undecodable bytes (key "bad") and that event's transaction without an
 * amount (event id "ev-noamount", same card). Each part is flushed before the next, so the
 * order in every partition is the order given here.
 */
static void produce(const hx_ctx_t *c, int first, int n, bool with_bad) {
  if (!with_bad) {
    hx_produce(c, first, n);
    return;
  }
  int mid = first + n / 2;
  hx_produce(c, first, mid - first + 1);
  uint8_t buf[512];
  char card[32];
  size_t len = hx_event(mid, buf, card, sizeof card);
  Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, len, buf);
  ASSERT_NOT_NULL(env);
  ASSERT_EQ(env->payload_case, SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION);
  char id[] = "ev-noamount";
  char *own_id = env->event_id;
  env->event_id = id;
  env->transaction->has_amount = 0;
  len = sluice__v1__envelope__pack(env, buf);
  env->event_id = own_id; /* freed with the rest */
  sluice__v1__envelope__free_unpacked(env, NULL);
  rd_kafka_t *rk = wp_producer(c);
  const char junk[] = "\xff\xff\xff\xff\x0f not protobuf";
  wp_send(rk, c->topic, "bad", junk, sizeof junk - 1);
  wp_send(rk, c->topic, card, buf, len);
  wp_flush(rk);
  rd_kafka_destroy(rk);
  hx_produce(c, mid + 1, first + n - mid - 1);
}

/* Starts the worker on `port`: fraud topics (alerts to c->alerts, else the default topic),
 * block threshold -1 (no alerts) and at most 20000 queued events unless c->extra says
 * otherwise, batches of 32 with a 20 ms wait. */
static pid_t start_worker_on(const hx_ctx_t *c, unsigned port) {
  const char *const flags[] = {"--fraud-topic", c->topic,
                               "--fraud-dlq-topic", c->dlq,
                               "--fraud-alerts-topic",
                               c->alerts[0] ? c->alerts : "sluice.fraud.alerts",
                               "--fraud-block-threshold", "-1",
                               "--backpressure-max-events", "20000",
                               "--batch-max", "32",
                               "--batch-wait", "20ms",
                               NULL};
  return wp_start(c, port, flags);
}

static pid_t start_worker(const hx_ctx_t *c) { return start_worker_on(c, c->port); }

/* Waits (60 s) until the results table holds `want` rows, then checks it holds no more. */
static void wait_results(PGconn *conn, const hx_ctx_t *c, long want, pid_t pid) {
  hx_wait_results(conn, c, want, pid, 60);
  ASSERT_EQ(hx_results(conn, c), want);
}

/* The v_n_seen input of each card's results, in offset order, must count 0, 1, 2, ... */
static void check_velocity_chain(PGconn *conn, const hx_ctx_t *c, long per_card) {
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT key, input[%d] FROM \"%s\".results ORDER BY key, partition, \"offset\"",
      HX_N_SEEN_INPUT + 1, c->schema);
  ASSERT_EQ(PQntuples(res), HX_CARDS * per_card);
  for (int i = 0; i < PQntuples(res); i++) {
    long want = i % per_card;
    ASSERT_MSG(atof(PQgetvalue(res, i, 1)) == (double)want, "%s: v_n_seen %s, expected %ld",
               PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), want);
  }
  PQclear(res);
}

/* DLQ records per reason, as check_dlq's reader counts them. */
typedef struct dlq_count_s {
  const hx_ctx_t *c;
  int decode, invalid;
} dlq_count_t;

/* One DLQ record: its reason counted, origin topic/partition/offset and a detail there. */
static bool dlq_record(const rd_kafka_message_t *m, void *arg) {
  dlq_count_t *d = arg;
  char val[512];
  wp_header(m, "sluice-dlq-reason", val, sizeof val);
  d->decode += strcmp(val, "decode") == 0;
  d->invalid += strcmp(val, "invalid") == 0;
  ASSERT_EQ(wp_header(m, "sluice-origin-topic", val, sizeof val), strlen(d->c->topic));
  ASSERT_STR_EQ(val, d->c->topic);
  wp_header(m, "sluice-origin-partition", val, sizeof val);
  wp_header(m, "sluice-origin-offset", val, sizeof val);
  ASSERT_OP(wp_header(m, "sluice-dlq-detail", val, sizeof val), >, 0);
  return true;
}

/* The DLQ holds the two bad records: one undecodable, one invalid. */
static void check_dlq(const hx_ctx_t *c) {
  dlq_count_t d = {c, 0, 0};
  ASSERT_EQ(wp_consume_all(c, c->dlq, 2, 20, dlq_record, &d), 2);
  ASSERT_EQ(d.decode, 1);
  ASSERT_EQ(d.invalid, 1);
}

/* Distinct events among the alerts read so far, as check_alerts's reader counts them. */
typedef struct alert_seen_s {
  char seen[100000];
} alert_seen_t;

/* One alert: the sluice-alert-id header is its alert id, "fraud:<event>", firing; counts when
 * the event is new. */
static bool alert_record(const rd_kafka_message_t *m, void *arg) {
  alert_seen_t *s = arg;
  char hid[128];
  size_t len = wp_header(m, "sluice-alert-id", hid, sizeof hid);
  Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, m->len, m->payload);
  ASSERT_NOT_NULL(a);
  ASSERT_EQ(len, strlen(a->alert_id));
  ASSERT_STR_EQ(hid, a->alert_id);
  char want_id[64];
  snprintf(want_id, sizeof want_id, "fraud:%s", a->event_id);
  ASSERT_STR_EQ(a->alert_id, want_id); /* stable: derived from the event */
  ASSERT_EQ(a->state, SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING);
  int k = atoi(a->event_id + 3);
  ASSERT(k >= 0 && k < (int)sizeof s->seen);
  bool fresh = !s->seen[k];
  s->seen[k] = 1;
  sluice__v1__alert__free_unpacked(a, NULL);
  return fresh;
}

/* Waits until every outbox row is marked published, then reads the alerts topic: each alert
 * id is there (at least once), with the Alert payload of its event. */
static void check_alerts(PGconn *conn, const hx_ctx_t *c, long want) {
  for (int i = 0; i < 600 && wp_count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE "
                                            "published_at IS NULL", c->schema) != 0; i++)
    usleep(50000);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox WHERE published_at IS NULL",
                     c->schema), 0);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox", c->schema), want);
  static alert_seen_t s;
  memset(&s, 0, sizeof s);
  ASSERT_EQ(wp_consume_all(c, c->alerts, (int)want, 20, alert_record, &s), want);
}

TEST(worker_end_to_end) {
  hx_ctx_t c;
  e2e_init(&c, "e2e", true);
  /* Every event is blocked: one alert each. A bound of one queued event: any batch waiting
   * behind the one in flight pauses fetching (whether the backlog makes one wait depends on
   * timing; the restart below forces it). After the default flags, so these win. */
  c.extra[0] = "--fraud-block-threshold";
  c.extra[1] = "0";
  c.extra[2] = "--backpressure-max-events";
  c.extra[3] = "1";
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-e2e-1", 0.5, "binary");

  /* 10 cards x 12 events, plus two bad records in the middle. */
  produce(&c, 0, 120, true);
  pid_t pid = start_worker(&c);
  PGconn *conn = wp_db(&c);
  wait_results(conn, &c, 120, pid);
  /* Every record, bad ones included, is behind the stored offsets. */
  wp_wait_offsets(conn, c.schema, 122, 5);
  /* Kafka's committed offsets follow PostgreSQL's (at most a second apart, and once more after
   * the stream goes quiet), for lag tools. */
  wp_wait_kafka_committed(&c, HX_PARTS, 122, 10);
  check_velocity_chain(conn, &c, 12);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".card_state", c.schema), HX_CARDS);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".results WHERE decision NOT IN "
                           "('allow','review','block') OR model_version <> 'fraud-e2e-1' OR "
                           "array_length(input, 1) <> 7 OR jsonb_array_length(experts) <> 2 OR "
                           "jsonb_array_length(top_features) <> 5 OR "
                           "top_features->0->>'name' NOT IN ('amount', 'log_amount', 'V14', "
                           "'has_card', 'v_count_1h', 'v_amount_z', 'v_n_seen')",
                     c.schema),
            0);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".outbox", c.schema),
            wp_count(conn, "SELECT count(*) FROM \"%s\".results WHERE decision = 'block'",
                     c.schema));

  int status;
  static char body[WP_HTTP_MAX];
  wp_http(c.port, "/readyz", &status, body, sizeof body);
  ASSERT_EQ(status, 200);
  /* The worker counts a batch right after PostgreSQL answers; the test may look first. */
  for (int i = 0; i < 100; i++) {
    wp_http(c.port, "/metrics", &status, body, sizeof body);
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
  for (int p = 0; p < HX_PARTS; p++)
    snprintf(lag[p], sizeof lag[p], "sluice_consumer_lag{topic=\"%s\",partition=\"%d\"} 0\n",
             c.topic, p);
  for (int i = 0; i < 200; i++) {
    wp_http(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, lag[0]) && strstr(body, lag[1]) && strstr(body, lag[2])) break;
    usleep(50000);
  }
  ASSERT_EQ(status, 200);
  for (int p = 0; p < HX_PARTS; p++) ASSERT_STR_CONTAINS(body, lag[p]);
  ASSERT_STR_CONTAINS(body, "sluice_partitions_assigned 3\n");
  wp_http(c.port, "/info", &status, body, sizeof body);
  ASSERT_EQ(status, 200);
  ASSERT_STR_CONTAINS(body, "# worker\nstate:running\n");
  ASSERT_STR_CONTAINS(body, "model_version:fraud-e2e-1\n");
  ASSERT_STR_CONTAINS(body, "block_threshold:0\n");
  ASSERT_STR_CONTAINS(body, "sluice_batch_size:count=");
  check_dlq(&c);

  ASSERT_EQ(wp_stop(pid), 0);

  /* Restart: more events for the same cards; the worker resumes from PostgreSQL. The results
   * table is locked meanwhile, so the first batch waits in PostgreSQL, the next one queues
   * behind it and back-pressure must pause fetching until the lock goes. */
  PGconn *locker = wp_db(&c);
  PQclear(wp_query(locker, PGRES_COMMAND_OK,
                   "BEGIN; LOCK TABLE \"%s\".results IN EXCLUSIVE MODE", c.schema));
  produce(&c, 120, 60, false);
  pid = start_worker(&c);
  bool paused = false;
  for (int i = 0; i < 400 && !paused; i++) {
    usleep(50000);
    int st;
    ASSERT_MSG(waitpid(pid, &st, WNOHANG) == 0, "worker exited early (status %d)", st);
    wp_http(c.port, "/metrics", &status, body, sizeof body); /* status 0 until it listens */
    paused = status == 200 && strstr(body, "sluice_consumer_paused 1\n") != NULL;
  }
  ASSERT_MSG(paused, "fetching never paused while PostgreSQL was blocked");
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".results", c.schema), 120);
  PQclear(PQexec(locker, "COMMIT"));
  PQfinish(locker);
  wait_results(conn, &c, 180, pid);
  for (int i = 0; i < 100; i++) {
    wp_http(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, "sluice_consumer_paused 0\n")) break;
    usleep(50000);
  }
  ASSERT_STR_CONTAINS(body, "sluice_consumer_paused 0\n"); /* resumed */
  check_velocity_chain(conn, &c, 18);
  ASSERT_EQ(wp_count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".results", c.schema), 180);
  check_alerts(conn, &c, 180);
  ASSERT_EQ(wp_stop(pid), 0);

  wp_drop(conn, &c);
  unlink(c.model);
}

/*
 * Two workers in one group: the second joins mid-stream (cooperative rebalance moves some
 * partitions to it), then the first stops (its partitions move over). Each move hands the
 * partition over through PostgreSQL, so every event is scored exactly once and every card's
 * velocity state continues without a gap across owners.
 */
TEST(rebalance_hands_state_over) {
  hx_ctx_t c;
  e2e_init(&c, "rb", false);
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-rb-1", 0.5, "binary");
  PGconn *conn = wp_db(&c);

  unsigned port_a = c.port, port_b = wp_free_port();
  pid_t a = start_worker_on(&c, port_a);
  produce(&c, 0, 100, false);
  wait_results(conn, &c, 100, a);

  pid_t b = start_worker_on(&c, port_b);
  /* Wait until the second worker owns partitions (it is ready only then). */
  int status = 0;
  static char body[4096];
  for (int i = 0; i < 400; i++) {
    usleep(50000);
    int st;
    if (waitpid(b, &st, WNOHANG) != 0) ASSERT_MSG(0, "second worker exited (status %d)", st);
    wp_http(port_b, "/readyz", &status, body, sizeof body);
    if (status == 200) break;
  }
  ASSERT_EQ(status, 200);
  produce(&c, 100, 100, false);
  wait_results(conn, &c, 200, a);

  ASSERT_EQ(wp_stop(a), 0);
  produce(&c, 200, 100, false);
  wait_results(conn, &c, 300, b);
  check_velocity_chain(conn, &c, 30);
  ASSERT_EQ(wp_count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".results", c.schema), 300);
  ASSERT_EQ(wp_stop(b), 0);

  wp_drop(conn, &c);
  unlink(c.model);
}

/*
 * In-process recovery: the worker's PostgreSQL sessions are terminated while it works. A batch
 * in flight then has an unknown outcome; the worker must not exit but discard what is not
 * committed, reconnect, restore offsets and card states from PostgreSQL and go on, so that in
 * the end every event is stored exactly once with a gapless card history.
 */
TEST(database_loss_recovers) {
  hx_ctx_t c;
  e2e_init(&c, "db", false);
  fm_write(c.model, hx_inputs, HX_N_INPUTS, "fraud-db-1", 0.5, "binary");
  PGconn *conn = wp_db(&c);

  produce(&c, 0, 300, false);
  pid_t pid = start_worker(&c);
  /* Once some results are in, cut every session that touches this test's schema. */
  for (int i = 0; i < 600 && wp_count(conn, "SELECT count(*) FROM \"%s\".results", c.schema) < 30;
       i++)
    usleep(20000);
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> "
      "pg_backend_pid() AND query LIKE '%%%s%%'",
      c.schema);
  fprintf(stderr, "terminated %s worker session(s)\n", PQgetvalue(res, 0, 0));
  PQclear(res);

  wait_results(conn, &c, 300, pid); /* fails if the worker exits */
  int status;
  static char body[WP_HTTP_MAX];
  /* The results may all be committed before the worker notices that its idle session was
   * terminated: wait (bounded) for the recovery to be counted. */
  double deadline = test_now_s() + 15;
  do {
    wp_http(c.port, "/metrics", &status, body, sizeof body);
    if (strstr(body, "sluice_recoveries_total{cause=\"connection_lost\"} ") != NULL) break;
    usleep(100 * 1000);
  } while (test_now_s() < deadline);
  ASSERT_STR_CONTAINS(body, "sluice_recoveries_total{cause=\"connection_lost\"} ");
  wp_wait_offsets(conn, c.schema, 300, 10);
  ASSERT_EQ(wp_count(conn, "SELECT count(*) FROM \"%s\".results", c.schema), 300);
  check_velocity_chain(conn, &c, 30);
  ASSERT_EQ(wp_stop(pid), 0);

  wp_drop(conn, &c);
  unlink(c.model);
}
