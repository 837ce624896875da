/*
 * The fraud pipeline's input side: decoding and validating one record of
 * sluice.fraud.events (an Envelope carrying a Transaction), and building the model input from
 * it. The input is a fixed, named feature vector (WK_FRAUD_FEATURES): the transaction's own
 * features, the precomputed V1..V28 when the event carries them, and the card's velocity
 * features when it has a card id; absent groups are zeros with a has_* flag, so the vector
 * always has the same shape. A model selects and orders the features it was trained on by
 * name through a wk_feature_map_t, so the builder and the model card can evolve separately.
 *
 * Rejections carry a reason (used as the DLQ header and the dead-letter metric's label) and a
 * detail sentence naming the field and value that were wrong.
 *
 * Threads: everything here is pure computation on its arguments; any thread.
 */
#ifndef WK_FRAUD_INPUT_H
#define WK_FRAUD_INPUT_H

#include "reject.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/envelope.pb-c.h"
#include "svc/error.h"
#include "velocity.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of precomputed features a transaction may carry (V1..V28), or none. */
#define WK_FRAUD_N_PRECOMPUTED 28
/* Limits of validation. */
#define WK_FRAUD_MAX_ID_LEN 128          /* event id, key, card id */
#define WK_FRAUD_MAX_AMOUNT 1e9          /* event times: WK_MIN/MAX_EVENT_TIME_MS in reject.h */


/*
 * Decodes and validates one record value. Returns the envelope (free it with
 * sluice__v1__envelope__free_unpacked(env, NULL)), or NULL with *rej filled in. Records longer
 * than max_bytes are rejected as oversize without being parsed.
 */
Sluice__V1__Envelope *wk_fraud_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                      wk_reject_t *rej);

/* Validation alone, for envelopes built in process; true when valid, else *rej is filled. */
bool wk_fraud_validate(const Sluice__V1__Envelope *env, wk_reject_t *rej);

/* The model input features, in builder order. */
#define WK_FRAUD_BASE_FEATURES(XX)                                                 \
  XX(AMOUNT, "amount")                                                            \
  XX(LOG_AMOUNT, "log_amount")     /* log(1 + amount) */                          \
  XX(HOUR_OF_DAY, "hour_of_day")   /* UTC, fractional, [0, 24) */                 \
  XX(DAY_OF_WEEK, "day_of_week")   /* UTC, 0 = Monday */                          \
  XX(CHANNEL, "channel")           /* the Channel enum's number */                \
  XX(HAS_FEATURES, "has_features") /* 1 when V1..V28 are present */               \
  XX(HAS_CARD, "has_card")         /* 1 when the velocity features are present */

typedef enum {
#define WK__FRAUD_ENUM(id, name) WK_FRAUD_##id,
  WK_FRAUD_BASE_FEATURES(WK__FRAUD_ENUM)
#undef WK__FRAUD_ENUM
  WK_FRAUD_V1, /* V1..V28 follow */
  WK_FRAUD_VEL_FIRST = WK_FRAUD_V1 + WK_FRAUD_N_PRECOMPUTED, /* then the velocity features */
  WK_FRAUD_N_FEATURES = WK_FRAUD_VEL_FIRST + WK_VEL_N_FEATURES
} wk_fraud_feature_t;

/* The name of feature i ("amount", "V7", "v_count_1h", ...). */
const char *wk_fraud_feature_name(size_t i);

/*
 * Writes the WK_FRAUD_N_FEATURES features of a valid transaction envelope into out. `vel` is
 * the card's velocity features (WK_VEL_N_FEATURES, from wk_velocity_observe) or NULL when
 * the transaction has no card id.
 */
void wk_fraud_build(const Sluice__V1__Envelope *env, const float *vel, float *out);

/* ---- selecting a model's inputs by name ----------------------------------------------- */

typedef struct wk_feature_map_s {
  size_t n;      /* the model's input width */
  size_t *index; /* (n) builder index of model input i */
} wk_feature_map_t;

/*
 * Maps a model's input names (in the model's order) onto the builder's features. Besides the
 * builder's own names it accepts "Amount" for "amount", the ULB credit-card CSV's column name,
 * so a model trained on that CSV (V1..V28 + Amount) is served as it is. Returns
 * SVC_OK, or SVC_ECONFIG naming the first input the builder does not produce; SVC_ENOMEM.
 * Release with wk_feature_map_close (also after a failed init: it is then a no-op).
 */
svc_err_t wk_feature_map_init(wk_feature_map_t *map, const char *const *names, size_t n,
                              char *errstr, size_t errstr_size);
void wk_feature_map_close(wk_feature_map_t *map);
/* model_in[i] = all[map->index[i]]. */
void wk_feature_map_apply(const wk_feature_map_t *map, const float *all, float *model_in);

#ifdef __cplusplus
}
#endif
#endif /* WK_FRAUD_INPUT_H */
