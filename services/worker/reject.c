/* The shared rejection helpers of the three pipelines' validators; contract in reject.h. */
#include "reject.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const reject__names[WK_REJECT__COUNT] = {
    "none",
#define WK__REJECT_NAME(id, name) name,
    WK_REJECT_MAP(WK__REJECT_NAME)
#undef WK__REJECT_NAME
};

const char *wk_reject_name(wk_reject_reason_t reason) {
  return (unsigned)reason < WK_REJECT__COUNT ? reject__names[reason] : "unknown";
}

bool wk_reject(wk_reject_t *rej, wk_reject_reason_t reason, const char *fmt, ...) {
  rej->reason = reason;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rej->detail, sizeof rej->detail, fmt, ap);
  va_end(ap);
  return false;
}

bool wk_reject_check_id(const char *field, const char *s, bool required, size_t max_len,
                        wk_reject_t *rej) {
  if (s == NULL || s[0] == '\0') {
    if (!required) return true;
    return wk_reject(rej, WK_REJECT_INVALID, "%s is missing", field);
  }
  size_t n = strlen(s);
  if (n > max_len)
    return wk_reject(rej, WK_REJECT_INVALID, "%s is %zu bytes long, at most %zu", field, n,
                     max_len);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return wk_reject(rej, WK_REJECT_INVALID, "%s has control character 0x%02x at byte %zu",
                       field, c, i);
  }
  size_t bad = wk_utf8_invalid_at(s, n);
  if (bad != n)
    return wk_reject(rej, WK_REJECT_INVALID, "%s is not valid UTF-8 at byte %zu", field, bad);
  return true;
}

bool wk_reject_check_envelope(const Sluice__V1__Envelope *env, Sluice__V1__Envelope__PayloadCase want,
                              const char *want_name, size_t max_id_len, wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  if (!wk_reject_check_id("event_id", env->event_id, true, max_id_len, rej)) return false;
  if (!wk_reject_check_id("key", env->key, false, max_id_len, rej)) return false;
  if (env->has_schema_version && env->schema_version != 1)
    return wk_reject(rej, WK_REJECT_INVALID, "schema_version %u is not supported (1 is)",
                     env->schema_version);
  if (!env->has_event_time_ms)
    return wk_reject(rej, WK_REJECT_INVALID, "event_time_ms is missing");
  if (env->event_time_ms < WK_MIN_EVENT_TIME_MS || env->event_time_ms >= WK_MAX_EVENT_TIME_MS)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "event_time_ms %lld is outside 2000-01-01..2100-01-01",
                     (long long)env->event_time_ms);
  if (env->payload_case != want)
    return wk_reject(rej, WK_REJECT_WRONG_PAYLOAD, "payload is %d, not a %s",
                     (int)env->payload_case, want_name);
  return true;
}

size_t wk_utf8_invalid_at(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    size_t n;
    unsigned cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n > len) return i;
    for (size_t k = 1; k < n; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n;
  }
  return len;
}
