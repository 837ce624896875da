/*
 * The WordPiece tokenizer (moe/text.h): a string-keyed hash table for the vocabulary, the
 * BPE-style trainer that fills it, the greedy longest-match-first encoder, and the JSON form
 * stored in model configs.
 *
 * Trainer: words (with counts) are sequences of symbol ids; the count of every adjacent pair
 * lives in a hash table, a max-heap with lazy deletion finds the most frequent pair, and an
 * index from each pair to the words containing it limits a merge to the words it changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "io/json.h"
#include "moe/text.h"
#include "text-impl.h"

#define WP_MAX_TOKEN 64 /* bytes of a piece, "##" not counted */

/* ---- string table ----------------------------------------------------------------- */

typedef struct strtab_s {
  char **str;      /* (n) NUL-terminated, owned */
  uint32_t *len;   /* (n) */
  int32_t *slot;   /* (cap) id or -1 */
  size_t n, n_alloc, cap;
} strtab_t;

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Lookup with the FNV-1a hash of s already computed (the encoder hashes incrementally). */
static int32_t strtab_find_h(const strtab_t *t, const char *s, size_t n, uint64_t h) {
  if (t->cap == 0) return -1;
  size_t mask = t->cap - 1, i = (size_t)h & mask;
  for (;;) {
    int32_t id = t->slot[i];
    if (id < 0) return -1;
    if (t->len[id] == n && memcmp(t->str[id], s, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

static int32_t strtab_find(const strtab_t *t, const char *s, size_t n) {
  return strtab_find_h(t, s, n, fnv(s, n));
}

/* Lookup of "##" + s[0..n) without building the string; h is the hash of the whole. */
static int32_t strtab_find_cont_h(const strtab_t *t, const char *s, size_t n, uint64_t h) {
  if (t->cap == 0) return -1;
  size_t mask = t->cap - 1, i = (size_t)h & mask;
  for (;;) {
    int32_t id = t->slot[i];
    if (id < 0) return -1;
    const char *str = t->str[id];
    if (t->len[id] == n + 2 && str[0] == '#' && str[1] == '#' && memcmp(str + 2, s, n) == 0)
      return id;
    i = (i + 1) & mask;
  }
}

static moe_err_t strtab_rehash(strtab_t *t, size_t cap) {
  int32_t *slot = moe__reallocarray(NULL, cap, sizeof(int32_t));
  if (slot == NULL) return MOE_ENOMEM;
  memset(slot, 0xFF, cap * sizeof(int32_t));
  for (size_t id = 0; id < t->n; id++) {
    size_t i = (size_t)fnv(t->str[id], t->len[id]) & (cap - 1);
    while (slot[i] >= 0) i = (i + 1) & (cap - 1);
    slot[i] = (int32_t)id;
  }
  moe__free(t->slot);
  t->slot = slot;
  t->cap = cap;
  return MOE_OK;
}

/* Adds s (copied) unless present; *id gets its id either way. */
static moe_err_t strtab_add(strtab_t *t, const char *s, size_t n, int32_t *id) {
  int32_t found = strtab_find(t, s, n);
  if (found >= 0) {
    *id = found;
    return MOE_OK;
  }
  if ((t->n + 1) * 2 > t->cap) {
    moe_err_t err = strtab_rehash(t, t->cap ? t->cap * 2 : 1024);
    if (err != MOE_OK) return err;
  }
  if (t->n == t->n_alloc) {
    size_t na = t->n_alloc ? t->n_alloc * 2 : 256;
    char **str = moe__reallocarray(t->str, na, sizeof(char *));
    if (str == NULL) return MOE_ENOMEM;
    t->str = str;
    uint32_t *len = moe__reallocarray(t->len, na, sizeof(uint32_t));
    if (len == NULL) return MOE_ENOMEM;
    t->len = len;
    t->n_alloc = na;
  }
  char *copy = moe__strndup(s, n);
  if (copy == NULL) return MOE_ENOMEM;
  t->str[t->n] = copy;
  t->len[t->n] = (uint32_t)n;
  size_t i = (size_t)fnv(s, n) & (t->cap - 1);
  while (t->slot[i] >= 0) i = (i + 1) & (t->cap - 1);
  t->slot[i] = (int32_t)t->n;
  *id = (int32_t)t->n++;
  return MOE_OK;
}

static void strtab_free(strtab_t *t) {
  for (size_t i = 0; i < t->n; i++) moe__free(t->str[i]);
  moe__free(t->str);
  moe__free(t->len);
  moe__free(t->slot);
  memset(t, 0, sizeof(*t));
}

struct moe_wordpiece_s {
  strtab_t vocab;
  size_t max_piece; /* longest entry in bytes, "##" included */
};

static const char *const specials[MOE_TOKEN_N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                          "[MASK]"};

void moe_wordpiece_free(moe_wordpiece_t *wp) {
  if (wp == NULL) return;
  strtab_free(&wp->vocab);
  moe__free(wp);
}

size_t moe_wordpiece_vocab_size(const moe_wordpiece_t *wp) { return wp->vocab.n; }

const char *moe_wordpiece_token(const moe_wordpiece_t *wp, int32_t id) {
  return id >= 0 && (size_t)id < wp->vocab.n ? wp->vocab.str[id] : NULL;
}

int32_t moe_wordpiece_id(const moe_wordpiece_t *wp, const char *token, size_t len) {
  return strtab_find(&wp->vocab, token, len);
}

static moe_err_t wp_add(moe_wordpiece_t *wp, const char *s, size_t n) {
  int32_t id;
  moe_err_t err = strtab_add(&wp->vocab, s, n, &id);
  if (err == MOE_OK && n > wp->max_piece) wp->max_piece = n;
  return err;
}

/* ---- encoder ---------------------------------------------------------------------- */

moe_err_t moe_wordpiece_encode(const moe_wordpiece_t *wp, const char *text, size_t len,
                               moe_token_t **toks, size_t *n_tok) {
  *toks = NULL;
  *n_tok = 0;
  moe_text_norm_t nm;
  moe_err_t err = moe_text_normalize(text, len, &nm);
  if (err != MOE_OK) return err;
  size_t cap = nm.len / 3 + 16, n = 0;
  moe_token_t *out = moe__reallocarray(NULL, cap, sizeof(*out));
  if (out == NULL) goto oom;
  size_t pos = 0, ws, we;
  while (moe__text_next_word(nm.text, nm.len, &pos, &ws, &we)) {
    size_t wlen = we - ws, first = n;
    int unk = wlen > MOE_WORDPIECE_MAX_WORD_BYTES;
    for (size_t p = ws; !unk && p < we;) {
      size_t prefix = p > ws ? 2 : 0, best_end = 0;
      int32_t best = -1;
      size_t max_end = we;
      if (max_end - p + prefix > wp->max_piece) max_end = p + wp->max_piece - prefix;
      if (max_end - p > WP_MAX_TOKEN) max_end = p + WP_MAX_TOKEN;
      /* Hashes of every candidate piece s[p..e), "##" included, in one forward pass;
       * then the probes go from the longest down. */
      uint64_t hs[WP_MAX_TOKEN + 1];
      uint64_t h = prefix ? fnv("##", 2) : 0xcbf29ce484222325ULL;
      for (size_t e = p; e < max_end; e++) {
        h ^= (unsigned char)nm.text[e];
        h *= 0x100000001b3ULL;
        hs[e + 1 - p] = h;
      }
      for (size_t e = max_end; e > p; e--) {
        /* Never end inside a UTF-8 character. */
        if (e < we && ((unsigned char)nm.text[e] & 0xC0) == 0x80) continue;
        int32_t id;
        if (prefix) {
          id = strtab_find_cont_h(&wp->vocab, nm.text + p, e - p, hs[e - p]);
        } else {
          id = strtab_find_h(&wp->vocab, nm.text + p, e - p, hs[e - p]);
        }
        if (id >= 0) {
          best = id;
          best_end = e;
          break;
        }
      }
      if (best < 0) {
        unk = 1;
        break;
      }
      if (n == cap) {
        cap *= 2;
        moe_token_t *t = moe__reallocarray(out, cap, sizeof(*out));
        if (t == NULL) goto oom;
        out = t;
      }
      out[n++] = (moe_token_t){best, nm.src_start[p], nm.src_end[best_end - 1]};
      p = best_end;
    }
    if (unk) {
      /* The whole word is one [UNK] (pieces already emitted for it are taken back). */
      n = first;
      if (n == cap) {
        cap *= 2;
        moe_token_t *t = moe__reallocarray(out, cap, sizeof(*out));
        if (t == NULL) goto oom;
        out = t;
      }
      out[n++] = (moe_token_t){MOE_TOKEN_UNK, nm.src_start[ws], nm.src_end[we - 1]};
    }
  }
  moe_text_norm_free(&nm);
  *toks = out;
  *n_tok = n;
  return MOE_OK;
oom:
  moe__free(out);
  moe_text_norm_free(&nm);
  return MOE_ENOMEM;
}

/* ---- trainer ------------------------------------------------------------------------ */

typedef struct word_s {
  int32_t *sym; /* (n) symbol ids */
  uint32_t n;
  uint64_t count;
  uint32_t stamp; /* last merge that visited this word */
} word_t;

typedef struct pair_s {
  int32_t a, b;
  int64_t count;
  uint32_t *words; /* (n_words) may hold stale and repeated entries */
  uint32_t n_words, cap_words;
  int blocked;     /* merged piece would be too long, or already merged */
} pair_t;

typedef struct heap_ent_s {
  int64_t count;
  int32_t a, b;
  uint32_t pair;
} heap_ent_t;

typedef struct trainer_s {
  strtab_t sym;   /* symbols: "c", "##c", merged pieces */
  word_t *words;
  size_t n_words;
  pair_t *pairs;
  size_t n_pairs, cap_pairs;
  uint32_t *pslot; /* pair hash: index into pairs or UINT32_MAX */
  size_t pcap;
  heap_ent_t *heap;
  size_t n_heap, cap_heap;
  size_t max_token;
} trainer_t;

static uint64_t pair_hash(int32_t a, int32_t b) {
  uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

static moe_err_t pair_rehash(trainer_t *tr, size_t cap) {
  uint32_t *slot = moe__reallocarray(NULL, cap, sizeof(uint32_t));
  if (slot == NULL) return MOE_ENOMEM;
  memset(slot, 0xFF, cap * sizeof(uint32_t));
  for (size_t p = 0; p < tr->n_pairs; p++) {
    size_t i = (size_t)pair_hash(tr->pairs[p].a, tr->pairs[p].b) & (cap - 1);
    while (slot[i] != UINT32_MAX) i = (i + 1) & (cap - 1);
    slot[i] = (uint32_t)p;
  }
  moe__free(tr->pslot);
  tr->pslot = slot;
  tr->pcap = cap;
  return MOE_OK;
}

/* The pair (a, b), created with count 0 when absent; NULL when out of memory. */
static pair_t *pair_get(trainer_t *tr, int32_t a, int32_t b, uint32_t *index) {
  if (tr->pcap == 0 || (tr->n_pairs + 1) * 2 > tr->pcap)
    if (pair_rehash(tr, tr->pcap ? tr->pcap * 2 : 4096) != MOE_OK) return NULL;
  size_t i = (size_t)pair_hash(a, b) & (tr->pcap - 1);
  while (tr->pslot[i] != UINT32_MAX) {
    pair_t *p = &tr->pairs[tr->pslot[i]];
    if (p->a == a && p->b == b) {
      *index = tr->pslot[i];
      return p;
    }
    i = (i + 1) & (tr->pcap - 1);
  }
  if (tr->n_pairs == tr->cap_pairs) {
    size_t cap = tr->cap_pairs ? tr->cap_pairs * 2 : 4096;
    pair_t *np = moe__reallocarray(tr->pairs, cap, sizeof(pair_t));
    if (np == NULL) return NULL;
    tr->pairs = np;
    tr->cap_pairs = cap;
  }
  pair_t *p = &tr->pairs[tr->n_pairs];
  memset(p, 0, sizeof(*p));
  p->a = a;
  p->b = b;
  tr->pslot[i] = (uint32_t)tr->n_pairs;
  *index = (uint32_t)tr->n_pairs++;
  return p;
}

/* Heap order: higher count first, then lower (a, b) ids: deterministic ties. */
static int heap_before(const heap_ent_t *x, const heap_ent_t *y) {
  if (x->count != y->count) return x->count > y->count;
  if (x->a != y->a) return x->a < y->a;
  return x->b < y->b;
}

static moe_err_t heap_push(trainer_t *tr, heap_ent_t e) {
  if (tr->n_heap == tr->cap_heap) {
    size_t cap = tr->cap_heap ? tr->cap_heap * 2 : 4096;
    heap_ent_t *h = moe__reallocarray(tr->heap, cap, sizeof(heap_ent_t));
    if (h == NULL) return MOE_ENOMEM;
    tr->heap = h;
    tr->cap_heap = cap;
  }
  size_t i = tr->n_heap++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_before(&e, &tr->heap[parent])) break;
    tr->heap[i] = tr->heap[parent];
    i = parent;
  }
  tr->heap[i] = e;
  return MOE_OK;
}

static heap_ent_t heap_pop(trainer_t *tr) {
  heap_ent_t top = tr->heap[0], last = tr->heap[--tr->n_heap];
  size_t i = 0, n = tr->n_heap;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const heap_ent_t *best = &last;
    if (l < n && heap_before(&tr->heap[l], best)) {
      m = l;
      best = &tr->heap[l];
    }
    if (r < n && heap_before(&tr->heap[r], best)) m = r;
    if (m == i) break;
    tr->heap[i] = tr->heap[m];
    i = m;
  }
  if (n > 0) tr->heap[i] = last;
  return top;
}

/* Adds delta occurrences of (a, b) in word w; new or grown pairs go on the heap. */
static moe_err_t pair_add(trainer_t *tr, int32_t a, int32_t b, int64_t delta, uint32_t w) {
  uint32_t idx;
  pair_t *p = pair_get(tr, a, b, &idx);
  if (p == NULL) return MOE_ENOMEM;
  p->count += delta;
  if (delta > 0) {
    if (p->n_words == p->cap_words) {
      uint32_t cap = p->cap_words ? p->cap_words * 2 : 4;
      uint32_t *ws = moe__reallocarray(p->words, cap, sizeof(uint32_t));
      if (ws == NULL) return MOE_ENOMEM;
      p->words = ws;
      p->cap_words = cap;
    }
    p->words[p->n_words++] = w;
    if (!p->blocked) return heap_push(tr, (heap_ent_t){p->count, a, b, idx});
  }
  return MOE_OK;
}

static void trainer_free(trainer_t *tr) {
  strtab_free(&tr->sym);
  for (size_t i = 0; i < tr->n_words; i++) moe__free(tr->words[i].sym);
  moe__free(tr->words);
  for (size_t p = 0; p < tr->n_pairs; p++) moe__free(tr->pairs[p].words);
  moe__free(tr->pairs);
  moe__free(tr->pslot);
  moe__free(tr->heap);
}

/* Bytes of the piece a symbol stands for, without "##". */
static size_t piece_len(const trainer_t *tr, int32_t s) {
  const char *str = tr->sym.str[s];
  return tr->sym.len[s] - (str[0] == '#' && str[1] == '#' && tr->sym.len[s] > 2 ? 2 : 0);
}

static size_t utf8_len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* Counts the words of all documents into a string table plus counts. */
static moe_err_t count_words(const char *const *docs, const size_t *lens, size_t n_doc,
                             strtab_t *wt, uint64_t **counts) {
  size_t cap = 0;
  for (size_t d = 0; d < n_doc; d++) {
    moe_text_norm_t nm;
    moe_err_t err = moe_text_normalize(docs[d], lens[d], &nm);
    if (err != MOE_OK) return err;
    size_t pos = 0, ws, we;
    while (moe__text_next_word(nm.text, nm.len, &pos, &ws, &we)) {
      if (we - ws > MOE_WORDPIECE_MAX_WORD_BYTES) continue;
      int32_t id;
      if ((err = strtab_add(wt, nm.text + ws, we - ws, &id)) != MOE_OK) {
        moe_text_norm_free(&nm);
        return err;
      }
      if ((size_t)id >= cap) {
        size_t nc = cap ? cap * 2 : 4096;
        uint64_t *c = moe__reallocarray(*counts, nc, sizeof(uint64_t));
        if (c == NULL) {
          moe_text_norm_free(&nm);
          return MOE_ENOMEM;
        }
        memset(c + cap, 0, (nc - cap) * sizeof(uint64_t));
        *counts = c;
        cap = nc;
      }
      (*counts)[id]++;
    }
    moe_text_norm_free(&nm);
  }
  return MOE_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

moe_err_t moe_wordpiece_train(const char *const *docs, const size_t *lens, size_t n_doc,
                              const moe_wordpiece_train_opts_t *opts, moe_wordpiece_t **out) {
  *out = NULL;
  size_t min_freq = opts->min_frequency ? opts->min_frequency : 2;
  size_t max_tok = opts->max_token_bytes ? opts->max_token_bytes : 24;
  if (max_tok > WP_MAX_TOKEN) return MOE_EINVAL;
  trainer_t tr;
  memset(&tr, 0, sizeof(tr));
  tr.max_token = max_tok;
  strtab_t wt = {0};
  uint64_t *wcount = NULL;
  char **alpha = NULL;
  size_t n_alpha = 0;
  moe_wordpiece_t *wp = moe__calloc(1, sizeof(*wp));
  moe_err_t err = MOE_ENOMEM;
  if (wp == NULL) goto fail;
  if ((err = count_words(docs, lens, n_doc, &wt, &wcount)) != MOE_OK) goto fail;

  /* The alphabet: printable ASCII in both forms, and every other character seen. */
  err = MOE_ENOMEM;
  strtab_t aset = {0};
  char buf[8];
  for (int c = 0x21; c <= 0x7E; c++) {
    int32_t id;
    buf[0] = '#';
    buf[1] = '#';
    buf[2] = (char)c;
    if (strtab_add(&aset, buf + 2, 1, &id) || strtab_add(&aset, buf, 3, &id)) goto fail_aset;
  }
  for (size_t w = 0; w < wt.n; w++) {
    const char *s = wt.str[w];
    for (size_t i = 0; i < wt.len[w];) {
      size_t k = utf8_len((unsigned char)s[i]);
      if (i + k > wt.len[w]) k = wt.len[w] - i;
      int32_t id;
      buf[0] = '#';
      buf[1] = '#';
      memcpy(buf + 2, s + i, k);
      if (i == 0 ? strtab_add(&aset, buf + 2, k, &id) : strtab_add(&aset, buf, k + 2, &id))
        goto fail_aset;
      i += k;
    }
  }
  alpha = moe__reallocarray(NULL, aset.n, sizeof(char *));
  if (alpha == NULL) goto fail_aset;
  for (size_t i = 0; i < aset.n; i++) alpha[i] = aset.str[i];
  n_alpha = aset.n;
  qsort(alpha, n_alpha, sizeof(char *), cmp_str);
  if (opts->vocab_size < MOE_TOKEN_N_SPECIAL + n_alpha) {
    err = MOE_EINVAL;
    goto fail_aset;
  }
  for (size_t i = 0; i < MOE_TOKEN_N_SPECIAL; i++)
    if (wp_add(wp, specials[i], strlen(specials[i]))) goto fail_aset;
  for (size_t i = 0; i < n_alpha; i++) {
    int32_t id;
    if (strtab_add(&tr.sym, alpha[i], strlen(alpha[i]), &id)) goto fail_aset;
    if (wp_add(wp, alpha[i], strlen(alpha[i]))) goto fail_aset;
  }
  moe__free(alpha);
  alpha = NULL;
  strtab_free(&aset);

  /* Words as symbol sequences, and the initial pair counts. */
  tr.words = moe__calloc(wt.n ? wt.n : 1, sizeof(word_t));
  if (tr.words == NULL) goto fail;
  tr.n_words = wt.n;
  for (size_t w = 0; w < wt.n; w++) {
    word_t *wd = &tr.words[w];
    wd->count = wcount[w];
    wd->sym = moe__reallocarray(NULL, wt.len[w] ? wt.len[w] : 1, sizeof(int32_t));
    if (wd->sym == NULL) goto fail;
    const char *s = wt.str[w];
    for (size_t i = 0; i < wt.len[w];) {
      size_t k = utf8_len((unsigned char)s[i]);
      if (i + k > wt.len[w]) k = wt.len[w] - i;
      buf[0] = '#';
      buf[1] = '#';
      memcpy(buf + 2, s + i, k);
      int32_t id = i == 0 ? strtab_find(&tr.sym, buf + 2, k) : strtab_find(&tr.sym, buf, k + 2);
      wd->sym[wd->n++] = id;
      i += k;
    }
  }
  /* Initial counts are summed first and pushed once, so the heap starts small. */
  for (size_t w = 0; w < tr.n_words; w++) {
    word_t *wd = &tr.words[w];
    for (uint32_t i = 0; i + 1 < wd->n; i++) {
      uint32_t idx;
      pair_t *p = pair_get(&tr, wd->sym[i], wd->sym[i + 1], &idx);
      if (p == NULL) goto fail;
      p->count += (int64_t)wd->count;
      if (p->n_words == 0 || p->words[p->n_words - 1] != (uint32_t)w) {
        if (p->n_words == p->cap_words) {
          uint32_t cap = p->cap_words ? p->cap_words * 2 : 4;
          uint32_t *ws = moe__reallocarray(p->words, cap, sizeof(uint32_t));
          if (ws == NULL) goto fail;
          p->words = ws;
          p->cap_words = cap;
        }
        p->words[p->n_words++] = (uint32_t)w;
      }
    }
  }
  for (size_t p = 0; p < tr.n_pairs; p++)
    if (heap_push(&tr, (heap_ent_t){tr.pairs[p].count, tr.pairs[p].a, tr.pairs[p].b,
                                    (uint32_t)p}))
      goto fail;

  /* Merge until the vocabulary is full. */
  uint32_t stamp = 0;
  char merged[2 * WP_MAX_TOKEN + 8];
  while (wp->vocab.n < opts->vocab_size && tr.n_heap > 0) {
    heap_ent_t top = heap_pop(&tr);
    pair_t *p = &tr.pairs[top.pair];
    if (p->blocked) continue;
    if (p->count != top.count) {
      /* Stale. A count that grew has a newer entry already; one that fell is requeued. */
      if (p->count > 0 && p->count < top.count && heap_push(&tr, (heap_ent_t){p->count, p->a, p->b, top.pair}))
        goto fail;
      continue;
    }
    if ((size_t)p->count < min_freq) break;
    int32_t a = p->a, b = p->b;
    size_t la = tr.sym.len[a], lb = piece_len(&tr, b);
    if (piece_len(&tr, a) + lb > max_tok) {
      p->blocked = 1;
      continue;
    }
    memcpy(merged, tr.sym.str[a], la);
    memcpy(merged + la, tr.sym.str[b] + (tr.sym.len[b] - lb), lb);
    int32_t s;
    if (strtab_add(&tr.sym, merged, la + lb, &s)) goto fail;
    if (moe_wordpiece_id(wp, merged, la + lb) < 0 && wp_add(wp, merged, la + lb)) goto fail;
    p->blocked = 1; /* merged everywhere below; never again */
    stamp++;
    /* p may move when pairs grow: iterate over a private copy of its word list. */
    uint32_t n_list = p->n_words;
    uint32_t *list = p->words;
    p->words = NULL;
    p->n_words = p->cap_words = 0;
    for (uint32_t k = 0; k < n_list; k++) {
      word_t *wd = &tr.words[list[k]];
      if (wd->stamp == stamp) continue;
      wd->stamp = stamp;
      int64_t c = (int64_t)wd->count;
      uint32_t r = 0, w = list[k];
      int prev_merged = 0; /* wd->sym[r - 1] is an s made at the position just before */
      for (uint32_t i = 0; i < wd->n;) {
        if (i + 1 < wd->n && wd->sym[i] == a && wd->sym[i + 1] == b) {
          tr.pairs[top.pair].count -= c;
          if (r > 0) {
            if (prev_merged) {
              /* (b, a) between two merges went with the previous one; (s, s) is new. */
              if (pair_add(&tr, s, s, c, w)) goto fail_list;
            } else {
              if (pair_add(&tr, wd->sym[r - 1], a, -c, w)) goto fail_list;
              if (pair_add(&tr, wd->sym[r - 1], s, c, w)) goto fail_list;
            }
          }
          int next_merges = i + 3 < wd->n && wd->sym[i + 2] == a && wd->sym[i + 3] == b;
          if (i + 2 < wd->n) {
            if (pair_add(&tr, b, wd->sym[i + 2], -c, w)) goto fail_list;
            if (!next_merges && pair_add(&tr, s, wd->sym[i + 2], c, w)) goto fail_list;
          }
          wd->sym[r++] = s;
          i += 2;
          prev_merged = 1;
        } else {
          wd->sym[r++] = wd->sym[i++];
          prev_merged = 0;
        }
      }
      wd->n = r;
    }
    moe__free(list);
    continue;
  fail_list:
    moe__free(list);
    goto fail;
  }
  trainer_free(&tr);
  strtab_free(&wt);
  moe__free(wcount);
  *out = wp;
  return MOE_OK;

fail_aset:
  strtab_free(&aset);
fail:
  moe__free(alpha);
  trainer_free(&tr);
  strtab_free(&wt);
  moe__free(wcount);
  moe_wordpiece_free(wp);
  return err == MOE_OK ? MOE_ENOMEM : err;
}

/* ---- serialisation ------------------------------------------------------------------- */

moe_err_t moe_wordpiece_to_json(const moe_wordpiece_t *wp, char **json, size_t *len) {
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  moe_jw_key(&jw, "kind");
  moe_jw_str(&jw, "wordpiece");
  moe_jw_key(&jw, "version");
  moe_jw_int(&jw, 1);
  moe_jw_key(&jw, "lowercase");
  moe_jw_bool(&jw, true);
  moe_jw_key(&jw, "max_word_bytes");
  moe_jw_int(&jw, MOE_WORDPIECE_MAX_WORD_BYTES);
  moe_jw_key(&jw, "vocab");
  moe_jw_arr_begin(&jw);
  for (size_t i = 0; i < wp->vocab.n; i++) moe_jw_strn(&jw, wp->vocab.str[i], wp->vocab.len[i]);
  moe_jw_arr_end(&jw);
  moe_jw_obj_end(&jw);
  moe_err_t err = moe_jw_finish(&jw, json, len);
  moe_jw_close(&jw);
  return err;
}

moe_err_t moe_wordpiece_from_json(const char *json, size_t len, moe_wordpiece_t **out,
                                  char *errstr, size_t errstr_size) {
  *out = NULL;
  moe_json_doc_t *doc = NULL;
  moe_wordpiece_t *wp = NULL;
  moe_err_t err = moe_json_parse(json, len, NULL, &doc, errstr, errstr_size);
  if (err != MOE_OK) return err;
  const moe_json_t *root = moe_json_root(doc), *vocab;
  const char *type;
  size_t type_len;
  int64_t version, max_word;
  bool lowercase;
  if ((err = moe_json_check_type(root, MOE_JSON_OBJECT, "tokenizer", errstr, errstr_size)) ||
      (err = moe_json_get_str(root, "kind", "tokenizer", &type, &type_len, errstr,
                              errstr_size)) ||
      (err = moe_json_get_int(root, "version", "tokenizer", 1, 1, &version, errstr,
                              errstr_size)) ||
      (err = moe_json_get_bool(root, "lowercase", "tokenizer", &lowercase, errstr,
                               errstr_size)) ||
      (err = moe_json_get_int(root, "max_word_bytes", "tokenizer", MOE_WORDPIECE_MAX_WORD_BYTES,
                              MOE_WORDPIECE_MAX_WORD_BYTES, &max_word, errstr, errstr_size)) ||
      (err = moe_json_get_member(root, "vocab", MOE_JSON_ARRAY, "tokenizer", &vocab, errstr,
                                 errstr_size)))
    goto fail;
  err = MOE_ECONFIG;
  if (strcmp(type, "wordpiece") != 0) {
    snprintf(errstr, errstr_size, "tokenizer.kind: expected \"wordpiece\", got \"%s\"", type);
    goto fail;
  }
  if (!lowercase) {
    snprintf(errstr, errstr_size, "tokenizer.lowercase: only true is supported");
    goto fail;
  }
  if ((wp = moe__calloc(1, sizeof(*wp))) == NULL) goto oom;
  size_t n = moe_json_len(vocab);
  for (size_t i = 0; i < n; i++) {
    const moe_json_t *v = moe_json_at(vocab, i);
    if (v->type != MOE_JSON_STRING || v->u.str.len == 0 ||
        v->u.str.len > WP_MAX_TOKEN + 2 || memchr(v->u.str.s, '\0', v->u.str.len) != NULL) {
      snprintf(errstr, errstr_size,
               "tokenizer.vocab[%zu]: expected a non-empty string of at most %d bytes", i,
               WP_MAX_TOKEN + 2);
      goto fail;
    }
    if (i < MOE_TOKEN_N_SPECIAL && strcmp(v->u.str.s, specials[i]) != 0) {
      snprintf(errstr, errstr_size, "tokenizer.vocab[%zu]: expected \"%s\", got \"%s\"", i,
               specials[i], v->u.str.s);
      goto fail;
    }
    if (moe_wordpiece_id(wp, v->u.str.s, v->u.str.len) >= 0) {
      snprintf(errstr, errstr_size, "tokenizer.vocab[%zu]: \"%s\" appears twice", i,
               v->u.str.s);
      goto fail;
    }
    if (wp_add(wp, v->u.str.s, v->u.str.len) != MOE_OK) goto oom;
  }
  if (n < MOE_TOKEN_N_SPECIAL) {
    snprintf(errstr, errstr_size, "tokenizer.vocab: expected at least the %d special tokens",
             MOE_TOKEN_N_SPECIAL);
    goto fail;
  }
  moe_json_free(doc);
  *out = wp;
  return MOE_OK;
oom:
  err = MOE_ENOMEM;
fail:
  moe_wordpiece_free(wp);
  moe_json_free(doc);
  return err;
}
