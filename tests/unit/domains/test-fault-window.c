/*
 * Per-device sensor windows: hand-worked cases of each rule (lateness, duplicates, out of
 * order, forward fill, reset after a long gap, stride), then shuffled, late, duplicated and
 * gapped random streams checked step by step against a brute-force oracle that keeps every
 * accepted reading in one unbounded sorted list, and the state's byte round trip mid-stream.
 */
#include "test.h"

#include "fault-input.h"
#include "fault-window.h"

#define MIN 60000LL
#define T0 1700000000000LL

static const char *const chans[] = {"a", "b"};

static wk_fault_window_cfg_t base_cfg(void) {
  wk_fault_window_cfg_t c = {.length = 4, .stride = 2, .period_ms = MIN, .tolerance_ms = 5000,
                             .lateness_ms = 3 * MIN, .max_fill = 2, .n_channels = 2,
                             .channels = chans};
  return c;
}

static wk_fault_win_status_t add(wk_fault_window_t *w, const wk_fault_window_cfg_t *c, int64_t t,
                                 float v, bool *ready) {
  float vals[2] = {v, -v};
  return wk_fault_window_add(w, c, t, vals, ready, NULL, 0);
}

TEST(config_checked) {
  char err[200];
  wk_fault_window_cfg_t c = base_cfg();
  ASSERT_OK(wk_fault_window_cfg_check(&c, err, sizeof err));
  c.tolerance_ms = MIN / 2;
  ASSERT_EQ(wk_fault_window_cfg_check(&c, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "tolerance");
  c = base_cfg();
  c.stride = 0;
  ASSERT_EQ(wk_fault_window_cfg_check(&c, err, sizeof err), SVC_ECONFIG);
  c = base_cfg();
  c.length = 0;
  ASSERT_EQ(wk_fault_window_cfg_check(&c, err, sizeof err), SVC_ECONFIG);
}

TEST(rules_by_hand) {
  wk_fault_window_cfg_t c = base_cfg();
  wk_fault_window_t w;
  ASSERT_OK(wk_fault_window_init(&w, &c));
  bool ready;
  float out[8];
  int64_t ts[4];
  char detail[256];
  /* Minutes 0, 2, 1 (out of order), 3: full at the 4th newest-or-not reading. */
  ASSERT_EQ(add(&w, &c, T0, 0, &ready), WK_FAULT_WIN_OK);
  ASSERT_EQ(add(&w, &c, T0 + 2 * MIN, 2, &ready), WK_FAULT_WIN_OK); /* 1 missing: filled */
  ASSERT_EQ(w.n, 3);
  ASSERT_EQ(w.filled[1], 1);
  ASSERT_EQ(w.values[2], 0); /* the fill copies minute 0 */
  /* The real minute-1 reading, 3 s late against its slot, replaces the fill. */
  ASSERT_EQ(add(&w, &c, T0 + MIN + 3000, 1, &ready), WK_FAULT_WIN_OK);
  ASSERT(!ready);
  ASSERT_EQ(w.n, 3);
  ASSERT_EQ(w.filled[1], 0);
  ASSERT_EQ(w.t[1], T0 + MIN + 3000);
  ASSERT_EQ(add(&w, &c, T0 + 2 * MIN, 9, &ready), WK_FAULT_WIN_DUPLICATE);
  ASSERT_EQ(add(&w, &c, T0 + 3 * MIN, 3, &ready), WK_FAULT_WIN_OK);
  ASSERT(ready); /* first full window */
  ASSERT_EQ(wk_fault_window_copy(&w, out, ts), 4);
  const float want[8] = {0, -0, 1, -1, 2, -2, 3, -3};
  for (int i = 0; i < 8; i++) ASSERT_EQ(out[i], want[i]);
  ASSERT_EQ(add(&w, &c, T0 + 4 * MIN, 4, &ready), WK_FAULT_WIN_OK);
  ASSERT(!ready); /* stride 2 */
  ASSERT_EQ(add(&w, &c, T0 + 5 * MIN, 5, &ready), WK_FAULT_WIN_OK);
  ASSERT(ready);
  /* Late by more than 3 minutes: rejected with a sentence. */
  float v2[2] = {7, 7};
  ASSERT_EQ(wk_fault_window_add(&w, &c, T0 + MIN + 59000, v2, &ready, detail, sizeof detail),
            WK_FAULT_WIN_LATE);
  ASSERT_STR_CONTAINS(detail, "lateness");
  /* Within lateness, but older than every reading of the full window. */
  ASSERT_EQ(w.t[0], T0 + 2 * MIN);
  ASSERT_EQ(add(&w, &c, T0 + 2 * MIN - 1, 7, &ready), WK_FAULT_WIN_LATE);
  c.lateness_ms = 10 * MIN;
  ASSERT_EQ(add(&w, &c, T0 + 2 * MIN - 1, 7, &ready), WK_FAULT_WIN_TOO_OLD);
  c.lateness_ms = 3 * MIN;
  /* A gap of 4 minutes (3 missing > max_fill 2) resets the window to the new reading. */
  ASSERT_EQ(add(&w, &c, T0 + 9 * MIN, 9, &ready), WK_FAULT_WIN_OK);
  ASSERT_EQ(w.n, 1);
  ASSERT_EQ(w.n_resets, 1);
  /* Anything before the reset belongs to the previous run. */
  ASSERT_EQ(add(&w, &c, T0 + 8 * MIN, 8, &ready), WK_FAULT_WIN_TOO_OLD);
  /* A gap of 3 minutes (2 missing) is filled; the window is full again, so it is ready. */
  ASSERT_EQ(add(&w, &c, T0 + 12 * MIN, 12, &ready), WK_FAULT_WIN_OK);
  ASSERT(ready);
  ASSERT_EQ(w.n, 4);
  ASSERT_EQ(wk_fault_window_copy(&w, out, ts), 4);
  ASSERT_EQ(ts[1], T0 + 10 * MIN);
  ASSERT_EQ(out[2], 9);
  ASSERT_EQ(out[4], 9);
  ASSERT_EQ(out[6], 12);
  ASSERT_EQ(w.n_filled, 3);
  wk_fault_window_close(&w);
}

TEST(values_by_channel_name) {
  const char *const names[] = {"sensor_2", "setting_1"};
  wk_fault_window_cfg_t c = base_cfg();
  c.channels = names;
  Sluice__V1__ChannelValue v1 = SLUICE__V1__CHANNEL_VALUE__INIT, v2 = SLUICE__V1__CHANNEL_VALUE__INIT;
  v1.name = (char *)"setting_1";
  v1.has_value = 1;
  v1.value = 0.25;
  v2.name = (char *)"sensor_2";
  v2.has_value = 1;
  v2.value = 641.5;
  Sluice__V1__ChannelValue *vals[2] = {&v1, &v2};
  Sluice__V1__SensorReading rd = SLUICE__V1__SENSOR_READING__INIT;
  rd.n_values = 2;
  rd.values = vals;
  float out[2];
  wk_reject_t rej;
  ASSERT(wk_fault_window_values(&c, &rd, out, &rej));
  ASSERT_EQ(out[0], 641.5f);
  ASSERT_EQ(out[1], 0.25f);
  rd.n_values = 1;
  ASSERT(!wk_fault_window_values(&c, &rd, out, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_INVALID);
  ASSERT_STR_CONTAINS(rej.detail, "sensor_2");
}

/* The age channel of a model trained with --age is the reading's sequence (the engine cycle),
 * unless the reading carries a value of that name; without either the reading is refused and
 * the detail says what the model wanted. */
TEST(age_channel_is_the_sequence) {
  const char *const names[] = {"sensor_2", WK_FAULT_AGE_CHANNEL};
  wk_fault_window_cfg_t c = base_cfg();
  c.channels = names;
  Sluice__V1__ChannelValue v1 = SLUICE__V1__CHANNEL_VALUE__INIT, v2 = SLUICE__V1__CHANNEL_VALUE__INIT;
  v1.name = (char *)"sensor_2";
  v1.has_value = 1;
  v1.value = 641.5;
  Sluice__V1__ChannelValue *vals[2] = {&v1, &v2};
  Sluice__V1__SensorReading rd = SLUICE__V1__SENSOR_READING__INIT;
  rd.n_values = 1;
  rd.values = vals;
  float out[2];
  wk_reject_t rej;
  ASSERT(!wk_fault_window_values(&c, &rd, out, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_INVALID);
  ASSERT_STR_CONTAINS(rej.detail, "no sequence");
  rd.has_sequence = 1;
  rd.sequence = 137;
  ASSERT(wk_fault_window_values(&c, &rd, out, &rej));
  ASSERT_EQ(out[0], 641.5f);
  ASSERT_EQ(out[1], 137.0f);
  /* A value named "cycle" wins over the sequence. */
  v2.name = (char *)WK_FAULT_AGE_CHANNEL;
  v2.has_value = 1;
  v2.value = 12;
  rd.n_values = 2;
  ASSERT(wk_fault_window_values(&c, &rd, out, &rej));
  ASSERT_EQ(out[1], 12.0f);
  /* Only the age channel falls back to the sequence. */
  double v;
  ASSERT(!wk_fault_channel_value(&rd, "sensor_3", &v));
}

/* ---- the oracle ------------------------------------------------------------------------ */

typedef struct {
  int64_t t;
  int filled;
  float v[2];
} entry_t;

typedef struct {
  entry_t *e; /* every accepted entry since the last reset, ascending */
  size_t n, cap;
  int64_t wm, floor;
  int have;
  uint64_t since;
  int emitted;
} oracle_t;

static void o_insert(oracle_t *o, size_t i, entry_t x) {
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 64;
    o->e = realloc(o->e, o->cap * sizeof *o->e);
    ASSERT_NOT_NULL(o->e);
  }
  memmove(&o->e[i + 1], &o->e[i], (o->n - i) * sizeof *o->e);
  o->e[i] = x;
  o->n++;
}

static wk_fault_win_status_t o_add(oracle_t *o, const wk_fault_window_cfg_t *c, int64_t t,
                                   const float *v, bool *ready) {
  *ready = false;
  entry_t x = {t, 0, {v[0], v[1]}};
  if (o->have && t < o->wm - c->lateness_ms) return WK_FAULT_WIN_LATE;
  if (!o->have || t > o->wm) {
    if (o->have && o->n > 0 && t - o->wm > c->period_ms + c->tolerance_ms) {
      /* Missing readings: the whole periods between, rounded to the nearest. */
      double periods = (double)(t - o->wm) / (double)c->period_ms;
      int64_t missing = (int64_t)floor(periods + 0.5) - 1;
      if (missing > (int64_t)c->max_fill) {
        o->n = 0;
        o->have = 0;
        o->since = 0;
        o->emitted = 0;
      } else {
        entry_t last = o->e[o->n - 1];
        for (int64_t j = 1; j <= missing; j++) {
          entry_t f = {o->wm + j * c->period_ms, 1, {last.v[0], last.v[1]}};
          o_insert(o, o->n, f);
        }
      }
    }
    if (!o->have) o->floor = t;
    o->have = 1;
    o_insert(o, o->n, x);
    o->wm = t;
    o->since++;
    if (o->n >= c->length && (!o->emitted || o->since >= c->stride)) {
      *ready = true;
      o->emitted = 1;
      o->since = 0;
    }
    return WK_FAULT_WIN_OK;
  }
  if (t < o->floor) return WK_FAULT_WIN_TOO_OLD;
  /* The live part: the newest `length` entries. */
  size_t lo = o->n > c->length ? o->n - c->length : 0;
  for (size_t k = lo; k < o->n; k++)
    if (o->e[k].t == t && !o->e[k].filled) return WK_FAULT_WIN_DUPLICATE;
  size_t i = lo;
  while (i < o->n && o->e[i].t < t) i++;
  for (size_t k = i > lo ? i - 1 : lo; k <= i && k < o->n; k++) {
    if (o->e[k].filled && llabs(o->e[k].t - t) <= c->tolerance_ms) {
      o->e[k] = x;
      return WK_FAULT_WIN_OK;
    }
  }
  if (o->n - lo == c->length && i == lo) return WK_FAULT_WIN_TOO_OLD;
  o_insert(o, i, x);
  return WK_FAULT_WIN_OK;
}

/* A stream of one device: ~1 reading a minute with jitter, local shuffles, drops of 1..6
 * minutes, repeats and stragglers. */
static size_t make_stream(unsigned seed, int64_t *ts, size_t n_max) {
  srand(seed);
  size_t n = 0;
  int64_t t = T0;
  while (n < n_max) {
    int r = rand() % 100;
    if (r < 8) t += (int64_t)(1 + rand() % 6) * MIN; /* a gap */
    ts[n++] = t + (rand() % 7000) - 3500;
    if (r >= 90 && n < n_max) {
      ts[n] = ts[n - 1]; /* a repeat */
      n++;
    }
    if (r >= 85 && r < 90 && n < n_max) ts[n++] = t - (int64_t)(rand() % 6) * MIN; /* straggler */
    t += MIN;
  }
  /* Swap neighbours now and then: out of order within a few minutes. */
  for (size_t i = 0; i + 2 < n; i++)
    if (rand() % 4 == 0) {
      size_t j = i + 1 + (size_t)(rand() % 2);
      int64_t x = ts[i];
      ts[i] = ts[j];
      ts[j] = x;
    }
  return n;
}

static void compare(const wk_fault_window_t *w, const oracle_t *o, size_t length) {
  size_t lo = o->n > length ? o->n - length : 0;
  ASSERT_EQ(w->n, o->n - lo);
  for (size_t i = 0; i < w->n; i++) {
    ASSERT_EQ(w->t[i], o->e[lo + i].t);
    ASSERT_EQ(w->filled[i], o->e[lo + i].filled);
    ASSERT_EQ(w->values[2 * i], o->e[lo + i].v[0]);
    ASSERT_EQ(w->values[2 * i + 1], o->e[lo + i].v[1]);
  }
}

TEST(random_streams_match_the_oracle) {
  enum { N = 600 };
  int64_t *ts = malloc(N * sizeof *ts);
  ASSERT_NOT_NULL(ts);
  size_t counts[WK_FAULT_WIN__COUNT] = {0}, n_ready = 0, n_fill = 0, n_reset = 0;
  for (unsigned seed = 1; seed <= 40; seed++) {
    wk_fault_window_cfg_t c = base_cfg();
    c.length = 3 + seed % 8;
    c.stride = 1 + seed % 3;
    c.max_fill = seed % 4;
    c.lateness_ms = (int64_t)(seed % 5) * MIN;
    size_t n = make_stream(seed, ts, N);
    wk_fault_window_t w, w2;
    ASSERT_OK(wk_fault_window_init(&w, &c));
    oracle_t o = {0};
    for (size_t i = 0; i < n; i++) {
      float v[2] = {(float)i, (float)(seed * 1000 + i)};
      bool r1, r2;
      wk_fault_win_status_t s1 = wk_fault_window_add(&w, &c, ts[i], v, &r1, NULL, 0);
      wk_fault_win_status_t s2 = o_add(&o, &c, ts[i], v, &r2);
      ASSERT_MSG(s1 == s2, "seed %u step %zu t=%lld: window %s, oracle %s", seed, i,
                 (long long)(ts[i] - T0), wk_fault_win_status_name(s1), wk_fault_win_status_name(s2));
      ASSERT_EQ(r1, r2);
      compare(&w, &o, c.length);
      counts[s1]++;
      n_ready += r1;
      if (i == n / 2) {
        /* Round trip mid-stream; the restored window carries on. */
        size_t sz = wk_fault_window_encoded_size(&w);
        uint8_t *buf = malloc(sz);
        ASSERT_NOT_NULL(buf);
        ASSERT_EQ(wk_fault_window_encode(&w, buf, sz), sz);
        ASSERT_OK(wk_fault_window_init(&w2, &c));
        char err[200];
        ASSERT_OK(wk_fault_window_decode(&w2, &c, buf, sz, err, sizeof err));
        free(buf);
        n_fill += w.n_filled;
        n_reset += w.n_resets;
        ASSERT_EQ(w2.n_filled, w.n_filled);
        wk_fault_window_close(&w);
        w = w2;
      }
    }
    wk_fault_window_close(&w);
    free(o.e);
  }
  free(ts);
  /* The streams exercised every rule. */
  for (int s = 0; s < WK_FAULT_WIN__COUNT; s++)
    ASSERT_MSG(counts[s] > 0, "no %s reading in the random streams", wk_fault_win_status_name(s));
  ASSERT_OP(n_ready, >, 100);
  ASSERT_OP(n_fill, >, 10);
  ASSERT_OP(n_reset, >, 5);
}

TEST(decode_refuses_bad_state) {
  wk_fault_window_cfg_t c = base_cfg();
  wk_fault_window_t w, w2;
  ASSERT_OK(wk_fault_window_init(&w, &c));
  bool ready;
  for (int i = 0; i < 3; i++) ASSERT_EQ(add(&w, &c, T0 + i * MIN, (float)i, &ready), WK_FAULT_WIN_OK);
  uint8_t buf[256];
  size_t sz = wk_fault_window_encode(&w, buf, sizeof buf);
  ASSERT_EQ(sz, wk_fault_window_encoded_size(&w));
  ASSERT_EQ(wk_fault_window_encode(&w, buf, 10), sz);
  char err[200];
  wk_fault_window_cfg_t other = c;
  other.length = 5;
  ASSERT_OK(wk_fault_window_init(&w2, &other));
  ASSERT_EQ(wk_fault_window_decode(&w2, &other, buf, sz, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "T=4");
  wk_fault_window_close(&w2);
  ASSERT_OK(wk_fault_window_init(&w2, &c));
  ASSERT_EQ(wk_fault_window_decode(&w2, &c, buf, sz - 1, err, sizeof err), SVC_EDECODE);
  buf[4] = 2;
  ASSERT_EQ(wk_fault_window_decode(&w2, &c, buf, sz, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "version");
  buf[4] = 1;
  /* Swap the first two entries' times: out of order. */
  uint8_t tmp[8];
  memcpy(tmp, buf + 64, 8);
  memcpy(buf + 64, buf + 64 + 17, 8);
  memcpy(buf + 64 + 17, tmp, 8);
  ASSERT_EQ(wk_fault_window_decode(&w2, &c, buf, sz, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "order");
  ASSERT_EQ(w2.n, 0);
  wk_fault_window_close(&w2);
  wk_fault_window_close(&w);
}
