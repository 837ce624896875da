/*
 * A strict RFC 8259 JSON parser into a DOM held in one chunked arena, typed getters that name
 * the offending path in their errors, and a compact JSON writer. See json.h for the contract.
 *
 * The parser is recursive descent with an explicit depth limit. Children of the container being
 * parsed are collected on one shared scratch stack and copied into the arena when the container
 * closes, so arrays and objects are plain pointer arrays without per-item allocations. Numbers
 * are converted in the C locale (strtod_l), so a host's setlocale() cannot change what a model
 * file means.
 */
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "io/json.h"

/* Beyond this even a caller-provided max_depth is clamped, to bound the C stack. */
#define JSON_HARD_MAX_DEPTH 1024
#define ARENA_MIN_CHUNK ((size_t)16 << 10)
#define ARENA_ALIGN (alignof(max_align_t))

/* ---- C locale ------------------------------------------------------------ */

static pthread_once_t g_c_locale_once = PTHREAD_ONCE_INIT;
static locale_t g_c_locale;

static void c_locale_init(void) { g_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static locale_t c_locale(void) {
  pthread_once(&g_c_locale_once, c_locale_init);
  return g_c_locale;
}

static double strtod_c(const char *s, char **end) {
  locale_t loc = c_locale();
  /* newlocale("C") cannot really fail on glibc; strtod is the fallback. */
  return loc != (locale_t)0 ? strtod_l(s, end, loc) : strtod(s, end);
}

/* ---- arena --------------------------------------------------------------- */

typedef struct arena_chunk_s {
  struct arena_chunk_s *next;
  size_t used, cap;
  alignas(max_align_t) unsigned char data[];
} arena_chunk_t;

struct moe_json_doc_s {
  arena_chunk_t *chunks;
  moe_json_t *root;
};

static void *arena_alloc(moe_json_doc_t *doc, size_t size) {
  size = (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
  arena_chunk_t *c = doc->chunks;
  if (c == NULL || c->cap - c->used < size) {
    size_t cap = size > ARENA_MIN_CHUNK ? size : ARENA_MIN_CHUNK;
    if (c != NULL && c->cap * 2 > cap && c->cap < ((size_t)4 << 20)) cap = c->cap * 2;
    if (cap > SIZE_MAX - sizeof(arena_chunk_t)) return NULL;
    arena_chunk_t *n = moe__malloc(sizeof(arena_chunk_t) + cap);
    if (n == NULL) return NULL;
    n->next = c;
    n->used = 0;
    n->cap = cap;
    doc->chunks = n;
    c = n;
  }
  void *p = c->data + c->used;
  c->used += size;
  return p;
}

void moe_json_free(moe_json_doc_t *doc) {
  if (doc == NULL) return;
  arena_chunk_t *c = doc->chunks;
  while (c != NULL) {
    arena_chunk_t *next = c->next;
    moe__free(c);
    c = next;
  }
  moe__free(doc);
}

const moe_json_t *moe_json_root(const moe_json_doc_t *doc) { return doc->root; }

/* ---- UTF-8 ----------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes available), or 0 when it is invalid:
 * overlong forms, surrogates (U+D800..U+DFFF) and code points above U+10FFFF are rejected.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return len;
}

static size_t utf8_encode(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Copies up to 48 bytes of s into buf for a message, escaping everything but printable ASCII. */
static const char *msg_str(char *buf, size_t size, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (o + 8 >= size || i >= 48) {
      memcpy(buf + o, "...", 4);
      return buf;
    }
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      buf[o++] = (char)c;
    } else {
      o += (size_t)snprintf(buf + o, size - o, "\\x%02X", c);
    }
  }
  buf[o] = '\0';
  return buf;
}

/* ---- parser -------------------------------------------------------------- */

typedef struct parser_s {
  const char *p, *end;
  const char *line_start;
  uint32_t line;
  size_t depth, max_depth;
  moe_json_doc_t *doc;
  moe_err_t err;
  char *errstr;
  size_t errstr_size;
  void **stack; /* children of the open containers */
  size_t stack_n, stack_cap;
} parser_t;

static uint32_t col_of(const parser_t *ps, const char *at) {
  return (uint32_t)(at - ps->line_start) + 1;
}

__attribute__((format(printf, 4, 5))) static void fail_at(parser_t *ps, moe_err_t err,
                                                          const char *at, const char *fmt, ...) {
  if (ps->err != MOE_OK) return;
  ps->err = err;
  if (ps->errstr == NULL || ps->errstr_size == 0) return;
  int n = snprintf(ps->errstr, ps->errstr_size, "line %" PRIu32 " col %" PRIu32 ": ", ps->line,
                   col_of(ps, at));
  if (n < 0 || (size_t)n >= ps->errstr_size) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ps->errstr + n, ps->errstr_size - (size_t)n, fmt, ap);
  va_end(ap);
}

static void fail_oom(parser_t *ps) {
  if (ps->err != MOE_OK) return;
  ps->err = MOE_ENOMEM;
  if (ps->errstr != NULL && ps->errstr_size > 0)
    snprintf(ps->errstr, ps->errstr_size, "out of memory while parsing JSON");
}

/* Describes the byte at p for "got ..." messages. */
static const char *got(const parser_t *ps, const char *p, char *buf, size_t size) {
  if (p >= ps->end) return "end of input";
  unsigned char c = (unsigned char)*p;
  if (c >= 0x21 && c < 0x7F)
    snprintf(buf, size, "'%c'", c);
  else
    snprintf(buf, size, "byte 0x%02X", c);
  return buf;
}

static void skip_ws(parser_t *ps) {
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (c == ' ' || c == '\t' || c == '\r') {
      ps->p++;
    } else if (c == '\n') {
      ps->p++;
      ps->line++;
      ps->line_start = ps->p;
    } else {
      break;
    }
  }
}

static moe_json_t *new_value(parser_t *ps, moe_json_type_t type, const char *at) {
  moe_json_t *v = arena_alloc(ps->doc, sizeof *v);
  if (v == NULL) {
    fail_oom(ps);
    return NULL;
  }
  memset(v, 0, sizeof *v);
  v->type = type;
  v->line = ps->line;
  v->col = col_of(ps, at);
  return v;
}

static int stack_push(parser_t *ps, void *item) {
  if (ps->stack_n == ps->stack_cap) {
    size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 64;
    void **s = moe__reallocarray(ps->stack, cap, sizeof *s);
    if (s == NULL) {
      fail_oom(ps);
      return -1;
    }
    ps->stack = s;
    ps->stack_cap = cap;
  }
  ps->stack[ps->stack_n++] = item;
  return 0;
}

/* Moves the top n stack entries into an arena array. */
static void **stack_pop_to_arena(parser_t *ps, size_t n) {
  void **a = arena_alloc(ps->doc, (n ? n : 1) * sizeof *a);
  if (a == NULL) {
    fail_oom(ps);
    return NULL;
  }
  if (n) memcpy(a, ps->stack + ps->stack_n - n, n * sizeof *a);
  ps->stack_n -= n;
  return a;
}

static int hex4(const char *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (uint32_t)(c - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/*
 * Parses the string literal at ps->p (which is '"') into arena memory. Decoding never grows
 * the text (an escape of n bytes yields at most n bytes of UTF-8), so the raw length bounds
 * the output.
 */
static int parse_string(parser_t *ps, const char **out, size_t *out_len) {
  const char *open = ps->p;
  const char *p = open + 1;
  /* First pass: find the closing quote (validation happens in the second pass). */
  const char *q = p;
  while (q < ps->end && *q != '"') {
    if (*q == '\\' && q + 1 < ps->end) q++;
    q++;
  }
  if (q >= ps->end) {
    fail_at(ps, MOE_EDATA, open, "unterminated string");
    return -1;
  }
  char *buf = arena_alloc(ps->doc, (size_t)(q - p) + 1);
  if (buf == NULL) {
    fail_oom(ps);
    return -1;
  }
  size_t o = 0;
  while (p < q) {
    unsigned char c = (unsigned char)*p;
    if (c == '\\') {
      const char *esc = p;
      char e = p[1]; /* p + 1 < q: the first pass skipped the escaped byte */
      p += 2;
      switch (e) {
      case '"': buf[o++] = '"'; break;
      case '\\': buf[o++] = '\\'; break;
      case '/': buf[o++] = '/'; break;
      case 'b': buf[o++] = '\b'; break;
      case 'f': buf[o++] = '\f'; break;
      case 'n': buf[o++] = '\n'; break;
      case 'r': buf[o++] = '\r'; break;
      case 't': buf[o++] = '\t'; break;
      case 'u': {
        uint32_t cp;
        if (q - p < 4 || hex4(p, &cp) != 0) {
          fail_at(ps, MOE_EDATA, esc, "invalid \\u escape (expected 4 hex digits)");
          return -1;
        }
        p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail_at(ps, MOE_EDATA, esc, "lone low surrogate \\u%04" PRIX32 " in string", cp);
          return -1;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t lo;
          if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 ||
              lo < 0xDC00 || lo > 0xDFFF) {
            fail_at(ps, MOE_EDATA, esc,
                    "high surrogate \\u%04" PRIX32 " not followed by a low surrogate \\uDC00-\\uDFFF",
                    cp);
            return -1;
          }
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        o += utf8_encode(cp, buf + o);
        break;
      }
      default: {
        char gb[16];
        fail_at(ps, MOE_EDATA, esc, "invalid escape '\\%s' in string",
                (unsigned char)e >= 0x21 && (unsigned char)e < 0x7F
                    ? (snprintf(gb, sizeof gb, "%c", e), gb)
                    : (snprintf(gb, sizeof gb, "x%02X", (unsigned char)e), gb));
        return -1;
      }
      }
    } else if (c < 0x20) {
      fail_at(ps, MOE_EDATA, p, "control character 0x%02X in string (must be escaped)", c);
      return -1;
    } else if (c < 0x80) {
      buf[o++] = (char)c;
      p++;
    } else {
      size_t n = utf8_seq_len((const unsigned char *)p, (size_t)(q - p));
      if (n == 0) {
        fail_at(ps, MOE_EDATA, p, "invalid UTF-8 byte 0x%02X in string", c);
        return -1;
      }
      memcpy(buf + o, p, n);
      o += n;
      p += n;
    }
  }
  buf[o] = '\0';
  ps->p = q + 1;
  *out = buf;
  *out_len = o;
  return 0;
}

/* Powers of ten that doubles hold exactly (10^22 is the last). */
static const double g_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static moe_json_t *parse_number(parser_t *ps) {
  const char *start = ps->p, *p = ps->p, *end = ps->end;
  bool neg = false, integral = true;
  if (*p == '-') {
    neg = true;
    p++;
  }
  if (p >= end || *p < '0' || *p > '9') {
    fail_at(ps, MOE_EDATA, p, "expected a digit after '-'");
    return NULL;
  }
  if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9') {
    fail_at(ps, MOE_EDATA, p, "leading zeros are not allowed in numbers");
    return NULL;
  }
  /* Exact int64 accumulation, as a negative value so that INT64_MIN fits. */
  int64_t acc = 0;
  bool fits = true;
  /* The significant digits as an integer, for the exact fast path below. */
  uint64_t mant = 0;
  int mant_digits = 0, frac_digits = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    int d = *p - '0';
    if (acc < (INT64_MIN + d) / 10) fits = false;
    if (fits) acc = acc * 10 - d;
    if (mant_digits < 19) mant = mant * 10 + (uint64_t)d;
    if (mant != 0) mant_digits++;
    p++;
  }
  if (p < end && *p == '.') {
    integral = false;
    p++;
    if (p >= end || *p < '0' || *p > '9') {
      fail_at(ps, MOE_EDATA, p, "expected a digit after '.'");
      return NULL;
    }
    while (p < end && *p >= '0' && *p <= '9') {
      if (mant_digits < 19) {
        mant = mant * 10 + (uint64_t)(*p - '0');
        frac_digits++;
      }
      if (mant != 0) mant_digits++;
      p++;
    }
  }
  int exp10 = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    integral = false;
    p++;
    bool eneg = false;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || *p < '0' || *p > '9') {
      fail_at(ps, MOE_EDATA, p, "expected a digit in the exponent");
      return NULL;
    }
    while (p < end && *p >= '0' && *p <= '9') {
      if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0');
      p++;
    }
    if (eneg) exp10 = -exp10;
  }
  double d;
  int e = exp10 - frac_digits;
  if (mant == 0 && mant_digits == 0) {
    d = neg ? -0.0 : 0.0; /* all digits zero, whatever the exponent */
  } else if (mant_digits <= 19 && mant <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
    /*
     * Both the digits and 10^|e| are exact doubles, so one multiplication or division rounds
     * once, correctly (Clinger's fast path): the common case of config and header numbers
     * needs no strtod.
     */
    d = e >= 0 ? (double)mant * g_pow10[e] : (double)mant / g_pow10[-e];
    if (neg) d = -d;
  } else {
    size_t n = (size_t)(p - start);
    char small[64];
    char *tmp = small;
    if (n >= sizeof small) {
      tmp = arena_alloc(ps->doc, n + 1);
      if (tmp == NULL) {
        fail_oom(ps);
        return NULL;
      }
    }
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    d = strtod_c(tmp, NULL);
    if (isinf(d)) {
      fail_at(ps, MOE_ERANGE, start, "number %.40s%s is out of range", tmp, n > 40 ? "..." : "");
      return NULL;
    }
  }
  moe_json_t *v = new_value(ps, MOE_JSON_NUMBER, start);
  if (v == NULL) return NULL;
  v->u.num.d = d;
  if (integral && fits && (neg || acc != INT64_MIN)) {
    v->u.num.i = neg ? acc : -acc;
    v->u.num.is_int = true;
  } else if (!integral && d == floor(d) && fabs(d) <= 9007199254740992.0) {
    /* 1.0 and 1e3 are integers too; beyond 2^53 a double may not be the written integer. */
    v->u.num.i = (int64_t)d;
    v->u.num.is_int = true;
  }
  ps->p = p;
  return v;
}

static moe_json_t *parse_value(parser_t *ps);

static int member_cmp(const void *a, const void *b) {
  const moe_json_member_t *x = *(moe_json_member_t *const *)a;
  const moe_json_member_t *y = *(moe_json_member_t *const *)b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);
  if (c != 0) return c;
  return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static bool pos_before(const moe_json_member_t *a, const moe_json_member_t *b) {
  return a->line < b->line || (a->line == b->line && a->col < b->col);
}

static moe_json_t *parse_object(parser_t *ps) {
  const char *open = ps->p;
  moe_json_t *v = new_value(ps, MOE_JSON_OBJECT, open);
  if (v == NULL) return NULL;
  ps->p++;
  size_t n = 0;
  char gb[16];
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
  } else {
    for (;;) {
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != '"') {
        fail_at(ps, MOE_EDATA, ps->p, "expected a string (object member name), got %s%s",
                got(ps, ps->p, gb, sizeof gb),
                n > 0 && ps->p < ps->end && *ps->p == '}' ? " (trailing comma?)" : "");
        return NULL;
      }
      moe_json_member_t *m = arena_alloc(ps->doc, sizeof *m);
      if (m == NULL) {
        fail_oom(ps);
        return NULL;
      }
      m->line = ps->line;
      m->col = col_of(ps, ps->p);
      if (parse_string(ps, &m->key, &m->key_len) != 0) return NULL;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') {
        fail_at(ps, MOE_EDATA, ps->p, "expected ':' after object member name, got %s",
                got(ps, ps->p, gb, sizeof gb));
        return NULL;
      }
      ps->p++;
      skip_ws(ps);
      m->value = parse_value(ps);
      if (m->value == NULL) return NULL;
      if (stack_push(ps, m) != 0) return NULL;
      n++;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        continue;
      }
      if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        break;
      }
      fail_at(ps, MOE_EDATA, ps->p, "expected ',' or '}' after object member, got %s",
              got(ps, ps->p, gb, sizeof gb));
      return NULL;
    }
  }
  moe_json_member_t **members = (moe_json_member_t **)stack_pop_to_arena(ps, n);
  if (members == NULL) return NULL;
  moe_json_member_t **sorted = arena_alloc(ps->doc, (n ? n : 1) * sizeof *sorted);
  if (sorted == NULL) {
    fail_oom(ps);
    return NULL;
  }
  if (n) memcpy(sorted, members, n * sizeof *sorted);
  qsort(sorted, n, sizeof *sorted, member_cmp);
  for (size_t i = 1; i < n; i++) {
    if (member_cmp(&sorted[i - 1], &sorted[i]) == 0) {
      const moe_json_member_t *dup = pos_before(sorted[i - 1], sorted[i]) ? sorted[i] : sorted[i - 1];
      char kb[64];
      /* Report at the later key: that is where the document went wrong. */
      ps->err = MOE_EDATA;
      if (ps->errstr != NULL && ps->errstr_size > 0)
        snprintf(ps->errstr, ps->errstr_size,
                 "line %" PRIu32 " col %" PRIu32 ": duplicate object member \"%s\"", dup->line,
                 dup->col, msg_str(kb, sizeof kb, dup->key, dup->key_len));
      return NULL;
    }
  }
  v->u.obj.members = members;
  v->u.obj.sorted = sorted;
  v->u.obj.n = n;
  return v;
}

static moe_json_t *parse_array(parser_t *ps) {
  moe_json_t *v = new_value(ps, MOE_JSON_ARRAY, ps->p);
  if (v == NULL) return NULL;
  ps->p++;
  size_t n = 0;
  char gb[16];
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p++;
  } else {
    for (;;) {
      skip_ws(ps);
      if (n > 0 && ps->p < ps->end && *ps->p == ']') {
        fail_at(ps, MOE_EDATA, ps->p, "expected a value, got ']' (trailing comma?)");
        return NULL;
      }
      moe_json_t *item = parse_value(ps);
      if (item == NULL) return NULL;
      if (stack_push(ps, item) != 0) return NULL;
      n++;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        continue;
      }
      if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        break;
      }
      fail_at(ps, MOE_EDATA, ps->p, "expected ',' or ']' after array item, got %s",
              got(ps, ps->p, gb, sizeof gb));
      return NULL;
    }
  }
  moe_json_t **items = (moe_json_t **)stack_pop_to_arena(ps, n);
  if (items == NULL) return NULL;
  v->u.arr.items = items;
  v->u.arr.n = n;
  return v;
}

static moe_json_t *parse_literal(parser_t *ps, const char *word, moe_json_type_t type, bool b) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
    fail_at(ps, MOE_EDATA, ps->p, "invalid literal (expected true, false or null)");
    return NULL;
  }
  moe_json_t *v = new_value(ps, type, ps->p);
  if (v == NULL) return NULL;
  v->u.b = b;
  ps->p += n;
  return v;
}

static moe_json_t *parse_value(parser_t *ps) {
  char gb[16];
  if (ps->p >= ps->end) {
    fail_at(ps, MOE_EDATA, ps->p, "expected a value, got end of input");
    return NULL;
  }
  switch (*ps->p) {
  case '{':
  case '[': {
    if (ps->depth >= ps->max_depth) {
      fail_at(ps, MOE_ERANGE, ps->p, "nesting deeper than %zu levels", ps->max_depth);
      return NULL;
    }
    ps->depth++;
    moe_json_t *v = *ps->p == '{' ? parse_object(ps) : parse_array(ps);
    ps->depth--;
    return v;
  }
  case '"': {
    moe_json_t *v = new_value(ps, MOE_JSON_STRING, ps->p);
    if (v == NULL) return NULL;
    if (parse_string(ps, &v->u.str.s, &v->u.str.len) != 0) return NULL;
    return v;
  }
  case 't': return parse_literal(ps, "true", MOE_JSON_BOOL, true);
  case 'f': return parse_literal(ps, "false", MOE_JSON_BOOL, false);
  case 'n': return parse_literal(ps, "null", MOE_JSON_NULL, false);
  default:
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps);
    fail_at(ps, MOE_EDATA, ps->p, "expected a value, got %s", got(ps, ps->p, gb, sizeof gb));
    return NULL;
  }
}

moe_err_t moe_json_parse(const char *text, size_t len, const moe_json_limits_t *limits,
                         moe_json_doc_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
  size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes : MOE_JSON_DEFAULT_MAX_BYTES;
  size_t max_depth = limits && limits->max_depth ? limits->max_depth : MOE_JSON_DEFAULT_MAX_DEPTH;
  if (max_depth > JSON_HARD_MAX_DEPTH) max_depth = JSON_HARD_MAX_DEPTH;
  if (len > max_bytes) {
    if (errstr != NULL && errstr_size > 0)
      snprintf(errstr, errstr_size, "JSON text of %zu bytes exceeds the limit of %zu bytes", len,
               max_bytes);
    return MOE_ERANGE;
  }
  parser_t ps = {0};
  ps.p = text;
  ps.end = text + len;
  ps.line_start = text;
  ps.line = 1;
  ps.max_depth = max_depth;
  ps.errstr = errstr;
  ps.errstr_size = errstr_size;
  ps.doc = moe__calloc(1, sizeof *ps.doc);
  if (ps.doc == NULL) {
    fail_oom(&ps);
    return ps.err;
  }
  skip_ws(&ps);
  moe_json_t *root = parse_value(&ps);
  if (root != NULL) {
    skip_ws(&ps);
    if (ps.p < ps.end) {
      char gb[16];
      fail_at(&ps, MOE_EDATA, ps.p, "unexpected %s after the top-level value",
              got(&ps, ps.p, gb, sizeof gb));
    }
  }
  moe__free(ps.stack);
  if (ps.err != MOE_OK) {
    moe_json_free(ps.doc);
    return ps.err;
  }
  ps.doc->root = root;
  *out = ps.doc;
  return MOE_OK;
}

/* ---- accessors ----------------------------------------------------------- */

const char *moe_json_type_name(moe_json_type_t type) {
  switch (type) {
  case MOE_JSON_NULL: return "null";
  case MOE_JSON_BOOL: return "boolean";
  case MOE_JSON_NUMBER: return "number";
  case MOE_JSON_STRING: return "string";
  case MOE_JSON_ARRAY: return "array";
  case MOE_JSON_OBJECT: return "object";
  default: return "?";
  }
}

const char *moe_json_kind(const moe_json_t *v) {
  if (v == NULL) return "nothing";
  if (v->type == MOE_JSON_NUMBER && v->u.num.is_int) return "integer";
  return moe_json_type_name(v->type);
}

size_t moe_json_len(const moe_json_t *v) {
  if (v == NULL) return 0;
  if (v->type == MOE_JSON_ARRAY) return v->u.arr.n;
  if (v->type == MOE_JSON_OBJECT) return v->u.obj.n;
  return 0;
}

const moe_json_t *moe_json_at(const moe_json_t *v, size_t i) {
  if (v == NULL || v->type != MOE_JSON_ARRAY || i >= v->u.arr.n) return NULL;
  return v->u.arr.items[i];
}

const moe_json_member_t *moe_json_member_at(const moe_json_t *v, size_t i) {
  if (v == NULL || v->type != MOE_JSON_OBJECT || i >= v->u.obj.n) return NULL;
  return v->u.obj.members[i];
}

const moe_json_t *moe_json_getn(const moe_json_t *v, const char *key, size_t key_len) {
  if (v == NULL || v->type != MOE_JSON_OBJECT) return NULL;
  moe_json_member_t probe = {.key = key, .key_len = key_len};
  const moe_json_member_t *pp = &probe;
  moe_json_member_t **hit =
      bsearch(&pp, v->u.obj.sorted, v->u.obj.n, sizeof *v->u.obj.sorted, member_cmp);
  return hit ? (*hit)->value : NULL;
}

const moe_json_t *moe_json_get(const moe_json_t *v, const char *key) {
  return moe_json_getn(v, key, strlen(key));
}

bool moe_json_is_int(const moe_json_t *v) {
  return v != NULL && v->type == MOE_JSON_NUMBER && v->u.num.is_int;
}

/* ---- typed checks -------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static moe_err_t cfg_err(char *errstr, size_t errstr_size,
                                                               const char *path, const char *fmt,
                                                               ...) {
  if (errstr == NULL || errstr_size == 0) return MOE_ECONFIG;
  int n = snprintf(errstr, errstr_size, "%s: ", path && path[0] ? path : "(root)");
  if (n >= 0 && (size_t)n < errstr_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr + n, errstr_size - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return MOE_ECONFIG;
}

static moe_err_t expected(const moe_json_t *v, const char *what, const char *path, char *errstr,
                          size_t errstr_size) {
  if (v == NULL) return cfg_err(errstr, errstr_size, path, "missing");
  return cfg_err(errstr, errstr_size, path, "expected %s, got %s", what, moe_json_kind(v));
}

moe_err_t moe_json_check_type(const moe_json_t *v, moe_json_type_t type, const char *path,
                              char *errstr, size_t errstr_size) {
  if (v != NULL && v->type == type) return MOE_OK;
  return expected(v, moe_json_type_name(type), path, errstr, errstr_size);
}

moe_err_t moe_json_to_int(const moe_json_t *v, const char *path, int64_t min, int64_t max,
                          int64_t *out, char *errstr, size_t errstr_size) {
  if (!moe_json_is_int(v)) return expected(v, "integer", path, errstr, errstr_size);
  if (v->u.num.i < min || v->u.num.i > max)
    return cfg_err(errstr, errstr_size, path, "%" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                   v->u.num.i, min, max);
  *out = v->u.num.i;
  return MOE_OK;
}

moe_err_t moe_json_to_num(const moe_json_t *v, const char *path, double min, double max,
                          double *out, char *errstr, size_t errstr_size) {
  if (v == NULL || v->type != MOE_JSON_NUMBER)
    return expected(v, "number", path, errstr, errstr_size);
  if (!(v->u.num.d >= min && v->u.num.d <= max)) {
    char a[40], lo[40], hi[40];
    moe_json_fmt_num(a, sizeof a, v->u.num.d);
    moe_json_fmt_num(lo, sizeof lo, min);
    moe_json_fmt_num(hi, sizeof hi, max);
    return cfg_err(errstr, errstr_size, path, "%s is out of range [%s, %s]", a, lo, hi);
  }
  *out = v->u.num.d;
  return MOE_OK;
}

moe_err_t moe_json_to_bool(const moe_json_t *v, const char *path, bool *out, char *errstr,
                           size_t errstr_size) {
  if (v == NULL || v->type != MOE_JSON_BOOL)
    return expected(v, "boolean", path, errstr, errstr_size);
  *out = v->u.b;
  return MOE_OK;
}

moe_err_t moe_json_to_str(const moe_json_t *v, const char *path, const char **out, size_t *len,
                          char *errstr, size_t errstr_size) {
  if (v == NULL || v->type != MOE_JSON_STRING)
    return expected(v, "string", path, errstr, errstr_size);
  if (memchr(v->u.str.s, '\0', v->u.str.len) != NULL)
    return cfg_err(errstr, errstr_size, path, "string contains a NUL character");
  *out = v->u.str.s;
  if (len != NULL) *len = v->u.str.len;
  return MOE_OK;
}

/* Builds "path.key" into buf (truncating if needed). */
static const char *join(char *buf, size_t size, const char *path, const char *key) {
  if (path == NULL || path[0] == '\0')
    snprintf(buf, size, "%s", key);
  else
    snprintf(buf, size, "%s.%s", path, key);
  return buf;
}

#define PATH_MAX_LEN 256

moe_err_t moe_json_get_member(const moe_json_t *obj, const char *key, moe_json_type_t type,
                              const char *path, const moe_json_t **out, char *errstr,
                              size_t errstr_size) {
  moe_err_t err = moe_json_check_type(obj, MOE_JSON_OBJECT, path, errstr, errstr_size);
  if (err != MOE_OK) return err;
  char p[PATH_MAX_LEN];
  const moe_json_t *v = moe_json_get(obj, key);
  err = moe_json_check_type(v, type, join(p, sizeof p, path, key), errstr, errstr_size);
  if (err == MOE_OK) *out = v;
  return err;
}

/* Looks up obj.key, reporting a non-object obj; *v is NULL when absent. */
static moe_err_t lookup(const moe_json_t *obj, const char *key, const char *path,
                        const moe_json_t **v, char *errstr, size_t errstr_size) {
  moe_err_t err = moe_json_check_type(obj, MOE_JSON_OBJECT, path, errstr, errstr_size);
  if (err != MOE_OK) return err;
  *v = moe_json_get(obj, key);
  return MOE_OK;
}

moe_err_t moe_json_get_int(const moe_json_t *obj, const char *key, const char *path, int64_t min,
                           int64_t max, int64_t *out, char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  return moe_json_to_int(v, join(p, sizeof p, path, key), min, max, out, errstr, errstr_size);
}

moe_err_t moe_json_get_num(const moe_json_t *obj, const char *key, const char *path, double min,
                           double max, double *out, char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  return moe_json_to_num(v, join(p, sizeof p, path, key), min, max, out, errstr, errstr_size);
}

moe_err_t moe_json_get_bool(const moe_json_t *obj, const char *key, const char *path, bool *out,
                            char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  return moe_json_to_bool(v, join(p, sizeof p, path, key), out, errstr, errstr_size);
}

moe_err_t moe_json_get_str(const moe_json_t *obj, const char *key, const char *path,
                           const char **out, size_t *len, char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  return moe_json_to_str(v, join(p, sizeof p, path, key), out, len, errstr, errstr_size);
}

static bool absent(const moe_json_t *v) { return v == NULL || v->type == MOE_JSON_NULL; }

moe_err_t moe_json_opt_int(const moe_json_t *obj, const char *key, const char *path, int64_t min,
                           int64_t max, int64_t dflt, int64_t *out, char *errstr,
                           size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  if (absent(v)) {
    *out = dflt;
    return MOE_OK;
  }
  return moe_json_to_int(v, join(p, sizeof p, path, key), min, max, out, errstr, errstr_size);
}

moe_err_t moe_json_opt_num(const moe_json_t *obj, const char *key, const char *path, double min,
                           double max, double dflt, double *out, char *errstr,
                           size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  if (absent(v)) {
    *out = dflt;
    return MOE_OK;
  }
  return moe_json_to_num(v, join(p, sizeof p, path, key), min, max, out, errstr, errstr_size);
}

moe_err_t moe_json_opt_bool(const moe_json_t *obj, const char *key, const char *path, bool dflt,
                            bool *out, char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  if (absent(v)) {
    *out = dflt;
    return MOE_OK;
  }
  return moe_json_to_bool(v, join(p, sizeof p, path, key), out, errstr, errstr_size);
}

moe_err_t moe_json_opt_str(const moe_json_t *obj, const char *key, const char *path,
                           const char *dflt, const char **out, char *errstr, size_t errstr_size) {
  const moe_json_t *v;
  char p[PATH_MAX_LEN];
  moe_err_t err = lookup(obj, key, path, &v, errstr, errstr_size);
  if (err != MOE_OK) return err;
  if (absent(v)) {
    *out = dflt;
    return MOE_OK;
  }
  return moe_json_to_str(v, join(p, sizeof p, path, key), out, NULL, errstr, errstr_size);
}

moe_err_t moe_json_check_members(const moe_json_t *obj, const char *path,
                                 const char *const *allowed, size_t n_allowed, char *errstr,
                                 size_t errstr_size) {
  moe_err_t err = moe_json_check_type(obj, MOE_JSON_OBJECT, path, errstr, errstr_size);
  if (err != MOE_OK) return err;
  for (size_t i = 0; i < obj->u.obj.n; i++) {
    const moe_json_member_t *m = obj->u.obj.members[i];
    bool ok = false;
    for (size_t j = 0; j < n_allowed && !ok; j++)
      ok = strlen(allowed[j]) == m->key_len && memcmp(allowed[j], m->key, m->key_len) == 0;
    if (!ok) {
      char kb[64];
      return cfg_err(errstr, errstr_size, path, "unknown member \"%s\"",
                     msg_str(kb, sizeof kb, m->key, m->key_len));
    }
  }
  return MOE_OK;
}

/* ---- writer -------------------------------------------------------------- */

void moe_jw_init(moe_jw_t *jw) { memset(jw, 0, sizeof *jw); }

void moe_jw_close(moe_jw_t *jw) {
  moe__free(jw->buf);
  jw->buf = NULL;
  jw->len = jw->cap = 0;
}

static void jw_fail(moe_jw_t *jw, moe_err_t err) {
  if (jw->err == MOE_OK) jw->err = err;
}

static bool jw_reserve(moe_jw_t *jw, size_t extra) {
  if (jw->err != MOE_OK) return false;
  if (jw->cap - jw->len > extra) return true; /* keeps one byte for the terminating NUL */
  if (extra > SIZE_MAX / 2 - jw->len) {
    jw_fail(jw, MOE_ENOMEM);
    return false;
  }
  size_t cap = jw->cap ? jw->cap : 256;
  while (cap - jw->len <= extra) cap *= 2;
  char *b = moe__realloc(jw->buf, cap);
  if (b == NULL) {
    jw_fail(jw, MOE_ENOMEM);
    return false;
  }
  jw->buf = b;
  jw->cap = cap;
  return true;
}

static void jw_put(moe_jw_t *jw, const char *s, size_t n) {
  if (!jw_reserve(jw, n)) return;
  memcpy(jw->buf + jw->len, s, n);
  jw->len += n;
  jw->buf[jw->len] = '\0';
}

/* Separator and structure check before a value; false when the value must not be written. */
static bool jw_value(moe_jw_t *jw) {
  if (jw->err != MOE_OK) return false;
  int d = jw->depth;
  if (jw->is_obj[d]) {
    if (!jw->after_key) {
      jw_fail(jw, MOE_EINVAL);
      return false;
    }
    jw->after_key = false;
    return true;
  }
  if (jw->n_items[d]) {
    if (d == 0) {
      jw_fail(jw, MOE_EINVAL); /* a second top-level value */
      return false;
    }
    jw_put(jw, ",", 1);
  }
  jw->n_items[d] = 1;
  return jw->err == MOE_OK;
}

static void jw_escaped(moe_jw_t *jw, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  jw_put(jw, "\"", 1);
  size_t i = 0;
  while (i < len && jw->err == MOE_OK) {
    size_t run = i;
    /* Copy runs of bytes that need no escaping in one go. */
    while (run < len) {
      unsigned char r = (unsigned char)s[run];
      if (r < 0x20 || r == '"' || r == '\\') break;
      if (r >= 0x80) {
        size_t n = utf8_seq_len((const unsigned char *)s + run, len - run);
        if (n == 0) break;
        run += n;
      } else {
        run++;
      }
    }
    if (run > i) {
      jw_put(jw, s + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) {
      jw_fail(jw, MOE_EINVAL); /* not UTF-8: JSON text must be */
      return;
    }
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
      e[1] = 'u';
      e[2] = '0';
      e[3] = '0';
      e[4] = hex[c >> 4];
      e[5] = hex[c & 15];
      n = 6;
    }
    jw_put(jw, e, n);
    i++;
  }
  jw_put(jw, "\"", 1);
}

static void jw_begin(moe_jw_t *jw, bool obj) {
  if (!jw_value(jw)) return;
  if (jw->depth + 1 >= MOE_JW_MAX_DEPTH) {
    jw_fail(jw, MOE_EINVAL);
    return;
  }
  jw_put(jw, obj ? "{" : "[", 1);
  jw->depth++;
  jw->n_items[jw->depth] = 0;
  jw->is_obj[jw->depth] = obj;
}

static void jw_end(moe_jw_t *jw, bool obj) {
  if (jw->err != MOE_OK) return;
  if (jw->depth == 0 || jw->is_obj[jw->depth] != obj || jw->after_key) {
    jw_fail(jw, MOE_EINVAL);
    return;
  }
  jw_put(jw, obj ? "}" : "]", 1);
  jw->depth--;
}

void moe_jw_obj_begin(moe_jw_t *jw) { jw_begin(jw, true); }
void moe_jw_obj_end(moe_jw_t *jw) { jw_end(jw, true); }
void moe_jw_arr_begin(moe_jw_t *jw) { jw_begin(jw, false); }
void moe_jw_arr_end(moe_jw_t *jw) { jw_end(jw, false); }

void moe_jw_key(moe_jw_t *jw, const char *key) { moe_jw_keyn(jw, key, strlen(key)); }

void moe_jw_keyn(moe_jw_t *jw, const char *key, size_t len) {
  if (jw->err != MOE_OK) return;
  if (!jw->is_obj[jw->depth] || jw->after_key) {
    jw_fail(jw, MOE_EINVAL);
    return;
  }
  if (jw->n_items[jw->depth]) jw_put(jw, ",", 1);
  jw->n_items[jw->depth] = 1;
  jw_escaped(jw, key, len);
  jw_put(jw, ":", 1);
  jw->after_key = true;
}

void moe_jw_strn(moe_jw_t *jw, const char *s, size_t len) {
  if (jw_value(jw)) jw_escaped(jw, s, len);
}

void moe_jw_str(moe_jw_t *jw, const char *s) { moe_jw_strn(jw, s, strlen(s)); }

void moe_jw_int(moe_jw_t *jw, int64_t v) {
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRId64, v);
  if (jw_value(jw)) jw_put(jw, b, (size_t)n);
}

void moe_jw_uint(moe_jw_t *jw, uint64_t v) {
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRIu64, v);
  if (jw_value(jw)) jw_put(jw, b, (size_t)n);
}

size_t moe_json_fmt_num(char *buf, size_t size, double v) {
  if (!isfinite(v)) return (size_t)snprintf(buf, size, "%s", isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
  int n = 0;
  locale_t loc = c_locale();
  locale_t old = loc != (locale_t)0 ? uselocale(loc) : (locale_t)0;
  /* The fewest significant digits (from 15) that read back as the same double. */
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, size, "%.*g", prec, v);
    if (strtod_c(buf, NULL) == v) break;
  }
  if (old != (locale_t)0) uselocale(old);
  return n < 0 ? 0 : (size_t)n;
}

void moe_jw_num(moe_jw_t *jw, double v) {
  if (jw->err != MOE_OK) return;
  if (!isfinite(v)) {
    jw_fail(jw, MOE_ERANGE);
    return;
  }
  char b[48];
  size_t n = moe_json_fmt_num(b, sizeof b, v);
  /* Beyond 2^53 every double is integral and may print as a plain integer ("23720322337203696"),
   * which would read back as an exact int64 although it was not one: keep it a fraction. */
  if (fabs(v) >= 9007199254740992.0 && strpbrk(b, ".e") == NULL) {
    memcpy(b + n, ".0", 3);
    n += 2;
  }
  if (jw_value(jw)) jw_put(jw, b, n);
}

void moe_jw_bool(moe_jw_t *jw, bool v) {
  if (jw_value(jw)) jw_put(jw, v ? "true" : "false", v ? 4 : 5);
}

void moe_jw_null(moe_jw_t *jw) {
  if (jw_value(jw)) jw_put(jw, "null", 4);
}

void moe_jw_raw(moe_jw_t *jw, const char *json, size_t len) {
  if (jw_value(jw)) jw_put(jw, json, len);
}

void moe_jw_value(moe_jw_t *jw, const moe_json_t *v) {
  if (jw->err != MOE_OK) return;
  switch (v->type) {
  case MOE_JSON_NULL: moe_jw_null(jw); break;
  case MOE_JSON_BOOL: moe_jw_bool(jw, v->u.b); break;
  case MOE_JSON_NUMBER:
    if (v->u.num.is_int)
      moe_jw_int(jw, v->u.num.i);
    else
      moe_jw_num(jw, v->u.num.d);
    break;
  case MOE_JSON_STRING: moe_jw_strn(jw, v->u.str.s, v->u.str.len); break;
  case MOE_JSON_ARRAY:
    moe_jw_arr_begin(jw);
    for (size_t i = 0; i < v->u.arr.n && jw->err == MOE_OK; i++) moe_jw_value(jw, v->u.arr.items[i]);
    moe_jw_arr_end(jw);
    break;
  case MOE_JSON_OBJECT:
    moe_jw_obj_begin(jw);
    for (size_t i = 0; i < v->u.obj.n && jw->err == MOE_OK; i++) {
      const moe_json_member_t *m = v->u.obj.members[i];
      moe_jw_keyn(jw, m->key, m->key_len);
      moe_jw_value(jw, m->value);
    }
    moe_jw_obj_end(jw);
    break;
  default: jw_fail(jw, MOE_EINVAL);
  }
}

moe_err_t moe_jw_finish(moe_jw_t *jw, char **out, size_t *len) {
  if (jw->err == MOE_OK && (jw->depth != 0 || jw->n_items[0] == 0 || jw->after_key))
    jw->err = MOE_EINVAL;
  if (jw->err != MOE_OK) return jw->err;
  if (len != NULL) *len = jw->len;
  if (out != NULL) {
    *out = jw->buf;
    jw->buf = NULL;
    jw->len = jw->cap = 0;
  }
  return MOE_OK;
}
