/*
 * Packs a sensor reading as the worker receives it: a sluice.v1.Envelope with a SensorReading
 * payload. For the fault tests that feed readings to wk_fault_decode, the fault pipeline's ops
 * or the real worker through Kafka. Include after test.h (it asserts).
 */
#ifndef SLUICE_TEST_SENSOR_READING_H
#define SLUICE_TEST_SENSOR_READING_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/envelope.pb-c.h"

#define TEST_READING_MAX_VALUES 32

/*
 * A reading of `device` (of `type`, or none when NULL) at event time t (ms), keyed by device,
 * with the per-device counter *sequence (none when NULL; for C-MAPSS the engine's cycle, which
 * a model's "cycle" channel reads), with n_values (at most TEST_READING_MAX_VALUES) channels
 * names[i] = vals[i], packed into buf. Returns its size; fails the test when it does not fit
 * `size`.
 */
static inline size_t test_pack_reading_seq(const char *event_id, const char *device,
                                           const char *type, int64_t t, const int64_t *sequence,
                                           const char *const *names, const double *vals,
                                           int n_values, uint8_t *buf, size_t size) {
  Sluice__V1__ChannelValue cv[TEST_READING_MAX_VALUES], *cvp[TEST_READING_MAX_VALUES];
  ASSERT(n_values >= 0 && n_values <= TEST_READING_MAX_VALUES);
  for (int i = 0; i < n_values; i++) {
    Sluice__V1__ChannelValue init = SLUICE__V1__CHANNEL_VALUE__INIT;
    cv[i] = init;
    cv[i].name = (char *)names[i];
    cv[i].has_value = 1;
    cv[i].value = vals[i];
    cvp[i] = &cv[i];
  }
  Sluice__V1__SensorReading rd = SLUICE__V1__SENSOR_READING__INIT;
  rd.device_id = (char *)device;
  rd.device_type = (char *)type;
  rd.n_values = (size_t)n_values;
  rd.values = cvp;
  if (sequence != NULL) {
    rd.has_sequence = 1;
    rd.sequence = *sequence;
  }
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  env.event_id = (char *)event_id;
  env.key = (char *)device;
  env.has_event_time_ms = 1;
  env.event_time_ms = t;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
  env.sensor_reading = &rd;
  size_t len = sluice__v1__envelope__get_packed_size(&env);
  ASSERT_MSG(len <= size, "a reading of %zu bytes does not fit %zu", len, size);
  return sluice__v1__envelope__pack(&env, buf);
}

/* test_pack_reading_seq without a sequence (readings of models that do not read one). */
static inline size_t test_pack_reading(const char *event_id, const char *device,
                                       const char *type, int64_t t, const char *const *names,
                                       const double *vals, int n_values, uint8_t *buf,
                                       size_t size) {
  return test_pack_reading_seq(event_id, device, type, t, NULL, names, vals, n_values, buf, size);
}

#endif /* SLUICE_TEST_SENSOR_READING_H */
