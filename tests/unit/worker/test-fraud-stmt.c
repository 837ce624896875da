/*
 * Unit tests of the fraud pipeline's batch statement without a database: the fraud tables
 * (pipeline-fraud.h) through the generic builder (stmt.h), as the worker builds them. Moved
 * here from test-batch-tx when batch-tx.c was retired: the binary rendering byte for byte, one
 * card_state row per card keeping the newest (highest last_offset) even when older rows come
 * after newer ones across thousands of cards, one offset per partition keeping the highest,
 * and rows surviving the arena's growth and resets. (batch-tx's text rendering is gone; the
 * exactness of floats is checked bit for bit in test-stmt and against PostgreSQL in
 * test-worker-stmt and test-worker-db.) The statement runs against PostgreSQL in
 * test-worker-db.
 */
#include <string.h>

#include "pipeline-fraud.h"
#include "test.h"

static wk_stmt_t *fraud_stmt(void) {
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_OK(wk_stmt_new("s", "grp", wk_fraud_tables, WK_FRAUD_N_TABLES, &st, err, sizeof err));
  return st;
}

/*
 * Parameters (1-based) of the fraud statement: results domain 1, event_id 2, key 3, score 4,
 * decision 5, model_version 6, experts 7, top_features 8, input 9 (flat) 10 (starts) 11
 * (lengths), event_time 12, topic 13, partition 14, offset 15; card_state card_id 16, topic 17,
 * partition 18, last_offset 19, state 20 (flat) 21 22; outbox 23..29; group 30; offsets
 * topic 31, partition 32, next_offset 33.
 */
enum {
  P_EVENT_ID = 1, P_TOP_FEATURES = 7, P_INPUT = 8, P_EVENT_TIME = 11, P_PARTITION = 13,
  P_OFFSET = 14, P_CARD = 15, P_LAST_OFFSET = 18, P_STATE = 19, P_STATE_START = 20,
  P_STATE_LEN = 21, P_GROUP = 29, P_OFF_PART = 31, P_OFF_NEXT = 32, N_PARAMS = 33
};

static uint32_t rd32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* The binary rendering, byte for byte against PostgreSQL's array wire format written out by
 * hand: ndim, has-nulls, element OID, length, lower bound, then (length, bytes) per element. */
TEST(binary_parameters_wire_format) {
  wk_stmt_t *st = fraud_stmt();
  const char *sql;
  const char *const *v;
  const int *len, *fmt;
  int np;
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  ASSERT_EQ(np, N_PARAMS);
  ASSERT_STR_CONTAINS(sql, "INSERT INTO \"s\".\"results\" AS t");
  ASSERT_STR_CONTAINS(sql, "ON CONFLICT (domain, event_id) DO NOTHING");
  ASSERT_STR_CONTAINS(sql, "ON CONFLICT (card_id) DO UPDATE");
  ASSERT_STR_CONTAINS(sql, "$20::bytea AS f20");
  /* Empty: ndim 0, no nulls, text OID 25, nothing more. */
  static const uint8_t empty_text[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25};
  ASSERT_EQ(len[P_EVENT_ID], (int)sizeof empty_text);
  ASSERT(memcmp(v[P_EVENT_ID], empty_text, sizeof empty_text) == 0);
  ASSERT_EQ(len[P_STATE], 0);
  ASSERT_NOT_NULL(v[P_STATE]); /* an empty bytea, not SQL NULL */
  for (int i = 0; i < N_PARAMS; i++) ASSERT_EQ(fmt[i], i == P_GROUP ? 0 : 1);
  ASSERT_STR_EQ(v[P_GROUP], "grp");

  const float input[2] = {1.5f, -2.0f};
  wk_result_row_t r = {.domain = "fraud", .event_id = "e\"1", .score = 0.25f,
                       .decision = WK_DECISION_ALLOW, .model_version = "m", .input = input,
                       .n_input = 2, .event_time_ms = 0x0102030405LL, .topic = "t",
                       .partition = 7, .offset = -1};
  wk_fraud_add_result(st, &r);
  const uint8_t bytes[] = {0x00, 0xff, 0x5c};
  wk_state_row_t s = {.card_id = "c", .topic = "t", .partition = 7, .last_offset = 9,
                      .state = bytes, .state_len = 3};
  wk_fraud_add_state(st, &s);
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  /* event ids: one text element of 3 bytes, no escaping. */
  static const uint8_t ids[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 1, 0, 0, 0, 1,
                                0, 0, 0, 3, 'e', '"', '1'};
  ASSERT_EQ(len[P_EVENT_ID], (int)sizeof ids);
  ASSERT(memcmp(v[P_EVENT_ID], ids, sizeof ids) == 0);
  /* inputs: float4 (OID 700) 1.5 = 0x3fc00000, -2 = 0xc0000000. */
  static const uint8_t inp[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x02, 0xbc, 0, 0, 0, 2, 0, 0, 0, 1,
                                0, 0, 0, 4, 0x3f, 0xc0, 0, 0, 0, 0, 0, 4, 0xc0, 0, 0, 0};
  ASSERT_EQ(len[P_INPUT], (int)sizeof inp);
  ASSERT(memcmp(v[P_INPUT], inp, sizeof inp) == 0);
  /* event time: int8 (OID 20), big-endian. */
  static const uint8_t et[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1,
                               0, 0, 0, 8, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05};
  ASSERT_EQ(len[P_EVENT_TIME], (int)sizeof et);
  ASSERT(memcmp(v[P_EVENT_TIME], et, sizeof et) == 0);
  /* offset -1 as int8; partition 7 as int4 (OID 23). */
  ASSERT_EQ(len[P_OFFSET], 20 + 4 + 8);
  ASSERT(memcmp((const uint8_t *)v[P_OFFSET] + 24, "\xff\xff\xff\xff\xff\xff\xff\xff", 8) == 0);
  static const uint8_t part[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0, 1,
                                 0, 0, 0, 4, 0, 0, 0, 7};
  ASSERT_EQ(len[P_PARTITION], (int)sizeof part);
  ASSERT(memcmp(v[P_PARTITION], part, sizeof part) == 0);
  /* The state's raw bytes; start 1 and length 3 cut it per row. */
  ASSERT_EQ(len[P_STATE], 3);
  ASSERT(memcmp(v[P_STATE], bytes, 3) == 0);
  ASSERT_EQ(len[P_STATE_START], 28);
  ASSERT_EQ(((const uint8_t *)v[P_STATE_START])[27], 1);
  ASSERT_EQ(((const uint8_t *)v[P_STATE_LEN])[27], 3);
  wk_stmt_free(st);
}

TEST(one_row_per_card_and_partition) {
  wk_stmt_t *st = fraud_stmt();
  enum { N = 20000, CARDS = 5000 };
  uint8_t stb[8];
  /* Offsets rise with i; card i % CARDS: each card's newest is i in [N - CARDS, N). The
   * shuffled order also adds older rows after newer ones, which must not win. */
  for (int k = 0; k < N; k++) {
    int i = (int)(((long)k * 7919) % N);
    char id[16];
    snprintf(id, sizeof id, "card-%d", i % CARDS);
    memset(stb, i & 0xff, sizeof stb);
    wk_state_row_t s = {.card_id = id, .topic = "t", .partition = 0, .last_offset = i,
                        .state = stb, .state_len = sizeof stb};
    wk_fraud_add_state(st, &s);
    wk_stmt_add_offset(st, "t", i % 3, i + 1);
  }
  ASSERT_EQ(wk_stmt_n_rows(st, WK_FRAUD_TABLE_CARDS), (size_t)CARDS);
  const char *sql;
  const char *const *v;
  const int *len, *fmt;
  int np;
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  /* Walk card ids, last offsets and states together. */
  const char *ids = v[P_CARD] + 20, *offs = v[P_LAST_OFFSET] + 20;
  for (int n = 0; n < CARDS; n++) {
    uint32_t l = rd32(ids);
    int card;
    char id[16];
    ASSERT_OP(l, <, sizeof id);
    memcpy(id, ids + 4, l);
    id[l] = '\0';
    ASSERT_EQ(sscanf(id, "card-%d", &card), 1);
    ids += 4 + l;
    ASSERT_EQ(rd32(offs), 8u);
    int off = (int)rd32(offs + 8);
    offs += 12;
    ASSERT_EQ(off % CARDS, card);
    ASSERT_OP(off, >=, N - CARDS);
    ASSERT_EQ((uint8_t)v[P_STATE][n * 8], (uint8_t)(off & 0xff)); /* the newest state too */
  }
  ASSERT(ids == v[P_CARD] + len[P_CARD]);
  /* Partitions 0, 1, 2 (in first-seen order) with their highest next offset. */
  ASSERT_EQ(rd32(v[P_OFF_PART] + 12), 3u);
  for (int i = 0; i < 3; i++) {
    int p = (int)rd32(v[P_OFF_PART] + 20 + 8 * i + 4);
    int next = (int)rd32(v[P_OFF_NEXT] + 20 + 12 * i + 8);
    ASSERT_EQ(next, p == 0 ? 19999 : p == 1 ? 20000 : 19998);
  }
  wk_stmt_free(st);
}

/* Rows copied into the builder's arena survive growth past a chunk (a string larger than one,
 * many small ones) and a reset; what a batch renders is only its own rows. */
TEST(rows_survive_arena_growth_and_reset) {
  wk_stmt_t *st = fraud_stmt();
  enum { BIG = 100000 };
  char *big = malloc(BIG + 1);
  ASSERT_NOT_NULL(big);
  for (int round = 0; round < 3; round++) {
    wk_stmt_reset(st);
    memset(big, 'a' + round, BIG);
    big[BIG] = '\0';
    for (int i = 0; i < 3000; i++) {
      char id[32];
      snprintf(id, sizeof id, "r%d-%04d", round, i);
      wk_result_row_t r = {.domain = "fraud", .event_id = id, .score = 0.5f,
                           .decision = WK_DECISION_ALLOW, .model_version = "m",
                           .top_features_json = i == 1500 ? big : NULL, .topic = "t",
                           .partition = 0, .offset = i};
      wk_fraud_add_result(st, &r);
    }
    ASSERT_EQ(wk_stmt_n_rows(st, WK_FRAUD_TABLE_RESULTS), 3000u);
    const char *sql;
    const char *const *v;
    const int *len, *fmt;
    int np;
    wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
    /* event ids: header 20 bytes, then 3000 ids of 7 bytes each with their 4-byte lengths. */
    ASSERT_EQ(len[P_EVENT_ID], 20 + 3000 * (4 + 7));
    char want[32];
    snprintf(want, sizeof want, "r%d-2999", round);
    ASSERT(memcmp(v[P_EVENT_ID] + len[P_EVENT_ID] - 7, want, 7) == 0);
    /* top features: 2999 "[]" and the big one. */
    ASSERT_EQ(len[P_TOP_FEATURES], 20 + 2999 * (4 + 2) + 4 + BIG);
    ASSERT_EQ(v[P_TOP_FEATURES][20 + 1500 * 6 + 4], 'a' + round);
  }
  free(big);
  wk_stmt_free(st);
}

TEST(decision_names) {
  ASSERT_STR_EQ(wk_decision_name(WK_DECISION_ALLOW), "allow");
  ASSERT_STR_EQ(wk_decision_name(WK_DECISION_REVIEW), "review");
  ASSERT_STR_EQ(wk_decision_name(WK_DECISION_BLOCK), "block");
  ASSERT_NULL(wk_decision_name((wk_decision_t)9));
}
