/*
 * The engine's log hook: one host callback and a minimum level. Formatting happens only when
 * the level is enabled and a callback is installed; lines are bounded (long ones end in "...")
 * so that logging never allocates.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/log-impl.h"

#define MOE_LOG_LINE_MAX 1024

static moe_log_cb g_cb;
static void *g_user;
static atomic_int g_level = MOE_LOG_INFO;

void moe_log_set(moe_log_cb cb, void *user) {
  g_cb = cb;
  g_user = user;
}

void moe_log_set_level(moe_log_level_t level) { atomic_store(&g_level, (int)level); }

moe_log_level_t moe_log_get_level(void) { return (moe_log_level_t)atomic_load(&g_level); }

const char *moe_log_level_name(moe_log_level_t level) {
  switch (level) {
  case MOE_LOG_DEBUG: return "debug";
  case MOE_LOG_INFO: return "info";
  case MOE_LOG_WARN: return "warn";
  case MOE_LOG_ERROR: return "error";
  case MOE_LOG_NONE: return "none";
  default: return "?";
  }
}

int moe__log_enabled(moe_log_level_t level) {
  return g_cb != NULL && (int)level >= atomic_load(&g_level) && level < MOE_LOG_NONE;
}

void moe__log(moe_log_level_t level, const char *fmt, ...) {
  if (!moe__log_enabled(level)) return;
  char line[MOE_LOG_LINE_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) {
    snprintf(line, sizeof line, "(unformattable log message: %s)", fmt);
  } else if ((size_t)n >= sizeof line) {
    memcpy(line + sizeof line - 4, "...", 4);
  }
  g_cb(level, line, g_user);
}
