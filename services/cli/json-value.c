/* The JSON reader of json-value.h: a recursive-descent parser into owned cli_jv_t trees. */
#include "json-value.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct jp_s {
  const char *s;
  size_t len, pos;
  char *errstr;
  size_t errstr_size;
} jp_t;

static int jp_fail(jp_t *p, const char *what) {
  return cli__fail(CLI_EFORMAT, p->errstr, p->errstr_size, "byte %zu: %s", p->pos, what);
}

static void jp_ws(jp_t *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int jp_hex4(jp_t *p, unsigned *out) {
  if (p->len - p->pos < 4) return jp_fail(p, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return jp_fail(p, "bad hex digit in \\u escape");
  }
  *out = v;
  return CLI_OK;
}

static size_t utf8_put(char *d, unsigned cp) {
  if (cp < 0x80) { d[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    d[0] = (char)(0xC0 | (cp >> 6));
    d[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | (cp >> 12));
    d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (char)(0xF0 | (cp >> 18));
  d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  d[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* At the opening quote. The decoded string is never longer than its escaped form. */
static int jp_string(jp_t *p, char **out, size_t *n_out) {
  p->pos++;
  size_t start = p->pos;
  while (p->pos < p->len && p->s[p->pos] != '"') p->pos += p->s[p->pos] == '\\' ? 2 : 1;
  if (p->pos >= p->len) {
    p->pos = start;
    return jp_fail(p, "unterminated string");
  }
  size_t end = p->pos;
  char *d = malloc(end - start + 1);
  if (d == NULL) return CLI_ENOMEM;
  size_t n = 0;
  p->pos = start;
  while (p->pos < end) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c < 0x20) {
      free(d);
      return jp_fail(p, "control character in string");
    }
    if (c != '\\') {
      d[n++] = (char)c;
      p->pos++;
      continue;
    }
    p->pos++;
    char e = p->s[p->pos++];
    switch (e) {
    case '"': d[n++] = '"'; break;
    case '\\': d[n++] = '\\'; break;
    case '/': d[n++] = '/'; break;
    case 'b': d[n++] = '\b'; break;
    case 'f': d[n++] = '\f'; break;
    case 'n': d[n++] = '\n'; break;
    case 'r': d[n++] = '\r'; break;
    case 't': d[n++] = '\t'; break;
    case 'u': {
      unsigned cp, lo;
      int rc = jp_hex4(p, &cp);
      if (rc == CLI_OK && cp >= 0xD800 && cp < 0xDC00) {
        if (p->pos + 2 > end || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
          rc = jp_fail(p, "unpaired surrogate in \\u escape");
        } else {
          p->pos += 2;
          rc = jp_hex4(p, &lo);
          if (rc == CLI_OK && (lo < 0xDC00 || lo > 0xDFFF))
            rc = jp_fail(p, "bad low surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
      } else if (rc == CLI_OK && cp >= 0xDC00 && cp < 0xE000) {
        rc = jp_fail(p, "unpaired surrogate in \\u escape");
      }
      if (rc != CLI_OK) {
        free(d);
        return rc;
      }
      n += utf8_put(d + n, cp);
      break;
    }
    default:
      free(d);
      p->pos--;
      return jp_fail(p, "bad escape in string");
    }
  }
  d[n] = '\0';
  p->pos = end + 1;
  *out = d;
  *n_out = n;
  return CLI_OK;
}

static int jp_number(jp_t *p, double *out) {
  size_t i = p->pos;
  if (i < p->len && p->s[i] == '-') i++;
  if (i >= p->len || p->s[i] < '0' || p->s[i] > '9') return jp_fail(p, "expected a value");
  if (p->s[i] == '0' && i + 1 < p->len && p->s[i + 1] >= '0' && p->s[i + 1] <= '9')
    return jp_fail(p, "leading zero in number");
  while (i < p->len && ((p->s[i] >= '0' && p->s[i] <= '9') || p->s[i] == '.' ||
                        p->s[i] == 'e' || p->s[i] == 'E' || p->s[i] == '+' || p->s[i] == '-'))
    i++;
  char buf[64];
  if (i - p->pos >= sizeof(buf)) return jp_fail(p, "number too long");
  memcpy(buf, p->s + p->pos, i - p->pos);
  buf[i - p->pos] = '\0';
  char *end;
  errno = 0;
  double v = strtod(buf, &end);
  if (*end != '\0' || !isfinite(v)) return jp_fail(p, "malformed number");
  p->pos = i;
  *out = v;
  return CLI_OK;
}

static int jp_value(jp_t *p, cli_jv_t *v, int depth);

/* Appends one slot to an array or object under construction. */
static int jv_grow(cli_jv_t *v, size_t *cap, int with_keys) {
  if (v->n < *cap) return CLI_OK;
  size_t nc = *cap ? *cap * 2 : 4;
  cli_jv_t *it = realloc(v->items, nc * sizeof(*it));
  if (it == NULL) return CLI_ENOMEM;
  v->items = it;
  if (with_keys) {
    char **k = realloc(v->keys, nc * sizeof(*k));
    if (k == NULL) return CLI_ENOMEM;
    v->keys = k;
  }
  *cap = nc;
  return CLI_OK;
}

static int jp_container(jp_t *p, cli_jv_t *v, int depth, int is_obj) {
  size_t cap = 0;
  v->kind = is_obj ? CLI_JV_OBJ : CLI_JV_ARR;
  p->pos++;
  jp_ws(p);
  if (p->pos < p->len && p->s[p->pos] == (is_obj ? '}' : ']')) {
    p->pos++;
    return CLI_OK;
  }
  for (;;) {
    int rc = jv_grow(v, &cap, is_obj);
    if (rc != CLI_OK) return rc;
    if (is_obj) {
      jp_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != '"') return jp_fail(p, "expected a key string");
      char *key;
      size_t kn;
      size_t kpos = p->pos;
      if ((rc = jp_string(p, &key, &kn)) != CLI_OK) return rc;
      for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) {
          free(key);
          p->pos = kpos;
          return jp_fail(p, "duplicate key");
        }
      v->keys[v->n] = key;
      jp_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') {
        free(key);
        return jp_fail(p, "expected ':'");
      }
      p->pos++;
      if ((rc = jp_value(p, &v->items[v->n], depth + 1)) != CLI_OK) {
        free(key);
        return rc;
      }
    } else if ((rc = jp_value(p, &v->items[v->n], depth + 1)) != CLI_OK) {
      return rc;
    }
    v->n++;
    jp_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == (is_obj ? '}' : ']')) {
      p->pos++;
      return CLI_OK;
    }
    return jp_fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int jp_value(jp_t *p, cli_jv_t *v, int depth) {
  memset(v, 0, sizeof(*v));
  if (depth > CLI_JV_MAX_DEPTH) return jp_fail(p, "nested too deeply");
  jp_ws(p);
  if (p->pos >= p->len) return jp_fail(p, "expected a value, found the end");
  char c = p->s[p->pos];
  if (c == '{' || c == '[') {
    int rc = jp_container(p, v, depth, c == '{');
    if (rc != CLI_OK) {
      cli_jv_free(v);
      memset(v, 0, sizeof(*v));
    }
    return rc;
  }
  if (c == '"') {
    v->kind = CLI_JV_STR;
    return jp_string(p, &v->str, &v->n);
  }
  static const struct { const char *word; cli_jv_kind_t kind; int b; } lit[] = {
      {"true", CLI_JV_BOOL, 1}, {"false", CLI_JV_BOOL, 0}, {"null", CLI_JV_NULL, 0}};
  for (size_t i = 0; i < sizeof(lit) / sizeof(lit[0]); i++) {
    size_t wl = strlen(lit[i].word);
    if (p->len - p->pos >= wl && memcmp(p->s + p->pos, lit[i].word, wl) == 0) {
      v->kind = lit[i].kind;
      v->b = lit[i].b;
      p->pos += wl;
      return CLI_OK;
    }
  }
  v->kind = CLI_JV_NUM;
  return jp_number(p, &v->num);
}

int cli_jv_parse(const char *text, size_t len, cli_jv_t *out, char *errstr, size_t errstr_size) {
  jp_t p = {text, len, 0, errstr, errstr_size};
  int rc = jp_value(&p, out, 0);
  if (rc != CLI_OK) return rc;
  jp_ws(&p);
  if (p.pos != len) {
    cli_jv_free(out);
    memset(out, 0, sizeof(*out));
    return jp_fail(&p, "text after the JSON value");
  }
  return CLI_OK;
}

void cli_jv_free(cli_jv_t *v) {
  if (v == NULL) return;
  free(v->str);
  if (v->kind == CLI_JV_ARR || v->kind == CLI_JV_OBJ) {
    for (size_t i = 0; i < v->n; i++) {
      cli_jv_free(&v->items[i]);
      if (v->keys) free(v->keys[i]);
    }
  }
  free(v->items);
  free(v->keys);
  memset(v, 0, sizeof(*v));
}

const cli_jv_t *cli_jv_get(const cli_jv_t *v, const char *key) {
  if (v == NULL || v->kind != CLI_JV_OBJ) return NULL;
  for (size_t i = 0; i < v->n; i++)
    if (strcmp(v->keys[i], key) == 0) return &v->items[i];
  return NULL;
}

const char *cli_jv_str(const cli_jv_t *v, const char *dflt) {
  return v != NULL && v->kind == CLI_JV_STR ? v->str : dflt;
}

double cli_jv_num(const cli_jv_t *v, double dflt) {
  return v != NULL && v->kind == CLI_JV_NUM ? v->num : dflt;
}

int cli_jv_bool(const cli_jv_t *v, int dflt) {
  return v != NULL && v->kind == CLI_JV_BOOL ? v->b : dflt;
}

void cli_jv_emit(cli_json_t *js, const cli_jv_t *v) {
  switch (v->kind) {
  case CLI_JV_NULL:
    /* The writer prints null for non-finite numbers. */
    cli_json_num(js, NAN);
    break;
  case CLI_JV_BOOL: cli_json_bool(js, v->b); break;
  case CLI_JV_NUM: cli_json_num(js, v->num); break;
  case CLI_JV_STR: cli_json_str(js, v->str); break;
  case CLI_JV_ARR:
    cli_json_arr_begin(js);
    for (size_t i = 0; i < v->n; i++) cli_jv_emit(js, &v->items[i]);
    cli_json_arr_end(js);
    break;
  case CLI_JV_OBJ:
    cli_json_obj_begin(js);
    for (size_t i = 0; i < v->n; i++) {
      cli_json_key(js, v->keys[i]);
      cli_jv_emit(js, &v->items[i]);
    }
    cli_json_obj_end(js);
    break;
  }
}

void cli_jv_print(FILE *out, const cli_jv_t *v) {
  cli_json_t js;
  cli_json_init(&js, out);
  /* Depth 1 so that closing the outermost container does not end the line. */
  js.depth = 1;
  js.need_comma[1] = 0;
  cli_jv_emit(&js, v);
}
