/*
 * Shared harness of the fault worker's tests (test-worker-fault-*.c): runs the real
 * sluice-worker binary with --pipeline=fault and the shipped C-MAPSS model against the real
 * Kafka broker and PostgreSQL, produces real C-MAPSS FD001 engines (each run to failure, then
 * overhauled: its first healthy cycles again, later in time; every reading carries its file
 * row's cycle as its sequence, as sluice replay sends it, so the count restarts at 1 after the
 * overhaul: cycles since the engine (re)entered service, which is what the file's cycle column,
 * and so a model's "cycle" channel, counts for each run), and checks the outcome from
 * PostgreSQL alone:
 *   - every reading from an engine's T-th on has exactly one result, nothing else is there;
 *   - each stored window is the file's T rows ending at that reading, channel by channel by
 *     the model's names ("cycle": the sequence the reading carried), and each stored score is
 *     the model's score of the stored window (the test loads the model itself);
 *   - the outbox holds exactly the alert transitions that the stored scores give, in offset
 *     order, under the test's own reading of the alert rules (fire at or below enter after
 *     min_fire, clear above clear after min_clear), each once, with the right event.
 * Starting and stopping the worker, HTTP, counts and Kafka producing are worker-proc.h's (wp_*).
 */
#ifndef TEST_FAULT_HARNESS_H
#define TEST_FAULT_HARNESS_H

#include <math.h>

#include "moe/moe.h"
#include "sluice/v1/envelope.pb-c.h"
#include "sluice/v1/results.pb-c.h"
#include "test-sensor-reading.h"
#include "worker-proc.h"

#define FH_PARTS 3
#define FH_MIN 60000LL
#define FH_T0 1700000000000LL
#define FH_MAX_UNITS 12
#define FH_MAX_CYCLES 400
#define FH_HEALTHY 30 /* cycles replayed after the overhaul */

/*
 * How far a stored score may be from the test's own score of the stored window, relative to
 * max(1, |score|). The worker scores batches, and the q8_0 kernels' summation order still moves
 * a row's score a little with the rows around it: 7.6e-6 of the value at most over 3,017
 * windows of the shipped C-MAPSS model (test-fault-models; 8.0e-4 before small fp32 layers ran
 * row by row). The windows themselves are compared exactly; neighbouring windows' scores
 * usually differ by about 1 %.
 */
#define FH_SCORE_RTOL 1e-4f

/* The alert settings the tests run the worker with (and check against). */
#define FH_ENTER 40.0f
#define FH_CLEAR 70.0f
#define FH_MIN_FIRE_MS (2 * FH_MIN)
#define FH_MIN_CLEAR_MS (1 * FH_MIN)

/* The columns of train_FD001.txt after unit and cycle: the channels every reading carries. */
static const char *const fh_names[24] = {
    "setting_1", "setting_2", "setting_3", "sensor_1",  "sensor_2",  "sensor_3",
    "sensor_4",  "sensor_5",  "sensor_6",  "sensor_7",  "sensor_8",  "sensor_9",
    "sensor_10", "sensor_11", "sensor_12", "sensor_13", "sensor_14", "sensor_15",
    "sensor_16", "sensor_17", "sensor_18", "sensor_19", "sensor_20", "sensor_21"};

typedef struct fh_ctx_s {
  wp_ctx_t w;          /* names, port, model (the shipped C-MAPSS model unless set), extra */
  bool no_alert_flags; /* run without the FH_* alert flags (a probability model) */
  /* the data: units 1..n_units of FD001 */
  int n_units;
  int len[FH_MAX_UNITS];                        /* cycles of unit u+1 in the file */
  double rows[FH_MAX_UNITS][FH_MAX_CYCLES][24]; /* [unit][cycle - 1][channel] */
  int T;                                        /* the model's window */
  int C;                                        /* the model's channels */
  int col[64]; /* (C) the fh_names column of model channel c, or -1 for "cycle" (the sequence) */
} fh_ctx_t;

/* Readings per unit as streamed: the run to failure, then FH_HEALTHY healthy cycles. */
static inline int fh_stream_len(const fh_ctx_t *c, int u) { return c->len[u] + FH_HEALTHY; }

/* The file row (0-based cycle) behind reading k of unit u. */
static inline int fh_row(const fh_ctx_t *c, int u, int k) {
  return k < c->len[u] ? k : k - c->len[u];
}

/* The sequence reading k of unit u carries: its row's cycle in the file (see the top). */
static inline int64_t fh_seq(const fh_ctx_t *c, int u, int k) { return fh_row(c, u, k) + 1; }

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
  wp_init(&c->w, "wf", tag, FH_PARTS, true);
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  int n = snprintf(c->w.model, sizeof c->w.model, "%s/models/fault-cmapss.safetensors",
                   dir ? dir : ".");
  ASSERT_MSG(n > 0 && n < (int)sizeof c->w.model, "model path too long: %s", c->w.model);
  fh_load_data(c, n_units);
  char err[512];
  moe_model_t *m = NULL;
  ASSERT_MSG(moe_model_load(c->w.model, &m, err, sizeof err) == 0, "%s", err);
  c->T = moe_model_sensor_window(m);
  c->C = moe_model_sensor_channels(m);
  ASSERT(c->C >= 1 && c->C <= 64);
  /* Each model channel is a column of the file or the age channel, once. */
  for (int ch = 0; ch < c->C; ch++) {
    const char *name = moe_model_sensor_channel_name(m, ch);
    c->col[ch] = -1;
    for (int k = 0; k < 24; k++)
      if (strcmp(fh_names[k], name) == 0) c->col[ch] = k;
    ASSERT_MSG(c->col[ch] >= 0 || strcmp(name, "cycle") == 0,
               "model channel %d \"%s\" is neither a column of train_FD001 nor \"cycle\"", ch,
               name);
    for (int j = 0; j < ch; j++)
      ASSERT_MSG(strcmp(moe_model_sensor_channel_name(m, j), name) != 0, "channel %s twice",
                 name);
  }
  moe_model_free(m);
  /* every engine is scored before and after its overhaul */
  for (int u = 0; u < n_units; u++) ASSERT_OP(c->len[u], >=, c->T + 20);
}

/* A C-MAPSS reading (channels fh_names, sequence *seq or none when NULL) as a packed Envelope
 * into buf (at least 4096 bytes); returns its size. n_values < 24 leaves channels out. */
static inline size_t fh_pack(const char *event_id, const char *device, int64_t t,
                             const int64_t *seq, const double *vals, int n_values, uint8_t *buf,
                             size_t size) {
  return test_pack_reading_seq(event_id, device, NULL, t, seq, fh_names, vals, n_values, buf,
                               size);
}

static inline void fh_device(char *buf, size_t size, int u) { snprintf(buf, size, "engine-%02d", u + 1); }

/*
 * Produces readings k_from .. k_to-1 of every unit (a unit shorter than that sends what it
 * has), interleaved by time (all units at reading k, then k + 1, ...). Returns how many.
 */
static inline long fh_produce(const fh_ctx_t *c, int k_from, int k_to) {
  rd_kafka_t *rk = wp_producer(&c->w);
  long n = 0;
  for (int k = k_from; k < k_to; k++)
    for (int u = 0; u < c->n_units; u++) {
      if (k >= fh_stream_len(c, u)) continue;
      char id[48], dev[32];
      uint8_t buf[4096];
      snprintf(id, sizeof id, "fw-%02d-%03d", u + 1, k);
      fh_device(dev, sizeof dev, u);
      int64_t seq = fh_seq(c, u, k);
      size_t len = fh_pack(id, dev, FH_T0 + (int64_t)(k + 1) * FH_MIN, &seq,
                           c->rows[u][fh_row(c, u, k)], 24, buf, sizeof buf);
      wp_send(rk, c->w.topic, dev, buf, len);
      n++;
    }
  wp_flush(rk);
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

/* Starts the fault worker (batches of 64; the FH_* alert settings unless no_alert_flags). */
static inline pid_t fh_start(const fh_ctx_t *c) {
  const char *flags[32] = {"--pipeline", "fault",
                           "--topic", c->w.topic,
                           "--dlq-topic", c->w.dlq,
                           "--alerts-topic", c->w.alerts,
                           "--batch-max", "64"};
  int n = 10;
  if (!c->no_alert_flags) {
    static const char *const alert[] = {"--fault-alert-enter", "40", "--fault-alert-clear", "70",
                                        "--fault-alert-min-fire", "2m", "--fault-alert-min-clear",
                                        "1m"};
    for (size_t i = 0; i < sizeof alert / sizeof alert[0]; i++) flags[n++] = alert[i];
  }
  flags[n] = NULL;
  return wp_start(&c->w, c->w.port, flags);
}

#define FH_RESULTS_SQL "SELECT count(*) FROM \"%s\".fault_results"

static inline long fh_results(PGconn *conn, const fh_ctx_t *c) {
  if (PQstatus(conn) != CONNECTION_OK) PQreset(conn);
  return wp_count(conn, FH_RESULTS_SQL, c->w.schema);
}

/* Waits until fault_results holds at least `want` rows; fails after `secs` or if a worker
 * exits (pids[n_pids]). */
static inline void fh_wait_results(PGconn *conn, const fh_ctx_t *c, long want, const pid_t *pids,
                                   int n_pids, int secs) {
  wp_wait_count(conn, &c->w, FH_RESULTS_SQL, want, pids, n_pids, secs);
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
  ASSERT_EQ(wp_count(conn, "SELECT count(DISTINCT event_id) FROM \"%s\".fault_results",
                     c->w.schema),
            want);
  char err[512];
  moe_model_t *mm = NULL;
  ASSERT_MSG(moe_model_load(c->w.model, &mm, err, sizeof err) == 0, "%s", err);
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(mm, 1, &sess));
  int T = c->T, C = c->C;
  PGresult *res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT event_id, device_id, score, input::text, kind, "
      "(extract(epoch FROM event_time) * 1000)::bigint FROM \"%s\".fault_results "
      "ORDER BY device_id, partition, kafka_offset",
      c->w.schema);
  float *win = malloc(((size_t)T * (size_t)C + 1) * sizeof *win);
  ASSERT_NOT_NULL(win);
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
    ASSERT_EQ(wp_parse_reals(PQgetvalue(res, i, 3), win, T * C + 1), T * C);
    for (int t = 0; t < T; t++) {
      int kk = k - T + 1 + t;
      const double *row = c->rows[u][fh_row(c, u, kk)];
      for (int ch = 0; ch < C; ch++) {
        float ref = c->col[ch] < 0 ? (float)fh_seq(c, u, kk) : (float)row[c->col[ch]];
        ASSERT_MSG(win[t * C + ch] == ref, "%s: window[%d][%d] %g, file %g", id, t, ch,
                   (double)win[t * C + ch], (double)ref);
      }
    }
    moe_input_t in = {.window = win};
    float score;
    moe_output_t out = {.scores = &score};
    ASSERT_OK(moe_session_run(sess, &in, 1, &out));
    float stored = strtof(PQgetvalue(res, i, 2), NULL);
    ASSERT_MSG(fabsf(stored - score) <= FH_SCORE_RTOL * fmaxf(1.0f, fabsf(score)),
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
  free(win);
  moe_session_free(sess);
  moe_model_free(mm);

  /* The outbox: exactly the expected transitions, each once. */
  int total = 0;
  *n_fired = *n_cleared = 0;
  for (int u = 0; u < c->n_units; u++) total += n_exp[u];
  res = wp_query(conn, PGRES_TUPLES_OK,
      "SELECT alert_id, key, topic, payload FROM \"%s\".outbox WHERE domain = 'fault' "
      "ORDER BY key, id",
      c->w.schema);
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
    ASSERT_STR_EQ(PQgetvalue(res, i, 2), c->w.alerts);
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

#endif /* TEST_FAULT_HARNESS_H */
