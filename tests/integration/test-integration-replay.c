/*
 * `sluice replay` against the real broker: replays the first rows (in event-time order) of the
 * shared fraud, C-MAPSS and SKAB files into fresh topics, consumes them back with a plain
 * librdkafka consumer and checks every message: the count, event ids, keys, headers, event
 * times and decoded payloads, against values this test reads from the data files itself.
 */
#include "test.h"
#include "test-run.h"

#include <librdkafka/rdkafka.h>
#include <math.h>
#include <sys/wait.h>

#include "sluice/v1/envelope.pb-c.h"
#include "svc/kafka.h"

#define EPOCH_MS INT64_C(1767225600000)

static const char *brokers;

static const char *data_path(char *buf, size_t size, const char *rel) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  snprintf(buf, size, "%s/../shared/data/%s", src ? src : ".", rel);
  return buf;
}

static int run_replay(const char *args, char *out, size_t size) {
  const char *bin = getenv("SLUICE_BINARY_DIR");
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "SLUICE_NO_PROGRESS=1 '%s/bin/sluice' replay --brokers %s %s",
           bin ? bin : "build", brokers, args);
  return test_run(cmd, out, size);
}

typedef struct msg_s {
  char key[128];
  char header_id[128];
  int32_t partition;
  int64_t offset;
  Sluice__V1__Envelope *env;
} msg_t;

/* Consumes `want` messages of `topic` from the beginning (30 s at most). */
static size_t consume(const char *topic, msg_t *msgs, size_t want) {
  char errstr[512], group[128];
  test_unique_name(group, sizeof(group), "replay-test");
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)),
            RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)),
            RD_KAFKA_CONF_OK);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  ASSERT_NOT_NULL(rk);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(rk, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(subs);
  size_t n = 0;
  double t0 = test_now_s();
  /* One more poll after the last expected message: nothing extra must arrive. */
  while (test_now_s() - t0 < 30 && n <= want) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, n == want ? 2000 : 200);
    if (m == NULL) {
      if (n == want) break;
      continue;
    }
    if (m->err) {
      rd_kafka_message_destroy(m);
      continue;
    }
    ASSERT(n < want);
    /* The record timestamp is the send time, not the (historical) event time. */
    rd_kafka_timestamp_type_t tstype;
    double ts_s = (double)rd_kafka_message_timestamp(m, &tstype) / 1000.0;
    ASSERT_EQ(tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
    ASSERT_MSG(fabs(ts_s - (double)time(NULL)) < 600, "record timestamp %.0f is not the send time", ts_s);
    msg_t *g = &msgs[n++];
    snprintf(g->key, sizeof(g->key), "%.*s", (int)m->key_len, (const char *)m->key);
    g->partition = m->partition;
    g->offset = m->offset;
    rd_kafka_headers_t *hdrs = NULL;
    const void *hv = NULL;
    size_t hl = 0;
    g->header_id[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, "sluice-event-id", &hv, &hl) == RD_KAFKA_RESP_ERR_NO_ERROR)
      snprintf(g->header_id, sizeof(g->header_id), "%.*s", (int)hl, (const char *)hv);
    g->env = sluice__v1__envelope__unpack(NULL, m->len, m->payload);
    ASSERT_NOT_NULL(g->env);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return n;
}

static void free_msgs(msg_t *msgs, size_t n) {
  for (size_t i = 0; i < n; i++) sluice__v1__envelope__free_unpacked(msgs[i].env, NULL);
}

static void fresh_topic(char *topic, size_t size, const char *prefix) {
  char err[512];
  test_unique_name(topic, size, prefix);
  ASSERT_EQ(kq_topic_create(brokers, topic, 3, 1, 15000, err, sizeof(err)), SVC_OK);
}

/* Messages of one partition must come in event-time order (the replay's order). */
static void assert_partition_order(const msg_t *msgs, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      if (msgs[i].partition == msgs[j].partition && msgs[i].offset < msgs[j].offset)
        ASSERT(msgs[i].env->event_time_ms <= msgs[j].env->event_time_ms);
}

/* ---- fraud --------------------------------------------------------------------------------- */

#define FRAUD_N 60

typedef struct fraud_row_s {
  long row;
  double time, amount, v[29];
} fraud_row_t;

static int cmp_fraud(const void *a, const void *b) {
  const fraud_row_t *x = a, *y = b;
  if (x->time != y->time) return x->time < y->time ? -1 : 1;
  return (x->row > y->row) - (x->row < y->row);
}

static uint64_t fnv(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

TEST(replay_fraud) {
  char path[512], topic[128], args[1024];
  static char out[8192];
  data_path(path, sizeof(path), "fraud/creditcard_train.csv");
  /* The whole file, read here with nothing but strtod. */
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  static char line[8192];
  size_t cap = 20000, n = 0;
  fraud_row_t *rows = malloc(cap * sizeof(*rows));
  ASSERT_NOT_NULL(fgets(line, sizeof(line), f)); /* header */
  while (fgets(line, sizeof(line), f) != NULL) {
    ASSERT(n < cap);
    fraud_row_t *r = &rows[n];
    r->row = (long)n;
    char *p = line;
    r->time = strtod(p, &p);
    for (int j = 1; j <= 28; j++) r->v[j] = strtod(p + 1, &p);
    r->amount = strtod(p + 1, &p);
    n++;
  }
  fclose(f);
  qsort(rows, n, sizeof(*rows), cmp_fraud);

  fresh_topic(topic, sizeof(topic), "replay-fraud");
  snprintf(args, sizeof(args), "--task fraud --data %s --topic %s --max --limit %d --json", path,
           topic, FRAUD_N);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "\"sent\":60,\"delivered\":60,\"failed\":0");

  static msg_t msgs[FRAUD_N + 1];
  ASSERT_EQ(consume(topic, msgs, FRAUD_N), FRAUD_N);
  int seen[FRAUD_N] = {0};
  for (size_t i = 0; i < FRAUD_N; i++) {
    Sluice__V1__Envelope *e = msgs[i].env;
    long row;
    ASSERT_EQ(sscanf(e->event_id, "creditcard_train.csv:%ld", &row), 1);
    ASSERT_STR_EQ(msgs[i].header_id, e->event_id);
    /* Which of the first FRAUD_N rows in time order it is. */
    int k = -1;
    for (int j = 0; j < FRAUD_N; j++)
      if (rows[j].row == row) k = j;
    ASSERT_MSG(k >= 0, "event %s is not among the first %d rows by Time", e->event_id, FRAUD_N);
    ASSERT_EQ(seen[k], 0);
    seen[k] = 1;
    char want_key[32];
    snprintf(want_key, sizeof(want_key), "card-%04u", (unsigned)(fnv(e->event_id) % 2000));
    ASSERT_STR_EQ(msgs[i].key, want_key);
    ASSERT_STR_EQ(e->key, want_key);
    ASSERT_EQ(e->event_time_ms, EPOCH_MS + (int64_t)llround(rows[k].time * 1000));
    ASSERT_EQ(e->payload_case, SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION);
    ASSERT_STR_EQ(e->transaction->card_id, want_key);
    ASSERT(e->transaction->has_amount);
    ASSERT_NEAR(e->transaction->amount, rows[k].amount, 1e-12);
    ASSERT_EQ(e->transaction->n_features, 28);
    for (int j = 0; j < 28; j++) ASSERT_EQ(e->transaction->features[j], (float)rows[k].v[j + 1]);
  }
  assert_partition_order(msgs, FRAUD_N);
  free_msgs(msgs, FRAUD_N);
  free(rows);
}

/* ---- C-MAPSS -------------------------------------------------------------------------------- */

TEST(replay_cmapss_fleet_order) {
  enum { N = 30 };
  char path[512], topic[128], args[1024];
  static char out[8192];
  data_path(path, sizeof(path), "fault/cmapss/train_FD001.txt");
  /* sensor_2 (column 7) at cycle 1 of each unit, and the data row of that cycle. */
  double s2[N + 1];
  long first_row[N + 1];
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  char line[1024];
  for (long r = 0; fgets(line, sizeof(line), f) != NULL; r++) {
    char *p = line;
    long unit = strtol(p, &p, 10), cycle = strtol(p, &p, 10);
    if (cycle != 1 || unit > N) continue;
    double v[6];
    for (int j = 0; j < 6; j++) v[j] = strtod(p, &p);
    s2[unit] = v[4]; /* settings 1-3, sensor_1, sensor_2 */
    first_row[unit] = r;
  }
  fclose(f);
  fresh_topic(topic, sizeof(topic), "replay-cmapss");
  snprintf(args, sizeof(args), "--task fault-cmapss --data %s --topic %s --rate 5000/s --limit %d",
           path, topic, N);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 0);
  ASSERT_STR_CONTAINS(out, "delivered  30");
  static msg_t msgs[N + 1];
  ASSERT_EQ(consume(topic, msgs, N), N);
  int seen[N + 1] = {0};
  for (size_t i = 0; i < N; i++) {
    Sluice__V1__Envelope *e = msgs[i].env;
    /* Event time first: the first N events are cycle 1 of units 1..N, all at one instant. */
    ASSERT_EQ(e->payload_case, SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING);
    Sluice__V1__SensorReading *s = e->sensor_reading;
    ASSERT_EQ(s->sequence, 1);
    long unit;
    ASSERT_EQ(sscanf(msgs[i].key, "train_FD001-unit-%ld", &unit), 1);
    ASSERT(unit >= 1 && unit <= N);
    ASSERT_EQ(seen[unit], 0);
    seen[unit] = 1;
    ASSERT_STR_EQ(s->device_id, msgs[i].key);
    char want_id[64];
    snprintf(want_id, sizeof(want_id), "train_FD001.txt:%ld", first_row[unit]);
    ASSERT_STR_EQ(e->event_id, want_id);
    ASSERT_EQ(e->event_time_ms, EPOCH_MS + 60000);
    ASSERT_EQ(s->n_values, 24);
    ASSERT_STR_EQ(s->values[4]->name, "sensor_2");
    ASSERT_NEAR(s->values[4]->value, s2[unit], 1e-12);
  }
  free_msgs(msgs, N);
}

/* ---- SKAB ----------------------------------------------------------------------------------- */

TEST(replay_skab) {
  enum { N = 25 };
  char path[512], topic[128], args[1024];
  static char out[8192];
  data_path(path, sizeof(path), "fault/skab/valve1/0.csv");
  char dt[N][32];
  double temp[N];
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  char line[1024];
  ASSERT_NOT_NULL(fgets(line, sizeof(line), f));
  for (int r = 0; r < N; r++) {
    ASSERT_NOT_NULL(fgets(line, sizeof(line), f));
    char *semi = strchr(line, ';');
    ASSERT_NOT_NULL(semi);
    snprintf(dt[r], sizeof(dt[r]), "%.*s", (int)(semi - line), line);
    char *p = semi;
    double v[5];
    for (int j = 0; j < 5; j++) v[j] = strtod(p + 1, &p);
    temp[r] = v[4]; /* Temperature is the fifth channel */
  }
  fclose(f);
  fresh_topic(topic, sizeof(topic), "replay-skab");
  snprintf(args, sizeof(args), "--task fault-skab --data %s --topic %s --max --limit %d", path,
           topic, N);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 0);
  static msg_t msgs[N + 1];
  ASSERT_EQ(consume(topic, msgs, N), N);
  int seen[N] = {0};
  for (size_t i = 0; i < N; i++) {
    Sluice__V1__Envelope *e = msgs[i].env;
    ASSERT_STR_EQ(msgs[i].key, "skab-valve1-0");
    long row;
    ASSERT_EQ(sscanf(e->event_id, "0.csv:%ld", &row), 1);
    ASSERT(row >= 0 && row < N);
    ASSERT_EQ(seen[row], 0);
    seen[row] = 1;
    /* The datetime as UTC, converted here by hand. */
    int Y, M, D, h, m, s;
    ASSERT_EQ(sscanf(dt[row], "%d-%d-%d %d:%d:%d", &Y, &M, &D, &h, &m, &s), 6);
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                    .tm_hour = h, .tm_min = m, .tm_sec = s};
    ASSERT_EQ(e->event_time_ms, (int64_t)timegm(&tm) * 1000);
    Sluice__V1__SensorReading *sr = e->sensor_reading;
    ASSERT_NOT_NULL(sr);
    ASSERT_EQ(sr->sequence, row);
    ASSERT_EQ(sr->n_values, 8);
    ASSERT_STR_EQ(sr->values[4]->name, "Temperature");
    ASSERT_NEAR(sr->values[4]->value, temp[row], 1e-12);
  }
  /* One key, one partition: the messages must be in row order. */
  for (size_t i = 1; i < N; i++) ASSERT(msgs[i].env->event_time_ms >= msgs[i - 1].env->event_time_ms);
  free_msgs(msgs, N);
}

TEST(replay_bad_input) {
  char path[512];
  static char out[8192];
  data_path(path, sizeof(path), "fault/skab/valve1/0.csv");
  char args[1024];
  /* SKAB given as fraud: the loader names the file and what it expected. */
  snprintf(args, sizeof(args), "--task fraud --data %s --max 2>&1", path);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 1);
  ASSERT_STR_CONTAINS(out, "0.csv");
  snprintf(args, sizeof(args), "--task fault-skab --data %s 2>/dev/null", path);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 2);
  /* A delivery the broker refuses is counted and makes the exit status 1. The first record
   * goes alone (the pace starts once it is delivered), so a refused topic stops the replay
   * after one record instead of pushing the rest at it. */
  snprintf(args, sizeof(args),
           "--task fault-skab --data %s --topic 'bad topic!' --max --limit 5 --json 2>/dev/null",
           path);
  ASSERT_EQ(run_replay(args, out, sizeof(out)), 1);
  ASSERT_STR_CONTAINS(out, "\"sent\":1,\"delivered\":0,\"failed\":1");
}

__attribute__((constructor)) static void need_broker(void) {
  brokers = test_require_env("SLUICE_KAFKA_BROKERS");
}
