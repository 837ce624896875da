/*
 * The structured logger behind SVC_LOG: formats one logfmt or JSON line per event into a
 * stack buffer on the calling thread and hands it to the sink under one mutex.
 */
#include "svc/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

_Atomic int svc__log_threshold = SVC_LOG_INFO;
static _Atomic int log_format = SVC_LOG_LOGFMT;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static svc_log_sink_t log_sink;
static void *log_sink_ud;

const char *const svc_log_level_names[] = {"debug", "info", "warn", "error", "off", NULL};
const char *const svc_log_format_names[] = {"logfmt", "json", NULL};

/* ---- settings ----------------------------------------------------------- */

void svc_log_set_level(svc_log_level_t level) {
  atomic_store_explicit(&svc__log_threshold, (int)level, memory_order_relaxed);
}

svc_log_level_t svc_log_get_level(void) {
  return (svc_log_level_t)atomic_load_explicit(&svc__log_threshold, memory_order_relaxed);
}

void svc_log_set_format(svc_log_format_t format) {
  atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

void svc_log_set_sink(svc_log_sink_t sink, void *ud) {
  pthread_mutex_lock(&log_mutex);
  log_sink = sink;
  log_sink_ud = ud;
  pthread_mutex_unlock(&log_mutex);
}

svc_err_t svc_log_level_parse(const char *text, svc_log_level_t *out) {
  for (int i = 0; i <= SVC_LOG_OFF; i++) {
    if (strcasecmp(text, svc_log_level_names[i]) == 0) {
      *out = (svc_log_level_t)i;
      return SVC_OK;
    }
  }
  if (strcasecmp(text, "warning") == 0) {
    *out = SVC_LOG_WARN;
    return SVC_OK;
  }
  return SVC_EINVAL;
}

const char *svc_log_level_name(svc_log_level_t level) {
  if ((int)level < 0 || level > SVC_LOG_OFF) return "unknown";
  return svc_log_level_names[level];
}

svc_err_t svc_log_format_parse(const char *text, svc_log_format_t *out) {
  if (strcasecmp(text, "logfmt") == 0) *out = SVC_LOG_LOGFMT;
  else if (strcasecmp(text, "json") == 0) *out = SVC_LOG_JSON;
  else return SVC_EINVAL;
  return SVC_OK;
}

const char *svc_log_format_name(svc_log_format_t format) {
  return format == SVC_LOG_JSON ? "json" : "logfmt";
}

/* ---- line building ------------------------------------------------------ */

/* A bounded appender: writes what fits, remembers that something did not. */
typedef struct {
  char *buf;
  size_t size, len;
  bool truncated;
} lbuf_t;

static void lb_putc(lbuf_t *b, char c) {
  if (b->len + 1 < b->size) b->buf[b->len++] = c;
  else b->truncated = true;
}

static void lb_puts(lbuf_t *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) lb_putc(b, s[i]);
}

static void lb_str(lbuf_t *b, const char *s) { lb_puts(b, s, strlen(s)); }

/* Escapes quote, backslash and control characters; the same rules serve logfmt and JSON. */
static void lb_escaped(lbuf_t *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      lb_putc(b, '\\');
      lb_putc(b, (char)c);
    } else if (c == '\n') {
      lb_puts(b, "\\n", 2);
    } else if (c == '\r') {
      lb_puts(b, "\\r", 2);
    } else if (c == '\t') {
      lb_puts(b, "\\t", 2);
    } else if (c < 0x20) {
      char hex[8];
      snprintf(hex, sizeof hex, "\\u%04x", c);
      lb_str(b, hex);
    } else {
      lb_putc(b, (char)c);
    }
  }
}

/* True when a bare logfmt value needs no quotes. */
static bool plain_token(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return false;
  }
  return true;
}

/* True when the token is a JSON number as written (so it can be emitted bare). */
static bool json_number(const char *s, size_t n) {
  size_t i = 0;
  if (i < n && s[i] == '-') i++;
  if (i == n || s[i] < '0' || s[i] > '9') return false;
  if (s[i] == '0' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') return false;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  if (i < n && s[i] == '.') {
    i++;
    if (i == n || s[i] < '0' || s[i] > '9') return false;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i == n || s[i] < '0' || s[i] > '9') return false;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  }
  return i == n;
}

/*
 * Splits the next `key=value` field of a logfmt string. A quoted value ends at a quote that is
 * followed by a space or the end (so an unescaped quote inside an error text does not cut it
 * short); backslash escapes inside quotes are kept as written and undone by the caller. A token
 * without '=' becomes a field with an empty key, which the formatters print under "_".
 */
typedef struct {
  const char *key, *val;
  size_t key_len, val_len;
  bool quoted;
} field_t;

static const char *next_field(const char *p, field_t *f) {
  while (*p == ' ') p++;
  if (*p == '\0') return NULL;
  const char *start = p;
  while (*p != '\0' && *p != '=' && *p != ' ') p++;
  if (*p != '=') {
    f->key = "";
    f->key_len = 0;
    f->val = start;
    f->val_len = (size_t)(p - start);
    f->quoted = false;
    return p;
  }
  f->key = start;
  f->key_len = (size_t)(p - start);
  p++;
  if (*p == '"') {
    const char *v = ++p;
    while (*p != '\0') {
      if (*p == '\\' && p[1] != '\0') {
        p += 2;
        continue;
      }
      if (*p == '"' && (p[1] == ' ' || p[1] == '\0')) break;
      p++;
    }
    f->val = v;
    f->val_len = (size_t)(p - v);
    f->quoted = true;
    if (*p == '"') p++;
    return p;
  }
  f->val = p;
  while (*p != '\0' && *p != ' ') p++;
  f->val_len = (size_t)(p - f->val);
  f->quoted = false;
  return p;
}

/* Writes a field value that came quoted, undoing its \" and \\ escapes before re-escaping. */
static void lb_value(lbuf_t *b, const field_t *f) {
  if (!f->quoted) {
    lb_escaped(b, f->val, f->val_len);
    return;
  }
  for (size_t i = 0; i < f->val_len; i++) {
    char c = f->val[i];
    if (c == '\\' && i + 1 < f->val_len && (f->val[i + 1] == '"' || f->val[i + 1] == '\\')) {
      c = f->val[++i];
    }
    lb_escaped(b, &c, 1);
  }
}

static void format_ts(char *out, size_t size, long long ts_ms) {
  time_t secs = (time_t)(ts_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
}

size_t svc_log_format_line(char *buf, size_t size, svc_log_format_t format, long long ts_ms,
                           svc_log_level_t level, const char *msg, const char *fields) {
  lbuf_t b = {buf, size, 0, false};
  char ts[96]; /* room for any int the format could print, not just real dates */
  format_ts(ts, sizeof ts, ts_ms);
  field_t f;
  const char *p = fields;
  if (format == SVC_LOG_JSON) {
    lb_str(&b, "{\"ts\":\"");
    lb_str(&b, ts);
    lb_str(&b, "\",\"level\":\"");
    lb_str(&b, svc_log_level_name(level));
    lb_str(&b, "\",\"msg\":\"");
    lb_escaped(&b, msg, strlen(msg));
    lb_putc(&b, '"');
    while (p != NULL && (p = next_field(p, &f)) != NULL) {
      lb_str(&b, ",\"");
      if (f.key_len == 0) lb_putc(&b, '_');
      else lb_escaped(&b, f.key, f.key_len);
      lb_str(&b, "\":");
      bool bare = !f.quoted && (json_number(f.val, f.val_len) ||
                                (f.val_len == 4 && memcmp(f.val, "true", 4) == 0) ||
                                (f.val_len == 5 && memcmp(f.val, "false", 5) == 0));
      if (bare) {
        lb_puts(&b, f.val, f.val_len);
      } else {
        lb_putc(&b, '"');
        lb_value(&b, &f);
        lb_putc(&b, '"');
      }
    }
    lb_putc(&b, '}');
  } else {
    lb_str(&b, "ts=");
    lb_str(&b, ts);
    lb_str(&b, " level=");
    lb_str(&b, svc_log_level_name(level));
    lb_str(&b, " msg=\"");
    lb_escaped(&b, msg, strlen(msg));
    lb_putc(&b, '"');
    while (p != NULL && (p = next_field(p, &f)) != NULL) {
      lb_putc(&b, ' ');
      if (f.key_len == 0) lb_putc(&b, '_');
      else lb_escaped(&b, f.key, f.key_len);
      lb_putc(&b, '=');
      if (!f.quoted && plain_token(f.val, f.val_len)) {
        lb_puts(&b, f.val, f.val_len);
      } else {
        lb_putc(&b, '"');
        lb_value(&b, &f);
        lb_putc(&b, '"');
      }
    }
  }
  if (b.truncated && size >= 4) {
    b.len = size - 4;
    memcpy(b.buf + b.len, "...", 3);
    b.len += 3;
  }
  if (size > 0) b.buf[b.len < size ? b.len : size - 1] = '\0';
  return b.len;
}

/*
 * printf for the fields format, with every string argument made safe for logfmt: a %s inside a
 * quoted value ("err=\"%s\"") has its quotes and backslashes escaped, and a bare one
 * ("topic=%s") is quoted and escaped when it is not a plain token (empty, spaces, quotes, '=',
 * control characters), so a value never ends its field early or starts a bogus one, whatever
 * text it carries (a server's multi-line error, a topic name with a space). Other conversions
 * go to snprintf one at a time, with their argument fetched by type.
 */
static void lb_arg_str(lbuf_t *b, const char *s, int prec, bool in_quotes) {
  if (s == NULL) s = "(null)";
  size_t n = strlen(s);
  if (prec >= 0 && (size_t)prec < n) n = (size_t)prec;
  if (!in_quotes && plain_token(s, n)) {
    lb_puts(b, s, n);
    return;
  }
  if (!in_quotes) lb_putc(b, '"');
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '"' || s[i] == '\\') lb_putc(b, '\\');
    lb_putc(b, s[i]);
  }
  if (!in_quotes) lb_putc(b, '"');
}

static void format_fields(lbuf_t *b, const char *fmt, va_list ap) {
  bool in_quotes = false;
  for (const char *p = fmt; *p != '\0'; p++) {
    if (*p != '%') {
      if (*p == '"') in_quotes = !in_quotes;
      lb_putc(b, *p);
      continue;
    }
    if (p[1] == '%') {
      lb_putc(b, '%');
      p++;
      continue;
    }
    /* One conversion: %[flags][width][.precision][length]conv, '*' taken from the args. */
    char spec[32];
    size_t sl = 0;
    int width = -1, prec = -1;
    bool star_w = false, star_p = false;
    spec[sl++] = *p++;
    while (*p != '\0' && strchr("-+ #0", *p) != NULL && sl < 8) spec[sl++] = *p++;
    if (*p == '*') {
      star_w = true;
      width = va_arg(ap, int);
      spec[sl++] = *p++;
    } else {
      while (*p >= '0' && *p <= '9' && sl < 16) spec[sl++] = *p++;
    }
    if (*p == '.') {
      spec[sl++] = *p++;
      if (*p == '*') {
        star_p = true;
        prec = va_arg(ap, int);
        spec[sl++] = *p++;
      } else {
        prec = 0;
        while (*p >= '0' && *p <= '9' && sl < 24) {
          prec = prec * 10 + (*p - '0');
          spec[sl++] = *p++;
        }
      }
    }
    char len[3] = {0};
    size_t ll = 0;
    while (*p != '\0' && strchr("hlLqjzt", *p) != NULL && ll < 2) len[ll++] = spec[sl++] = *p++;
    if (*p == '\0') break;
    char conv = *p;
    spec[sl++] = conv;
    spec[sl] = '\0';
    char tmp[128];
    int n = 0;
#define LOG__FMT(type)                                                                   \
  do {                                                                                   \
    type v__ = va_arg(ap, type);                                                         \
    if (star_w && star_p) n = snprintf(tmp, sizeof tmp, spec, width, prec, v__);         \
    else if (star_w) n = snprintf(tmp, sizeof tmp, spec, width, v__);                    \
    else if (star_p) n = snprintf(tmp, sizeof tmp, spec, prec, v__);                     \
    else n = snprintf(tmp, sizeof tmp, spec, v__);                                       \
  } while (0)
    switch (conv) {
      case 's':
        lb_arg_str(b, va_arg(ap, const char *), prec, in_quotes);
        continue;
      case 'd': case 'i': case 'c':
        if (strcmp(len, "ll") == 0 || strcmp(len, "q") == 0) LOG__FMT(long long);
        else if (strcmp(len, "l") == 0) LOG__FMT(long);
        else if (strcmp(len, "z") == 0 || strcmp(len, "t") == 0) LOG__FMT(ptrdiff_t);
        else if (strcmp(len, "j") == 0) LOG__FMT(intmax_t);
        else LOG__FMT(int);
        break;
      case 'u': case 'x': case 'X': case 'o':
        if (strcmp(len, "ll") == 0 || strcmp(len, "q") == 0) LOG__FMT(unsigned long long);
        else if (strcmp(len, "l") == 0) LOG__FMT(unsigned long);
        else if (strcmp(len, "z") == 0 || strcmp(len, "t") == 0) LOG__FMT(size_t);
        else if (strcmp(len, "j") == 0) LOG__FMT(uintmax_t);
        else LOG__FMT(unsigned);
        break;
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (strcmp(len, "L") == 0) LOG__FMT(long double);
        else LOG__FMT(double);
        break;
      case 'p':
        LOG__FMT(void *);
        break;
      default: /* not a conversion the format attribute accepts: print it as written */
        lb_puts(b, spec, sl);
        continue;
    }
#undef LOG__FMT
    if (n > 0) lb_puts(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
  }
}

/* ---- emitting ------------------------------------------------------------ */

static void default_sink(void *ud, svc_log_level_t level, const char *line, size_t len) {
  (void)ud;
  (void)level;
  /* One write() per line: lines from several processes sharing stderr stay whole. */
  char out[SVC_LOG_LINE_MAX + 1];
  memcpy(out, line, len);
  out[len] = '\n';
  ssize_t off = 0, total = (ssize_t)len + 1;
  while (off < total) {
    ssize_t n = write(STDERR_FILENO, out + off, (size_t)(total - off));
    if (n <= 0) break;
    off += n;
  }
}

void svc__log(svc_log_level_t level, const char *msg, const char *fields_fmt, ...) {
  char fields[SVC_LOG_LINE_MAX];
  lbuf_t fb = {fields, sizeof fields, 0, false};
  va_list ap;
  va_start(ap, fields_fmt);
  format_fields(&fb, fields_fmt, ap);
  va_end(ap);
  fields[fb.len] = '\0';

  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  long long ts_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  char line[SVC_LOG_LINE_MAX];
  size_t len = svc_log_format_line(line, sizeof line,
                                   (svc_log_format_t)atomic_load_explicit(
                                       &log_format, memory_order_relaxed),
                                   ts_ms, level, msg, fields);
  pthread_mutex_lock(&log_mutex);
  if (log_sink != NULL) log_sink(log_sink_ud, level, line, len);
  else default_sink(NULL, level, line, len);
  pthread_mutex_unlock(&log_mutex);
}
