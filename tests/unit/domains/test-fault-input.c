/*
 * Decoding and validation of sluice.fault.events records (each rejection reason with a detail
 * naming the field), and the tabular model input built by name from a reading (the AI4I
 * model's five channels and its Type).
 */
#include "test.h"

#include "fault-input.h"

static const char *const ai4i_num[] = {"Air temperature [K]", "Process temperature [K]",
                                       "Rotational speed [rpm]", "Torque [Nm]",
                                       "Tool wear [min]"};
static const double ai4i_val[] = {298.1, 308.6, 1551, 42.8, 0};

typedef struct {
  Sluice__V1__Envelope env;
  Sluice__V1__SensorReading rd;
  Sluice__V1__ChannelValue cv[5];
  Sluice__V1__ChannelValue *cvp[5];
} msg_t;

static void make(msg_t *m) {
  Sluice__V1__Envelope e = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__SensorReading r = SLUICE__V1__SENSOR_READING__INIT;
  m->env = e;
  m->rd = r;
  for (int i = 0; i < 5; i++) {
    Sluice__V1__ChannelValue c = SLUICE__V1__CHANNEL_VALUE__INIT;
    m->cv[i] = c;
    m->cv[i].name = (char *)ai4i_num[i];
    m->cv[i].has_value = 1;
    m->cv[i].value = ai4i_val[i];
    m->cvp[i] = &m->cv[i];
  }
  m->env.event_id = (char *)"ai4i-1";
  m->env.key = (char *)"M14860";
  m->env.has_event_time_ms = 1;
  m->env.event_time_ms = 1700000000000LL;
  m->env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
  m->env.sensor_reading = &m->rd;
  m->rd.device_id = (char *)"M14860";
  m->rd.device_type = (char *)"M";
  m->rd.has_timestamp_ms = 1;
  m->rd.timestamp_ms = m->env.event_time_ms;
  m->rd.n_values = 5;
  m->rd.values = m->cvp;
}

static void expect_invalid(msg_t *m, wk_reject_reason_t reason, const char *needle) {
  wk_reject_t rej;
  ASSERT(!wk_fault_validate(&m->env, &rej));
  ASSERT_EQ(rej.reason, reason);
  ASSERT_STR_CONTAINS(rej.detail, needle);
}

TEST(valid_round_trip) {
  msg_t m;
  make(&m);
  size_t n = sluice__v1__envelope__get_packed_size(&m.env);
  uint8_t *buf = malloc(n);
  ASSERT_NOT_NULL(buf);
  sluice__v1__envelope__pack(&m.env, buf);
  wk_reject_t rej;
  Sluice__V1__Envelope *env = wk_fault_decode(buf, n, 1 << 20, &rej);
  ASSERT_NOT_NULL(env);
  ASSERT_EQ(rej.reason, WK_REJECT_NONE);
  ASSERT_STR_EQ(env->sensor_reading->device_id, "M14860");
  sluice__v1__envelope__free_unpacked(env, NULL);
  ASSERT_NULL(wk_fault_decode(buf, n, n - 1, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_OVERSIZE);
  free(buf);
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  ASSERT_NULL(wk_fault_decode(junk, sizeof junk, 100, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_DECODE);
}

TEST(each_rule_rejects_with_a_reason) {
  msg_t m;
  make(&m);
  m.env.event_id = NULL;
  expect_invalid(&m, WK_REJECT_INVALID, "event_id is missing");
  make(&m);
  m.env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  expect_invalid(&m, WK_REJECT_WRONG_PAYLOAD, "not a sensor_reading");
  make(&m);
  m.rd.device_id = NULL;
  expect_invalid(&m, WK_REJECT_INVALID, "device_id is missing");
  make(&m);
  m.env.key = (char *)"H1";
  expect_invalid(&m, WK_REJECT_INVALID, "not the reading's device_id");
  make(&m);
  m.rd.timestamp_ms += 1;
  expect_invalid(&m, WK_REJECT_INVALID, "differs from event_time_ms");
  make(&m);
  m.env.has_event_time_ms = 0;
  expect_invalid(&m, WK_REJECT_INVALID, "event_time_ms is missing");
  make(&m);
  m.rd.n_values = 0;
  expect_invalid(&m, WK_REJECT_INVALID, "values is empty");
  make(&m);
  m.cv[3].value = NAN;
  expect_invalid(&m, WK_REJECT_INVALID, "values[3] (\"Torque [Nm]\")");
  make(&m);
  m.cv[2].has_value = 0;
  expect_invalid(&m, WK_REJECT_INVALID, "has no value");
  make(&m);
  m.cv[4].name = (char *)"Torque [Nm]";
  expect_invalid(&m, WK_REJECT_INVALID, "repeats channel");
  make(&m);
  m.cv[0].name = (char *)"";
  expect_invalid(&m, WK_REJECT_INVALID, "values[0].name is missing");
  make(&m);
  m.rd.device_type = (char *)"M\x01";
  expect_invalid(&m, WK_REJECT_INVALID, "control character");
}

TEST(tabular_input_by_name) {
  const char *const cats[] = {"Type"};
  const char *const vocab[] = {"<unk>", "L", "M", "H"};
  const char *const *vocabs[] = {vocab};
  const size_t vocab_n[] = {4};
  /* The model orders its inputs differently from the reading. */
  const char *const num[] = {"Torque [Nm]", "Air temperature [K]", "Tool wear [min]"};
  wk_fault_tab_map_t map;
  char err[256];
  ASSERT_OK(wk_fault_tab_map_init(&map, num, 3, cats, vocabs, vocab_n, 1, err, sizeof err));
  msg_t m;
  make(&m);
  float x[3];
  int32_t cat[1];
  wk_reject_t rej;
  ASSERT(wk_fault_tab_build(&map, &m.rd, x, cat, &rej));
  ASSERT_EQ(x[0], (float)42.8);
  ASSERT_EQ(x[1], (float)298.1);
  ASSERT_EQ(x[2], 0.0f);
  ASSERT_EQ(cat[0], 2);
  m.rd.device_type = (char *)"X";
  ASSERT(wk_fault_tab_build(&map, &m.rd, x, cat, &rej));
  ASSERT_EQ(cat[0], 0); /* unknown type: <unk> */
  m.rd.device_type = NULL;
  ASSERT(wk_fault_tab_build(&map, &m.rd, x, cat, &rej));
  ASSERT_EQ(cat[0], 0);
  m.rd.n_values = 3; /* Torque and Tool wear are gone */
  ASSERT(!wk_fault_tab_build(&map, &m.rd, x, cat, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_INVALID);
  ASSERT_STR_CONTAINS(rej.detail, "Torque [Nm]");
  wk_fault_tab_map_close(&map);
  /* A categorical input the pipeline cannot fill is a configuration error. */
  const char *const bad[] = {"Colour"};
  ASSERT_EQ(wk_fault_tab_map_init(&map, num, 3, bad, vocabs, vocab_n, 1, err, sizeof err),
            SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "Colour");
  wk_fault_tab_map_close(&map);
}

TEST(mutated_records_never_crash_and_always_explain) {
  msg_t m;
  make(&m);
  size_t n = sluice__v1__envelope__get_packed_size(&m.env);
  uint8_t *good = malloc(n), *buf = malloc(n);
  ASSERT(good != NULL && buf != NULL);
  sluice__v1__envelope__pack(&m.env, good);
  srand(7);
  int rejected = 0, accepted = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(buf, good, n);
    size_t len = n - (size_t)(rand() % 4 == 0 ? rand() % (int)n : 0);
    for (int k = 0; k < 1 + rand() % 3; k++) buf[rand() % (int)n] ^= (uint8_t)(1 + rand() % 255);
    wk_reject_t rej;
    Sluice__V1__Envelope *env = wk_fault_decode(buf, len, n, &rej);
    if (env == NULL) {
      ASSERT_NE(rej.reason, WK_REJECT_NONE);
      ASSERT(rej.detail[0] != '\0');
      rejected++;
    } else {
      wk_reject_t again;
      ASSERT(wk_fault_validate(env, &again));
      sluice__v1__envelope__free_unpacked(env, NULL);
      accepted++;
    }
  }
  ASSERT_OP(rejected, >, 100);
  ASSERT_OP(accepted, >, 10);
  free(good);
  free(buf);
}
