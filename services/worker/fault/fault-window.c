/*
 * Per-device sensor windows: insertion by event time with lateness, duplicates, gap filling
 * and resets, emission by stride, and the state's byte encoding. The rules are in
 * fault-window.h.
 */
#include "fault-window.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault-input.h"

static const char *const window__status_names[WK_FAULT_WIN__COUNT] = {
#define WK__WIN_NAME(id, name) name,
    WK_FAULT_WIN_STATUS_MAP(WK__WIN_NAME)
#undef WK__WIN_NAME
};

const char *wk_fault_win_status_name(wk_fault_win_status_t status) {
  return (unsigned)status < WK_FAULT_WIN__COUNT ? window__status_names[status] : "unknown";
}

svc_err_t wk_fault_window_cfg_check(const wk_fault_window_cfg_t *cfg, char *errstr,
                                    size_t errstr_size) {
  const char *why = NULL;
  if (cfg->length < 1 || cfg->length > WK_FAULT_WINDOW_MAX_LEN)
    why = "window length must be 1..4096 readings";
  else if (cfg->stride < 1)
    why = "window stride must be at least 1";
  else if (cfg->period_ms < 0)
    why = "window period_ms must be >= 0";
  else if (cfg->tolerance_ms < 0 || (cfg->period_ms > 0 && 2 * cfg->tolerance_ms >= cfg->period_ms))
    why = "window tolerance_ms must be >= 0 and less than half of period_ms";
  else if (cfg->lateness_ms < 0)
    why = "window lateness_ms must be >= 0";
  else if (cfg->n_channels < 1 || cfg->n_channels > WK_FAULT_WINDOW_MAX_CHANNELS)
    why = "window channels must be 1..64";
  else if (cfg->max_fill > cfg->length)
    why = "window max_fill must not exceed the window length";
  if (why == NULL && cfg->channels == NULL) why = "window channel names are missing";
  for (size_t c = 0; why == NULL && c < cfg->n_channels; c++)
    if (cfg->channels[c] == NULL || cfg->channels[c][0] == '\0') why = "a window channel name is empty";
  if (why == NULL) return SVC_OK;
  snprintf(errstr, errstr_size, "%s", why);
  return SVC_ECONFIG;
}

static void window__reset(wk_fault_window_t *win) {
  win->n = 0;
  win->watermark = INT64_MIN;
  win->floor_ms = INT64_MIN;
  win->since_emit = 0;
  win->emitted = false;
}

svc_err_t wk_fault_window_init(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg) {
  memset(win, 0, sizeof *win);
  win->length = cfg->length;
  win->n_channels = cfg->n_channels;
  win->t = calloc(cfg->length, sizeof *win->t);
  win->filled = calloc(cfg->length, sizeof *win->filled);
  win->values = calloc(cfg->length * cfg->n_channels, sizeof *win->values);
  if (win->t == NULL || win->filled == NULL || win->values == NULL) {
    wk_fault_window_close(win);
    return SVC_ENOMEM;
  }
  window__reset(win);
  return SVC_OK;
}

void wk_fault_window_close(wk_fault_window_t *win) {
  free(win->t);
  free(win->filled);
  free(win->values);
  memset(win, 0, sizeof *win);
}

bool wk_fault_window_values(const wk_fault_window_cfg_t *cfg, const Sluice__V1__SensorReading *rd,
                            float *out, wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  for (size_t c = 0; c < cfg->n_channels; c++) {
    double v;
    if (!wk_fault_channel_value(rd, cfg->channels[c], &v)) {
      rej->reason = WK_REJECT_INVALID;
      if (strcmp(cfg->channels[c], WK_FAULT_AGE_CHANNEL) == 0)
        snprintf(rej->detail, sizeof rej->detail,
                 "sensor_reading has no sequence (nor a channel \"%s\"): the model reads the "
                 "device's cycle count", cfg->channels[c]);
      else
        snprintf(rej->detail, sizeof rej->detail,
                 "sensor_reading has no channel \"%s\", a model input", cfg->channels[c]);
      return false;
    }
    out[c] = (float)v;
  }
  return true;
}

bool wk_fault_window_full(const wk_fault_window_t *win) { return win->n == win->length; }

/* Puts one entry at sorted position i, dropping the oldest entry first when full (i > 0). */
static void window__insert(wk_fault_window_t *win, size_t i, int64_t t, const float *v,
                           uint8_t filled) {
  size_t C = win->n_channels;
  if (win->n == win->length) {
    /* Entries [1, i) move down one place; the new entry takes position i - 1. */
    memmove(&win->t[0], &win->t[1], (i - 1) * sizeof *win->t);
    memmove(&win->filled[0], &win->filled[1], i - 1);
    memmove(&win->values[0], &win->values[C], (i - 1) * C * sizeof *win->values);
    i--;
  } else {
    memmove(&win->t[i + 1], &win->t[i], (win->n - i) * sizeof *win->t);
    memmove(&win->filled[i + 1], &win->filled[i], win->n - i);
    memmove(&win->values[(i + 1) * C], &win->values[i * C], (win->n - i) * C * sizeof *win->values);
    win->n++;
  }
  win->t[i] = t;
  win->filled[i] = filled;
  memcpy(&win->values[i * C], v, C * sizeof *v);
}

__attribute__((format(printf, 4, 5))) static wk_fault_win_status_t
window__reject(wk_fault_win_status_t st, char *detail, size_t detail_size, const char *fmt, ...) {
  if (detail != NULL && detail_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, detail_size, fmt, ap);
    va_end(ap);
  }
  return st;
}

wk_fault_win_status_t wk_fault_window_add(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg,
                                          int64_t t_ms, const float *values, bool *ready,
                                          char *detail, size_t detail_size) {
  *ready = false;
  if (detail != NULL && detail_size > 0) detail[0] = '\0';
  size_t C = win->n_channels;
  if (win->watermark != INT64_MIN && t_ms < win->watermark - cfg->lateness_ms)
    return window__reject(WK_FAULT_WIN_LATE, detail, detail_size,
                          "reading at %lld ms is %lld ms behind the device's newest (%lld), more "
                          "than the allowed lateness of %lld ms",
                          (long long)t_ms, (long long)(win->watermark - t_ms),
                          (long long)win->watermark, (long long)cfg->lateness_ms);

  if (win->watermark == INT64_MIN || t_ms > win->watermark) {
    if (win->n > 0 && cfg->period_ms > 0 && t_ms - win->watermark > cfg->period_ms + cfg->tolerance_ms) {
      int64_t gap = t_ms - win->watermark;
      int64_t missing = (gap + cfg->period_ms / 2) / cfg->period_ms - 1;
      if (missing > (int64_t)cfg->max_fill) {
        window__reset(win);
        win->n_resets++;
      } else {
        /* Copy the previous newest: window__insert may overwrite its slot when full. */
        float prev[WK_FAULT_WINDOW_MAX_CHANNELS];
        memcpy(prev, &win->values[(win->n - 1) * C], C * sizeof *prev);
        int64_t base = win->watermark;
        for (int64_t j = 1; j <= missing; j++) {
          window__insert(win, win->n, base + j * cfg->period_ms, prev, 1);
          win->n_filled++;
        }
      }
    }
    if (win->watermark == INT64_MIN) win->floor_ms = t_ms;
    window__insert(win, win->n, t_ms, values, 0);
    win->watermark = t_ms;
    win->since_emit++;
    if (win->n == win->length && (!win->emitted || win->since_emit >= cfg->stride)) {
      *ready = true;
      win->emitted = true;
      win->since_emit = 0;
    }
    return WK_FAULT_WIN_OK;
  }

  /* Out of order, within the lateness. */
  if (t_ms < win->floor_ms)
    return window__reject(WK_FAULT_WIN_TOO_OLD, detail, detail_size,
                          "reading at %lld ms is older than the device's last reset at %lld ms",
                          (long long)t_ms, (long long)win->floor_ms);
  size_t i = 0;
  while (i < win->n && win->t[i] < t_ms) i++;
  if (i < win->n && win->t[i] == t_ms && !win->filled[i])
    return window__reject(WK_FAULT_WIN_DUPLICATE, detail, detail_size,
                          "a reading at %lld ms is already held", (long long)t_ms);
  for (size_t k = i > 0 ? i - 1 : 0; k <= i && k < win->n; k++) {
    int64_t d = win->t[k] > t_ms ? win->t[k] - t_ms : t_ms - win->t[k];
    if (win->filled[k] && d <= cfg->tolerance_ms) {
      win->t[k] = t_ms;
      win->filled[k] = 0;
      memcpy(&win->values[k * C], values, C * sizeof *values);
      return WK_FAULT_WIN_OK;
    }
  }
  if (win->n == win->length && i == 0)
    return window__reject(WK_FAULT_WIN_TOO_OLD, detail, detail_size,
                          "reading at %lld ms is older than every reading of the full window "
                          "(oldest %lld ms)",
                          (long long)t_ms, (long long)win->t[0]);
  window__insert(win, i, t_ms, values, 0);
  return WK_FAULT_WIN_OK;
}

size_t wk_fault_window_copy(const wk_fault_window_t *win, float *out, int64_t *times) {
  memcpy(out, win->values, win->n * win->n_channels * sizeof *out);
  if (times != NULL) memcpy(times, win->t, win->n * sizeof *times);
  return win->n;
}

/* ---- encoding ------------------------------------------------------------------------- */

#define WINDOW__MAGIC "WKFW"
#define WINDOW__VERSION 1
#define WINDOW__HEADER 64

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

size_t wk_fault_window_encoded_size(const wk_fault_window_t *win) {
  return WINDOW__HEADER + win->n * (9 + 4 * win->n_channels);
}

size_t wk_fault_window_encode(const wk_fault_window_t *win, uint8_t *buf, size_t size) {
  size_t need = wk_fault_window_encoded_size(win);
  if (size < need) return need;
  memset(buf, 0, WINDOW__HEADER);
  memcpy(buf, WINDOW__MAGIC, 4);
  put_u32(buf + 4, WINDOW__VERSION);
  put_u32(buf + 8, (uint32_t)win->length);
  put_u32(buf + 12, (uint32_t)win->n_channels);
  put_u32(buf + 16, (uint32_t)win->n);
  put_u32(buf + 20, win->emitted ? 1u : 0u);
  put_u64(buf + 24, (uint64_t)win->watermark);
  put_u64(buf + 32, (uint64_t)win->floor_ms);
  put_u64(buf + 40, win->since_emit);
  put_u64(buf + 48, win->n_resets);
  put_u64(buf + 56, win->n_filled);
  uint8_t *p = buf + WINDOW__HEADER;
  for (size_t i = 0; i < win->n; i++) {
    put_u64(p, (uint64_t)win->t[i]);
    p[8] = win->filled[i];
    p += 9;
    for (size_t c = 0; c < win->n_channels; c++) {
      uint32_t bits;
      memcpy(&bits, &win->values[i * win->n_channels + c], 4);
      put_u32(p, bits);
      p += 4;
    }
  }
  return need;
}

svc_err_t wk_fault_window_decode(wk_fault_window_t *win, const wk_fault_window_cfg_t *cfg,
                                 const uint8_t *buf, size_t len, char *errstr, size_t errstr_size) {
  const char *why = NULL;
  char msg[160];
  window__reset(win);
  if (len < WINDOW__HEADER || memcmp(buf, WINDOW__MAGIC, 4) != 0) {
    why = "not a fault window state (bad magic or shorter than its header)";
    goto fail;
  }
  if (get_u32(buf + 4) != WINDOW__VERSION) {
    snprintf(msg, sizeof msg, "fault window state version %u is not supported (1 is)",
             get_u32(buf + 4));
    why = msg;
    goto fail;
  }
  uint32_t T = get_u32(buf + 8), C = get_u32(buf + 12), n = get_u32(buf + 16);
  if (T != cfg->length || C != cfg->n_channels) {
    snprintf(msg, sizeof msg,
             "fault window state is for T=%u, C=%u; this window is configured T=%zu, C=%zu", T, C,
             cfg->length, cfg->n_channels);
    why = msg;
    goto fail;
  }
  if (n > T || get_u32(buf + 20) > 1 || len != WINDOW__HEADER + (size_t)n * (9 + 4 * (size_t)C)) {
    why = "fault window state has an inconsistent entry count, flag or length";
    goto fail;
  }
  const uint8_t *p = buf + WINDOW__HEADER;
  for (size_t i = 0; i < n; i++) {
    win->t[i] = (int64_t)get_u64(p);
    win->filled[i] = p[8];
    p += 9;
    if (win->filled[i] > 1 || (i > 0 && win->t[i] <= win->t[i - 1])) {
      why = "fault window state has entries out of time order or a bad fill flag";
      goto fail;
    }
    for (size_t c = 0; c < C; c++) {
      uint32_t bits = get_u32(p);
      p += 4;
      float v;
      memcpy(&v, &bits, 4);
      if (!isfinite(v)) {
        why = "fault window state holds a non-finite value";
        goto fail;
      }
      win->values[i * C + c] = v;
    }
  }
  win->n = n;
  win->emitted = get_u32(buf + 20) == 1;
  win->watermark = (int64_t)get_u64(buf + 24);
  win->floor_ms = (int64_t)get_u64(buf + 32);
  win->since_emit = get_u64(buf + 40);
  win->n_resets = get_u64(buf + 48);
  win->n_filled = get_u64(buf + 56);
  if (n > 0 && (win->watermark != win->t[n - 1] || win->floor_ms > win->t[0])) {
    why = "fault window state's watermark or floor disagrees with its entries";
    goto fail;
  }
  return SVC_OK;
fail:
  window__reset(win);
  snprintf(errstr, errstr_size, "%s", why);
  return SVC_EDECODE;
}
