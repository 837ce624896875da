/*
 * The fault alert state machine: hysteresis (flapping gives one alert), minimum durations,
 * clearing, stale scores, stable ids across a state round trip, and the packed Alert message.
 */
#include "test.h"

#include "fault-alert.h"

#define MIN 60000LL

static const wk_fault_alert_cfg_t cfg_now = {.enter = 0.8f, .clear = 0.3f, .min_fire_ms = 0,
                                             .min_clear_ms = 0};

TEST(config_checked) {
  char err[200];
  wk_fault_alert_cfg_t c = cfg_now;
  ASSERT_OK(wk_fault_alert_cfg_check(&c, err, sizeof err));
  c.clear = 0.8f;
  ASSERT_EQ(wk_fault_alert_cfg_check(&c, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "enter");
  c = cfg_now;
  c.min_fire_ms = -1;
  ASSERT_EQ(wk_fault_alert_cfg_check(&c, err, sizeof err), SVC_ECONFIG);
}

TEST(flapping_between_thresholds_is_one_alert) {
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  const float s[] = {0.1f, 0.85f, 0.5f, 0.9f, 0.4f, 0.81f, 0.31f, 0.95f, 0.35f, 0.79f};
  int fired = 0, cleared = 0;
  for (int i = 0; i < 10; i++) {
    wk_alert_event_t ev = wk_fault_alert_observe(&st, &cfg_now, s[i], (int64_t)i * MIN);
    fired += ev == WK_ALERT_FIRED;
    cleared += ev == WK_ALERT_CLEARED;
    if (i == 1) ASSERT_EQ(ev, WK_ALERT_FIRED);
  }
  ASSERT_EQ(fired, 1);
  ASSERT_EQ(cleared, 0);
  ASSERT_EQ(st.phase, WK_ALERT_FIRING);
  ASSERT_EQ(st.seq, 1);
  ASSERT_NEAR(st.peak, 0.95f, 1e-6);
  /* Below clear ends it; a new crossing is a new alert with the next number. */
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.2f, 10 * MIN), WK_ALERT_CLEARED);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.5f, 11 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.8f, 12 * MIN), WK_ALERT_FIRED);
  ASSERT_EQ(st.seq, 2);
}

TEST(minimum_duration_before_firing) {
  wk_fault_alert_cfg_t c = cfg_now;
  c.min_fire_ms = 3 * MIN;
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  /* Flapping across enter never stays up 3 minutes: nothing fires. */
  for (int i = 0; i < 20; i++)
    ASSERT_EQ(wk_fault_alert_observe(&st, &c, i % 2 ? 0.7f : 0.9f, (int64_t)i * MIN), WK_ALERT_NONE);
  ASSERT_EQ(st.seq, 0);
  /* Sustained from minute 20: pending at 20, 21, 22, fires at 23 (3 minutes in). */
  for (int i = 20; i < 23; i++) {
    ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.9f, (int64_t)i * MIN), WK_ALERT_NONE);
    ASSERT_EQ(st.phase, WK_ALERT_PENDING);
  }
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.9f, 23 * MIN), WK_ALERT_FIRED);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.99f, 24 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(st.seq, 1);
}

TEST(minimum_duration_before_clearing) {
  wk_fault_alert_cfg_t c = cfg_now;
  c.min_clear_ms = 2 * MIN;
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.9f, 0), WK_ALERT_FIRED);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.1f, 1 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(st.phase, WK_ALERT_CLEARING);
  /* Back above clear (still below enter): the same alert goes on, no new one. */
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.5f, 2 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(st.phase, WK_ALERT_FIRING);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.1f, 3 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.1f, 4 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 0.1f, 5 * MIN), WK_ALERT_CLEARED);
  ASSERT_EQ(st.phase, WK_ALERT_IDLE);
  ASSERT_EQ(st.seq, 1);
}

TEST(stale_scores_are_ignored) {
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.1f, 10 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.99f, 9 * MIN), WK_ALERT_STALE);
  ASSERT_EQ(st.phase, WK_ALERT_IDLE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.99f, 10 * MIN), WK_ALERT_FIRED);
}

TEST(restore_mid_episode_continues_the_same_alert) {
  wk_fault_alert_cfg_t c = cfg_now;
  c.min_clear_ms = MIN;
  wk_fault_alert_t a, b;
  wk_fault_alert_init(&a);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.9f, 0), WK_ALERT_FIRED);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.1f, 1 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.1f, 2 * MIN), WK_ALERT_CLEARED);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.95f, 3 * MIN), WK_ALERT_FIRED);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.1f, 4 * MIN), WK_ALERT_NONE); /* clearing */
  uint8_t buf[WK_FAULT_ALERT_ENCODED_SIZE];
  ASSERT_EQ(wk_fault_alert_encode(&a, buf, 3), WK_FAULT_ALERT_ENCODED_SIZE);
  ASSERT_EQ(wk_fault_alert_encode(&a, buf, sizeof buf), WK_FAULT_ALERT_ENCODED_SIZE);
  char err[200];
  ASSERT_OK(wk_fault_alert_decode(&b, buf, sizeof buf, err, sizeof err));
  ASSERT_EQ(b.phase, WK_ALERT_CLEARING);
  ASSERT_EQ(b.seq, 2);
  /* The restored machine clears alert 2 exactly when the original does. */
  ASSERT_EQ(wk_fault_alert_observe(&b, &c, 0.1f, 5 * MIN), WK_ALERT_CLEARED);
  ASSERT_EQ(wk_fault_alert_observe(&a, &c, 0.1f, 5 * MIN), WK_ALERT_CLEARED);
  char id[128];
  wk_fault_alert_id(id, sizeof id, "dev-7", "failure", b.seq);
  ASSERT_STR_EQ(id, "fault:dev-7:failure:2");
  /* Corruption is refused with a reason. */
  buf[6] = 9;
  ASSERT_EQ(wk_fault_alert_decode(&b, buf, sizeof buf, err, sizeof err), SVC_EDECODE);
  ASSERT_STR_CONTAINS(err, "phase");
  ASSERT_EQ(wk_fault_alert_decode(&b, buf, 12, err, sizeof err), SVC_EDECODE);
  ASSERT_EQ(b.phase, WK_ALERT_IDLE);
}

TEST(packed_alert_messages) {
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.9f, 5 * MIN), WK_ALERT_FIRED);
  uint8_t *buf;
  size_t len;
  ASSERT_EQ(wk_fault_alert_pack(&st, &cfg_now, WK_ALERT_NONE, "d", "k", 0.9f, 0, "e", "v", &buf,
                                &len),
            SVC_EINVAL);
  ASSERT_OK(wk_fault_alert_pack(&st, &cfg_now, WK_ALERT_FIRED, "L47181", "failure", 0.9f, 5 * MIN,
                                "ev-1", "fault-ai4i-trained", &buf, &len));
  Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, len, buf);
  ASSERT_NOT_NULL(a);
  ASSERT_STR_EQ(a->alert_id, "fault:L47181:failure:1");
  ASSERT_STR_EQ(a->domain, "fault");
  ASSERT_STR_EQ(a->key, "L47181");
  ASSERT_STR_EQ(a->kind, "failure");
  ASSERT_EQ(a->state, SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING);
  ASSERT_NEAR(a->score, 0.9, 1e-6);
  ASSERT_STR_EQ(a->event_id, "ev-1");
  ASSERT_EQ(a->at_ms, 5 * MIN);
  ASSERT_STR_EQ(a->model_version, "fault-ai4i-trained");
  ASSERT_STR_CONTAINS(a->message, "0.8000");
  sluice__v1__alert__free_unpacked(a, NULL);
  free(buf);
  ASSERT_EQ(wk_fault_alert_observe(&st, &cfg_now, 0.2f, 6 * MIN), WK_ALERT_CLEARED);
  ASSERT_OK(wk_fault_alert_pack(&st, &cfg_now, WK_ALERT_CLEARED, "L47181", "failure", 0.2f,
                                6 * MIN, "ev-2", "v", &buf, &len));
  a = sluice__v1__alert__unpack(NULL, len, buf);
  ASSERT_NOT_NULL(a);
  ASSERT_STR_EQ(a->alert_id, "fault:L47181:failure:1");
  ASSERT_EQ(a->state, SLUICE__V1__ALERT_STATE__ALERT_STATE_CLEARED);
  ASSERT_STR_CONTAINS(a->message, "cleared");
  sluice__v1__alert__free_unpacked(a, NULL);
  free(buf);
}

TEST(remaining_useful_life_low_is_bad) {
  /* Alert when RUL is at or below 30 cycles for 2 minutes; clear once it is above 50. */
  wk_fault_alert_cfg_t c = {.enter = 30, .clear = 50, .low_is_bad = true, .min_fire_ms = 2 * MIN,
                            .min_clear_ms = 0};
  char err[200];
  ASSERT_OK(wk_fault_alert_cfg_check(&c, err, sizeof err));
  wk_fault_alert_cfg_t wrong = c;
  wrong.low_is_bad = false;
  ASSERT_EQ(wk_fault_alert_cfg_check(&wrong, err, sizeof err), SVC_ECONFIG);
  wk_fault_alert_t st;
  wk_fault_alert_init(&st);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 80, 0), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 30, 1 * MIN), WK_ALERT_NONE); /* pending */
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 25, 2 * MIN), WK_ALERT_NONE);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 20, 3 * MIN), WK_ALERT_FIRED);
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 45, 4 * MIN), WK_ALERT_NONE); /* in the band */
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 10, 5 * MIN), WK_ALERT_NONE);
  ASSERT_NEAR(st.peak, 10, 1e-6); /* the lowest RUL of the episode */
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 50, 6 * MIN), WK_ALERT_NONE); /* not above 50 */
  ASSERT_EQ(wk_fault_alert_observe(&st, &c, 51, 7 * MIN), WK_ALERT_CLEARED);
  ASSERT_EQ(st.seq, 1);
  uint8_t *buf;
  size_t len;
  ASSERT_OK(wk_fault_alert_pack(&st, &c, WK_ALERT_CLEARED, "FD001-unit-3", "rul", 51, 7 * MIN,
                                "e", "fault-cmapss", &buf, &len));
  Sluice__V1__Alert *a = sluice__v1__alert__unpack(NULL, len, buf);
  ASSERT_NOT_NULL(a);
  ASSERT_STR_CONTAINS(a->message, "above 50.0000");
  ASSERT_STR_CONTAINS(a->message, "worst 10.0000");
  sluice__v1__alert__free_unpacked(a, NULL);
  free(buf);
}
