/*
 * Per-card velocity state of the fraud pipeline, in fixed memory: counts and amount sums over
 * sliding windows of 1 minute, 1 hour and 24 hours, the time of the card's newest transaction,
 * and the running mean and variance of its amounts. Everything is keyed by event time (the
 * envelope's event_time_ms), never by arrival time, so that replaying a topic gives the same
 * features as the live run did.
 *
 * Windows are rings of buckets (1 min: 12 x 5 s, 1 h: 12 x 5 min, 24 h: 24 x 1 h). A window
 * "as of time t" is the sum of the buckets whose span ends after t - W and starts at or before
 * t; so it covers between W minus one bucket and W, plus the part of t's own bucket that has
 * been seen. This granularity is the price of fixed memory (about 650 bytes per card).
 *
 * Out-of-order events are handled deliberately:
 *   - An event older than the card's newest (a "late" event) still counts: it is added to every
 *     window whose ring still holds its bucket, so later events see it, and to the running
 *     mean/variance (which do not depend on order). A window whose ring has already moved past
 *     the late event's bucket ignores it, as that bucket is outside the window for every event
 *     still to come in order.
 *   - Features of a late event are computed as of its own time from the buckets up to its own,
 *     its time since the previous transaction is 0 (the true previous one is not known: only
 *     the newest time is kept) and the feature v_late is 1, so the model can tell.
 *   - The card's clock (last_ms) never moves backwards.
 *
 * Features are computed from the card's earlier events only: call wk_velocity_features before
 * wk_velocity_update for the same event (wk_velocity_observe does both).
 *
 * Threads: a wk_velocity_t is plain data with no locking; one thread at a time.
 */
#ifndef WK_VELOCITY_H
#define WK_VELOCITY_H

#include <stddef.h>
#include <stdint.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_VEL_N_WINDOWS 3
#define WK_VEL_N_BUCKETS 48 /* 12 + 12 + 24 */
/* Time since the last transaction is capped here (7 days), also for a card's first one. */
#define WK_VEL_SINCE_LAST_CAP_S 604800.0
/* The z-score of an amount is clipped to +/- this. */
#define WK_VEL_Z_CLIP 100.0
/* Largest encoded state, in bytes (see wk_velocity_encode): a buffer of this size always fits. */
#define WK_VEL_ENCODED_MAX 660
/* Size of the fixed version-1 encoding, still read (card_state rows written before version 2). */
#define WK_VEL_ENCODED_V1_SIZE 654

/* The velocity features, in model order; names in wk_velocity_feature_names. */
#define WK_VEL_FEATURES(XX)                                                         \
  XX(COUNT_1M, "v_count_1m")   /* earlier transactions in the last minute */       \
  XX(COUNT_1H, "v_count_1h")                                                       \
  XX(COUNT_24H, "v_count_24h")                                                     \
  XX(SUM_1M, "v_sum_1m")       /* their summed amounts */                          \
  XX(SUM_1H, "v_sum_1h")                                                           \
  XX(SUM_24H, "v_sum_24h")                                                         \
  XX(SECS_SINCE_LAST, "v_secs_since_last") /* capped; 0 for a late event */        \
  XX(AMOUNT_Z, "v_amount_z")   /* (amount - mean) / stddev; 0 with < 2 earlier */  \
  XX(AMOUNT_RATIO, "v_amount_ratio") /* amount / mean; 1 without history */       \
  XX(LATE, "v_late")           /* 1 when older than the card's newest event */     \
  XX(N_SEEN, "v_n_seen")       /* earlier transactions of the card, ever */

typedef enum {
#define WK__VEL_ENUM(id, name) WK_VEL_##id,
  WK_VEL_FEATURES(WK__VEL_ENUM)
#undef WK__VEL_ENUM
  WK_VEL_N_FEATURES
} wk_vel_feature_t;

extern const char *const wk_velocity_feature_names[WK_VEL_N_FEATURES];

typedef struct wk_velocity_s {
  int64_t last_ms;                    /* newest event time seen; INT64_MIN before any */
  uint64_t n;                         /* events seen */
  double mean, m2;                    /* Welford running mean and sum of squared deviations */
  int64_t head[WK_VEL_N_WINDOWS];     /* newest absolute bucket number per window */
  uint32_t count[WK_VEL_N_BUCKETS];   /* per bucket, windows concatenated */
  double sum[WK_VEL_N_BUCKETS];
} wk_velocity_t;

/* An empty state (no events). */
void wk_velocity_init(wk_velocity_t *v);

/* Writes the WK_VEL_N_FEATURES features of an event at t_ms with `amount`, from earlier events. */
void wk_velocity_features(const wk_velocity_t *v, int64_t t_ms, double amount, float *out);

/* Adds one event to the state. */
void wk_velocity_update(wk_velocity_t *v, int64_t t_ms, double amount);

/* wk_velocity_features then wk_velocity_update. */
void wk_velocity_observe(wk_velocity_t *v, int64_t t_ms, double amount, float *out);

/*
 * Serialises the state for PostgreSQL (card_state.state): a versioned little-endian format
 * that records the window layout. Version 2 stores only the buckets in use (a bitmap, then
 * count and sum of each), so a card with a few recent transactions takes about 120 bytes
 * instead of version 1's fixed 654: card_state is written once per event, and its row size is
 * PostgreSQL's heap and WAL work per event. At most WK_VEL_ENCODED_MAX bytes. Returns the
 * size; writes nothing when `size` is smaller than what the state needs.
 */
size_t wk_velocity_encode(const wk_velocity_t *v, uint8_t *buf, size_t size);

/*
 * Restores a state from wk_velocity_encode's bytes (version 2, or version 1 as written before).
 * Returns SVC_OK, or SVC_EDECODE with the reason in errstr (wrong length, magic or version, a
 * different window layout, non-finite or negative values); *v is then left initialised empty.
 */
svc_err_t wk_velocity_decode(wk_velocity_t *v, const uint8_t *buf, size_t len, char *errstr,
                             size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* WK_VELOCITY_H */
