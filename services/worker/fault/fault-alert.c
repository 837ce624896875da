/*
 * The fault alert state machine, its alert messages and its state encoding. The contract is
 * in fault-alert.h.
 */
#include "fault-alert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

svc_err_t wk_fault_alert_cfg_check(const wk_fault_alert_cfg_t *cfg, char *errstr,
                                   size_t errstr_size) {
  bool ordered = cfg->low_is_bad ? cfg->enter < cfg->clear : cfg->enter > cfg->clear;
  if (!isfinite(cfg->enter) || !isfinite(cfg->clear) || !ordered) {
    snprintf(errstr, errstr_size, "alert thresholds: enter %g must be %s clear %g (both finite)",
             (double)cfg->enter, cfg->low_is_bad ? "below (low_is_bad)" : "above",
             (double)cfg->clear);
    return SVC_ECONFIG;
  }
  if (cfg->min_fire_ms < 0 || cfg->min_clear_ms < 0) {
    snprintf(errstr, errstr_size, "alert minimum durations must be >= 0 (fire %lld, clear %lld)",
             (long long)cfg->min_fire_ms, (long long)cfg->min_clear_ms);
    return SVC_ECONFIG;
  }
  return SVC_OK;
}

void wk_fault_alert_init(wk_fault_alert_t *st) {
  memset(st, 0, sizeof *st);
  st->phase = WK_ALERT_IDLE;
  st->last_ms = INT64_MIN;
}

/* The machine proper, in "high is bad" terms; peak is kept in the same terms. */
static wk_alert_event_t alert__step(wk_fault_alert_t *st, float enter, float clear,
                                    const wk_fault_alert_cfg_t *cfg, float score, int64_t t_ms) {
  switch (st->phase) {
  case WK_ALERT_IDLE:
    if (!(score >= enter)) return WK_ALERT_NONE;
    st->phase = WK_ALERT_PENDING;
    st->since_ms = t_ms;
    st->peak = score;
    /* A zero minimum duration fires on this very observation. */
    /* fall through */
  case WK_ALERT_PENDING:
    if (!(score >= enter)) {
      st->phase = WK_ALERT_IDLE;
      return WK_ALERT_NONE;
    }
    if (score > st->peak) st->peak = score;
    if (t_ms - st->since_ms < cfg->min_fire_ms) return WK_ALERT_NONE;
    st->phase = WK_ALERT_FIRING;
    st->seq++;
    return WK_ALERT_FIRED;
  case WK_ALERT_FIRING:
    if (score > st->peak) st->peak = score;
    if (score >= clear) return WK_ALERT_NONE;
    st->phase = WK_ALERT_CLEARING;
    st->since_ms = t_ms;
    /* fall through */
  case WK_ALERT_CLEARING:
    if (score >= clear) {
      st->phase = WK_ALERT_FIRING;
      if (score > st->peak) st->peak = score;
      return WK_ALERT_NONE;
    }
    if (t_ms - st->since_ms < cfg->min_clear_ms) return WK_ALERT_NONE;
    st->phase = WK_ALERT_IDLE;
    return WK_ALERT_CLEARED;
  }
  return WK_ALERT_NONE;
}

wk_alert_event_t wk_fault_alert_observe(wk_fault_alert_t *st, const wk_fault_alert_cfg_t *cfg,
                                        float score, int64_t t_ms) {
  if (st->last_ms != INT64_MIN && t_ms < st->last_ms) return WK_ALERT_STALE;
  st->last_ms = t_ms;
  if (!cfg->low_is_bad) return alert__step(st, cfg->enter, cfg->clear, cfg, score, t_ms);
  st->peak = -st->peak;
  wk_alert_event_t ev = alert__step(st, -cfg->enter, -cfg->clear, cfg, -score, t_ms);
  st->peak = -st->peak;
  return ev;
}

int wk_fault_alert_id(char *buf, size_t size, const char *device, const char *kind, uint64_t seq) {
  return snprintf(buf, size, "fault:%s:%s:%llu", device, kind, (unsigned long long)seq);
}

svc_err_t wk_fault_alert_pack(const wk_fault_alert_t *st, const wk_fault_alert_cfg_t *cfg,
                              wk_alert_event_t ev, const char *device, const char *kind,
                              float score, int64_t t_ms, const char *event_id,
                              const char *model_version, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (ev != WK_ALERT_FIRED && ev != WK_ALERT_CLEARED) return SVC_EINVAL;
  char id[400], msg[300];
  wk_fault_alert_id(id, sizeof id, device, kind, st->seq);
  if (ev == WK_ALERT_FIRED)
    snprintf(msg, sizeof msg, "%s on %s: score %.4f at or %s %.4f for at least %lld ms", kind,
             device, (double)score, cfg->low_is_bad ? "below" : "above", (double)cfg->enter,
             (long long)cfg->min_fire_ms);
  else
    snprintf(msg, sizeof msg,
             "%s on %s cleared: score %.4f %s %.4f for at least %lld ms (worst %.4f)", kind,
             device, (double)score, cfg->low_is_bad ? "above" : "below", (double)cfg->clear,
             (long long)cfg->min_clear_ms,
             (double)st->peak);
  Sluice__V1__Alert a = SLUICE__V1__ALERT__INIT;
  a.alert_id = id;
  a.domain = (char *)"fault";
  a.key = (char *)device;
  a.kind = (char *)kind;
  a.has_state = 1;
  a.state = ev == WK_ALERT_FIRED ? SLUICE__V1__ALERT_STATE__ALERT_STATE_FIRING
                                 : SLUICE__V1__ALERT_STATE__ALERT_STATE_CLEARED;
  a.has_score = 1;
  a.score = score;
  a.event_id = (char *)event_id;
  a.has_at_ms = 1;
  a.at_ms = t_ms;
  a.message = msg;
  a.model_version = (char *)model_version;
  size_t n = sluice__v1__alert__get_packed_size(&a);
  uint8_t *b = malloc(n ? n : 1);
  if (b == NULL) return SVC_ENOMEM;
  sluice__v1__alert__pack(&a, b);
  *buf = b;
  *len = n;
  return SVC_OK;
}

/* ---- encoding ------------------------------------------------------------------------- */

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* "WKFA", version u16, phase u8, pad u8, since, last, seq (u64 each), peak (f32 bits). */
size_t wk_fault_alert_encode(const wk_fault_alert_t *st, uint8_t *buf, size_t size) {
  if (size < WK_FAULT_ALERT_ENCODED_SIZE) return WK_FAULT_ALERT_ENCODED_SIZE;
  memset(buf, 0, WK_FAULT_ALERT_ENCODED_SIZE);
  memcpy(buf, "WKFA", 4);
  buf[4] = 1;
  buf[6] = (uint8_t)st->phase;
  put_u64(buf + 8, (uint64_t)st->since_ms);
  put_u64(buf + 16, (uint64_t)st->last_ms);
  put_u64(buf + 24, st->seq);
  uint32_t bits;
  memcpy(&bits, &st->peak, 4);
  put_u64(buf + 32, bits);
  return WK_FAULT_ALERT_ENCODED_SIZE;
}

svc_err_t wk_fault_alert_decode(wk_fault_alert_t *st, const uint8_t *buf, size_t len, char *errstr,
                                size_t errstr_size) {
  wk_fault_alert_init(st);
  const char *why = NULL;
  if (len != WK_FAULT_ALERT_ENCODED_SIZE || memcmp(buf, "WKFA", 4) != 0)
    why = "not a fault alert state (bad magic or length)";
  else if (buf[4] != 1 || buf[5] != 0)
    why = "fault alert state version is not supported (1 is)";
  else if (buf[6] > WK_ALERT_CLEARING)
    why = "fault alert state has an unknown phase";
  if (why == NULL) {
    uint64_t bits = get_u64(buf + 32);
    float peak;
    uint32_t b32 = (uint32_t)bits;
    memcpy(&peak, &b32, 4);
    if (bits > UINT32_MAX || !isfinite(peak)) {
      why = "fault alert state has a bad peak score";
    } else if ((buf[6] == WK_ALERT_FIRING || buf[6] == WK_ALERT_CLEARING) && get_u64(buf + 24) == 0) {
      why = "fault alert state is firing with no alert number";
    } else {
      st->phase = (wk_alert_phase_t)buf[6];
      st->since_ms = (int64_t)get_u64(buf + 8);
      st->last_ms = (int64_t)get_u64(buf + 16);
      st->seq = get_u64(buf + 24);
      st->peak = peak;
      return SVC_OK;
    }
  }
  snprintf(errstr, errstr_size, "%s", why);
  return SVC_EDECODE;
}
