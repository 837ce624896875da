/*
 * The per-batch transaction as one parameterised statement of data-modifying CTEs. The
 * contract is in batch-tx.h.
 */
#include "batch-tx.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* ---- small helpers -------------------------------------------------------------------- */

static void *tx__xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fprintf(stderr, "wk_batch_tx: out of memory\n");
    abort();
  }
  return q;
}

static char *tx__xstrdup(const char *s, const char *field) {
  if (s == NULL) {
    fprintf(stderr, "wk_batch_tx: required field %s is NULL\n", field);
    abort();
  }
  size_t n = strlen(s) + 1;
  char *p = tx__xrealloc(NULL, n);
  memcpy(p, s, n);
  return p;
}

/*
 * The rows' strings and buffers live in an arena of chunks that reset() empties at once:
 * one malloc and one free per string of every row was the worker's largest remaining cost
 * (bench/pipeline/README.md). After a reset the chunks are merged into one as large as all
 * of them, so a steady stream of batches allocates nothing.
 */
typedef struct tx__chunk_s {
  struct tx__chunk_s *next;
  size_t used, cap;
  max_align_t data[]; /* cap bytes */
} tx__chunk_t;

#define TX__CHUNK_MIN ((size_t)64 * 1024)

static void *tx__arena_alloc(tx__chunk_t **arena, size_t n) {
  n = (n + 7) & ~(size_t)7;
  tx__chunk_t *c = *arena;
  if (c == NULL || c->cap - c->used < n) {
    size_t cap = n > TX__CHUNK_MIN ? n : TX__CHUNK_MIN;
    c = tx__xrealloc(NULL, sizeof *c + cap);
    c->next = *arena;
    c->used = 0;
    c->cap = cap;
    *arena = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

static void tx__arena_reset(tx__chunk_t **arena) {
  tx__chunk_t *c = *arena;
  if (c == NULL) return;
  if (c->next == NULL) {
    c->used = 0;
    return;
  }
  size_t total = 0;
  while (c != NULL) {
    tx__chunk_t *next = c->next;
    total += c->cap;
    free(c);
    c = next;
  }
  *arena = NULL;
  tx__arena_alloc(arena, total);
  (*arena)->used = 0;
}

static void tx__arena_free(tx__chunk_t **arena) {
  while (*arena != NULL) {
    tx__chunk_t *next = (*arena)->next;
    free(*arena);
    *arena = next;
  }
}

typedef struct tx__buf_s {
  char *p;
  size_t len, cap;
} tx__buf_t;

static void buf_put(tx__buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = tx__xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_puts(tx__buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

/*
 * A PostgreSQL float literal that reads back to the same float: C99 hexadecimal notation
 * ("0x1.8p+0" is 1.5), which PostgreSQL's float4in reads with strtof. It is exact by
 * construction and costs a few shifts, where "%.9g" (decimal, also exact) went through
 * printf's multi-precision arithmetic: with 47 floats per event that was a fifth of the
 * worker's CPU, and parsing decimal was a visible share of the server's (README of
 * bench/pipeline).
 */
static void buf_real(tx__buf_t *b, float f) {
  if (isnan(f)) {
    buf_puts(b, "NaN");
    return;
  }
  if (isinf(f)) {
    buf_puts(b, f > 0 ? "Infinity" : "-Infinity");
    return;
  }
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  uint32_t exp = (bits >> 23) & 0xff, man = (bits & 0x7fffff) << 1; /* 24 bits: 6 hex digits */
  char tmp[24];
  size_t n = 0;
  if (bits >> 31) tmp[n++] = '-';
  if (exp == 0 && man == 0) {
    tmp[n++] = '0';
    buf_put(b, tmp, n);
    return;
  }
  static const char hex[] = "0123456789abcdef";
  memcpy(tmp + n, exp ? "0x1" : "0x0", 3); /* subnormals: 0x0.<man>p-126 */
  n += 3;
  if (man) {
    tmp[n++] = '.';
    for (int shift = 20; shift >= 0 && (man & ((1u << (shift + 4)) - 1)); shift -= 4)
      tmp[n++] = hex[(man >> shift) & 15];
  }
  int e = exp ? (int)exp - 127 : -126;
  tmp[n++] = 'p';
  tmp[n++] = e < 0 ? '-' : '+';
  unsigned ue = (unsigned)(e < 0 ? -e : e);
  if (ue >= 100) tmp[n++] = (char)('0' + ue / 100);
  if (ue >= 10) tmp[n++] = (char)('0' + ue / 10 % 10);
  tmp[n++] = (char)('0' + ue % 10);
  buf_put(b, tmp, n);
}

/* One element of an array literal, double-quoted with \ and " escaped. */
static void buf_elem(tx__buf_t *b, const char *s, size_t n) {
  if (b->len > 1) buf_puts(b, ",");
  buf_puts(b, "\"");
  /* Runs without a quote or backslash are copied at once (byte by byte was a visible cost). */
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '"' && s[i] != '\\') continue;
    buf_put(b, s + run, i - run);
    buf_put(b, "\\", 1);
    run = i;
  }
  buf_put(b, s + run, n - run);
  buf_puts(b, "\"");
}

static void buf_elem_str(tx__buf_t *b, const char *s) { buf_elem(b, s, strlen(s)); }

static void buf_elem_fmt(tx__buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_elem_fmt(tx__buf_t *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  buf_elem_str(b, tmp);
}

/* Bytes as lowercase hex, appended as they are (decode(..., 'hex') reads them back). */
static void buf_hex(tx__buf_t *b, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char tmp[256];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    tmp[k++] = hex[p[i] >> 4];
    tmp[k++] = hex[p[i] & 15];
    if (k == sizeof tmp) {
      buf_put(b, tmp, k);
      k = 0;
    }
  }
  buf_put(b, tmp, k);
}

static void buf_elem_hex(tx__buf_t *b, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char *tmp = tx__xrealloc(NULL, 2 * n + 1);
  for (size_t i = 0; i < n; i++) {
    tmp[2 * i] = hex[p[i] >> 4];
    tmp[2 * i + 1] = hex[p[i] & 15];
  }
  buf_elem(b, tmp, 2 * n);
  free(tmp);
}

/* ---- the builder ---------------------------------------------------------------------- */

typedef struct tx__result_s {
  char *domain, *event_id, *key, *model_version, *experts, *top_features, *topic;
  float score;
  wk_decision_t decision;
  float *input;
  size_t n_input;
  int64_t event_time_ms, offset;
  int32_t partition;
} tx__result_t;

typedef struct tx__state_s {
  char *card_id, *topic;
  int32_t partition;
  int64_t last_offset;
  uint8_t *state;
  size_t state_len;
} tx__state_t;

typedef struct tx__outbox_s {
  char *alert_id, *domain, *key, *topic;
  uint8_t *payload;
  size_t payload_len;
} tx__outbox_t;

typedef struct tx__offset_s {
  char *topic;
  int32_t partition;
  int64_t next_offset;
} tx__offset_t;

struct wk_batch_tx_s {
  tx__chunk_t *arena; /* every row's strings and buffers */
  char *group;
  char *sql;
  tx__result_t *results;
  size_t n_results, cap_results;
  tx__state_t *states;
  size_t n_states, cap_states;
  tx__outbox_t *outbox;
  size_t n_outbox, cap_outbox;
  tx__offset_t *offsets;
  size_t n_offsets, cap_offsets;
  size_t *state_index;    /* open addressing: card hash -> states index + 1 (0 = empty) */
  size_t n_state_index;   /* slots, a power of two, at least twice n_states */
  tx__buf_t params[WK_BATCH_TX_N_PARAMS];
  const char *param_ptrs[WK_BATCH_TX_N_PARAMS];
  tx__buf_t bin[WK_BATCH_TX_N_PARAMS]; /* wk_batch_tx_finish_binary's values */
  const char *bin_ptrs[WK_BATCH_TX_N_PARAMS];
  int bin_lengths[WK_BATCH_TX_N_PARAMS], bin_formats[WK_BATCH_TX_N_PARAMS];
};

/* Copies into the arena; a NULL required string aborts naming the field. */
static char *tx__dup(wk_batch_tx_t *tx, const char *s, const char *field) {
  if (s == NULL) {
    fprintf(stderr, "wk_batch_tx: required field %s is NULL\n", field);
    abort();
  }
  size_t n = strlen(s) + 1;
  char *p = tx__arena_alloc(&tx->arena, n);
  memcpy(p, s, n);
  return p;
}

static void *tx__memdup(wk_batch_tx_t *tx, const void *s, size_t n) {
  void *p = tx__arena_alloc(&tx->arena, n);
  if (n) memcpy(p, s, n);
  return p;
}

#define TX__GROW(arr, n, cap)                                                  \
  do {                                                                         \
    if ((n) == (cap)) {                                                        \
      (cap) = (cap) ? 2 * (cap) : 64;                                          \
      (arr) = tx__xrealloc((arr), (cap) * sizeof *(arr));                      \
    }                                                                          \
  } while (0)

static uint64_t tx__hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 0x100000001b3ull;
  }
  return h;
}

/* The slot holding card `id`, or the empty slot where it would go. */
static size_t *tx__state_slot(wk_batch_tx_t *tx, const char *id) {
  size_t mask = tx->n_state_index - 1;
  for (size_t k = tx__hash(id) & mask;; k = (k + 1) & mask) {
    size_t *slot = &tx->state_index[k];
    if (*slot == 0 || strcmp(tx->states[*slot - 1].card_id, id) == 0) return slot;
  }
}

/* Keeps the index at most half full, so that lookups stay short. */
static void tx__state_index_grow(wk_batch_tx_t *tx) {
  if (2 * (tx->n_states + 1) <= tx->n_state_index) return;
  size_t n = tx->n_state_index ? tx->n_state_index * 2 : 256;
  while (2 * (tx->n_states + 1) > n) n *= 2;
  free(tx->state_index);
  tx->state_index = tx__xrealloc(NULL, n * sizeof *tx->state_index);
  memset(tx->state_index, 0, n * sizeof *tx->state_index);
  tx->n_state_index = n;
  for (size_t i = 0; i < tx->n_states; i++) *tx__state_slot(tx, tx->states[i].card_id) = i + 1;
}

/* wk_decision_name's words (pipeline-fraud.c), here too so that wk_core stands alone. */
static const char *tx__decision_name(wk_decision_t d) {
  switch (d) {
  case WK_DECISION_ALLOW: return "allow";
  case WK_DECISION_REVIEW: return "review";
  case WK_DECISION_BLOCK: return "block";
  }
  return NULL;
}

svc_err_t wk_batch_tx_new(const char *schema, const char *group, wk_batch_tx_t **out,
                          char *errstr, size_t errstr_size) {
  *out = NULL;
  svc_err_t err = wk_schema_name_check(schema, errstr, errstr_size);
  if (err) return err;
  if (group == NULL || group[0] == '\0') {
    snprintf(errstr, errstr_size, "batch transaction: consumer group is empty");
    return SVC_ECONFIG;
  }
  wk_batch_tx_t *tx = tx__xrealloc(NULL, sizeof *tx);
  memset(tx, 0, sizeof *tx);
  tx->group = tx__xstrdup(group, "group");

  /* The schema is a checked identifier, so it can be spliced into the text. */
  const char *s = schema;
  tx__buf_t q = {0};
  char part[2048];
  /*
   * The two bulky inputs travel as ONE value each instead of one array element per row: the
   * model inputs of all rows as one flat real[] ($9), sliced per row by start and length
   * ($28, $29), and all card states as one hex string ($18), decoded once and cut by start and
   * length ($30, $31). As text[] elements they were quoted, escaped and parsed twice (the
   * text[] and then each element's real[] / hex), which was a third of the statement's server
   * time (bench/pipeline/README.md). The MATERIALIZED CTE makes sure each is converted once.
   */
  snprintf(part, sizeof part,
           "WITH v AS MATERIALIZED (SELECT $9::real[] AS inp, $18::bytea AS st),\n"
           "r AS (\n"
           "  INSERT INTO \"%s\".results (domain, event_id, key, score, decision, model_version,\n"
           "    experts, top_features, input, event_time, topic, partition, \"offset\")\n"
           "  SELECT d, e, k, sc, dc, mv, ex::jsonb, tf::jsonb, v.inp[i0:i0 + il - 1],\n"
           "         to_timestamp(et::double precision / 1000), tp, pa, o\n"
           "  FROM v, unnest($1::text[], $2::text[], $3::text[], $4::real[], $5::text[],\n"
           "              $6::text[], $7::text[], $8::text[], $10::bigint[], $11::text[],\n"
           "              $12::integer[], $13::bigint[], $28::integer[], $29::integer[])\n"
           "       AS u(d, e, k, sc, dc, mv, ex, tf, et, tp, pa, o, i0, il)\n"
           "  ON CONFLICT (domain, event_id) DO NOTHING\n"
           "  RETURNING 1),\n",
           s);
  buf_puts(&q, part);
  snprintf(part, sizeof part,
           "s AS (\n"
           "  INSERT INTO \"%s\".card_state AS cs (card_id, topic, partition, last_offset, state)\n"
           "  SELECT c, tp, pa, o, substring(v.st FROM s0 FOR sl)\n"
           "  FROM v, unnest($14::text[], $15::text[], $16::integer[], $17::bigint[],\n"
           "                 $30::integer[], $31::integer[]) AS u(c, tp, pa, o, s0, sl)\n"
           "  ON CONFLICT (card_id) DO UPDATE SET topic = EXCLUDED.topic,\n"
           "    partition = EXCLUDED.partition, last_offset = EXCLUDED.last_offset,\n"
           "    state = EXCLUDED.state, updated_at = now()\n"
           "  WHERE (cs.topic, cs.partition) IS DISTINCT FROM (EXCLUDED.topic, EXCLUDED.partition)\n"
           "     OR cs.last_offset < EXCLUDED.last_offset\n"
           "  RETURNING 1),\n",
           s);
  buf_puts(&q, part);
  snprintf(part, sizeof part,
           "o AS (\n"
           "  INSERT INTO \"%s\".outbox (alert_id, domain, key, topic, payload)\n"
           "  SELECT a, d, k, tp, decode(p, 'hex')\n"
           "  FROM unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::text[])\n"
           "       AS u(a, d, k, tp, p)\n"
           "  ON CONFLICT (alert_id) DO NOTHING\n"
           "  RETURNING 1),\n",
           s);
  buf_puts(&q, part);
  snprintf(part, sizeof part,
           "k AS (\n"
           "  INSERT INTO \"%s\".kafka_offsets AS ko (consumer_group, topic, partition, next_offset)\n"
           "  SELECT $24::text, tp, pa, n\n"
           "  FROM unnest($25::text[], $26::integer[], $27::bigint[]) AS u(tp, pa, n)\n"
           "  ON CONFLICT (consumer_group, topic, partition) DO UPDATE\n"
           "    SET next_offset = EXCLUDED.next_offset, updated_at = now()\n"
           "  WHERE ko.next_offset < EXCLUDED.next_offset\n"
           "  RETURNING 1)\n"
           "SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM s),\n"
           "       (SELECT count(*) FROM o), (SELECT count(*) FROM k)",
           s);
  buf_puts(&q, part);
  tx->sql = q.p;
  *out = tx;
  return SVC_OK;
}

void wk_batch_tx_reset(wk_batch_tx_t *tx) {
  tx__arena_reset(&tx->arena); /* every row's strings and buffers at once */
  tx->n_results = tx->n_states = tx->n_outbox = tx->n_offsets = 0;
  if (tx->state_index) memset(tx->state_index, 0, tx->n_state_index * sizeof *tx->state_index);
}

void wk_batch_tx_free(wk_batch_tx_t *tx) {
  if (tx == NULL) return;
  wk_batch_tx_reset(tx);
  free(tx->results);
  free(tx->states);
  free(tx->outbox);
  free(tx->offsets);
  free(tx->state_index);
  tx__arena_free(&tx->arena);
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++) {
    free(tx->params[i].p);
    free(tx->bin[i].p);
  }
  free(tx->group);
  free(tx->sql);
  free(tx);
}

void wk_batch_tx_add_result(wk_batch_tx_t *tx, const wk_result_row_t *r) {
  if (tx__decision_name(r->decision) == NULL) {
    fprintf(stderr, "wk_batch_tx_add_result: decision %d is not allow/review/block\n",
            (int)r->decision);
    abort();
  }
  TX__GROW(tx->results, tx->n_results, tx->cap_results);
  tx__result_t *d = &tx->results[tx->n_results++];
  d->domain = tx__dup(tx, r->domain, "domain");
  d->event_id = tx__dup(tx, r->event_id, "event_id");
  d->key = tx__dup(tx, r->key ? r->key : "", "key");
  d->model_version = tx__dup(tx, r->model_version, "model_version");
  d->experts = tx__dup(tx, r->experts_json ? r->experts_json : "[]", "experts_json");
  d->top_features = tx__dup(tx, r->top_features_json ? r->top_features_json : "[]", "top_features");
  d->topic = tx__dup(tx, r->topic, "topic");
  d->score = r->score;
  d->decision = r->decision;
  d->n_input = r->n_input;
  d->input = tx__memdup(tx, r->input, r->n_input * sizeof *d->input);
  d->event_time_ms = r->event_time_ms;
  d->partition = r->partition;
  d->offset = r->offset;
}

void wk_batch_tx_add_state(wk_batch_tx_t *tx, const wk_state_row_t *s) {
  if (s->card_id == NULL) tx__dup(tx, NULL, "card_id");
  tx__state_index_grow(tx);
  size_t *slot = tx__state_slot(tx, s->card_id);
  if (*slot != 0) {
    tx__state_t *d = &tx->states[*slot - 1];
    /* One row per card in a statement: the newest state wins. */
    if (s->last_offset >= d->last_offset) { /* the older copies stay in the arena until reset */
      d->topic = tx__dup(tx, s->topic, "topic");
      d->partition = s->partition;
      d->last_offset = s->last_offset;
      d->state = tx__memdup(tx, s->state, s->state_len);
      d->state_len = s->state_len;
    }
    return;
  }
  TX__GROW(tx->states, tx->n_states, tx->cap_states);
  tx__state_t *d = &tx->states[tx->n_states++];
  *slot = tx->n_states;
  d->card_id = tx__dup(tx, s->card_id, "card_id");
  d->topic = tx__dup(tx, s->topic, "topic");
  d->partition = s->partition;
  d->last_offset = s->last_offset;
  d->state = tx__memdup(tx, s->state, s->state_len);
  d->state_len = s->state_len;
}

void wk_batch_tx_add_outbox(wk_batch_tx_t *tx, const wk_outbox_row_t *o) {
  TX__GROW(tx->outbox, tx->n_outbox, tx->cap_outbox);
  tx__outbox_t *d = &tx->outbox[tx->n_outbox++];
  d->alert_id = tx__dup(tx, o->alert_id, "alert_id");
  d->domain = tx__dup(tx, o->domain, "domain");
  d->key = tx__dup(tx, o->key ? o->key : "", "key");
  d->topic = tx__dup(tx, o->topic, "topic");
  d->payload = tx__memdup(tx, o->payload, o->payload_len);
  d->payload_len = o->payload_len;
}

void wk_batch_tx_add_offset(wk_batch_tx_t *tx, const wk_offset_row_t *k) {
  for (size_t i = 0; i < tx->n_offsets; i++) {
    tx__offset_t *d = &tx->offsets[i];
    if (d->partition == k->partition && strcmp(d->topic, k->topic) == 0) {
      if (k->next_offset > d->next_offset) d->next_offset = k->next_offset;
      return;
    }
  }
  TX__GROW(tx->offsets, tx->n_offsets, tx->cap_offsets);
  tx__offset_t *d = &tx->offsets[tx->n_offsets++];
  d->topic = tx__dup(tx, k->topic, "topic");
  d->partition = k->partition;
  d->next_offset = k->next_offset;
}

size_t wk_batch_tx_n_results(const wk_batch_tx_t *tx) { return tx->n_results; }
size_t wk_batch_tx_n_states(const wk_batch_tx_t *tx) { return tx->n_states; }

void wk_batch_tx_finish(wk_batch_tx_t *tx, const char **sql, const char *const **params) {
  tx__buf_t *p = tx->params;
  size_t n_inputs = 0, state_bytes = 0; /* running starts of the flat $9 and $18 */
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++) {
    p[i].len = 0;
    buf_puts(&p[i], "{");
  }
  p[17].len = 0; /* $18 is one bytea in hex form, not an array */
  buf_puts(&p[17], "\\x");
  for (size_t i = 0; i < tx->n_results; i++) {
    const tx__result_t *r = &tx->results[i];
    buf_elem_str(&p[0], r->domain);
    buf_elem_str(&p[1], r->event_id);
    buf_elem_str(&p[2], r->key);
    tx__buf_t score = {0};
    buf_real(&score, r->score);
    buf_elem_str(&p[3], score.p);
    free(score.p);
    buf_elem_str(&p[4], tx__decision_name(r->decision));
    buf_elem_str(&p[5], r->model_version);
    buf_elem_str(&p[6], r->experts);
    buf_elem_str(&p[7], r->top_features);
    for (size_t j = 0; j < r->n_input; j++) {
      if (p[8].len > 1) buf_puts(&p[8], ",");
      buf_real(&p[8], r->input[j]);
    }
    buf_elem_fmt(&p[27], "%zu", n_inputs + 1);
    buf_elem_fmt(&p[28], "%zu", r->n_input);
    n_inputs += r->n_input;
    buf_elem_fmt(&p[9], "%" PRId64, r->event_time_ms);
    buf_elem_str(&p[10], r->topic);
    buf_elem_fmt(&p[11], "%" PRId32, r->partition);
    buf_elem_fmt(&p[12], "%" PRId64, r->offset);
  }
  for (size_t i = 0; i < tx->n_states; i++) {
    const tx__state_t *s = &tx->states[i];
    buf_elem_str(&p[13], s->card_id);
    buf_elem_str(&p[14], s->topic);
    buf_elem_fmt(&p[15], "%" PRId32, s->partition);
    buf_elem_fmt(&p[16], "%" PRId64, s->last_offset);
    buf_hex(&p[17], s->state, s->state_len);
    buf_elem_fmt(&p[29], "%zu", state_bytes + 1);
    buf_elem_fmt(&p[30], "%zu", s->state_len);
    state_bytes += s->state_len;
  }
  for (size_t i = 0; i < tx->n_outbox; i++) {
    const tx__outbox_t *o = &tx->outbox[i];
    buf_elem_str(&p[18], o->alert_id);
    buf_elem_str(&p[19], o->domain);
    buf_elem_str(&p[20], o->key);
    buf_elem_str(&p[21], o->topic);
    buf_elem_hex(&p[22], o->payload, o->payload_len);
  }
  for (size_t i = 0; i < tx->n_offsets; i++) {
    const tx__offset_t *k = &tx->offsets[i];
    buf_elem_str(&p[24], k->topic);
    buf_elem_fmt(&p[25], "%" PRId32, k->partition);
    buf_elem_fmt(&p[26], "%" PRId64, k->next_offset);
  }
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++)
    if (i != 17) buf_puts(&p[i], "}");
  /* $24 is the scalar consumer group, not an array. */
  p[23].len = 0;
  buf_puts(&p[23], tx->group);
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++) tx->param_ptrs[i] = p[i].p;
  *sql = tx->sql;
  *params = tx->param_ptrs;
}

/* ---- binary parameters ---------------------------------------------------------------- */

/*
 * PostgreSQL's binary wire formats (network byte order): a one-dimensional array is ndim,
 * has-nulls flag, element type OID, then the length and lower bound of its dimension (an
 * empty array has ndim 0 and no dimension), then each element as its byte length and bytes.
 * The element type must be exactly the one the statement casts to, or the server refuses it.
 */
enum { TX__OID_INT8 = 20, TX__OID_INT4 = 23, TX__OID_TEXT = 25, TX__OID_FLOAT4 = 700 };

/* Room for n more bytes (and buf_put's terminating zero). */
static void buf_reserve(tx__buf_t *b, size_t n) {
  if (b->len + n + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  b->p = tx__xrealloc(b->p, cap);
  b->cap = cap;
}

/* Stored byte by byte, not through memcpy: a batch writes tens of thousands of these, and a
 * library call each was most of the builder's time (the profile's "memmove"). */
static inline void bin_put32(char *d, uint32_t v) {
  d[0] = (char)(v >> 24);
  d[1] = (char)(v >> 16);
  d[2] = (char)(v >> 8);
  d[3] = (char)v;
}

static void bin_u32(tx__buf_t *b, uint32_t v) {
  buf_reserve(b, 4);
  bin_put32(b->p + b->len, v);
  b->len += 4;
}

static void bin_array(tx__buf_t *b, uint32_t oid, size_t n) {
  b->len = 0;
  bin_u32(b, n ? 1 : 0);
  bin_u32(b, 0);
  bin_u32(b, oid);
  if (n == 0) return;
  bin_u32(b, (uint32_t)n);
  bin_u32(b, 1);
}

static void bin_text(tx__buf_t *b, const char *s) {
  size_t n = strlen(s);
  bin_u32(b, (uint32_t)n);
  buf_put(b, s, n);
}

/* n floats as float4 elements (length 4, then the IEEE bits big-endian). */
static void bin_f4s(tx__buf_t *b, const float *f, size_t n) {
  buf_reserve(b, 8 * n);
  char *d = b->p + b->len;
  for (size_t i = 0; i < n; i++, d += 8) {
    uint32_t bits;
    memcpy(&bits, &f[i], sizeof bits); /* a fixed-size copy: compiled to a register move */
    bin_put32(d, 4);
    bin_put32(d + 4, bits);
  }
  b->len += 8 * n;
}

static void bin_f4(tx__buf_t *b, float f) { bin_f4s(b, &f, 1); }

static void bin_i4(tx__buf_t *b, int64_t v) {
  buf_reserve(b, 8);
  bin_put32(b->p + b->len, 4);
  bin_put32(b->p + b->len + 4, (uint32_t)(int32_t)v);
  b->len += 8;
}

static void bin_i8(tx__buf_t *b, int64_t v) {
  buf_reserve(b, 12);
  bin_put32(b->p + b->len, 8);
  bin_put32(b->p + b->len + 4, (uint32_t)((uint64_t)v >> 32));
  bin_put32(b->p + b->len + 8, (uint32_t)v);
  b->len += 12;
}

void wk_batch_tx_finish_binary(wk_batch_tx_t *tx, const char **sql, const char *const **values,
                               const int **lengths, const int **formats) {
  tx__buf_t *p = tx->bin;
  size_t nr = tx->n_results, ns = tx->n_states, no = tx->n_outbox, nk = tx->n_offsets;
  size_t n_inputs = 0, in_start = 0, state_bytes = 0;
  for (size_t i = 0; i < nr; i++) n_inputs += tx->results[i].n_input;
  static const int text_cols[] = {0, 1, 2, 4, 5, 6, 7, 10};
  for (size_t c = 0; c < sizeof text_cols / sizeof *text_cols; c++)
    bin_array(&p[text_cols[c]], TX__OID_TEXT, nr);
  bin_array(&p[3], TX__OID_FLOAT4, nr);
  bin_array(&p[8], TX__OID_FLOAT4, n_inputs);
  bin_array(&p[9], TX__OID_INT8, nr);
  bin_array(&p[11], TX__OID_INT4, nr);
  bin_array(&p[12], TX__OID_INT8, nr);
  bin_array(&p[27], TX__OID_INT4, nr);
  bin_array(&p[28], TX__OID_INT4, nr);
  for (size_t i = 0; i < nr; i++) {
    const tx__result_t *r = &tx->results[i];
    bin_text(&p[0], r->domain);
    bin_text(&p[1], r->event_id);
    bin_text(&p[2], r->key);
    bin_f4(&p[3], r->score);
    bin_text(&p[4], tx__decision_name(r->decision));
    bin_text(&p[5], r->model_version);
    bin_text(&p[6], r->experts);
    bin_text(&p[7], r->top_features);
    bin_f4s(&p[8], r->input, r->n_input);
    bin_i4(&p[27], (int64_t)in_start + 1); /* where this row's inputs start in $9 */
    bin_i4(&p[28], (int64_t)r->n_input);
    in_start += r->n_input;
    bin_i8(&p[9], r->event_time_ms);
    bin_text(&p[10], r->topic);
    bin_i4(&p[11], r->partition);
    bin_i8(&p[12], r->offset);
  }
  bin_array(&p[13], TX__OID_TEXT, ns);
  bin_array(&p[14], TX__OID_TEXT, ns);
  bin_array(&p[15], TX__OID_INT4, ns);
  bin_array(&p[16], TX__OID_INT8, ns);
  bin_array(&p[29], TX__OID_INT4, ns);
  bin_array(&p[30], TX__OID_INT4, ns);
  p[17].len = 0; /* $18: all states as one bytea, raw */
  buf_put(&p[17], "", 0);
  for (size_t i = 0; i < ns; i++) {
    const tx__state_t *st = &tx->states[i];
    bin_text(&p[13], st->card_id);
    bin_text(&p[14], st->topic);
    bin_i4(&p[15], st->partition);
    bin_i8(&p[16], st->last_offset);
    buf_put(&p[17], (const char *)st->state, st->state_len);
    bin_i4(&p[29], (int64_t)state_bytes + 1);
    bin_i4(&p[30], (int64_t)st->state_len);
    state_bytes += st->state_len;
  }
  for (int c = 18; c <= 22; c++) bin_array(&p[c], TX__OID_TEXT, no);
  for (size_t i = 0; i < no; i++) {
    const tx__outbox_t *o = &tx->outbox[i];
    bin_text(&p[18], o->alert_id);
    bin_text(&p[19], o->domain);
    bin_text(&p[20], o->key);
    bin_text(&p[21], o->topic);
    char *hex = tx__xrealloc(NULL, 2 * o->payload_len + 1);
    static const char digits[] = "0123456789abcdef";
    for (size_t k = 0; k < o->payload_len; k++) {
      hex[2 * k] = digits[o->payload[k] >> 4];
      hex[2 * k + 1] = digits[o->payload[k] & 15];
    }
    hex[2 * o->payload_len] = '\0';
    bin_text(&p[22], hex);
    free(hex);
  }
  p[23].len = 0; /* $24, the consumer group, is the one text parameter */
  buf_puts(&p[23], tx->group);
  bin_array(&p[24], TX__OID_TEXT, nk);
  bin_array(&p[25], TX__OID_INT4, nk);
  bin_array(&p[26], TX__OID_INT8, nk);
  for (size_t i = 0; i < nk; i++) {
    bin_text(&p[24], tx->offsets[i].topic);
    bin_i4(&p[25], tx->offsets[i].partition);
    bin_i8(&p[26], tx->offsets[i].next_offset);
  }
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++) {
    tx->bin_ptrs[i] = p[i].p;
    tx->bin_lengths[i] = (int)p[i].len;
    tx->bin_formats[i] = i != 23;
  }
  *sql = tx->sql;
  *values = tx->bin_ptrs;
  *lengths = tx->bin_lengths;
  *formats = tx->bin_formats;
}

svc_err_t wk_batch_tx_parse_counts(const char *const cols[4], wk_batch_tx_counts_t *out) {
  long v[4];
  for (int i = 0; i < 4; i++) {
    char *end;
    if (cols[i] == NULL || cols[i][0] == '\0') return SVC_EDECODE;
    v[i] = strtol(cols[i], &end, 10);
    if (*end != '\0' || v[i] < 0) return SVC_EDECODE;
  }
  *out = (wk_batch_tx_counts_t){v[0], v[1], v[2], v[3]};
  return SVC_OK;
}
