/*
 * Tests of the fraud input side: decoding real protobuf bytes, every validation rule with its
 * reason and detail, oversize and undecodable records, the named feature vector (calendar
 * features of a known instant, V1..V28 placement, velocity block and flags), and selecting a
 * model's inputs by name.
 */
#include "fraud-input.h"
#include "test.h"

static float v_feats[WK_FRAUD_N_PRECOMPUTED];

/* A valid envelope: event at 2023-11-14T22:13:20Z (a Tuesday), with V1..V28 and a card. */
static void make(Sluice__V1__Envelope *env, Sluice__V1__Transaction *tx) {
  sluice__v1__envelope__init(env);
  sluice__v1__transaction__init(tx);
  env->event_id = "ev-1";
  env->key = "card-7";
  env->has_event_time_ms = 1;
  env->event_time_ms = 1700000000000;
  env->payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_TRANSACTION;
  env->transaction = tx;
  tx->has_amount = 1;
  tx->amount = 149.62;
  tx->currency = "EUR";
  tx->card_id = "card-7";
  tx->has_channel = 1;
  tx->channel = SLUICE__V1__CHANNEL__CHANNEL_ECOMMERCE;
  for (int i = 0; i < WK_FRAUD_N_PRECOMPUTED; i++) v_feats[i] = (float)(i + 1) * 0.5f - 3.0f;
  tx->n_features = WK_FRAUD_N_PRECOMPUTED;
  tx->features = v_feats;
}

/* Packs the envelope and runs it through wk_fraud_decode. */
static Sluice__V1__Envelope *round_trip(const Sluice__V1__Envelope *env, wk_reject_t *rej) {
  size_t n = sluice__v1__envelope__get_packed_size(env);
  uint8_t *buf = malloc(n);
  ASSERT_NOT_NULL(buf);
  sluice__v1__envelope__pack(env, buf);
  Sluice__V1__Envelope *out = wk_fraud_decode(buf, n, 1 << 20, rej);
  free(buf);
  return out;
}

TEST(valid_event_decodes) {
  Sluice__V1__Envelope env;
  Sluice__V1__Transaction tx;
  make(&env, &tx);
  wk_reject_t rej;
  Sluice__V1__Envelope *got = round_trip(&env, &rej);
  ASSERT_NOT_NULL(got);
  ASSERT_EQ(rej.reason, WK_REJECT_NONE);
  ASSERT_STR_EQ(got->event_id, "ev-1");
  ASSERT_EQ(got->transaction->n_features, WK_FRAUD_N_PRECOMPUTED);
  sluice__v1__envelope__free_unpacked(got, NULL);
}

static void expect_reject(const Sluice__V1__Envelope *env, wk_reject_reason_t reason,
                          const char *detail) {
  wk_reject_t rej;
  Sluice__V1__Envelope *got = round_trip(env, &rej);
  ASSERT_NULL(got);
  ASSERT_MSG(rej.reason == reason, "reason %s, expected %s (%s)", wk_reject_name(rej.reason),
             wk_reject_name(reason), rej.detail);
  ASSERT_STR_CONTAINS(rej.detail, detail);
}

TEST(validation_rules) {
  Sluice__V1__Envelope env;
  Sluice__V1__Transaction tx;

  make(&env, &tx);
  env.event_id = NULL;
  expect_reject(&env, WK_REJECT_INVALID, "event_id is missing");

  make(&env, &tx);
  env.event_id = "ev\n1";
  expect_reject(&env, WK_REJECT_INVALID, "event_id has control character 0x0a at byte 2");

  /* protobuf-c does not check that strings are UTF-8, and PostgreSQL text refuses malformed
   * UTF-8: such an id must be dead-lettered here, not fail its whole batch in the database. */
  make(&env, &tx);
  env.event_id = "ev-\xff";
  expect_reject(&env, WK_REJECT_INVALID, "event_id is not valid UTF-8 at byte 3");

  make(&env, &tx);
  tx.card_id = "card-\xc3";
  expect_reject(&env, WK_REJECT_INVALID, "transaction.card_id is not valid UTF-8 at byte 5");

  make(&env, &tx);
  char long_id[WK_FRAUD_MAX_ID_LEN + 2];
  memset(long_id, 'x', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  tx.card_id = long_id;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.card_id is 129 bytes long, at most 128");

  make(&env, &tx);
  env.has_event_time_ms = 0;
  expect_reject(&env, WK_REJECT_INVALID, "event_time_ms is missing");

  make(&env, &tx);
  env.event_time_ms = 1000;
  expect_reject(&env, WK_REJECT_INVALID, "event_time_ms 1000 is outside");

  make(&env, &tx);
  env.has_schema_version = 1;
  env.schema_version = 2;
  expect_reject(&env, WK_REJECT_INVALID, "schema_version 2 is not supported");

  make(&env, &tx);
  tx.has_amount = 0;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.amount is missing");

  make(&env, &tx);
  tx.amount = -3;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.amount -3 is negative");

  make(&env, &tx);
  tx.amount = NAN;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.amount is not finite");

  make(&env, &tx);
  tx.amount = 2e9;
  expect_reject(&env, WK_REJECT_INVALID, "is above");

  make(&env, &tx);
  tx.currency = "euro";
  expect_reject(&env, WK_REJECT_INVALID, "transaction.currency \"euro\" is not an ISO 4217 code");

  make(&env, &tx);
  tx.n_features = 5;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.features has 5 values, expected 0 or 28");

  make(&env, &tx);
  v_feats[13] = INFINITY;
  expect_reject(&env, WK_REJECT_INVALID, "transaction.features[13] (V14) is not finite");

  make(&env, &tx);
  Sluice__V1__Label label;
  sluice__v1__label__init(&label);
  env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_LABEL;
  env.label = &label;
  expect_reject(&env, WK_REJECT_WRONG_PAYLOAD, "not a transaction");

  /* Optional fields may be absent. */
  make(&env, &tx);
  env.key = NULL;
  tx.card_id = NULL;
  tx.currency = NULL;
  tx.n_features = 0;
  tx.has_channel = 0;
  wk_reject_t rej;
  Sluice__V1__Envelope *got = round_trip(&env, &rej);
  ASSERT_NOT_NULL(got);
  sluice__v1__envelope__free_unpacked(got, NULL);
}

TEST(oversize_and_garbage) {
  wk_reject_t rej;
  const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
  ASSERT_NULL(wk_fraud_decode(garbage, sizeof garbage, 1024, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_DECODE);
  ASSERT_STR_CONTAINS(rej.detail, "5 bytes are not a sluice.v1.Envelope");
  ASSERT_STR_EQ(wk_reject_name(rej.reason), "decode");

  /* An empty record (a Kafka tombstone) is an envelope with nothing in it. */
  static const uint8_t empty[1];
  ASSERT_NULL(wk_fraud_decode(empty, 0, 1024, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_INVALID);
  ASSERT_STR_CONTAINS(rej.detail, "event_id is missing");

  Sluice__V1__Envelope env;
  Sluice__V1__Transaction tx;
  make(&env, &tx);
  uint8_t buf[512];
  size_t n = sluice__v1__envelope__pack(&env, buf);
  ASSERT_NULL(wk_fraud_decode(buf, n, n - 1, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_OVERSIZE);
  ASSERT_STR_CONTAINS(rej.detail, "the limit is");
  ASSERT_STR_EQ(wk_reject_name(WK_REJECT_OVERSIZE), "oversize");
  Sluice__V1__Envelope *ok = wk_fraud_decode(buf, n, n, &rej);
  ASSERT_NOT_NULL(ok);
  sluice__v1__envelope__free_unpacked(ok, NULL);
}

TEST(feature_vector) {
  Sluice__V1__Envelope env;
  Sluice__V1__Transaction tx;
  make(&env, &tx);
  float vel[WK_VEL_N_FEATURES];
  for (int i = 0; i < WK_VEL_N_FEATURES; i++) vel[i] = 100.0f + (float)i;
  float f[WK_FRAUD_N_FEATURES];
  wk_fraud_build(&env, vel, f);
  ASSERT_EQ(WK_FRAUD_N_FEATURES, 7 + 28 + 11);
  ASSERT_NEAR(f[WK_FRAUD_AMOUNT], 149.62, 1e-6);
  ASSERT_NEAR(f[WK_FRAUD_LOG_AMOUNT], log(150.62), 1e-6);
  ASSERT_NEAR(f[WK_FRAUD_HOUR_OF_DAY], 22.0 + 13.0 / 60 + 20.0 / 3600, 1e-5);
  ASSERT_EQ(f[WK_FRAUD_DAY_OF_WEEK], 1); /* Tuesday */
  ASSERT_EQ(f[WK_FRAUD_CHANNEL], 2);
  ASSERT_EQ(f[WK_FRAUD_HAS_FEATURES], 1);
  ASSERT_EQ(f[WK_FRAUD_HAS_CARD], 1);
  ASSERT_EQ(f[WK_FRAUD_V1], v_feats[0]);
  ASSERT_EQ(f[WK_FRAUD_V1 + 27], v_feats[27]);
  ASSERT_EQ(f[WK_FRAUD_VEL_FIRST + WK_VEL_COUNT_1H], 100 + WK_VEL_COUNT_1H);
  ASSERT_STR_EQ(wk_fraud_feature_name(WK_FRAUD_V1 + 13), "V14");
  ASSERT_STR_EQ(wk_fraud_feature_name(WK_FRAUD_VEL_FIRST), "v_count_1m");
  ASSERT_STR_EQ(wk_fraud_feature_name(WK_FRAUD_HAS_CARD), "has_card");
  ASSERT_NULL(wk_fraud_feature_name(WK_FRAUD_N_FEATURES));

  /* Without a card or precomputed features: zeros and flags down. */
  tx.n_features = 0;
  for (size_t i = 0; i < WK_FRAUD_N_FEATURES; i++) f[i] = 42.0f;
  wk_fraud_build(&env, NULL, f);
  ASSERT_EQ(f[WK_FRAUD_HAS_FEATURES], 0);
  ASSERT_EQ(f[WK_FRAUD_HAS_CARD], 0);
  ASSERT_EQ(f[WK_FRAUD_V1 + 5], 0);
  ASSERT_EQ(f[WK_FRAUD_VEL_FIRST + WK_VEL_N_SEEN], 0);
  ASSERT_NEAR(f[WK_FRAUD_AMOUNT], 149.62, 1e-6);
}

TEST(feature_map_by_name) {
  const char *const names[] = {"V14", "amount", "v_count_1h", "V1"};
  wk_feature_map_t map;
  char err[256];
  ASSERT_OK(wk_feature_map_init(&map, names, 4, err, sizeof err));
  float all[WK_FRAUD_N_FEATURES], in[4];
  for (size_t i = 0; i < WK_FRAUD_N_FEATURES; i++) all[i] = (float)i;
  wk_feature_map_apply(&map, all, in);
  ASSERT_EQ(in[0], WK_FRAUD_V1 + 13);
  ASSERT_EQ(in[1], WK_FRAUD_AMOUNT);
  ASSERT_EQ(in[2], WK_FRAUD_VEL_FIRST + WK_VEL_COUNT_1H);
  ASSERT_EQ(in[3], WK_FRAUD_V1);
  wk_feature_map_close(&map);

  /* The CSV's own column name for the amount is an alias; other spellings are not. */
  const char *const csv[] = {"V28", "Amount"};
  ASSERT_OK(wk_feature_map_init(&map, csv, 2, err, sizeof err));
  wk_feature_map_apply(&map, all, in);
  ASSERT_EQ(in[0], WK_FRAUD_V1 + 27);
  ASSERT_EQ(in[1], WK_FRAUD_AMOUNT);
  wk_feature_map_close(&map);
  const char *const upper[] = {"AMOUNT"};
  ASSERT_EQ(wk_feature_map_init(&map, upper, 1, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "\"AMOUNT\" is not a fraud feature");
  wk_feature_map_close(&map);

  const char *const bad[] = {"amount", "Time"};
  ASSERT_EQ(wk_feature_map_init(&map, bad, 2, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "model input 1 \"Time\" is not a fraud feature");
  wk_feature_map_close(&map);
  ASSERT_EQ(wk_feature_map_init(&map, bad, 0, err, sizeof err), SVC_ECONFIG);
}
