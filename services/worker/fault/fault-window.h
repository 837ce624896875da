/*
 * Per-device sensor windows of the fault pipeline: the last T readings of a device by event
 * time, channels in the model's order, ready to be handed to a sensor-window model ([T, C],
 * time major, oldest first) every `stride` new readings.
 *
 * The rules, by event time (never arrival time, so that a replay gives the same windows):
 *   - Watermark: the newest reading time accepted for the device. A reading older than
 *     watermark - lateness_ms is rejected as LATE. A reading with the same time as a real
 *     reading already held is rejected as DUPLICATE (the first one wins: deterministic).
 *   - Out of order within the lateness: inserted in time order. If it lands within
 *     tolerance_ms of a forward-filled slot it replaces that slot (it is the real reading the
 *     fill stood in for). A full window drops its oldest reading to make room; a reading older
 *     than everything in a full window would be dropped at once and is rejected as TOO_OLD, as
 *     is one older than the last reset (it belongs to the device's previous run).
 *   - Gaps: when a new newest reading arrives more than period_ms + tolerance_ms after the
 *     previous newest, round(gap / period_ms) - 1 readings are missing. Up to max_fill missing
 *     readings are forward-filled (copies of the previous reading at the missing times, marked
 *     filled, so a sensor that drops one or two packets keeps its window); more than that and
 *     the window is reset to this reading alone, because a window spanning a long outage would
 *     show the model a time series that never happened. period_ms 0 disables gap handling.
 *   - Emission: once the window holds T readings, the first new newest reading makes it ready,
 *     then every stride-th new newest reading after that. Late insertions never make a window
 *     ready (they change the past; the next emission includes them). Filled slots do not count
 *     towards the stride.
 *
 * Memory: entries are kept sorted in flat arrays (T timestamps, T flags, T*C floats); T is
 * small (100 for the shipped C-MAPSS model), so insertion by memmove is cheaper than a ring
 * with an index. State serialises to a versioned byte string for PostgreSQL.
 *
 * Threads: a window is plain data with no locking; one thread at a time.
 */
#ifndef WK_FAULT_WINDOW_H
#define WK_FAULT_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fraud-input.h"
#include "sluice/v1/events.pb-c.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_FAULT_WINDOW_MAX_LEN 4096
#define WK_FAULT_WINDOW_MAX_CHANNELS 64

typedef struct wk_fault_window_cfg_s {
  size_t length;          /* T: readings per window, 1..WK_FAULT_WINDOW_MAX_LEN */
  size_t stride;          /* >= 1: new readings between two ready windows */
  int64_t period_ms;      /* expected spacing of readings; 0 = irregular, no gap handling */
  int64_t tolerance_ms;   /* jitter allowed around period_ms, < period_ms */
  int64_t lateness_ms;    /* >= 0: how far behind the watermark a reading may still arrive */
  size_t max_fill;        /* missing readings forward-filled before a gap resets the window */
  size_t n_channels;      /* C, 1..WK_FAULT_WINDOW_MAX_CHANNELS */
  const char *const *channels; /* (C) names in the model's order; borrowed */
} wk_fault_window_cfg_t;

/* SVC_OK, or SVC_ECONFIG with the offending setting named in errstr. */
svc_err_t wk_fault_window_cfg_check(const wk_fault_window_cfg_t *cfg, char *errstr,
                                    size_t errstr_size);

#define WK_FAULT_WIN_STATUS_MAP(XX)                                                 \
  XX(OK, "ok")                                                                     \
  XX(LATE, "late")           /* older than watermark - lateness */                 \
  XX(DUPLICATE, "duplicate") /* same event time as a reading already held */       \
  XX(TOO_OLD, "too_old")     /* older than the window's oldest (full) or the last reset */

typedef enum {
#define WK__WIN_ENUM(id, name) WK_FAULT_WIN_##id,
  WK_FAULT_WIN_STATUS_MAP(WK__WIN_ENUM)
#undef WK__WIN_ENUM
  WK_FAULT_WIN__COUNT
} wk_fault_win_status_t;

/* "ok", "late", ...: the DLQ reason and metric label when the wiring dead-letters them. */
const char *wk_fault_win_status_name(wk_fault_win_status_t status);

typedef struct wk_fault_window_s {
  size_t length, n_channels; /* from the config */
  size_t n;                  /* readings held, <= length */
  int64_t watermark;         /* newest accepted time; INT64_MIN before any */
  int64_t floor_ms;          /* time of the reading that started the current run */
  uint64_t since_emit;       /* new newest readings since the last ready window */
  bool emitted;              /* a window was ready since the last reset */
  uint64_t n_resets, n_filled; /* totals, for metrics */
  int64_t *t;                /* (length) event times, ascending */
  uint8_t *filled;           /* (length) 1 for a forward-filled slot */
  float *values;             /* (length, n_channels) */
} wk_fault_window_t;

/* An empty window for cfg (checked by the caller). SVC_OK or SVC_ENOMEM; close it after. */
svc_err_t wk_fault_window_init(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg);
void wk_fault_window_close(wk_fault_window_t *win);

/*
 * The reading's channels in the window's order, into out[n_channels]. False with *rej
 * (WK_REJECT_INVALID naming the channel) when the reading lacks one of them.
 */
bool wk_fault_window_values(const wk_fault_window_cfg_t *cfg, const Sluice__V1__SensorReading *rd,
                            float *out, wk_reject_t *rej);

/*
 * Adds one reading at t_ms with values[n_channels]. Returns WK_FAULT_WIN_OK (accepted; *ready
 * says whether a window is due now) or the reason it was not accepted (the state is then
 * unchanged and *ready false). With detail != NULL a sentence explaining a rejection is
 * written there.
 */
wk_fault_win_status_t wk_fault_window_add(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg,
                                          int64_t t_ms, const float *values, bool *ready,
                                          char *detail, size_t detail_size);

/* True when the window holds T readings. */
bool wk_fault_window_full(const wk_fault_window_t *win);

/*
 * Copies the held readings, oldest first, into out[n * n_channels] (the model's [T, C] input
 * once full) and, when times != NULL, their event times into times[n]. Returns n.
 */
size_t wk_fault_window_copy(const wk_fault_window_t *win, float *out, int64_t *times);

/* Encoded size of the state, and the encoding (versioned, little-endian). Returns the size;
 * writes nothing when `size` is smaller. */
size_t wk_fault_window_encoded_size(const wk_fault_window_t *win);
size_t wk_fault_window_encode(const wk_fault_window_t *win, uint8_t *buf, size_t size);

/*
 * Restores a state written by wk_fault_window_encode into a window initialised for cfg.
 * SVC_OK, or SVC_EDECODE with the reason in errstr (wrong magic, version, length, a different
 * T or C than cfg, times not ascending, non-finite values); the window is then left empty.
 */
svc_err_t wk_fault_window_decode(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg,
                                 const uint8_t *buf, size_t len, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* WK_FAULT_WINDOW_H */
