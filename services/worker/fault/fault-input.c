/*
 * Decoding, validation and tabular model-input building for sluice.fault.events. The contract
 * is in fault-input.h.
 */
#include "fault-input.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool wk_fault_validate(const Sluice__V1__Envelope *env, wk_reject_t *rej) {
  if (!wk_reject_check_envelope(env, SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING,
                                "sensor_reading (11)", WK_FAULT_MAX_ID_LEN, rej))
    return false;
  const Sluice__V1__SensorReading *rd = env->sensor_reading;
  if (!wk_reject_check_id("sensor_reading.device_id", rd->device_id, true, WK_FAULT_MAX_ID_LEN,
                          rej))
    return false;
  if (env->key != NULL && env->key[0] != '\0' && strcmp(env->key, rd->device_id) != 0)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "key \"%.64s\" is not the reading's device_id \"%.64s\"", env->key,
                     rd->device_id);
  if (!wk_reject_check_id("sensor_reading.device_type", rd->device_type, false,
                          WK_FAULT_MAX_ID_LEN, rej))
    return false;
  if (rd->has_timestamp_ms && rd->timestamp_ms != env->event_time_ms)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "sensor_reading.timestamp_ms %lld differs from event_time_ms %lld",
                     (long long)rd->timestamp_ms, (long long)env->event_time_ms);
  if (rd->n_values == 0)
    return wk_reject(rej, WK_REJECT_INVALID, "sensor_reading.values is empty");
  if (rd->n_values > WK_FAULT_MAX_CHANNELS)
    return wk_reject(rej, WK_REJECT_INVALID, "sensor_reading.values has %zu entries, at most %d",
                     rd->n_values, WK_FAULT_MAX_CHANNELS);
  for (size_t i = 0; i < rd->n_values; i++) {
    const Sluice__V1__ChannelValue *cv = rd->values[i];
    char field[64];
    snprintf(field, sizeof field, "sensor_reading.values[%zu].name", i);
    if (!wk_reject_check_id(field, cv->name, true, WK_FAULT_MAX_NAME_LEN, rej)) return false;
    if (!cv->has_value)
      return wk_reject(rej, WK_REJECT_INVALID, "sensor_reading.values[%zu] (\"%s\") has no value",
                       i, cv->name);
    if (!isfinite(cv->value) || fabs(cv->value) > WK_FAULT_MAX_ABS_VALUE)
      return wk_reject(rej, WK_REJECT_INVALID,
                       "sensor_reading.values[%zu] (\"%s\") = %g is not a finite value within "
                       "+/-%g",
                       i, cv->name, cv->value, WK_FAULT_MAX_ABS_VALUE);
    for (size_t j = 0; j < i; j++)
      if (strcmp(rd->values[j]->name, cv->name) == 0)
        return wk_reject(rej, WK_REJECT_INVALID,
                         "sensor_reading.values[%zu] repeats channel \"%s\" of values[%zu]", i,
                         cv->name, j);
  }
  return true;
}

Sluice__V1__Envelope *wk_fault_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                      wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  if (len > max_bytes) {
    wk_reject(rej, WK_REJECT_OVERSIZE, "record is %zu bytes, the limit is %zu", len, max_bytes);
    return NULL;
  }
  Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, len, buf);
  if (env == NULL) {
    wk_reject(rej, WK_REJECT_DECODE, "%zu bytes are not a sluice.v1.Envelope", len);
    return NULL;
  }
  if (!wk_fault_validate(env, rej)) {
    sluice__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}

bool wk_fault_channel_value(const Sluice__V1__SensorReading *rd, const char *name, double *out) {
  for (size_t i = 0; i < rd->n_values; i++) {
    if (rd->values[i]->name != NULL && strcmp(rd->values[i]->name, name) == 0) {
      *out = rd->values[i]->value;
      return true;
    }
  }
  if (rd->has_sequence && strcmp(name, WK_FAULT_AGE_CHANNEL) == 0) {
    *out = (double)rd->sequence;
    return true;
  }
  return false;
}

/* ---- the tabular model input ----------------------------------------------------------- */

static char *fault__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

void wk_fault_tab_map_close(wk_fault_tab_map_t *map) {
  for (size_t i = 0; map->numeric != NULL && i < map->n_numeric; i++) free(map->numeric[i]);
  free(map->numeric);
  for (size_t i = 0; map->cat_vocab != NULL && i < map->n_categorical; i++) {
    for (size_t j = 0; map->cat_vocab[i] != NULL && j < map->cat_vocab_n[i]; j++)
      free(map->cat_vocab[i][j]);
    free(map->cat_vocab[i]);
  }
  free(map->cat_vocab);
  free(map->cat_vocab_n);
  memset(map, 0, sizeof *map);
}

svc_err_t wk_fault_tab_map_init(wk_fault_tab_map_t *map, const char *const *numeric,
                                size_t n_numeric, const char *const *categorical,
                                const char *const *const *cat_vocab, const size_t *cat_vocab_n,
                                size_t n_categorical, char *errstr, size_t errstr_size) {
  memset(map, 0, sizeof *map);
  if (n_numeric + n_categorical == 0) {
    snprintf(errstr, errstr_size, "the model declares no tabular inputs");
    return SVC_ECONFIG;
  }
  for (size_t i = 0; i < n_categorical; i++) {
    if (strcmp(categorical[i], "Type") != 0 && strcmp(categorical[i], "device_type") != 0) {
      snprintf(errstr, errstr_size,
               "model categorical input %zu \"%s\" is not known to the fault pipeline (known: "
               "Type, device_type, both from sensor_reading.device_type)",
               i, categorical[i]);
      return SVC_ECONFIG;
    }
  }
  map->n_numeric = n_numeric;
  map->n_categorical = n_categorical;
  map->numeric = calloc(n_numeric ? n_numeric : 1, sizeof *map->numeric);
  map->cat_vocab_n = calloc(n_categorical ? n_categorical : 1, sizeof *map->cat_vocab_n);
  map->cat_vocab = calloc(n_categorical ? n_categorical : 1, sizeof *map->cat_vocab);
  if (map->numeric == NULL || map->cat_vocab_n == NULL || map->cat_vocab == NULL) goto fail;
  for (size_t i = 0; i < n_numeric; i++)
    if ((map->numeric[i] = fault__strdup(numeric[i])) == NULL) goto fail;
  for (size_t i = 0; i < n_categorical; i++) {
    map->cat_vocab[i] = calloc(cat_vocab_n[i] ? cat_vocab_n[i] : 1, sizeof **map->cat_vocab);
    if (map->cat_vocab[i] == NULL) goto fail;
    map->cat_vocab_n[i] = cat_vocab_n[i];
    for (size_t j = 0; j < cat_vocab_n[i]; j++)
      if ((map->cat_vocab[i][j] = fault__strdup(cat_vocab[i][j] ? cat_vocab[i][j] : "")) == NULL)
        goto fail;
  }
  return SVC_OK;
fail:
  wk_fault_tab_map_close(map);
  return SVC_ENOMEM;
}

bool wk_fault_tab_build(const wk_fault_tab_map_t *map, const Sluice__V1__SensorReading *rd,
                        float *numeric, int32_t *categorical, wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  for (size_t i = 0; i < map->n_numeric; i++) {
    double v;
    if (!wk_fault_channel_value(rd, map->numeric[i], &v))
      return wk_reject(rej, WK_REJECT_INVALID,
                       "sensor_reading has no channel \"%s\", a model input", map->numeric[i]);
    numeric[i] = (float)v;
  }
  for (size_t i = 0; i < map->n_categorical; i++) {
    categorical[i] = 0;
    if (rd->device_type == NULL) continue;
    for (size_t j = 0; j < map->cat_vocab_n[i]; j++) {
      if (strcmp(map->cat_vocab[i][j], rd->device_type) == 0) {
        categorical[i] = (int32_t)j;
        break;
      }
    }
  }
  return true;
}
