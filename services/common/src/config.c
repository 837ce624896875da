/*
 * The table-driven configuration behind svc/config.h: parses defaults, a config file, the
 * environment and flags into a staging copy, validates everything, and only then writes the
 * values into the caller's struct, so that a bad value never leaves a half-applied config.
 */
#include "svc/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { SRC_NONE = 0, SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } src_t;

static const char *const src_names[] = {"unset", "default", "file", "env", "flag"};

/* One setting's value and where it came from. `v.s` is owned when the type is string. */
typedef struct {
  svc_cfg_val_t v;
  src_t src;
  int line; /* file line, for duplicate detection */
} slot_t;

typedef struct {
  size_t idx;  /* row */
  char *text;  /* value as given */
  char *flag;  /* as written, e.g. "--batch-size" */
} flag_t;

struct svc_cfg_s {
  const char *prog, *summary, *config_env;
  const svc_cfg_def_t *defs;
  size_t n;
  void *target;
  slot_t *cur;       /* the applied values (what the target holds) */
  flag_t *flags;     /* flags from the last load, re-applied by reload */
  size_t n_flags;
  char *config_path; /* from --config, or NULL */
  bool help;
};

/* ---- small helpers ------------------------------------------------------ */

static void set_err(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t size, const char *fmt, ...) {
  if (errstr == NULL || size == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errstr, size, fmt, ap);
  va_end(ap);
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d == NULL) abort(); /* services may abort on OOM (STYLE section 4) */
  memcpy(d, s, n);
  return d;
}

/* "kafka.brokers" -> "kafka-brokers" (the flag spelling, without dashes in front). */
static void flag_name(const char *name, char *out, size_t size) {
  size_t i = 0;
  for (; name[i] != '\0' && i + 1 < size; i++) out[i] = (name[i] == '.' || name[i] == '_') ? '-' : name[i];
  out[i] = '\0';
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
      size_t best = diag + cost;
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* The closest row name (as a flag if `as_flag`), or NULL when nothing is close. */
static const char *suggest(const svc_cfg_t *cfg, const char *given, bool as_flag, char *buf,
                           size_t size) {
  size_t best = SIZE_MAX;
  const char *found = NULL;
  for (size_t i = 0; i < cfg->n; i++) {
    char cand[128];
    if (as_flag) flag_name(cfg->defs[i].name, cand, sizeof cand);
    else snprintf(cand, sizeof cand, "%s", cfg->defs[i].name);
    size_t d = edit_distance(given, cand);
    size_t limit = strlen(cand) / 3 > 2 ? strlen(cand) / 3 : 2;
    if (d <= limit && d < best) {
      best = d;
      snprintf(buf, size, "%s%s", as_flag ? "--" : "", cand);
      found = buf;
    }
  }
  return found;
}

/* ---- value parsing -------------------------------------------------------- */

static bool parse_number(const char *text, double *num, const char **rest) {
  const char *p = text;
  while (isspace((unsigned char)*p)) p++;
  if (*p == '\0' || *p == '+' || *p == '-') return false;
  /* strtod would also accept "inf", "nan" and hex floats: allow digits and '.' only. */
  if (!isdigit((unsigned char)*p) && *p != '.') return false;
  char *end;
  errno = 0;
  double v = strtod(p, &end);
  if (end == p || errno == ERANGE || !isfinite(v)) return false;
  *num = v;
  *rest = end;
  return true;
}

svc_err_t svc_parse_duration_ms(const char *text, int64_t *out_ms) {
  double v;
  const char *unit;
  if (!parse_number(text, &v, &unit)) return SVC_EINVAL;
  double factor;
  if (strcmp(unit, "ms") == 0) factor = 1;
  else if (strcmp(unit, "s") == 0) factor = 1000;
  else if (strcmp(unit, "m") == 0) factor = 60000;
  else if (strcmp(unit, "h") == 0) factor = 3600000;
  else if (unit[0] == '\0' && v == 0) factor = 0;
  else return SVC_EINVAL;
  double ms = v * factor;
  if (ms > 9e15 || fabs(ms - round(ms)) > 1e-6) return SVC_EINVAL;
  *out_ms = (int64_t)llround(ms);
  return SVC_OK;
}

svc_err_t svc_parse_size(const char *text, int64_t *out_bytes) {
  double v;
  const char *unit;
  if (!parse_number(text, &v, &unit)) return SVC_EINVAL;
  static const struct { const char *u; double f; } units[] = {
      {"", 1}, {"B", 1},
      {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
      {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0},
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcasecmp(unit, units[i].u) == 0) {
      double b = v * units[i].f;
      if (b > 9e15 || fabs(b - round(b)) > 1e-6) return SVC_EINVAL;
      *out_bytes = (int64_t)llround(b);
      return SVC_OK;
    }
  }
  return SVC_EINVAL;
}

svc_err_t svc_parse_bool(const char *text, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(text, yes[i]) == 0) { *out = true; return SVC_OK; }
    if (strcasecmp(text, no[i]) == 0) { *out = false; return SVC_OK; }
  }
  return SVC_EINVAL;
}

static void format_duration(int64_t ms, char *out, size_t size) {
  if (ms != 0 && ms % 3600000 == 0) snprintf(out, size, "%lldh", (long long)(ms / 3600000));
  else if (ms != 0 && ms % 60000 == 0) snprintf(out, size, "%lldm", (long long)(ms / 60000));
  else if (ms != 0 && ms % 1000 == 0) snprintf(out, size, "%llds", (long long)(ms / 1000));
  else snprintf(out, size, "%lldms", (long long)ms);
}

static void format_size(int64_t b, char *out, size_t size) {
  if (b != 0 && b % 1073741824LL == 0) snprintf(out, size, "%lldGiB", (long long)(b / 1073741824LL));
  else if (b != 0 && b % 1048576 == 0) snprintf(out, size, "%lldMiB", (long long)(b / 1048576));
  else if (b != 0 && b % 1024 == 0) snprintf(out, size, "%lldKiB", (long long)(b / 1024));
  else snprintf(out, size, "%lld", (long long)b);
}

static bool has_range(const svc_cfg_def_t *d) { return d->min < d->max; }

static void format_bound(const svc_cfg_def_t *d, double x, char *out, size_t size) {
  switch (d->type) {
  case SVC_CFG_DURATION: format_duration((int64_t)x, out, size); break;
  case SVC_CFG_SIZE: format_size((int64_t)x, out, size); break;
  case SVC_CFG_DOUBLE: snprintf(out, size, "%g", x); break;
  default: snprintf(out, size, "%lld", (long long)x); break;
  }
}

/* What a row accepts, in words: the tail of every "bad value" message. */
static void expected_text(const svc_cfg_def_t *d, char *out, size_t size) {
  char lo[48], hi[48], range[120] = "";
  if (has_range(d)) {
    format_bound(d, d->min, lo, sizeof lo);
    format_bound(d, d->max, hi, sizeof hi);
    snprintf(range, sizeof range, " between %s and %s", lo, hi);
  }
  switch (d->type) {
  case SVC_CFG_STRING:
    snprintf(out, size, "%s", (d->flags & SVC_CFG_NONEMPTY) ? "a non-empty string" : "a string");
    break;
  case SVC_CFG_INT: snprintf(out, size, "an integer%s", range); break;
  case SVC_CFG_DOUBLE: snprintf(out, size, "a number%s", range); break;
  case SVC_CFG_BOOL: snprintf(out, size, "true or false (also yes/no, on/off, 1/0)"); break;
  case SVC_CFG_DURATION:
    snprintf(out, size, "a duration such as 250ms, 5s, 1.5m or 2h%s", range);
    break;
  case SVC_CFG_SIZE:
    snprintf(out, size, "a size such as 512, 64KiB, 10MB or 1GiB%s", range);
    break;
  case SVC_CFG_ENUM: {
    size_t len = (size_t)snprintf(out, size, "one of:");
    for (size_t i = 0; d->values != NULL && d->values[i] != NULL && len < size; i++)
      len += (size_t)snprintf(out + len, size - len, "%s %s", i ? "," : "", d->values[i]);
    break;
  }
  }
}

/*
 * Parses `text` for row `d` into `v` (strings are duplicated). On failure writes
 * "<where>: setting 'x': bad value "t": expected ..." into errstr and returns SVC_ECONFIG.
 */
static svc_err_t parse_value(const svc_cfg_def_t *d, const char *text, const char *where,
                             svc_cfg_val_t *v, char *errstr, size_t errstr_size) {
  char expected[512];
  bool ok = true;
  double num = 0;
  /* A secret (a dsn with its password, credentials in properties) is never echoed. */
  const bool secret = (d->flags & SVC_CFG_SECRET) != 0;
  switch (d->type) {
  case SVC_CFG_STRING:
    ok = !((d->flags & SVC_CFG_NONEMPTY) && text[0] == '\0');
    break;
  case SVC_CFG_INT: {
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    ok = end != text && *end == '\0' && errno == 0 && !isspace((unsigned char)text[0]);
    v->i = x;
    num = (double)x;
    break;
  }
  case SVC_CFG_DOUBLE: {
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    ok = end != text && *end == '\0' && errno == 0 && isfinite(x) &&
         !isspace((unsigned char)text[0]);
    v->d = x;
    num = x;
    break;
  }
  case SVC_CFG_BOOL: ok = svc_parse_bool(text, &v->b) == SVC_OK; break;
  case SVC_CFG_DURATION: ok = svc_parse_duration_ms(text, &v->i) == SVC_OK; num = (double)v->i; break;
  case SVC_CFG_SIZE: ok = svc_parse_size(text, &v->i) == SVC_OK; num = (double)v->i; break;
  case SVC_CFG_ENUM:
    ok = false;
    for (size_t i = 0; d->values != NULL && d->values[i] != NULL; i++) {
      if (strcmp(text, d->values[i]) == 0) {
        v->i = (int64_t)i;
        ok = true;
      }
    }
    break;
  }
  if (ok && has_range(d) && d->type != SVC_CFG_STRING && d->type != SVC_CFG_BOOL &&
      d->type != SVC_CFG_ENUM)
    ok = num >= d->min && num <= d->max;
  if (!ok) {
    expected_text(d, expected, sizeof expected);
    set_err(errstr, errstr_size, "%s: setting '%s': bad value %s%s%s: expected %s", where,
            d->name, secret ? "" : "\"", secret ? "(secret, not shown)" : text,
            secret ? "" : "\"", expected);
    return SVC_ECONFIG;
  }
  if (d->type == SVC_CFG_STRING) v->s = text;
  if (d->check != NULL) {
    expected[0] = '\0';
    if (!d->check(d, v, expected, sizeof expected)) {
      set_err(errstr, errstr_size, "%s: setting '%s': bad value %s%s%s: expected %s", where,
              d->name, secret ? "" : "\"", secret ? "(secret, not shown)" : text,
              secret ? "" : "\"", expected[0] ? expected : "a valid value");
      return SVC_ECONFIG;
    }
  }
  if (d->type == SVC_CFG_STRING) v->s = xstrdup(text);
  return SVC_OK;
}

/* ---- staging ------------------------------------------------------------ */

static void slots_free(const svc_cfg_t *cfg, slot_t *slots) {
  if (slots == NULL) return;
  for (size_t i = 0; i < cfg->n; i++)
    if (cfg->defs[i].type == SVC_CFG_STRING) free((char *)slots[i].v.s);
  free(slots);
}

static slot_t *slots_new(const svc_cfg_t *cfg) {
  slot_t *s = calloc(cfg->n ? cfg->n : 1, sizeof *s);
  if (s == NULL) abort();
  return s;
}

/* Replaces slot i's value (freeing an old string). */
static void slot_set(const svc_cfg_t *cfg, slot_t *slots, size_t i, svc_cfg_val_t v, src_t src,
                     int line) {
  if (cfg->defs[i].type == SVC_CFG_STRING) free((char *)slots[i].v.s);
  slots[i].v = v;
  slots[i].src = src;
  slots[i].line = line;
}

static svc_err_t apply_text(const svc_cfg_t *cfg, slot_t *slots, size_t i, const char *text,
                            src_t src, int line, const char *where, char *errstr,
                            size_t errstr_size) {
  svc_cfg_val_t v = {0};
  svc_err_t rc = parse_value(&cfg->defs[i], text, where, &v, errstr, errstr_size);
  if (rc != SVC_OK) return rc;
  slot_set(cfg, slots, i, v, src, line);
  return SVC_OK;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

static svc_err_t read_file(const svc_cfg_t *cfg, slot_t *slots, const char *path, char *errstr,
                           size_t errstr_size) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    int e = errno;
    set_err(errstr, errstr_size, "config file %s: cannot open: %s", path, strerror(e));
    return e == ENOENT ? SVC_ENOENT : SVC_EIO;
  }
  svc_err_t rc = SVC_OK;
  char *line = NULL;
  size_t cap = 0;
  int lineno = 0;
  while (getline(&line, &cap, f) != -1) {
    lineno++;
    /* Cut the comment: a '#' outside double quotes. */
    bool in_q = false;
    for (char *p = line; *p != '\0'; p++) {
      if (*p == '\\' && in_q && p[1] != '\0') { p++; continue; }
      if (*p == '"') in_q = !in_q;
      else if (*p == '#' && !in_q) { *p = '\0'; break; }
    }
    char *s = trim(line);
    if (*s == '\0') continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      set_err(errstr, errstr_size, "config file %s:%d: expected 'name = value', got \"%s\"",
              path, lineno, s);
      rc = SVC_ECONFIG;
      goto done;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    size_t vlen = strlen(val);
    if (vlen >= 1 && val[0] == '"') {
      if (vlen < 2 || val[vlen - 1] != '"') {
        set_err(errstr, errstr_size, "config file %s:%d: setting '%s': unterminated quoted value",
                path, lineno, key);
        rc = SVC_ECONFIG;
        goto done;
      }
      val[vlen - 1] = '\0';
      val++;
      /* Undo \" and \\ in place. */
      char *w = val;
      for (char *r = val; *r != '\0'; r++) {
        if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) r++;
        *w++ = *r;
      }
      *w = '\0';
    }
    size_t i = 0;
    while (i < cfg->n && strcmp(cfg->defs[i].name, key) != 0) i++;
    if (i == cfg->n) {
      char sug[160];
      const char *s2 = suggest(cfg, key, false, sug, sizeof sug);
      if (s2 != NULL)
        set_err(errstr, errstr_size, "config file %s:%d: unknown setting '%s' (did you mean '%s'?)",
                path, lineno, key, s2);
      else
        set_err(errstr, errstr_size, "config file %s:%d: unknown setting '%s'", path, lineno, key);
      rc = SVC_ECONFIG;
      goto done;
    }
    if (slots[i].src == SRC_FILE) {
      set_err(errstr, errstr_size, "config file %s:%d: setting '%s' is already set on line %d",
              path, lineno, key, slots[i].line);
      rc = SVC_ECONFIG;
      goto done;
    }
    char where[600];
    snprintf(where, sizeof where, "config file %s:%d", path, lineno);
    rc = apply_text(cfg, slots, i, val, SRC_FILE, lineno, where, errstr, errstr_size);
    if (rc != SVC_OK) goto done;
  }
  if (ferror(f)) {
    set_err(errstr, errstr_size, "config file %s: read error", path);
    rc = SVC_EIO;
  }
done:
  free(line);
  fclose(f);
  return rc;
}

/* Defaults, then file, then environment, then the remembered flags, into fresh slots. */
static svc_err_t build(const svc_cfg_t *cfg, slot_t **out, char *errstr, size_t errstr_size) {
  slot_t *slots = slots_new(cfg);
  svc_err_t rc = SVC_OK;
  for (size_t i = 0; i < cfg->n; i++) {
    if (cfg->defs[i].def == NULL) continue;
    char where[200];
    snprintf(where, sizeof where, "default of the configuration table");
    rc = apply_text(cfg, slots, i, cfg->defs[i].def, SRC_DEFAULT, 0, where, errstr, errstr_size);
    if (rc != SVC_OK) goto fail;
  }
  const char *path = cfg->config_path;
  if (path == NULL && cfg->config_env != NULL) {
    const char *e = getenv(cfg->config_env);
    if (e != NULL && e[0] != '\0') path = e;
  }
  if (path != NULL) {
    rc = read_file(cfg, slots, path, errstr, errstr_size);
    if (rc != SVC_OK) goto fail;
  }
  for (size_t i = 0; i < cfg->n; i++) {
    if (cfg->defs[i].env == NULL) continue;
    const char *e = getenv(cfg->defs[i].env);
    if (e == NULL) continue;
    char where[200];
    snprintf(where, sizeof where, "environment variable %s", cfg->defs[i].env);
    rc = apply_text(cfg, slots, i, e, SRC_ENV, 0, where, errstr, errstr_size);
    if (rc != SVC_OK) goto fail;
  }
  for (size_t k = 0; k < cfg->n_flags; k++) {
    char where[200];
    snprintf(where, sizeof where, "flag %s", cfg->flags[k].flag);
    rc = apply_text(cfg, slots, cfg->flags[k].idx, cfg->flags[k].text, SRC_FLAG, 0, where, errstr,
                    errstr_size);
    if (rc != SVC_OK) goto fail;
  }
  for (size_t i = 0; i < cfg->n; i++) {
    if (slots[i].src != SRC_NONE) continue;
    if (cfg->defs[i].flags & SVC_CFG_REQUIRED) {
      char fl[128];
      flag_name(cfg->defs[i].name, fl, sizeof fl);
      char env[160] = "";
      if (cfg->defs[i].env != NULL) snprintf(env, sizeof env, ", environment variable %s", cfg->defs[i].env);
      set_err(errstr, errstr_size,
              "setting '%s' is required but not set: give --%s%s, or '%s = ...' in the config file",
              cfg->defs[i].name, fl, env, cfg->defs[i].name);
      rc = SVC_ECONFIG;
      goto fail;
    }
  }
  *out = slots;
  return SVC_OK;
fail:
  slots_free(cfg, slots);
  return rc;
}

static bool same_value(const svc_cfg_def_t *d, const svc_cfg_val_t *a, const svc_cfg_val_t *b) {
  switch (d->type) {
  case SVC_CFG_STRING:
    if (a->s == NULL || b->s == NULL) return a->s == b->s;
    return strcmp(a->s, b->s) == 0;
  case SVC_CFG_DOUBLE: return a->d == b->d;
  case SVC_CFG_BOOL: return a->b == b->b;
  default: return a->i == b->i;
  }
}

static void write_target(const svc_cfg_t *cfg, size_t i) {
  const svc_cfg_def_t *d = &cfg->defs[i];
  char *field = (char *)cfg->target + d->offset;
  const svc_cfg_val_t *v = &cfg->cur[i].v;
  switch (d->type) {
  case SVC_CFG_STRING: memcpy(field, &v->s, sizeof v->s); break;
  case SVC_CFG_DOUBLE: memcpy(field, &v->d, sizeof v->d); break;
  case SVC_CFG_BOOL: memcpy(field, &v->b, sizeof v->b); break;
  case SVC_CFG_ENUM: { int x = (int)v->i; memcpy(field, &x, sizeof x); break; }
  default: memcpy(field, &v->i, sizeof v->i); break;
  }
}

/* ---- public API ------------------------------------------------------------ */

svc_err_t svc_cfg_new(svc_cfg_t **out, const char *prog, const char *summary,
                      const svc_cfg_def_t *defs, void *target, const char *config_env,
                      char *errstr, size_t errstr_size) {
  *out = NULL;
  svc_cfg_t *cfg = calloc(1, sizeof *cfg);
  if (cfg == NULL) return SVC_ENOMEM;
  cfg->prog = prog;
  cfg->summary = summary;
  cfg->defs = defs;
  cfg->target = target;
  cfg->config_env = config_env;
  while (defs[cfg->n].name != NULL) cfg->n++;
  /* Check the table itself: every default must parse, enum rows need values. */
  slot_t *probe = NULL;
  for (size_t i = 0; i < cfg->n; i++) {
    if (defs[i].type == SVC_CFG_ENUM && (defs[i].values == NULL || defs[i].values[0] == NULL)) {
      set_err(errstr, errstr_size, "configuration table: enum setting '%s' has no values", defs[i].name);
      goto fail;
    }
    for (size_t j = 0; j < i; j++) {
      if (strcmp(defs[i].name, defs[j].name) == 0) {
        set_err(errstr, errstr_size, "configuration table: setting '%s' appears twice", defs[i].name);
        goto fail;
      }
    }
  }
  probe = slots_new(cfg);
  for (size_t i = 0; i < cfg->n; i++) {
    if (defs[i].def == NULL) continue;
    if (apply_text(cfg, probe, i, defs[i].def, SRC_DEFAULT, 0, "default of the configuration table",
                   errstr, errstr_size) != SVC_OK)
      goto fail;
  }
  slots_free(cfg, probe);
  *out = cfg;
  return SVC_OK;
fail:
  slots_free(cfg, probe);
  free(cfg);
  return SVC_ECONFIG;
}

static void flags_clear(svc_cfg_t *cfg) {
  for (size_t k = 0; k < cfg->n_flags; k++) {
    free(cfg->flags[k].text);
    free(cfg->flags[k].flag);
  }
  free(cfg->flags);
  cfg->flags = NULL;
  cfg->n_flags = 0;
  free(cfg->config_path);
  cfg->config_path = NULL;
}

void svc_cfg_free(svc_cfg_t *cfg) {
  if (cfg == NULL) return;
  slots_free(cfg, cfg->cur);
  flags_clear(cfg);
  free(cfg);
}

bool svc_cfg_help_requested(const svc_cfg_t *cfg) { return cfg->help; }

static svc_err_t parse_flags(svc_cfg_t *cfg, int argc, char *const *argv, char *errstr,
                             size_t errstr_size) {
  cfg->flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof *cfg->flags);
  if (cfg->flags == NULL) abort();
  for (int a = 1; a < argc; a++) {
    const char *arg = argv[a];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      cfg->help = true;
      continue;
    }
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
      set_err(errstr, errstr_size, "unexpected argument \"%s\": settings are given as --name=value (see --help)", arg);
      return SVC_ECONFIG;
    }
    char name[128];
    const char *eq = strchr(arg + 2, '=');
    size_t nlen = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
    if (nlen >= sizeof name) nlen = sizeof name - 1;
    memcpy(name, arg + 2, nlen);
    name[nlen] = '\0';
    const char *value = eq ? eq + 1 : NULL;
    size_t i = 0;
    char fl[128];
    bool is_config = strcmp(name, "config") == 0;
    if (!is_config) {
      /* --batch.wait, --batch_wait and --batch-wait all name "batch.wait". */
      char norm[128];
      flag_name(name, norm, sizeof norm);
      for (; i < cfg->n; i++) {
        flag_name(cfg->defs[i].name, fl, sizeof fl);
        if (strcmp(fl, norm) == 0) break;
      }
      if (i == cfg->n) {
        char sug[160];
        const char *s = suggest(cfg, name, true, sug, sizeof sug);
        if (s == NULL && edit_distance(name, "config") <= 2) s = "--config";
        if (s != NULL) set_err(errstr, errstr_size, "unknown flag --%s (did you mean %s?)", name, s);
        else set_err(errstr, errstr_size, "unknown flag --%s (see --help)", name);
        return SVC_ECONFIG;
      }
    }
    if (value == NULL) {
      if (!is_config && cfg->defs[i].type == SVC_CFG_BOOL) {
        value = "true";
      } else if (a + 1 < argc && strncmp(argv[a + 1], "--", 2) != 0) {
        value = argv[++a];
      } else {
        set_err(errstr, errstr_size, "flag --%s needs a value", name);
        return SVC_ECONFIG;
      }
    }
    if (is_config) {
      free(cfg->config_path);
      cfg->config_path = xstrdup(value);
      continue;
    }
    char full[140];
    snprintf(full, sizeof full, "--%s", name);
    cfg->flags[cfg->n_flags].idx = i;
    cfg->flags[cfg->n_flags].text = xstrdup(value);
    cfg->flags[cfg->n_flags].flag = xstrdup(full);
    cfg->n_flags++;
  }
  return SVC_OK;
}

svc_err_t svc_cfg_load(svc_cfg_t *cfg, int argc, char *const *argv, char *errstr,
                       size_t errstr_size) {
  flags_clear(cfg);
  cfg->help = false;
  svc_err_t rc = parse_flags(cfg, argc, argv, errstr, errstr_size);
  if (cfg->help) return SVC_OK;
  if (rc != SVC_OK) return rc;
  slot_t *slots = NULL;
  rc = build(cfg, &slots, errstr, errstr_size);
  if (rc != SVC_OK) return rc;
  slots_free(cfg, cfg->cur);
  cfg->cur = slots;
  for (size_t i = 0; i < cfg->n; i++)
    if (cfg->cur[i].src != SRC_NONE) write_target(cfg, i);
  return SVC_OK;
}

svc_err_t svc_cfg_reload(svc_cfg_t *cfg, int *n_changed, char *errstr, size_t errstr_size) {
  if (n_changed != NULL) *n_changed = 0;
  if (cfg->cur == NULL) {
    set_err(errstr, errstr_size, "configuration reloaded before it was loaded");
    return SVC_ESTATE;
  }
  slot_t *next = NULL;
  svc_err_t rc = build(cfg, &next, errstr, errstr_size);
  if (rc != SVC_OK) return rc;
  int changed = 0;
  for (size_t i = 0; i < cfg->n; i++) {
    const svc_cfg_def_t *d = &cfg->defs[i];
    if (same_value(d, &cfg->cur[i].v, &next[i].v)) {
      /* Unchanged: keep the old string, so that pointers to it stay valid (as documented). */
      if (d->type == SVC_CFG_STRING) {
        const char *keep = cfg->cur[i].v.s;
        cfg->cur[i].v.s = next[i].v.s;
        next[i].v.s = keep;
      }
      continue;
    }
    if (!(d->flags & SVC_CFG_RELOADABLE)) {
      set_err(errstr, errstr_size,
              "setting '%s' cannot change while running (now from %s): restart the service to change it",
              d->name, src_names[next[i].src]);
      slots_free(cfg, next);
      return SVC_ECONFIG;
    }
    changed++;
  }
  slots_free(cfg, cfg->cur);
  cfg->cur = next;
  for (size_t i = 0; i < cfg->n; i++)
    if (cfg->cur[i].src != SRC_NONE) write_target(cfg, i);
  if (n_changed != NULL) *n_changed = changed;
  return SVC_OK;
}

static const char *type_word(const svc_cfg_def_t *d) {
  switch (d->type) {
  case SVC_CFG_STRING: return "string";
  case SVC_CFG_INT: return "int";
  case SVC_CFG_DOUBLE: return "number";
  case SVC_CFG_BOOL: return "bool";
  case SVC_CFG_ENUM: return "enum";
  case SVC_CFG_DURATION: return "duration";
  case SVC_CFG_SIZE: return "size";
  }
  return "?";
}

void svc_cfg_print_help(const svc_cfg_t *cfg, FILE *out) {
  fprintf(out, "Usage: %s [--config FILE] [--setting=value ...]\n", cfg->prog);
  if (cfg->summary != NULL) fprintf(out, "%s\n", cfg->summary);
  fprintf(out, "\nPrecedence: flags > environment > config file > default.\n");
  fprintf(out, "\n  --config FILE\n      Read 'name = value' lines from FILE ('#' comments).");
  if (cfg->config_env != NULL) fprintf(out, " Env %s.", cfg->config_env);
  fprintf(out, "\n  --help\n      Print this text and exit.\n");
  for (size_t i = 0; i < cfg->n; i++) {
    const svc_cfg_def_t *d = &cfg->defs[i];
    char fl[128], expected[512];
    flag_name(d->name, fl, sizeof fl);
    fprintf(out, "  --%s <%s>\n      %s\n", fl, type_word(d), d->help ? d->help : "");
    expected_text(d, expected, sizeof expected);
    fprintf(out, "      Expects %s. File key %s", expected, d->name);
    if (d->env != NULL) fprintf(out, "; env %s", d->env);
    if (d->def != NULL) fprintf(out, "; default \"%s\"", d->def);
    if (d->flags & SVC_CFG_REQUIRED) fprintf(out, "; required");
    fprintf(out, "; %s.\n", (d->flags & SVC_CFG_RELOADABLE) ? "reloadable" : "fixed at start");
  }
}

void svc_cfg_dump(const svc_cfg_t *cfg, FILE *out) {
  for (size_t i = 0; i < cfg->n; i++) {
    const svc_cfg_def_t *d = &cfg->defs[i];
    const slot_t *s = cfg->cur != NULL ? &cfg->cur[i] : NULL;
    char val[512];
    if (s == NULL || s->src == SRC_NONE) snprintf(val, sizeof val, "(unset)");
    else if (d->flags & SVC_CFG_SECRET) snprintf(val, sizeof val, "(secret)");
    else switch (d->type) {
      case SVC_CFG_STRING: snprintf(val, sizeof val, "\"%s\"", s->v.s); break;
      case SVC_CFG_INT: snprintf(val, sizeof val, "%lld", (long long)s->v.i); break;
      case SVC_CFG_DOUBLE: snprintf(val, sizeof val, "%g", s->v.d); break;
      case SVC_CFG_BOOL: snprintf(val, sizeof val, "%s", s->v.b ? "true" : "false"); break;
      case SVC_CFG_ENUM: snprintf(val, sizeof val, "%s", d->values[s->v.i]); break;
      case SVC_CFG_DURATION: format_duration(s->v.i, val, sizeof val); break;
      case SVC_CFG_SIZE: format_size(s->v.i, val, sizeof val); break;
      }
    fprintf(out, "%s = %s  # %s\n", d->name, val, src_names[s ? s->src : SRC_NONE]);
  }
}

int svc_cfg_main(svc_cfg_t **out, const char *prog, const char *summary,
                 const svc_cfg_def_t *defs, void *target, const char *config_env, int argc,
                 char *const *argv) {
  char err[1024];
  svc_cfg_t *cfg = NULL;
  *out = NULL;
  if (svc_cfg_new(&cfg, prog, summary, defs, target, config_env, err, sizeof err) != SVC_OK ||
      svc_cfg_load(cfg, argc, argv, err, sizeof err) != SVC_OK) {
    fprintf(stderr, "%s: %s\n", prog, err);
    svc_cfg_free(cfg);
    return 2;
  }
  if (svc_cfg_help_requested(cfg)) {
    svc_cfg_print_help(cfg, stdout);
    svc_cfg_free(cfg);
    return 0;
  }
  *out = cfg;
  return -1;
}
