/*
 * The v1 wire schemas: every event payload and result survives pack/unpack unchanged,
 * defaults are what the schema says, and bytes that are not a valid Envelope are refused
 * rather than decoded into something half-filled.
 */
#include "test.h"

#include "sluice/v1/envelope.pb-c.h"
#include "sluice/v1/results.pb-c.h"

static Sluice__V1__Envelope *roundtrip(const Sluice__V1__Envelope *env) {
  size_t n = sluice__v1__envelope__get_packed_size(env);
  uint8_t *buf = malloc(n);
  ASSERT_NOT_NULL(buf);
  ASSERT_EQ(sluice__v1__envelope__pack(env, buf), n);
  Sluice__V1__Envelope *out = sluice__v1__envelope__unpack(NULL, n, buf);
  free(buf);
  ASSERT_NOT_NULL(out);
  return out;
}

TEST(transaction_roundtrip) {
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__Transaction tx = SLUICE__V1__TRANSACTION__INIT;
  float feats[28];
  for (int i = 0; i < 28; i++) feats[i] = (float)i * 0.25f - 3.0f;
  env.event_id = "evt-1";
  env.key = "card-42";
  env.has_event_time_ms = 1;
  env.event_time_ms = 1700000000123LL;
  env.source = "test";
  tx.has_amount = 1;
  tx.amount = 149.62;
  tx.currency = "EUR";
  tx.card_id = "card-42";
  tx.has_channel = 1;
  tx.channel = SLUICE__V1__CHANNEL__CHANNEL_ECOMMERCE;
  tx.n_features = 28;
  tx.features = feats;
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env.transaction = &tx;

  Sluice__V1__Envelope *out = roundtrip(&env);
  ASSERT_STR_EQ(out->event_id, "evt-1");
  ASSERT_STR_EQ(out->key, "card-42");
  ASSERT_EQ(out->event_time_ms, 1700000000123LL);
  ASSERT_EQ(out->schema_version, 1); /* the schema's default */
  ASSERT_EQ(out->payload_case, SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION);
  ASSERT_NEAR(out->transaction->amount, 149.62, 1e-12);
  ASSERT_EQ(out->transaction->channel, SLUICE__V1__CHANNEL__CHANNEL_ECOMMERCE);
  ASSERT_EQ(out->transaction->n_features, 28);
  for (int i = 0; i < 28; i++) ASSERT_EQ(out->transaction->features[i] == feats[i], 1);
  sluice__v1__envelope__free_unpacked(out, NULL);
}

TEST(sensor_and_note_roundtrip) {
  Sluice__V1__Envelope env = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__SensorReading sr = SLUICE__V1__SENSOR_READING__INIT;
  Sluice__V1__ChannelValue cv[2] = {SLUICE__V1__CHANNEL_VALUE__INIT, SLUICE__V1__CHANNEL_VALUE__INIT};
  Sluice__V1__ChannelValue *cvp[2] = {&cv[0], &cv[1]};
  cv[0].name = "torque_nm"; cv[0].has_value = 1; cv[0].value = 42.8;
  cv[1].name = "speed_rpm"; cv[1].has_value = 1; cv[1].value = 1551;
  sr.device_id = "M14860";
  sr.n_values = 2;
  sr.values = cvp;
  env.event_id = "evt-2";
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
  env.sensor_reading = &sr;
  Sluice__V1__Envelope *out = roundtrip(&env);
  ASSERT_EQ(out->sensor_reading->n_values, 2);
  ASSERT_STR_EQ(out->sensor_reading->values[1]->name, "speed_rpm");
  ASSERT_NEAR(out->sensor_reading->values[0]->value, 42.8, 1e-12);
  sluice__v1__envelope__free_unpacked(out, NULL);

  Sluice__V1__ClinicalNote note = SLUICE__V1__CLINICAL_NOTE__INIT;
  note.note_id = "n1";
  note.text = "HISTORY OF PRESENT ILLNESS: \xc3\xa9t\xc3\xa9 b.i.d.";
  Sluice__V1__Envelope env2 = SLUICE__V1__ENVELOPE__INIT;
  env2.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE;
  env2.clinical_note = &note;
  out = roundtrip(&env2);
  ASSERT_STR_EQ(out->clinical_note->text, note.text);
  ASSERT_NULL(out->event_id); /* absent optional strings stay absent */
  sluice__v1__envelope__free_unpacked(out, NULL);
}

TEST(score_and_alert_roundtrip) {
  Sluice__V1__Score sc = SLUICE__V1__SCORE__INIT;
  Sluice__V1__ExpertWeight ew = SLUICE__V1__EXPERT_WEIGHT__INIT;
  Sluice__V1__ExpertWeight *ewp = &ew;
  ew.has_expert = 1; ew.expert = 5; ew.has_weight = 1; ew.weight = 0.75f;
  sc.event_id = "evt-1";
  sc.has_score = 1; sc.score = 0.93f;
  sc.has_decision = 1; sc.decision = SLUICE__V1__DECISION__DECISION_BLOCK;
  sc.n_experts = 1; sc.experts = &ewp;
  size_t n = sluice__v1__score__get_packed_size(&sc);
  uint8_t buf[256];
  ASSERT_OP(n, <=, sizeof buf);
  sluice__v1__score__pack(&sc, buf);
  Sluice__V1__Score *out = sluice__v1__score__unpack(NULL, n, buf);
  ASSERT_NOT_NULL(out);
  ASSERT_EQ(out->decision, SLUICE__V1__DECISION__DECISION_BLOCK);
  ASSERT_EQ(out->experts[0]->expert, 5);
  ASSERT_NEAR(out->score, 0.93, 1e-7);
  sluice__v1__score__free_unpacked(out, NULL);
}

TEST(garbage_is_refused) {
  /* Field 1 declared as a 100-byte string, but only 3 bytes follow. */
  const uint8_t truncated[] = {0x0a, 0x64, 'a', 'b', 'c'};
  ASSERT_NULL(sluice__v1__envelope__unpack(NULL, sizeof truncated, truncated));
  /* Wire type 7 does not exist. */
  const uint8_t bad_wire[] = {0x0f, 0x01};
  ASSERT_NULL(sluice__v1__envelope__unpack(NULL, sizeof bad_wire, bad_wire));
}
