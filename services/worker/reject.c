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
  return true;
}
