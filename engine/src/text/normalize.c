/*
 * Clinical text normalisation (moe/text.h): one pass over the input that lowercases, maps
 * Unicode look-alikes to ASCII, collapses whitespace, rewrites clinical abbreviations and
 * separates numbers from units, while recording for every output byte which input bytes
 * produced it, so that token spans can be reported in the caller's text.
 */
#include <string.h>

#include "core/alloc-impl.h"
#include "moe/text.h"

typedef struct abbrev_s {
  const char *pat;  /* lowercase; matched case-insensitively at a word start */
  const char *repl;
  size_t pat_len, repl_len;
} abbrev_t;

#define AB(p, r) {p, r, sizeof(p) - 1, sizeof(r) - 1}

/*
 * Longest patterns first where one is a prefix of another ("w/o" before "w/"). Every
 * pattern must also end at a word boundary (next input character not a letter or digit),
 * except "w/", which is often written against its object ("w/chest pain").
 */
static const abbrev_t abbrevs[] = {
    AB("b.i.d.", "bid"), AB("t.i.d.", "tid"), AB("q.i.d.", "qid"), AB("q.h.s.", "qhs"),
    AB("p.r.n.", "prn"), AB("n.p.o.", "npo"), AB("q.d.", "qd"), AB("p.o.", "po"),
    AB("i.v.", "iv"), AB("i.m.", "im"), AB("a.m.", "am"), AB("p.m.", "pm"),
    AB("e.g.", "eg"), AB("i.e.", "ie"), AB("y.o.", "year old"), AB("y/o", "year old"),
    AB("h/o", "history of"), AB("s/p", "status post"), AB("c/o", "complains of"),
    AB("w/o", "without"), AB("r/o", "rule out"), AB("n/v", "nausea and vomiting"),
    AB("b/l", "bilateral"), AB("f/u", "follow up"), AB("w/", "with"),
    AB("pts", "patients"), AB("pt", "patient"), AB("hx", "history"), AB("fhx", "family history"),
    AB("dx", "diagnosis"), AB("tx", "treatment"), AB("sx", "symptoms"), AB("fx", "fracture"),
    AB("yo", "year old"), AB("sob", "shortness of breath"), AB("htn", "hypertension"),
    AB("cad", "coronary artery disease"), AB("chf", "congestive heart failure"),
};

typedef struct out_s {
  moe_text_norm_t *n;
  size_t cap;
  int oom;
} out_t;

/* Makes room for `need` bytes in all three arrays; sets o->oom on failure. */
static void reserve(out_t *o, size_t need) {
  moe_text_norm_t *n = o->n;
  if (o->oom || need <= o->cap) return;
  size_t cap = o->cap * 2 > need ? o->cap * 2 : need;
  char *t = moe__realloc(n->text, cap);
  if (t == NULL) goto oom;
  n->text = t;
  uint32_t *a = moe__reallocarray(n->src_start, cap, sizeof(uint32_t));
  if (a == NULL) goto oom;
  n->src_start = a;
  a = moe__reallocarray(n->src_end, cap, sizeof(uint32_t));
  if (a == NULL) goto oom;
  n->src_end = a;
  o->cap = cap;
  return;
oom:
  o->oom = 1;
}

static void emit(out_t *o, const char *b, size_t k, size_t s, size_t e) {
  moe_text_norm_t *n = o->n;
  if (n->len + k + 1 > o->cap) reserve(o, n->len + k + 16);
  if (o->oom) return;
  for (size_t j = 0; j < k; j++) {
    n->text[n->len] = b[j];
    n->src_start[n->len] = (uint32_t)s;
    n->src_end[n->len] = (uint32_t)e;
    n->len++;
  }
}

static void emit_space(out_t *o, size_t s, size_t e) {
  if (o->n->len > 0 && o->n->text[o->n->len - 1] != ' ') emit(o, " ", 1, s, e);
}

static int is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Decodes one UTF-8 character; returns its length and sets *cp, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp) {
  unsigned char c = s[0];
  size_t k;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    k = 2;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    k = 3;
    v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    k = 4;
    v = c & 0x07;
  } else {
    return 0;
  }
  if (avail < k) return 0;
  for (size_t j = 1; j < k; j++) {
    if ((s[j] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[j] & 0x3F);
  }
  if ((k == 3 && v < 0x800) || (k == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
      (v >= 0xD800 && v <= 0xDFFF))
    return 0;
  *cp = v;
  return k;
}

/* Matches an abbreviation at in[i] (a word start); returns its length and *repl, or 0. */
static size_t match_abbrev(const unsigned char *in, size_t len, size_t i, const char **repl,
                           size_t *repl_len) {
  unsigned char c0 = lower(in[i]);
  for (size_t a = 0; a < sizeof(abbrevs) / sizeof(abbrevs[0]); a++) {
    const char *p = abbrevs[a].pat;
    size_t k = abbrevs[a].pat_len, j = 1;
    if ((unsigned char)p[0] != c0 || i + k > len) continue;
    while (j < k && lower(in[i + j]) == (unsigned char)p[j]) j++;
    if (j < k) continue;
    int slash_end = p[k - 1] == '/';
    if (!slash_end && i + k < len && (is_alnum(in[i + k]) || in[i + k] >= 0x80)) continue;
    /* "pt" must not swallow "pt/inr"-like compounds of letters and slashes either. */
    if (!slash_end && p[k - 1] != '.' && i + k < len && in[i + k] == '/') continue;
    *repl = abbrevs[a].repl;
    *repl_len = abbrevs[a].repl_len;
    return k;
  }
  return 0;
}

/* Ordinal suffix after a digit: "1st", "2nd", "3rd", "4th" followed by a non-letter. */
static int is_ordinal(const unsigned char *in, size_t len, size_t i) {
  if (i + 2 > len) return 0;
  char a = (char)lower(in[i]), b = (char)lower(in[i + 1]);
  int ok = (a == 's' && b == 't') || (a == 'n' && b == 'd') || (a == 'r' && b == 'd') ||
           (a == 't' && b == 'h');
  return ok && (i + 2 == len || !is_alpha(in[i + 2]));
}

moe_err_t moe_text_normalize(const char *text, size_t len, moe_text_norm_t *norm) {
  memset(norm, 0, sizeof(*norm));
  if (len >= (size_t)1 << 31) return MOE_EINVAL;
  const unsigned char *in = (const unsigned char *)text;
  out_t o = {norm, 0, 0};
  /* Room for the usual case up front; expansions grow it when needed. */
  reserve(&o, len + len / 8 + 16);
  size_t i = 0;
  while (i < len && !o.oom) {
    unsigned char c = in[i];
    int word_start = i == 0 || !(is_alnum(in[i - 1]) || in[i - 1] >= 0x80);
    if (word_start && is_alpha(c)) {
      const char *repl;
      size_t repl_len, k = match_abbrev(in, len, i, &repl, &repl_len);
      if (k > 0) {
        emit(&o, repl, repl_len, i, i + k);
        i += k;
        continue;
      }
    }
    if (c < 0x80) {
      if (c <= 0x20 || c == 0x7F) {
        emit_space(&o, i, i + 1);
      } else {
        /* A letter glued after a digit starts a unit or word: "10mg" -> "10 mg". */
        if (is_alpha(c) && i > 0 && in[i - 1] >= '0' && in[i - 1] <= '9' &&
            !is_ordinal(in, len, i) && !(i >= 2 && is_alpha(in[i - 2]))) {
          emit_space(&o, i, i);
          /* The unit may itself be an abbreviation ("10pt" stays "pt": too ambiguous). */
        }
        char l = (char)lower(c);
        emit(&o, &l, 1, i, i + 1);
      }
      i++;
      continue;
    }
    uint32_t cp;
    size_t k = utf8_decode(in + i, len - i, &cp);
    if (k == 0) {
      emit_space(&o, i, i + 1);
      i++;
      continue;
    }
    const char *map = NULL;
    char buf[4];
    if (cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0x85) {
      emit_space(&o, i, i + k);
    } else if ((cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF || cp == 0xAD ||
               (cp >= 0x80 && cp < 0xA0)) {
      /* Invisible: zero-width characters, the BOM, the soft hyphen, C1 controls. */
    } else {
      if (cp == 0x2018 || cp == 0x2019 || cp == 0x201A || cp == 0x201B || cp == 0x2032 ||
          cp == 0xB4)
        map = "'";
      else if (cp == 0x201C || cp == 0x201D || cp == 0x201E || cp == 0x2033)
        map = "\"";
      else if ((cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212)
        map = "-";
      else if (cp == 0x2026)
        map = "...";
      else if (cp == 0xB5 || cp == 0x3BC)
        map = "u";
      if (map != NULL) {
        emit(&o, map, strlen(map), i, i + k);
      } else if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) {
        uint32_t lc = cp + 0x20; /* Latin-1 capitals: two bytes either way */
        buf[0] = (char)(0xC0 | (lc >> 6));
        buf[1] = (char)(0x80 | (lc & 0x3F));
        emit(&o, buf, 2, i, i + k);
      } else {
        emit(&o, (const char *)in + i, k, i, i + k);
      }
    }
    i += k;
  }
  if (!o.oom && norm->len > 0 && norm->text[norm->len - 1] == ' ') norm->len--;
  if (o.oom) {
    moe_text_norm_free(norm);
    return MOE_ENOMEM;
  }
  /* emit() always leaves room for the NUL. */
  norm->text[norm->len] = '\0';
  return MOE_OK;
}

void moe_text_norm_free(moe_text_norm_t *norm) {
  moe__free(norm->text);
  moe__free(norm->src_start);
  moe__free(norm->src_end);
  memset(norm, 0, sizeof(*norm));
}

void moe_text_free(void *p) { moe__free(p); }
