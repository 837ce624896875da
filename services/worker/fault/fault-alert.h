/*
 * The fault alert state machine, one per (device, fault kind): hysteresis between an enter
 * and a clear threshold, a minimum duration in event time before an alert fires and before it
 * clears, no duplicate while firing, and stable alert ids "fault:<device>:<kind>:<seq>" where
 * seq counts the device's episodes of that kind (1, 2, ...), so that a restored state
 * continues the same alert and a replay produces the same ids.
 *
 *   IDLE     --score >= enter-->                        PENDING (since = t)
 *   PENDING  --score < enter-->                         IDLE
 *   PENDING  --t - since >= min_fire_ms-->              FIRING   emits FIRING, seq + 1
 *   FIRING   --score < clear-->                         CLEARING (since = t)
 *   CLEARING --score >= clear-->                        FIRING   (no emission: same alert)
 *   CLEARING --score < clear, t - since >= min_clear_ms--> IDLE  emits CLEARED
 *
 * With low_is_bad (remaining useful life: fewer cycles left is worse) every comparison is
 * mirrored: the alert enters at or below `enter`, clears above `clear`, enter < clear, and
 * the peak is the lowest value seen.
 *
 * A zero minimum duration makes the transition happen on the observation itself. Scores
 * between the thresholds keep a firing alert firing: that band is what stops a score
 * flapping around one threshold from opening and closing alerts. A score whose event time is
 * older than the newest observed one is ignored (reported as stale), so that the machine only
 * moves forward in event time, whatever the arrival order.
 *
 * Threads: plain data; one thread at a time.
 */
#ifndef WK_FAULT_ALERT_H
#define WK_FAULT_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/results.pb-c.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_fault_alert_cfg_s {
  float enter;          /* fire at or above, after min_fire_ms; enter > clear */
  float clear;          /* clear below, after min_clear_ms */
  bool low_is_bad;      /* mirror: fire at or below enter, clear above clear (enter < clear) */
  int64_t min_fire_ms;  /* >= 0 */
  int64_t min_clear_ms; /* >= 0 */
} wk_fault_alert_cfg_t;

/* SVC_OK, or SVC_ECONFIG naming the bad setting (thresholds not finite or on the wrong side
 * of each other, negative durations). */
svc_err_t wk_fault_alert_cfg_check(const wk_fault_alert_cfg_t *cfg, char *errstr,
                                   size_t errstr_size);

typedef enum {
  WK_ALERT_IDLE = 0,
  WK_ALERT_PENDING = 1,
  WK_ALERT_FIRING = 2,
  WK_ALERT_CLEARING = 3
} wk_alert_phase_t;

typedef struct wk_fault_alert_s {
  wk_alert_phase_t phase;
  int64_t since_ms;  /* start of PENDING or CLEARING */
  int64_t last_ms;   /* newest observation; INT64_MIN before any */
  uint64_t seq;      /* episodes fired so far; the current/last alert's number */
  float peak;        /* worst score of the current episode (highest; lowest if low_is_bad) */
} wk_fault_alert_t;

void wk_fault_alert_init(wk_fault_alert_t *st);

/* What one observation produced. */
typedef enum {
  WK_ALERT_NONE = 0,   /* nothing to send */
  WK_ALERT_FIRED = 1,  /* a new alert: send state FIRING */
  WK_ALERT_CLEARED = 2,/* the alert ended: send state CLEARED */
  WK_ALERT_STALE = 3   /* ignored: older than the newest observation */
} wk_alert_event_t;

/* Feeds one score at event time t_ms. */
wk_alert_event_t wk_fault_alert_observe(wk_fault_alert_t *st, const wk_fault_alert_cfg_t *cfg,
                                        float score, int64_t t_ms);

/* "fault:<device>:<kind>:<seq>" into buf (truncated to size, always NUL-terminated); returns
 * the length it needed, like snprintf. */
int wk_fault_alert_id(char *buf, size_t size, const char *device, const char *kind, uint64_t seq);

/*
 * The sluice.v1.Alert for an event (FIRED or CLEARED) that the observation of `score` at
 * t_ms by event `event_id` produced, packed into a malloc'd buffer for the outbox (*buf, free
 * it with free()). Domain "fault", key = device, kind, the alert id of st->seq, a message
 * naming the threshold crossed. SVC_OK, SVC_EINVAL for another event, SVC_ENOMEM.
 */
svc_err_t wk_fault_alert_pack(const wk_fault_alert_t *st, const wk_fault_alert_cfg_t *cfg,
                              wk_alert_event_t ev, const char *device, const char *kind,
                              float score, int64_t t_ms, const char *event_id,
                              const char *model_version, uint8_t **buf, size_t *len);

#define WK_FAULT_ALERT_ENCODED_SIZE 40
/* The state's versioned encoding (exactly WK_FAULT_ALERT_ENCODED_SIZE bytes); returns the size,
 * writes nothing when size is smaller. */
size_t wk_fault_alert_encode(const wk_fault_alert_t *st, uint8_t *buf, size_t size);
/* SVC_OK, or SVC_EDECODE with the reason in errstr (the state is then idle). */
svc_err_t wk_fault_alert_decode(wk_fault_alert_t *st, const uint8_t *buf, size_t len, char *errstr,
                                size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* WK_FAULT_ALERT_H */
