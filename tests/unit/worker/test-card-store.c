/*
 * Tests of the per-card state map: get-or-create, find, growth past many cards with every
 * card still found with its own state, and dropping one partition's cards only.
 */
#include "card-store.h"
#include "test.h"

TEST(get_find_grow_drop) {
  wk_card_store_t s;
  wk_card_store_init(&s);
  enum { N = 5000 };
  char id[32];
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "card-%d", i);
    int created = -1;
    wk_card_t *c = wk_card_store_get(&s, id, i % 4, &created);
    ASSERT_EQ(created, 1);
    ASSERT_EQ(c->last_offset, -1);
    wk_velocity_update(&c->vel, 1700000000000 + i, (double)i);
    c->last_offset = i;
  }
  ASSERT_EQ(s.n, N);
  ASSERT_OP(s.n_buckets, >=, N); /* it grew */
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "card-%d", i);
    wk_card_t *c = wk_card_store_find(&s, id);
    ASSERT_NOT_NULL(c);
    ASSERT_STR_EQ(c->id, id);
    ASSERT_EQ(c->partition, i % 4);
    ASSERT_EQ(c->last_offset, i);
    ASSERT_EQ(c->vel.mean, (double)i);
    int created = -1;
    ASSERT(wk_card_store_get(&s, id, 9, &created) == c);
    ASSERT_EQ(created, 0);
  }
  ASSERT_NULL(wk_card_store_find(&s, "card-x"));
  ASSERT_EQ(wk_card_store_drop_partition(&s, 2), N / 4);
  ASSERT_EQ(s.n, N - N / 4);
  ASSERT_NULL(wk_card_store_find(&s, "card-2"));
  ASSERT_NOT_NULL(wk_card_store_find(&s, "card-3"));
  ASSERT_EQ(wk_card_store_drop_partition(&s, 2), 0);
  wk_card_store_close(&s);
}
