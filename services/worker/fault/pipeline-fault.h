/*
 * The fault pipeline of sluice-worker (wk_pipeline_fault, the ops of pipeline.h): SensorReading
 * envelopes of sluice.fault.events scored by a fault model, alerts on sluice.fault.alerts.
 *
 * Two kinds of model are served, chosen by the model file (a reload may not change the kind,
 * nor a sensor model's window length and channels: the devices' windows depend on them):
 *   - tabular (fault-ai4i): every reading is one row; score = failure probability; alert kind
 *     "failure" (high is bad).
 *   - sensor window (fault-cmapss): each device's window by event time (fault-window.h) is
 *     scored when it is ready; score = remaining useful life in cycles; alert kind "rul"
 *     (low is bad).
 * Any other model is refused by model_open with a sentence naming the file and what is wrong.
 *
 * Per device the pipeline keeps the window (folded by accept, on the loop thread, only for a
 * record whose offset is past the device's stored last_offset on the same partition; an
 * earlier one is a re-delivery, skipped without a dead letter: accept returns NULL with
 * WK_REJECT_NONE, as for refusals under fault.late_policy = count) and the alert state machine
 * (fault-alert.h; fed by scores in process, on the thread pool, in offset order). Both are
 * stored in fault_state in the same statement as the results, so that a restart continues the
 * same windows and the same alert episodes.
 *
 * Tables (wk_fault_schema_sql, one migration; text keys COLLATE "C" so that their order does
 * not depend on the server's locale):
 *   fault_results(event_id, kind, device_id, model_version, score, alert_phase, event_time,
 *                 window_start, input real[], topic, partition, kafka_offset, scored_at)
 *                 input: tabular = the numeric inputs then the categorical ids (as reals), in
 *                 the model's order; sensor = the [T, C] window, time major, oldest first;
 *                 event_time = the newest reading scored, window_start = the oldest.
 *                 PRIMARY KEY (event_id, kind): one result per reading and model kind.
 *   fault_state(device_id, kind, topic, partition, last_offset, window_state bytea,
 *               alert_state bytea, updated_at) PRIMARY KEY (device_id, kind): the encodings of
 *               fault-window.h (empty for a tabular model) and fault-alert.h.
 * Outbox rows: alert_id "fault:<device>:<kind>:<seq>:firing" and "...:cleared" (outbox.alert_id
 * is unique per row and an alert has two transitions; the packed Alert carries the alert id
 * fault:<device>:<kind>:<seq>).
 */
#ifndef WK_PIPELINE_FAULT_H
#define WK_PIPELINE_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "fault-window.h"
#include "pipeline.h"
#include "svc/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What fault.late_policy selects for a reading the window does not accept (late, duplicate,
 * too_old): dead-letter it with that reason, or count it in
 * sluice_fault_window_events_total{status} and skip it. */
typedef enum { WK_FAULT_LATE_DLQ = 0, WK_FAULT_LATE_COUNT = 1 } wk_fault_late_policy_t;

extern const char *const wk_fault_late_policy_names[]; /* "dlq", "count", NULL */

/* The pipeline's settings (env.settings points at one). Types follow svc/config.h: int and
 * duration (ms) settings are int64_t, doubles double, enums int. */
typedef struct wk_fault_settings_s {
  int64_t window_stride;       /* new readings between two scored windows */
  int64_t window_lateness_ms;  /* how far behind a device's newest reading one may arrive */
  int64_t window_period_ms;    /* expected spacing of a device's readings; 0 = irregular */
  int64_t window_max_fill;     /* missing readings forward-filled before a gap resets */
  double alert_enter;          /* -1: the model's threshold (probability) or 30 cycles (RUL) */
  double alert_clear;          /* -1: half of enter (probability) or 1.5 x enter (RUL) */
  int64_t alert_min_fire_ms;   /* event time the condition must hold before an alert fires */
  int64_t alert_min_clear_ms;  /* event time it must be gone before the alert clears */
  int late_policy;             /* wk_fault_late_policy_t */
} wk_fault_settings_t;

/*
 * The settings' rows for a svc_cfg_def_t table whose target struct T holds a
 * wk_fault_settings_t at `member`. Expands to rows each followed by a comma.
 */
#define WK_FAULT_CFG_ROWS(T, member)                                                           \
  {.name = "fault.window.stride", .type = SVC_CFG_INT, .def = "1",                            \
   .env = "SLUICE_FAULT_WINDOW_STRIDE", .offset = offsetof(T, member.window_stride),          \
   .min = 1, .max = 4096,                                                                      \
   .help = "sensor models: new readings of a device between two scored windows"},             \
  {.name = "fault.window.lateness", .type = SVC_CFG_DURATION, .def = "5m",                    \
   .env = "SLUICE_FAULT_WINDOW_LATENESS", .offset = offsetof(T, member.window_lateness_ms),   \
   .min = 0, .max = 604800000,                                                                 \
   .help = "sensor models: how far behind a device's newest reading (event time) a reading "  \
           "may still arrive and be inserted in order"},                                      \
  {.name = "fault.window.period", .type = SVC_CFG_DURATION, .def = "1m",                      \
   .env = "SLUICE_FAULT_WINDOW_PERIOD", .offset = offsetof(T, member.window_period_ms),       \
   .min = 0, .max = 86400000,                                                                  \
   .help = "sensor models: expected spacing of a device's readings, +- a quarter of it (1m: " \
           "one C-MAPSS cycle per minute as sluice replay sends them; 0: irregular, no gaps)"}, \
  {.name = "fault.window.max_fill", .type = SVC_CFG_INT, .def = "2",                          \
   .env = "SLUICE_FAULT_WINDOW_MAX_FILL", .offset = offsetof(T, member.window_max_fill),      \
   .min = 0, .max = 4096,                                                                      \
   .help = "sensor models: missing readings forward-filled; a longer gap restarts the "        \
           "device's window"},                                                                \
  {.name = "fault.alert.enter", .type = SVC_CFG_DOUBLE, .def = "-1",                          \
   .env = "SLUICE_FAULT_ALERT_ENTER", .offset = offsetof(T, member.alert_enter), .min = -1,   \
   .max = 1e6,                                                                                 \
   .help = "score at which an alert starts: failure probability at or above it, remaining "   \
           "life at or below it (-1: the model card's threshold; 30 cycles for life)"},       \
  {.name = "fault.alert.clear", .type = SVC_CFG_DOUBLE, .def = "-1",                          \
   .env = "SLUICE_FAULT_ALERT_CLEAR", .offset = offsetof(T, member.alert_clear), .min = -1,   \
   .max = 1e6,                                                                                 \
   .help = "score past which a firing alert clears (hysteresis; -1: half of enter for a "      \
           "probability, 1.5 x enter for life)"},                                             \
  {.name = "fault.alert.min_fire", .type = SVC_CFG_DURATION, .def = "0",                     \
   .env = "SLUICE_FAULT_ALERT_MIN_FIRE", .offset = offsetof(T, member.alert_min_fire_ms),     \
   .min = 0, .max = 604800000,                                                                 \
   .help = "event time a device's score must stay past enter before the alert fires (0: "     \
           "at once; AI4I devices send one reading each)"},                                   \
  {.name = "fault.alert.min_clear", .type = SVC_CFG_DURATION, .def = "0",                    \
   .env = "SLUICE_FAULT_ALERT_MIN_CLEAR", .offset = offsetof(T, member.alert_min_clear_ms),   \
   .min = 0, .max = 604800000,                                                                 \
   .help = "event time a firing alert's score must stay past clear before it clears"},        \
  {.name = "fault.late_policy", .type = SVC_CFG_ENUM, .def = "dlq",                           \
   .env = "SLUICE_FAULT_LATE_POLICY", .offset = offsetof(T, member.late_policy),              \
   .values = wk_fault_late_policy_names,                                                       \
   .help = "a reading the window refuses (late, duplicate, too_old): dlq = dead-letter it "    \
           "with that reason, count = count it and skip it"},

/* The settings' defaults (those of the rows above), for tests and embedders. */
void wk_fault_settings_default(wk_fault_settings_t *s);

/* The pipeline's two tables as the statement builder declares them (stmt.h): index 0
 * fault_results, 1 fault_state. */
extern const wk_table_t wk_fault_tables[];
extern const size_t wk_fault_n_tables;

/*
 * The pipeline's own metrics. A registry that includes wk_fault_metric_defs from id `base` on
 * is hooked up with wk_fault_pipeline_metrics (create does it when the core passes one).
 */
#define WK_FAULT_METRICS(XX)                                                                  \
  XX(WK_FAULT_M_WINDOW_EVENTS, "sluice_fault_window_events_total", SVC_COUNTER, "events",    \
     "status", 8, SVC_BUCKETS_NONE,                                                          \
     "Readings by what the device's window did with them (ok, late, duplicate, too_old; "    \
     "replayed = at or before the device's stored offset, not folded again).")               \
  XX(WK_FAULT_M_ALERTS, "sluice_fault_alerts_total", SVC_COUNTER, "alerts", "kind,state", 8, \
     SVC_BUCKETS_NONE, "Fault alert transitions written to the outbox, by kind and state.")  \
  XX(WK_FAULT_M_DEVICES, "sluice_fault_devices", SVC_GAUGE, "devices", "", 0,                \
     SVC_BUCKETS_NONE, "Devices whose window and alert state are in memory.")
enum { WK_FAULT_METRICS(SVC_METRIC_ENUM) WK_FAULT_M__COUNT };
extern const svc_metric_def_t wk_fault_metric_defs[];
extern const size_t wk_fault_n_metric_defs;
void wk_fault_pipeline_metrics(wk_pipeline_t *p, svc_metrics_t *m, int base);

/* What the pipeline counted so far (any thread; for tests and the demo). */
typedef struct wk_fault_counts_s {
  uint64_t window[WK_FAULT_WIN__COUNT]; /* readings by window status (tabular: all ok) */
  uint64_t replayed;                    /* at or before the device's stored offset */
  uint64_t scored, fired, cleared;
  size_t devices;                       /* in memory */
} wk_fault_counts_t;
void wk_fault_pipeline_counts(const wk_pipeline_t *p, wk_fault_counts_t *out);

/* The migration that creates fault_results and fault_state (unqualified names: it runs with
 * search_path set to the worker's schema). */
extern const char wk_fault_schema_sql[];

#ifdef __cplusplus
}
#endif
#endif /* WK_PIPELINE_FAULT_H */
