/*
 * Tests of the per-card velocity state: a hand-worked in-order example, a long random stream
 * with late arrivals checked against an independent brute-force oracle of the documented
 * window semantics, the late-event policy, ring jumps, and the byte encoding (round trip that
 * preserves future features, and precise errors on bad bytes).
 */
#include <stdbool.h>

#include "test.h"
#include "velocity.h"

static float feats[WK_VEL_N_FEATURES];

TEST(hand_worked_in_order) {
  wk_velocity_t v;
  wk_velocity_init(&v);
  const int64_t t0 = 1700000000000; /* a multiple of 5 s; 200 s into a 5-minute bucket */
  wk_velocity_observe(&v, t0 + 1000, 10.0, feats);
  ASSERT_EQ(feats[WK_VEL_COUNT_1M], 0);
  ASSERT_EQ(feats[WK_VEL_COUNT_24H], 0);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], WK_VEL_SINCE_LAST_CAP_S);
  ASSERT_EQ(feats[WK_VEL_N_SEEN], 0);
  ASSERT_EQ(feats[WK_VEL_AMOUNT_RATIO], 1);
  ASSERT_EQ(feats[WK_VEL_AMOUNT_Z], 0);
  ASSERT_EQ(feats[WK_VEL_LATE], 0);

  wk_velocity_observe(&v, t0 + 31000, 20.0, feats);
  ASSERT_EQ(feats[WK_VEL_COUNT_1M], 1);
  ASSERT_EQ(feats[WK_VEL_SUM_1M], 10);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], 30);
  ASSERT_EQ(feats[WK_VEL_AMOUNT_RATIO], 2);
  ASSERT_EQ(feats[WK_VEL_AMOUNT_Z], 0); /* one earlier amount: no variance yet */

  /* 70 s after the first: it has left the 1-minute window, not the hour. */
  wk_velocity_observe(&v, t0 + 71000, 30.0, feats);
  ASSERT_EQ(feats[WK_VEL_COUNT_1M], 1);
  ASSERT_EQ(feats[WK_VEL_SUM_1M], 20);
  ASSERT_EQ(feats[WK_VEL_COUNT_1H], 2);
  ASSERT_EQ(feats[WK_VEL_SUM_1H], 30);
  ASSERT_EQ(feats[WK_VEL_COUNT_24H], 2);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], 40);
  ASSERT_EQ(feats[WK_VEL_N_SEEN], 2);
  ASSERT_NEAR(feats[WK_VEL_AMOUNT_RATIO], 2.0, 1e-6);  /* 30 / mean(10, 20) */
  ASSERT_NEAR(feats[WK_VEL_AMOUNT_Z], 15.0 / sqrt(50.0), 1e-6); /* sample stddev of 10, 20 */

  /* Two days later everything but the running statistics has expired. */
  wk_velocity_observe(&v, t0 + 2 * 86400000LL, 15.0, feats);
  ASSERT_EQ(feats[WK_VEL_COUNT_24H], 0);
  ASSERT_EQ(feats[WK_VEL_SUM_24H], 0);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], 2 * 86400 - 71);
  ASSERT_EQ(feats[WK_VEL_N_SEEN], 3);
  ASSERT_EQ(v.n, 4);
  ASSERT_NEAR(v.mean, 18.75, 1e-12);
}

TEST(late_event_policy) {
  wk_velocity_t v;
  wk_velocity_init(&v);
  const int64_t t = 1700000000000;
  wk_velocity_update(&v, t, 10.0);
  wk_velocity_update(&v, t + 600000, 10.0); /* +10 min */
  /* An event 8 minutes older than the newest: late. */
  wk_velocity_observe(&v, t + 120000, 5.0, feats);
  ASSERT_EQ(feats[WK_VEL_LATE], 1);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], 0);
  /* As of its own time the 1 h window holds the first event only. */
  ASSERT_EQ(feats[WK_VEL_COUNT_1H], 1);
  ASSERT_EQ(v.last_ms, t + 600000); /* the clock did not move back */
  /* The 1-minute ring has moved past it (8 min > 1 min): ignored there; the hour holds it. */
  wk_velocity_features(&v, t + 610000, 1.0, feats);
  ASSERT_EQ(feats[WK_VEL_COUNT_1M], 1);
  ASSERT_EQ(feats[WK_VEL_COUNT_1H], 3);
  ASSERT_EQ(feats[WK_VEL_SUM_1H], 25);
  ASSERT_EQ(feats[WK_VEL_LATE], 0);
  ASSERT_EQ(feats[WK_VEL_SECS_SINCE_LAST], 10);
  ASSERT_EQ(v.n, 3);
}

/* ---- oracle --------------------------------------------------------------------------- */

typedef struct ev_s {
  int64_t t;
  double amount;
} ev_t;

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) q--;
  return q;
}

/*
 * The documented semantics, computed from the raw event list: an event e_i is admitted to a
 * window if its bucket is within the ring when it arrives (bucket > newest bucket so far - n);
 * the window of a query at t holds admitted earlier events whose bucket is in (bt - n, bt] and
 * still in the ring, (head - n, head].
 */
static void oracle(const ev_t *ev, size_t j, int64_t width, int64_t n, double *count,
                   double *sum) {
  int64_t head = INT64_MIN;
  for (size_t i = 0; i < j; i++) {
    int64_t b = floor_div(ev[i].t, width);
    if (b > head) head = b;
  }
  int64_t bt = floor_div(ev[j].t, width);
  *count = 0;
  *sum = 0;
  int64_t head_i = INT64_MIN;
  for (size_t i = 0; i < j; i++) {
    int64_t b = floor_div(ev[i].t, width);
    bool admitted = head_i == INT64_MIN || b > head_i - n;
    if (b > head_i) head_i = b;
    if (admitted && b > bt - n && b <= bt && b > head - n && b <= head) {
      *count += 1;
      *sum += ev[i].amount;
    }
  }
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

TEST(random_stream_matches_oracle) {
  enum { N = 3000 };
  static ev_t ev[N];
  int64_t t = 1700000000000;
  for (size_t i = 0; i < N; i++) {
    uint64_t r = rnd() % 100;
    if (r < 60) t += (int64_t)(rnd() % 20000);           /* seconds apart */
    else if (r < 85) t += (int64_t)(rnd() % 1800000);    /* minutes apart */
    else if (r < 88) t += (int64_t)(rnd() % 172800000);  /* a gap of up to two days */
    int64_t et = t;
    if (rnd() % 10 == 0) et -= (int64_t)(rnd() % 7200000); /* 10% arrive up to 2 h late */
    ev[i] = (ev_t){et, (double)(rnd() % 50000) / 100.0};
  }
  wk_velocity_t v;
  wk_velocity_init(&v);
  static const struct {
    int64_t width, n;
    int count, sum;
  } win[3] = {{5000, 12, WK_VEL_COUNT_1M, WK_VEL_SUM_1M},
              {300000, 12, WK_VEL_COUNT_1H, WK_VEL_SUM_1H},
              {3600000, 24, WK_VEL_COUNT_24H, WK_VEL_SUM_24H}};
  int64_t newest = INT64_MIN;
  size_t n_late = 0, n_nonzero_1m = 0;
  for (size_t j = 0; j < N; j++) {
    wk_velocity_observe(&v, ev[j].t, ev[j].amount, feats);
    for (int w = 0; w < 3; w++) {
      double c, s;
      oracle(ev, j, win[w].width, win[w].n, &c, &s);
      ASSERT_MSG(feats[win[w].count] == (float)c, "event %zu window %d: count %g, oracle %g", j,
                 w, feats[win[w].count], c);
      ASSERT_MSG(fabs(feats[win[w].sum] - (float)s) <= 1e-6 * fmax(1.0, s),
                 "event %zu window %d: sum %g, oracle %g", j, w, feats[win[w].sum], s);
    }
    if (feats[WK_VEL_COUNT_1M] > 0) n_nonzero_1m++;
    bool late = j > 0 && ev[j].t < newest;
    ASSERT_EQ(feats[WK_VEL_LATE], late ? 1 : 0);
    n_late += late;
    if (j > 0 && !late)
      ASSERT_NEAR(feats[WK_VEL_SECS_SINCE_LAST],
                  fmin((double)(ev[j].t - newest) / 1000.0, WK_VEL_SINCE_LAST_CAP_S), 1e-6);
    if (ev[j].t > newest) newest = ev[j].t;
  }
  /* The stream really exercised late arrivals and non-empty short windows. */
  ASSERT_OP(n_late, >, 100);
  ASSERT_OP(n_nonzero_1m, >, 300);

  /* Running statistics against a direct two-pass computation. */
  double mean = 0, m2 = 0;
  for (size_t i = 0; i < N; i++) mean += ev[i].amount;
  mean /= N;
  for (size_t i = 0; i < N; i++) m2 += (ev[i].amount - mean) * (ev[i].amount - mean);
  ASSERT_NEAR(v.mean, mean, 1e-9);
  ASSERT_NEAR(v.m2, m2, 1e-9);
}

TEST(encode_round_trip) {
  wk_velocity_t a, b;
  wk_velocity_init(&a);
  int64_t t = 1700000000000;
  for (int i = 0; i < 200; i++) {
    t += (int64_t)(rnd() % 60000);
    wk_velocity_update(&a, t, (double)(rnd() % 1000));
  }
  uint8_t buf[WK_VEL_ENCODED_MAX + 8];
  size_t need = wk_velocity_encode(&a, buf, 10); /* too small: size only */
  ASSERT_OP(need, <=, WK_VEL_ENCODED_MAX);
  ASSERT_EQ(wk_velocity_encode(&a, buf, sizeof buf), need);
  char err[256];
  ASSERT_OK(wk_velocity_decode(&b, buf, need, err, sizeof err));
  ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
  /* The restored state gives the same features as the original from here on. */
  float fa[WK_VEL_N_FEATURES], fb[WK_VEL_N_FEATURES];
  for (int i = 0; i < 50; i++) {
    t += (int64_t)(rnd() % 60000);
    double amt = (double)(rnd() % 1000);
    wk_velocity_observe(&a, t, amt, fa);
    wk_velocity_observe(&b, t, amt, fb);
    ASSERT_EQ(memcmp(fa, fb, sizeof fa), 0);
  }
  /* An empty state round-trips too, in the header, the bucket map and the tail alone. */
  wk_velocity_init(&a);
  size_t n_empty = wk_velocity_encode(&a, buf, sizeof buf);
  ASSERT_EQ(n_empty, 4 + 3 * 14 + 6 + 32);
  ASSERT_OK(wk_velocity_decode(&b, buf, n_empty, err, sizeof err));
  ASSERT_EQ(b.last_ms, INT64_MIN);
  /* One transaction fills one bucket per window: 3 x 12 bytes more, not all 48 buckets. */
  wk_velocity_update(&a, 1700000000000, 12.5);
  ASSERT_EQ(wk_velocity_encode(&a, buf, sizeof buf), n_empty + 3 * 12);
  /* Every bucket in use: the largest encoding. */
  wk_velocity_init(&a);
  for (int64_t k = 0; k < 24 * 3600; k += 5) wk_velocity_update(&a, 1700000000000 + k * 1000, 1.0);
  ASSERT_EQ(wk_velocity_encode(&a, buf, sizeof buf), WK_VEL_ENCODED_MAX);
  ASSERT_OK(wk_velocity_decode(&b, buf, WK_VEL_ENCODED_MAX, err, sizeof err));
  ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
}

/* Little-endian writers for the hand-built version-1 layout below. */
static uint8_t *le(uint8_t *p, uint64_t x, int n) {
  for (int i = 0; i < n; i++) *p++ = (uint8_t)(x >> (8 * i));
  return p;
}
static uint8_t *le_f64(uint8_t *p, double d) {
  uint64_t x;
  memcpy(&x, &d, sizeof x);
  return le(p, x, 8);
}

/* card_state rows written before version 2 (every bucket, 654 bytes) still restore exactly:
 * the layout is written here by hand from the documented format, not by the encoder. */
TEST(version_1_rows_still_decode) {
  wk_velocity_t a, b;
  wk_velocity_init(&a);
  int64_t t = 1700000000000;
  for (int i = 0; i < 80; i++) {
    t += (int64_t)(rnd() % 90000);
    wk_velocity_update(&a, t, (double)(rnd() % 500) + 0.25);
  }
  static const struct { uint32_t width; uint16_t n; } win[3] = {{5000, 12}, {300000, 12},
                                                               {3600000, 24}};
  uint8_t v1[WK_VEL_ENCODED_V1_SIZE], *p = v1;
  *p++ = 'W';
  *p++ = 'V';
  *p++ = 1;
  *p++ = 3;
  for (int i = 0; i < 3; i++) {
    p = le(p, win[i].width, 4);
    p = le(p, win[i].n, 2);
    p = le(p, (uint64_t)a.head[i], 8);
  }
  for (int k = 0; k < WK_VEL_N_BUCKETS; k++) {
    p = le(p, a.count[k], 4);
    p = le_f64(p, a.sum[k]);
  }
  p = le(p, (uint64_t)a.last_ms, 8);
  p = le(p, a.n, 8);
  p = le_f64(p, a.mean);
  p = le_f64(p, a.m2);
  ASSERT_EQ((size_t)(p - v1), sizeof v1);
  char err[256];
  ASSERT_OK(wk_velocity_decode(&b, v1, sizeof v1, err, sizeof err));
  ASSERT_EQ(memcmp(&a, &b, sizeof a), 0);
  ASSERT_EQ(wk_velocity_decode(&b, v1, sizeof v1 - 1, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "653 bytes, version 1 has 654");
}

TEST(decode_errors) {
  wk_velocity_t a, b;
  wk_velocity_init(&a);
  wk_velocity_update(&a, 1700000000000, 12.5);
  uint8_t buf[WK_VEL_ENCODED_MAX], bad[WK_VEL_ENCODED_MAX];
  size_t n = wk_velocity_encode(&a, buf, sizeof buf);
  char err[256];

  ASSERT_EQ(wk_velocity_decode(&b, buf, n - 1, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "its bucket map needs");
  ASSERT_EQ(wk_velocity_decode(&b, buf, 20, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "20 bytes, too short");

  memcpy(bad, buf, n);
  bad[0] = 'X';
  ASSERT_EQ(wk_velocity_decode(&b, bad, n, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "bad magic");

  memcpy(bad, buf, n);
  bad[2] = 9;
  ASSERT_EQ(wk_velocity_decode(&b, bad, n, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "format version 9");

  memcpy(bad, buf, n);
  bad[4] = 0x10; /* first window's bucket width changes */
  ASSERT_EQ(wk_velocity_decode(&b, bad, n, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "window 0 has 12 buckets of");

  /* The bucket map claims one more bucket than the bytes hold. */
  memcpy(bad, buf, n);
  bad[4 + 42] ^= 0x02;
  ASSERT_EQ(wk_velocity_decode(&b, bad, n, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "bucket map needs");

  memcpy(bad, buf, n);
  /* The first stored bucket's sum: after the header, 3 x 14 window bytes, the 6-byte map and
   * a 4-byte count. */
  double nan = NAN;
  memcpy(bad + 4 + 42 + 6 + 4, &nan, 8);
  ASSERT_EQ(wk_velocity_decode(&b, bad, n, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "sum is not finite");
  ASSERT_EQ(b.n, 0); /* left empty on failure */
}
