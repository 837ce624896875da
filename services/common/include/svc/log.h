/*
 * Structured logging for the services: one line per event, either logfmt
 *   ts=2026-11-28T08:42:07.123Z level=info msg="partition assigned" topic=t partition=3
 * or one JSON object per line ({"ts":"...","level":"info","msg":"...","topic":"t",...}).
 *
 * SVC_LOG(level, msg[, fields_fmt, ...]) checks the level before anything is formatted, so a
 * disabled debug line costs one relaxed atomic load. `msg` is a fixed sentence (a string
 * literal is best: it is what people grep for); `fields_fmt` is a printf format that produces
 * logfmt fields, `key=value` separated by spaces, e.g. "topic=%s partition=%d". Every string
 * argument is made safe: a %s inside a quoted value (`err="%s"`) has its quotes and
 * backslashes escaped, and a bare one (`topic=%s`) is quoted as well when it is not a plain
 * token (empty, spaces, quotes, '=', control characters), so text from anywhere (a server's
 * multi-line error, a name with a space) stays inside its field. In the JSON format the fields
 * are re-parsed into members (numbers stay numbers, true/false stay booleans, the rest are
 * strings). Newlines and control characters in values are escaped, so that one event is
 * always one line.
 *
 * Thread-safety: every function may be called from any thread. A line is formatted into a
 * buffer on the calling thread and handed to the sink in one call under a mutex, so that lines
 * from different threads never interleave. Lines longer than SVC_LOG_LINE_MAX are truncated
 * (and end in "...").
 */
#ifndef SVC_LOG_H
#define SVC_LOG_H

#include <stdatomic.h>
#include <stddef.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SVC_LOG_DEBUG = 0,
  SVC_LOG_INFO = 1,
  SVC_LOG_WARN = 2,
  SVC_LOG_ERROR = 3,
  SVC_LOG_OFF = 4 /* as a threshold only: log nothing */
} svc_log_level_t;

typedef enum {
  SVC_LOG_LOGFMT = 0,
  SVC_LOG_JSON = 1
} svc_log_format_t;

#define SVC_LOG_LINE_MAX 4096

/*
 * Receives each finished line (without the trailing newline; `len` excludes it). Called with
 * the logger's mutex held, so it must not log itself. The default sink writes the line and a
 * newline to stderr with one write().
 */
typedef void (*svc_log_sink_t)(void *ud, svc_log_level_t level, const char *line, size_t len);

/* Internal: the current threshold, read by SVC_LOG without locking. */
extern _Atomic int svc__log_threshold;

#define SVC_LOG_ENABLED(level) \
  ((int)(level) >= atomic_load_explicit(&svc__log_threshold, memory_order_relaxed))

/* The fields format must be a string literal; it may be left out: SVC_LOG(lvl, "ready"). */
#define SVC_LOG(level, msg, ...)                                              \
  do {                                                                        \
    if (SVC_LOG_ENABLED(level)) svc__log((level), (msg), " " __VA_ARGS__);    \
  } while (0)

/* Internal: formats and emits one line; use SVC_LOG. */
void svc__log(svc_log_level_t level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the threshold: lines below `level` are dropped. Default SVC_LOG_INFO. */
void svc_log_set_level(svc_log_level_t level);
svc_log_level_t svc_log_get_level(void);
/* Sets the output format. Default SVC_LOG_LOGFMT. */
void svc_log_set_format(svc_log_format_t format);
/* Replaces the sink; NULL restores the default (stderr). */
void svc_log_set_sink(svc_log_sink_t sink, void *ud);

/* "debug", "info", "warn", "error", "off" and back. Parse returns SVC_EINVAL on other text. */
svc_err_t svc_log_level_parse(const char *text, svc_log_level_t *out);
const char *svc_log_level_name(svc_log_level_t level);
/*
 * The level and format names in enum order, NULL-terminated: ready to be the `values` of an
 * SVC_CFG_ENUM config row whose stored index is then the svc_log_level_t / svc_log_format_t.
 */
extern const char *const svc_log_level_names[];
extern const char *const svc_log_format_names[];

/* "logfmt", "json" and back. */
svc_err_t svc_log_format_parse(const char *text, svc_log_format_t *out);
const char *svc_log_format_name(svc_log_format_t format);

/*
 * Formats one line into buf (always NUL-terminated) exactly as svc__log would, without
 * emitting it; returns the length. `ts_ms` is the Unix time in milliseconds. For tests and for
 * callers that forward lines elsewhere. Thread-safe.
 */
size_t svc_log_format_line(char *buf, size_t size, svc_log_format_t format, long long ts_ms,
                           svc_log_level_t level, const char *msg, const char *fields);

#ifdef __cplusplus
}
#endif
#endif /* SVC_LOG_H */
