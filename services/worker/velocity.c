/*
 * Per-card velocity state: bucketed sliding windows by event time, running amount statistics,
 * and their byte encoding for PostgreSQL. The contract is in velocity.h.
 */
#include "velocity.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct vel__window_s {
  int64_t width_ms; /* of one bucket */
  unsigned n;       /* buckets in the ring */
  unsigned first;   /* offset of the window's buckets in count[] / sum[] */
} vel__window_t;

static const vel__window_t vel__windows[WK_VEL_N_WINDOWS] = {
    {5000, 12, 0},      /* 1 min */
    {300000, 12, 12},   /* 1 h */
    {3600000, 24, 24},  /* 24 h */
};

_Static_assert(12 + 12 + 24 == WK_VEL_N_BUCKETS, "bucket layout");
/* Header (magic, version, windows) + per window (width, buckets, head) ... + tail (last time,
 * n, mean, m2). Version 1 stores every bucket; version 2 a bitmap and the buckets in use. */
#define VEL__HEAD_SIZE (4 + WK_VEL_N_WINDOWS * 14)
#define VEL__TAIL_SIZE 32
#define VEL__BITMAP_SIZE ((WK_VEL_N_BUCKETS + 7) / 8)
_Static_assert(VEL__HEAD_SIZE + WK_VEL_N_BUCKETS * 12 + VEL__TAIL_SIZE == WK_VEL_ENCODED_V1_SIZE,
               "version 1 size");
_Static_assert(VEL__HEAD_SIZE + VEL__BITMAP_SIZE + WK_VEL_N_BUCKETS * 12 + VEL__TAIL_SIZE ==
                   WK_VEL_ENCODED_MAX,
               "version 2 largest size");

const char *const wk_velocity_feature_names[WK_VEL_N_FEATURES] = {
#define WK__VEL_NAME(id, name) name,
    WK_VEL_FEATURES(WK__VEL_NAME)
#undef WK__VEL_NAME
};

#define VEL__MAGIC0 'W'
#define VEL__MAGIC1 'V'
#define VEL__VERSION 2 /* written; 1 is still read */

/* Floor division, so that bucket numbers stay monotonic across zero. */
static int64_t vel__floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

static unsigned vel__slot(const vel__window_t *w, int64_t bucket) {
  int64_t m = bucket % (int64_t)w->n;
  if (m < 0) m += w->n;
  return w->first + (unsigned)m;
}

void wk_velocity_init(wk_velocity_t *v) {
  memset(v, 0, sizeof *v);
  v->last_ms = INT64_MIN;
  for (int i = 0; i < WK_VEL_N_WINDOWS; i++) v->head[i] = INT64_MIN;
}

void wk_velocity_features(const wk_velocity_t *v, int64_t t_ms, double amount, float *out) {
  static const int count_idx[WK_VEL_N_WINDOWS] = {WK_VEL_COUNT_1M, WK_VEL_COUNT_1H,
                                                  WK_VEL_COUNT_24H};
  static const int sum_idx[WK_VEL_N_WINDOWS] = {WK_VEL_SUM_1M, WK_VEL_SUM_1H, WK_VEL_SUM_24H};
  for (int i = 0; i < WK_VEL_N_WINDOWS; i++) {
    const vel__window_t *w = &vel__windows[i];
    uint64_t count = 0;
    double sum = 0.0;
    if (v->head[i] != INT64_MIN) {
      int64_t bt = vel__floor_div(t_ms, w->width_ms);
      /* The window's buckets (bt - n, bt] that the ring still holds, (head - n, head]. */
      int64_t lo = bt - (int64_t)w->n + 1, hi = bt;
      if (lo < v->head[i] - (int64_t)w->n + 1) lo = v->head[i] - (int64_t)w->n + 1;
      if (hi > v->head[i]) hi = v->head[i];
      for (int64_t b = lo; b <= hi; b++) {
        unsigned s = vel__slot(w, b);
        count += v->count[s];
        sum += v->sum[s];
      }
    }
    out[count_idx[i]] = (float)count;
    out[sum_idx[i]] = (float)sum;
  }

  int late = v->n > 0 && t_ms < v->last_ms;
  double since;
  if (v->n == 0) since = WK_VEL_SINCE_LAST_CAP_S;
  else if (late) since = 0.0;
  else since = fmin((double)(t_ms - v->last_ms) / 1000.0, WK_VEL_SINCE_LAST_CAP_S);
  out[WK_VEL_SECS_SINCE_LAST] = (float)since;
  out[WK_VEL_LATE] = late ? 1.0f : 0.0f;

  double z = 0.0;
  if (v->n >= 2) {
    double var = v->m2 / (double)(v->n - 1);
    if (var > 0.0) z = (amount - v->mean) / sqrt(var);
    if (z > WK_VEL_Z_CLIP) z = WK_VEL_Z_CLIP;
    if (z < -WK_VEL_Z_CLIP) z = -WK_VEL_Z_CLIP;
  }
  out[WK_VEL_AMOUNT_Z] = (float)z;
  out[WK_VEL_AMOUNT_RATIO] = (float)(v->n > 0 && v->mean > 0.0 ? amount / v->mean : 1.0);
  out[WK_VEL_N_SEEN] = (float)v->n;
}

void wk_velocity_update(wk_velocity_t *v, int64_t t_ms, double amount) {
  for (int i = 0; i < WK_VEL_N_WINDOWS; i++) {
    const vel__window_t *w = &vel__windows[i];
    int64_t bt = vel__floor_div(t_ms, w->width_ms);
    if (v->head[i] == INT64_MIN || bt - v->head[i] >= (int64_t)w->n) {
      /* First event, or a jump past the whole ring: every bucket is stale. */
      memset(&v->count[w->first], 0, w->n * sizeof v->count[0]);
      memset(&v->sum[w->first], 0, w->n * sizeof v->sum[0]);
      v->head[i] = bt;
    } else if (bt > v->head[i]) {
      for (int64_t b = v->head[i] + 1; b <= bt; b++) {
        unsigned s = vel__slot(w, b);
        v->count[s] = 0;
        v->sum[s] = 0.0;
      }
      v->head[i] = bt;
    } else if (bt <= v->head[i] - (int64_t)w->n) {
      continue; /* too late for this ring: outside the window of every event to come */
    }
    unsigned s = vel__slot(w, bt);
    if (v->count[s] < UINT32_MAX) v->count[s]++;
    v->sum[s] += amount;
  }

  v->n++;
  double d = amount - v->mean;
  v->mean += d / (double)v->n;
  v->m2 += d * (amount - v->mean);
  if (v->last_ms == INT64_MIN || t_ms > v->last_ms) v->last_ms = t_ms;
}

void wk_velocity_observe(wk_velocity_t *v, int64_t t_ms, double amount, float *out) {
  wk_velocity_features(v, t_ms, amount, out);
  wk_velocity_update(v, t_ms, amount);
}

/* ---- encoding ------------------------------------------------------------------------- */

static uint8_t *put_u64(uint8_t *p, uint64_t x) {
  for (int i = 0; i < 8; i++) *p++ = (uint8_t)(x >> (8 * i));
  return p;
}

static uint8_t *put_f64(uint8_t *p, double d) {
  uint64_t x;
  memcpy(&x, &d, sizeof x);
  return put_u64(p, x);
}

static uint64_t get_u64(const uint8_t **pp, size_t nbytes) {
  uint64_t x = 0;
  for (size_t i = 0; i < nbytes; i++) x |= (uint64_t)(*pp)[i] << (8 * i);
  *pp += nbytes;
  return x;
}

static double get_f64(const uint8_t **pp) {
  uint64_t x = get_u64(pp, 8);
  double d;
  memcpy(&d, &x, sizeof d);
  return d;
}

/* A bucket is stored when anything in it differs from an empty one (bitwise, so -0.0 too). */
static int vel__bucket_used(const wk_velocity_t *v, int b) {
  uint64_t bits;
  memcpy(&bits, &v->sum[b], sizeof bits);
  return v->count[b] != 0 || bits != 0;
}

size_t wk_velocity_encode(const wk_velocity_t *v, uint8_t *buf, size_t size) {
  size_t used = 0;
  for (int b = 0; b < WK_VEL_N_BUCKETS; b++) used += (size_t)vel__bucket_used(v, b);
  size_t need = VEL__HEAD_SIZE + VEL__BITMAP_SIZE + used * 12 + VEL__TAIL_SIZE;
  if (size < need) return need;
  uint8_t *p = buf;
  *p++ = VEL__MAGIC0;
  *p++ = VEL__MAGIC1;
  *p++ = VEL__VERSION;
  *p++ = WK_VEL_N_WINDOWS;
  for (int i = 0; i < WK_VEL_N_WINDOWS; i++) {
    uint32_t width = (uint32_t)vel__windows[i].width_ms;
    for (int k = 0; k < 4; k++) *p++ = (uint8_t)(width >> (8 * k));
    *p++ = (uint8_t)vel__windows[i].n;
    *p++ = (uint8_t)(vel__windows[i].n >> 8);
    p = put_u64(p, (uint64_t)v->head[i]);
  }
  uint8_t *bitmap = p;
  memset(bitmap, 0, VEL__BITMAP_SIZE);
  p += VEL__BITMAP_SIZE;
  for (int b = 0; b < WK_VEL_N_BUCKETS; b++) {
    if (!vel__bucket_used(v, b)) continue;
    bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
    for (int k = 0; k < 4; k++) *p++ = (uint8_t)(v->count[b] >> (8 * k));
    p = put_f64(p, v->sum[b]);
  }
  p = put_u64(p, (uint64_t)v->last_ms);
  p = put_u64(p, v->n);
  p = put_f64(p, v->mean);
  p = put_f64(p, v->m2);
  return (size_t)(p - buf);
}

svc_err_t wk_velocity_decode(wk_velocity_t *v, const uint8_t *buf, size_t len, char *errstr,
                             size_t errstr_size) {
  wk_velocity_init(v);
  if (len < VEL__HEAD_SIZE + VEL__TAIL_SIZE) {
    snprintf(errstr, errstr_size, "card state: %zu bytes, too short for any version", len);
    return SVC_EDECODE;
  }
  const uint8_t *p = buf;
  if (p[0] != VEL__MAGIC0 || p[1] != VEL__MAGIC1) {
    snprintf(errstr, errstr_size, "card state: bad magic 0x%02x%02x", p[0], p[1]);
    return SVC_EDECODE;
  }
  int version = p[2];
  if (version != 1 && version != VEL__VERSION) {
    snprintf(errstr, errstr_size, "card state: format version %u, this worker reads 1 and %d",
             p[2], VEL__VERSION);
    return SVC_EDECODE;
  }
  if (version == 1 && len != WK_VEL_ENCODED_V1_SIZE) {
    snprintf(errstr, errstr_size, "card state: %zu bytes, version 1 has %d", len,
             WK_VEL_ENCODED_V1_SIZE);
    return SVC_EDECODE;
  }
  if (p[3] != WK_VEL_N_WINDOWS) {
    snprintf(errstr, errstr_size, "card state: %u windows, this worker uses %d", p[3],
             WK_VEL_N_WINDOWS);
    return SVC_EDECODE;
  }
  p += 4;
  wk_velocity_t tmp;
  wk_velocity_init(&tmp);
  for (int i = 0; i < WK_VEL_N_WINDOWS; i++) {
    uint64_t width = get_u64(&p, 4), n = get_u64(&p, 2);
    if ((int64_t)width != vel__windows[i].width_ms || n != vel__windows[i].n) {
      snprintf(errstr, errstr_size,
               "card state: window %d has %llu buckets of %llu ms, this worker uses %u of %lld",
               i, (unsigned long long)n, (unsigned long long)width, vel__windows[i].n,
               (long long)vel__windows[i].width_ms);
      return SVC_EDECODE;
    }
    tmp.head[i] = (int64_t)get_u64(&p, 8);
  }
  uint8_t present[VEL__BITMAP_SIZE];
  if (version == 1) {
    memset(present, 0xff, sizeof present);
  } else {
    if (len < VEL__HEAD_SIZE + VEL__BITMAP_SIZE + VEL__TAIL_SIZE) {
      snprintf(errstr, errstr_size, "card state: %zu bytes, too short for its bucket map", len);
      return SVC_EDECODE;
    }
    memcpy(present, p, sizeof present);
    p += sizeof present;
    size_t used = 0;
    for (int b = 0; b < WK_VEL_N_BUCKETS; b++) used += (present[b / 8] >> (b % 8)) & 1u;
    if ((present[VEL__BITMAP_SIZE - 1] >> (WK_VEL_N_BUCKETS % 8 ? WK_VEL_N_BUCKETS % 8 : 8)) != 0) {
      snprintf(errstr, errstr_size, "card state: bucket map marks buckets past %d",
               WK_VEL_N_BUCKETS);
      return SVC_EDECODE;
    }
    size_t want = VEL__HEAD_SIZE + VEL__BITMAP_SIZE + used * 12 + VEL__TAIL_SIZE;
    if (len != want) {
      snprintf(errstr, errstr_size, "card state: %zu bytes, its bucket map needs %zu", len, want);
      return SVC_EDECODE;
    }
  }
  for (int b = 0; b < WK_VEL_N_BUCKETS; b++) {
    if (!((present[b / 8] >> (b % 8)) & 1u)) continue;
    tmp.count[b] = (uint32_t)get_u64(&p, 4);
    tmp.sum[b] = get_f64(&p);
    if (!isfinite(tmp.sum[b])) {
      snprintf(errstr, errstr_size, "card state: bucket %d sum is not finite", b);
      return SVC_EDECODE;
    }
  }
  tmp.last_ms = (int64_t)get_u64(&p, 8);
  tmp.n = get_u64(&p, 8);
  tmp.mean = get_f64(&p);
  tmp.m2 = get_f64(&p);
  if (!isfinite(tmp.mean) || !isfinite(tmp.m2) || tmp.m2 < 0.0) {
    snprintf(errstr, errstr_size, "card state: running mean %g / m2 %g invalid", tmp.mean,
             tmp.m2);
    return SVC_EDECODE;
  }
  if ((tmp.n == 0) != (tmp.last_ms == INT64_MIN)) {
    snprintf(errstr, errstr_size, "card state: %llu events but last time %lld disagree",
             (unsigned long long)tmp.n, (long long)tmp.last_ms);
    return SVC_EDECODE;
  }
  *v = tmp;
  return SVC_OK;
}
