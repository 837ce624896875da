/*
 * The engine's internal logging macro. MOE_LOG(level, fmt, ...) checks the level and whether
 * a callback is installed before evaluating its arguments or formatting, so that disabled
 * debug logging costs one load and one compare.
 */
#ifndef MOE_CORE_LOG_IMPL_H
#define MOE_CORE_LOG_IMPL_H

#include "moe/log.h"

/* Non-zero when a message at `level` would reach a callback. Thread-safe. */
int moe__log_enabled(moe_log_level_t level);

/* Formats (printf rules) into a bounded buffer, truncating long lines with "...", and calls
 * the callback. Prefer MOE_LOG, which skips the call when the level is disabled. */
void moe__log(moe_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MOE_LOG(level, ...)                                                   \
  do {                                                                        \
    if (moe__log_enabled(level)) moe__log((level), __VA_ARGS__);              \
  } while (0)

#endif /* MOE_CORE_LOG_IMPL_H */
