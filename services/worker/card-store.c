/*
 * The per-card state map: chained hashing (FNV-1a), doubling at load factor 1. The contract is
 * in card-store.h.
 */
#include "card-store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *cs__xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) {
    fprintf(stderr, "wk_card_store: out of memory\n");
    abort();
  }
  return p;
}

static uint64_t cs__hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 0x100000001b3ull;
  }
  return h;
}

void wk_card_store_init(wk_card_store_t *s) {
  s->n_buckets = 1024;
  s->buckets = cs__xcalloc(s->n_buckets, sizeof *s->buckets);
  s->n = 0;
}

void wk_card_store_close(wk_card_store_t *s) {
  for (size_t i = 0; i < s->n_buckets; i++) {
    wk_card_t *c = s->buckets[i];
    while (c) {
      wk_card_t *next = c->next;
      free(c->id);
      free(c);
      c = next;
    }
  }
  free(s->buckets);
  s->buckets = NULL;
  s->n_buckets = s->n = 0;
}

wk_card_t *wk_card_store_find(const wk_card_store_t *s, const char *id) {
  for (wk_card_t *c = s->buckets[cs__hash(id) & (s->n_buckets - 1)]; c; c = c->next)
    if (strcmp(c->id, id) == 0) return c;
  return NULL;
}

static void cs__grow(wk_card_store_t *s) {
  size_t nb = s->n_buckets * 2;
  wk_card_t **b = cs__xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < s->n_buckets; i++) {
    wk_card_t *c = s->buckets[i];
    while (c) {
      wk_card_t *next = c->next;
      size_t k = cs__hash(c->id) & (nb - 1);
      c->next = b[k];
      b[k] = c;
      c = next;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->n_buckets = nb;
}

wk_card_t *wk_card_store_get(wk_card_store_t *s, const char *id, int32_t partition,
                             int *created) {
  wk_card_t *c = wk_card_store_find(s, id);
  if (created) *created = c == NULL;
  if (c) return c;
  if (s->n >= s->n_buckets) cs__grow(s);
  c = cs__xcalloc(1, sizeof *c);
  size_t n = strlen(id) + 1;
  c->id = cs__xcalloc(1, n);
  memcpy(c->id, id, n);
  c->partition = partition;
  c->last_offset = -1;
  wk_velocity_init(&c->vel);
  size_t k = cs__hash(id) & (s->n_buckets - 1);
  c->next = s->buckets[k];
  s->buckets[k] = c;
  s->n++;
  return c;
}

size_t wk_card_store_drop_partition(wk_card_store_t *s, int32_t partition) {
  size_t dropped = 0;
  for (size_t i = 0; i < s->n_buckets; i++) {
    wk_card_t **pp = &s->buckets[i];
    while (*pp) {
      wk_card_t *c = *pp;
      if (c->partition == partition) {
        *pp = c->next;
        free(c->id);
        free(c);
        dropped++;
      } else {
        pp = &c->next;
      }
    }
  }
  s->n -= dropped;
  return dropped;
}
