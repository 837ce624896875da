/*
 * Decoding, validation and model-input building for sluice.fraud.events. The contract is in
 * fraud-input.h.
 */
#include "fraud-input.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fraud__base_names[] = {
#define WK__FRAUD_NAME(id, name) name,
    WK_FRAUD_BASE_FEATURES(WK__FRAUD_NAME)
#undef WK__FRAUD_NAME
};

static const char *const fraud__v_names[WK_FRAUD_N_PRECOMPUTED] = {
    "V1",  "V2",  "V3",  "V4",  "V5",  "V6",  "V7",  "V8",  "V9",  "V10",
    "V11", "V12", "V13", "V14", "V15", "V16", "V17", "V18", "V19", "V20",
    "V21", "V22", "V23", "V24", "V25", "V26", "V27", "V28"};

const char *wk_fraud_feature_name(size_t i) {
  if (i < WK_FRAUD_V1) return fraud__base_names[i];
  if (i < WK_FRAUD_VEL_FIRST) return fraud__v_names[i - WK_FRAUD_V1];
  if (i < WK_FRAUD_N_FEATURES) return wk_velocity_feature_names[i - WK_FRAUD_VEL_FIRST];
  return NULL;
}

/* ---- validation ----------------------------------------------------------------------- */

bool wk_fraud_validate(const Sluice__V1__Envelope *env, wk_reject_t *rej) {
  if (!wk_reject_check_envelope(env, SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION,
                                "transaction (10)", WK_FRAUD_MAX_ID_LEN, rej))
    return false;

  const Sluice__V1__Transaction *tx = env->transaction;
  if (!tx->has_amount) return wk_reject(rej, WK_REJECT_INVALID, "transaction.amount is missing");
  if (!isfinite(tx->amount))
    return wk_reject(rej, WK_REJECT_INVALID, "transaction.amount is not finite");
  if (tx->amount < 0.0)
    return wk_reject(rej, WK_REJECT_INVALID, "transaction.amount %g is negative", tx->amount);
  if (tx->amount > WK_FRAUD_MAX_AMOUNT)
    return wk_reject(rej, WK_REJECT_INVALID, "transaction.amount %g is above %g", tx->amount,
                     WK_FRAUD_MAX_AMOUNT);
  if (!wk_reject_check_id("transaction.card_id", tx->card_id, false, WK_FRAUD_MAX_ID_LEN, rej)) return false;
  if (tx->currency != NULL && tx->currency[0] != '\0') {
    const char *c = tx->currency;
    if (strlen(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' ||
        c[2] > 'Z')
      return wk_reject(rej, WK_REJECT_INVALID,
                       "transaction.currency \"%.16s\" is not an ISO 4217 code", c);
  }
  if (tx->has_channel && ((int)tx->channel < 0 || (int)tx->channel > 5))
    return wk_reject(rej, WK_REJECT_INVALID, "transaction.channel %d is unknown",
                     (int)tx->channel);
  if (tx->n_features != 0 && tx->n_features != WK_FRAUD_N_PRECOMPUTED)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "transaction.features has %zu values, expected 0 or %d", tx->n_features,
                     WK_FRAUD_N_PRECOMPUTED);
  for (size_t i = 0; i < tx->n_features; i++) {
    if (!isfinite(tx->features[i]))
      return wk_reject(rej, WK_REJECT_INVALID, "transaction.features[%zu] (V%zu) is not finite",
                       i, i + 1);
  }
  return true;
}

Sluice__V1__Envelope *wk_fraud_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                      wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  if (len > max_bytes) {
    wk_reject(rej, WK_REJECT_OVERSIZE, "record is %zu bytes, the limit is %zu", len,
              max_bytes);
    return NULL;
  }
  Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, len, buf);
  if (env == NULL) {
    wk_reject(rej, WK_REJECT_DECODE, "%zu bytes are not a sluice.v1.Envelope", len);
    return NULL;
  }
  if (!wk_fraud_validate(env, rej)) {
    sluice__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}

/* ---- the model input ------------------------------------------------------------------ */

void wk_fraud_build(const Sluice__V1__Envelope *env, const float *vel, float *out) {
  const Sluice__V1__Transaction *tx = env->transaction;
  memset(out, 0, WK_FRAUD_N_FEATURES * sizeof *out);
  out[WK_FRAUD_AMOUNT] = (float)tx->amount;
  out[WK_FRAUD_LOG_AMOUNT] = (float)log1p(tx->amount);
  int64_t ms_of_day = env->event_time_ms % 86400000LL;
  int64_t day = env->event_time_ms / 86400000LL;
  out[WK_FRAUD_HOUR_OF_DAY] = (float)((double)ms_of_day / 3600000.0);
  /* 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday = 0. */
  out[WK_FRAUD_DAY_OF_WEEK] = (float)((day + 3) % 7);
  out[WK_FRAUD_CHANNEL] = (float)(tx->has_channel ? (int)tx->channel : 0);
  if (tx->n_features == WK_FRAUD_N_PRECOMPUTED) {
    out[WK_FRAUD_HAS_FEATURES] = 1.0f;
    memcpy(&out[WK_FRAUD_V1], tx->features, WK_FRAUD_N_PRECOMPUTED * sizeof *out);
  }
  if (vel != NULL) {
    out[WK_FRAUD_HAS_CARD] = 1.0f;
    memcpy(&out[WK_FRAUD_VEL_FIRST], vel, WK_VEL_N_FEATURES * sizeof *out);
  }
}

/*
 * Other names for builder features, so that a model trained straight on a dataset's columns
 * can be served without renaming its inputs: the ULB credit-card CSV (models/fraud.*) calls
 * the amount "Amount" (its V1..V28 already match). Exact, case-sensitive matches only: a
 * general case-folding rule could silently map an unrelated column onto a feature.
 */
static const struct {
  const char *name;
  size_t feature;
} fraud__aliases[] = {
    {"Amount", WK_FRAUD_AMOUNT},
};

svc_err_t wk_feature_map_init(wk_feature_map_t *map, const char *const *names, size_t n,
                              char *errstr, size_t errstr_size) {
  map->n = 0;
  map->index = NULL;
  if (n == 0) {
    snprintf(errstr, errstr_size, "the model declares no input features");
    return SVC_ECONFIG;
  }
  size_t *index = calloc(n, sizeof *index);
  if (index == NULL) return SVC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    size_t j = 0;
    while (j < WK_FRAUD_N_FEATURES && strcmp(wk_fraud_feature_name(j), names[i]) != 0) j++;
    size_t n_alias = sizeof fraud__aliases / sizeof *fraud__aliases;
    for (size_t a = 0; j == WK_FRAUD_N_FEATURES && a < n_alias; a++)
      if (strcmp(fraud__aliases[a].name, names[i]) == 0) j = fraud__aliases[a].feature;
    if (j == WK_FRAUD_N_FEATURES) {
      snprintf(errstr, errstr_size,
               "model input %zu \"%s\" is not a fraud feature (known: amount or Amount, "
               "log_amount, hour_of_day, day_of_week, channel, has_features, has_card, "
               "V1..V28, v_*)",
               i, names[i]);
      free(index);
      return SVC_ECONFIG;
    }
    index[i] = j;
  }
  map->n = n;
  map->index = index;
  return SVC_OK;
}

void wk_feature_map_close(wk_feature_map_t *map) {
  free(map->index);
  map->index = NULL;
  map->n = 0;
}

void wk_feature_map_apply(const wk_feature_map_t *map, const float *all, float *model_in) {
  for (size_t i = 0; i < map->n; i++) model_in[i] = all[map->index[i]];
}
