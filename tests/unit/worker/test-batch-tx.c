/*
 * Unit tests of the batch statement builder without a database: the exact text parameters
 * (array literals with quotes, backslashes, braces and commas escaped; NaN and infinities;
 * floats in C99 hexadecimal that strtof reads back bit for bit; bytea as hex), the binary
 * rendering byte for byte, one state row per card keeping the newest even across thousands of
 * cards, one offset per partition keeping the highest, and an empty batch. The statement itself is
 * run against PostgreSQL in test-worker-db.
 */
#include <string.h>

#include "batch-tx.h"
#include "test.h"

static const char *const *finish(wk_batch_tx_t *tx) {
  const char *sql;
  const char *const *params;
  wk_batch_tx_finish(tx, &sql, &params);
  ASSERT_STR_CONTAINS(sql, "INSERT INTO \"s\".results");
  return params;
}

TEST(parameters_are_exact_array_literals) {
  wk_batch_tx_t *tx = NULL;
  char err[256];
  ASSERT_OK(wk_batch_tx_new("s", "grp", &tx, err, sizeof err));
  const char *const *p = finish(tx);
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++)
    if (i != 23 && i != 17) ASSERT_STR_EQ(p[i], "{}");
  ASSERT_STR_EQ(p[23], "grp");
  ASSERT_STR_EQ(p[17], "\\x"); /* all states as one bytea in hex form: none */

  const float input[3] = {1.5f, INFINITY, -0.0f};
  wk_result_row_t r = {.domain = "fraud", .event_id = "a\"b\\c{d},e", .key = NULL,
                       .score = NAN, .decision = WK_DECISION_REVIEW, .model_version = "m1",
                       .experts_json = "[{\"x\":1}]", .input = input, .n_input = 3,
                       .event_time_ms = 1700000000123, .topic = "t", .partition = 2,
                       .offset = 41};
  wk_batch_tx_add_result(tx, &r);
  const uint8_t bytes[] = {0x00, 0xff, 0x5c};
  wk_state_row_t s = {.card_id = "c", .topic = "t", .partition = 2, .last_offset = 41,
                      .state = bytes, .state_len = 3};
  wk_batch_tx_add_state(tx, &s);
  wk_outbox_row_t o = {.alert_id = "fraud:x", .domain = "fraud", .key = "k", .topic = "alerts",
                       .payload = bytes, .payload_len = 3};
  wk_batch_tx_add_outbox(tx, &o);
  p = finish(tx);
  ASSERT_STR_EQ(p[1], "{\"a\\\"b\\\\c{d},e\"}");
  ASSERT_STR_EQ(p[2], "{\"\"}");
  ASSERT_STR_EQ(p[3], "{\"NaN\"}");
  ASSERT_STR_EQ(p[4], "{\"review\"}");
  ASSERT_STR_EQ(p[6], "{\"[{\\\"x\\\":1}]\"}");
  ASSERT_STR_EQ(p[7], "{\"[]\"}");
  ASSERT_STR_EQ(p[8], "{0x1.8p+0,Infinity,-0}"); /* every row's inputs, one flat real[] */
  ASSERT_STR_EQ(p[27], "{\"1\"}");             /* where this row's inputs start in it */
  ASSERT_STR_EQ(p[28], "{\"3\"}");             /* and how many */
  ASSERT_STR_EQ(p[9], "{\"1700000000123\"}");
  ASSERT_STR_EQ(p[11], "{\"2\"}");
  ASSERT_STR_EQ(p[12], "{\"41\"}");
  ASSERT_STR_EQ(p[17], "\\x00ff5c"); /* every state's bytes, one hex bytea */
  ASSERT_STR_EQ(p[29], "{\"1\"}");
  ASSERT_STR_EQ(p[30], "{\"3\"}");
  ASSERT_STR_EQ(p[22], "{\"00ff5c\"}");
  ASSERT_STR_EQ(p[18], "{\"fraud:x\"}");

  /* More rows: the starts run on over the rows before; an empty input takes no room. */
  const float more_in[2] = {2.0f, -3.25f};
  r.event_id = "second";
  r.input = NULL;
  r.n_input = 0;
  wk_batch_tx_add_result(tx, &r);
  r.event_id = "third";
  r.input = more_in;
  r.n_input = 2;
  wk_batch_tx_add_result(tx, &r);
  const uint8_t five[] = {1, 2, 3, 4, 0xab};
  s.card_id = "d";
  s.state = five;
  s.state_len = 5;
  wk_batch_tx_add_state(tx, &s);
  p = finish(tx);
  ASSERT_STR_EQ(p[8], "{0x1.8p+0,Infinity,-0,0x1p+1,-0x1.ap+1}");
  ASSERT_STR_EQ(p[27], "{\"1\",\"4\",\"4\"}");
  ASSERT_STR_EQ(p[28], "{\"3\",\"0\",\"2\"}");
  ASSERT_STR_EQ(p[17], "\\x00ff5c01020304ab");
  ASSERT_STR_EQ(p[29], "{\"1\",\"4\"}");
  ASSERT_STR_EQ(p[30], "{\"3\",\"5\"}");

  /* A reset batch renders empty arrays again. */
  wk_batch_tx_reset(tx);
  p = finish(tx);
  ASSERT_STR_EQ(p[1], "{}");
  ASSERT_STR_EQ(p[8], "{}");
  ASSERT_STR_EQ(p[13], "{}");
  ASSERT_STR_EQ(p[17], "\\x");
  wk_batch_tx_free(tx);
}

/* Every float, written as PostgreSQL will read it (strtof), comes back with the same bits. */
TEST(float_literals_read_back_exactly) {
  wk_batch_tx_t *tx = NULL;
  char err[256];
  ASSERT_OK(wk_batch_tx_new("s", "grp", &tx, err, sizeof err));
  enum { N = 4096 };
  static float in[N];
  const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.1f, 1e-45f, -1e-45f, 1.1754942e-38f,
                           1.17549435e-38f, 3.4028235e38f, -3.4028235e38f, 123456.789f,
                           2.5e-7f, 16777217.0f, 0.33333334f};
  size_t n_special = sizeof special / sizeof special[0];
  uint32_t seed = 12345;
  for (size_t i = 0; i < N; i++) {
    if (i < n_special) {
      in[i] = special[i];
      continue;
    }
    uint32_t bits;
    do {
      seed = seed * 1664525u + 1013904223u;
      bits = seed;
      memcpy(&in[i], &bits, sizeof bits);
    } while (!isfinite(in[i])); /* any finite bit pattern, subnormals included */
  }
  wk_result_row_t r = {.domain = "fraud", .event_id = "e", .score = 0.5f,
                       .decision = WK_DECISION_ALLOW, .model_version = "m", .input = in,
                       .n_input = N, .event_time_ms = 1, .topic = "t", .partition = 0,
                       .offset = 0};
  wk_batch_tx_add_result(tx, &r);
  const char *const *p = finish(tx);
  const char *s = p[8];
  ASSERT_EQ(s[0], '{');
  s++;
  for (size_t i = 0; i < N; i++) {
    char *end;
    float back = strtof(s, &end);
    ASSERT_MSG(end != s && (*end == ',' || *end == '}'), "element %zu unreadable at \"%.20s\"",
               i, s);
    uint32_t want, got;
    memcpy(&want, &in[i], sizeof want);
    memcpy(&got, &back, sizeof got);
    ASSERT_MSG(want == got, "element %zu: %.9g written as \"%.*s\" reads back as %.9g", i,
               (double)in[i], (int)(end - s), s, (double)back);
    s = end + 1;
  }
  wk_batch_tx_free(tx);
}

TEST(one_row_per_card_and_partition) {
  wk_batch_tx_t *tx = NULL;
  char err[256];
  ASSERT_OK(wk_batch_tx_new("s", "grp", &tx, err, sizeof err));
  enum { N = 20000, CARDS = 5000 };
  uint8_t st[8];
  /* Offsets rise with i; card i % CARDS: each card's newest is i in [N - CARDS, N). The
   * shuffled order also adds older rows after newer ones, which must not win. */
  for (int k = 0; k < N; k++) {
    int i = (int)(((long)k * 7919) % N);
    char id[16];
    snprintf(id, sizeof id, "card-%d", i % CARDS);
    memset(st, i & 0xff, sizeof st);
    wk_state_row_t s = {.card_id = id, .topic = "t", .partition = 0, .last_offset = i,
                        .state = st, .state_len = sizeof st};
    wk_batch_tx_add_state(tx, &s);
    wk_offset_row_t o = {.topic = "t", .partition = i % 3, .next_offset = i + 1};
    wk_batch_tx_add_offset(tx, &o);
  }
  ASSERT_EQ(wk_batch_tx_n_states(tx), CARDS);
  const char *const *p = finish(tx);
  /* Walk card ids and last offsets together. */
  const char *ids = p[13], *offs = p[16];
  int n = 0;
  while (*ids && *ids != '}') {
    int card, off;
    ASSERT_EQ(sscanf(ids, "%*[{,]\"card-%d\"", &card), 1);
    ASSERT_EQ(sscanf(offs, "%*[{,]\"%d\"", &off), 1);
    ASSERT_EQ(off % CARDS, card);
    ASSERT_OP(off, >=, N - CARDS);
    n++;
    ids = strchr(ids + 1, ',') ? strchr(ids + 1, ',') : "}";
    offs = strchr(offs + 1, ',') ? strchr(offs + 1, ',') : "}";
  }
  ASSERT_EQ(n, CARDS);
  /* Partitions 0, 1, 2 (in first-seen order) with their highest next offset. */
  ASSERT_STR_CONTAINS(p[25], "\"0\"");
  ASSERT_STR_CONTAINS(p[25], "\"1\"");
  ASSERT_STR_CONTAINS(p[25], "\"2\"");
  ASSERT_STR_CONTAINS(p[26], "\"19999\"");
  ASSERT_STR_CONTAINS(p[26], "\"20000\"");
  ASSERT_STR_CONTAINS(p[26], "\"19998\"");
  wk_batch_tx_free(tx);
}

/* The binary rendering, byte for byte against PostgreSQL's array wire format written out by
 * hand: ndim, has-nulls, element OID, length, lower bound, then (length, bytes) per element. */
TEST(binary_parameters_wire_format) {
  wk_batch_tx_t *tx = NULL;
  char err[256];
  ASSERT_OK(wk_batch_tx_new("s", "grp", &tx, err, sizeof err));
  const char *sql;
  const char *const *v;
  const int *len, *fmt;
  wk_batch_tx_finish_binary(tx, &sql, &v, &len, &fmt);
  ASSERT_STR_CONTAINS(sql, "$18::bytea");
  /* Empty: ndim 0, no nulls, text OID 25, nothing more. */
  static const uint8_t empty_text[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25};
  ASSERT_EQ(len[1], (int)sizeof empty_text);
  ASSERT(memcmp(v[1], empty_text, sizeof empty_text) == 0);
  ASSERT_EQ(len[17], 0);
  ASSERT_NOT_NULL(v[17]); /* an empty bytea, not SQL NULL */
  for (int i = 0; i < WK_BATCH_TX_N_PARAMS; i++) ASSERT_EQ(fmt[i], i == 23 ? 0 : 1);
  ASSERT_STR_EQ(v[23], "grp");

  const float input[2] = {1.5f, -2.0f};
  wk_result_row_t r = {.domain = "fraud", .event_id = "e\"1", .score = 0.25f,
                       .decision = WK_DECISION_ALLOW, .model_version = "m", .input = input,
                       .n_input = 2, .event_time_ms = 0x0102030405LL, .topic = "t",
                       .partition = 7, .offset = -1};
  wk_batch_tx_add_result(tx, &r);
  const uint8_t bytes[] = {0x00, 0xff, 0x5c};
  wk_state_row_t s = {.card_id = "c", .topic = "t", .partition = 7, .last_offset = 9,
                      .state = bytes, .state_len = 3};
  wk_batch_tx_add_state(tx, &s);
  wk_batch_tx_finish_binary(tx, &sql, &v, &len, &fmt);
  /* $2 event ids: one text element of 3 bytes, no escaping. */
  static const uint8_t ids[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 1, 0, 0, 0, 1,
                                0, 0, 0, 3, 'e', '"', '1'};
  ASSERT_EQ(len[1], (int)sizeof ids);
  ASSERT(memcmp(v[1], ids, sizeof ids) == 0);
  /* $9 inputs: float4 (OID 700) 1.5 = 0x3fc00000, -2 = 0xc0000000. */
  static const uint8_t inp[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x02, 0xbc, 0, 0, 0, 2, 0, 0, 0, 1,
                                0, 0, 0, 4, 0x3f, 0xc0, 0, 0, 0, 0, 0, 4, 0xc0, 0, 0, 0};
  ASSERT_EQ(len[8], (int)sizeof inp);
  ASSERT(memcmp(v[8], inp, sizeof inp) == 0);
  /* $10 event time: int8 (OID 20), big-endian. */
  static const uint8_t et[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1,
                               0, 0, 0, 8, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05};
  ASSERT_EQ(len[9], (int)sizeof et);
  ASSERT(memcmp(v[9], et, sizeof et) == 0);
  /* $13 offset -1 as int8; $12 partition 7 as int4 (OID 23). */
  ASSERT_EQ(len[12], 20 + 4 + 8);
  ASSERT(memcmp((const uint8_t *)v[12] + 24, "\xff\xff\xff\xff\xff\xff\xff\xff", 8) == 0);
  static const uint8_t part[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0, 1,
                                 0, 0, 0, 4, 0, 0, 0, 7};
  ASSERT_EQ(len[11], (int)sizeof part);
  ASSERT(memcmp(v[11], part, sizeof part) == 0);
  /* $18: the state's raw bytes; $29/$30 (start 1, length 3) cut it per row. */
  ASSERT_EQ(len[17], 3);
  ASSERT(memcmp(v[17], bytes, 3) == 0);
  ASSERT_EQ(len[29], 28);
  ASSERT_EQ(((const uint8_t *)v[29])[27], 1);
  ASSERT_EQ(((const uint8_t *)v[30])[27], 3);
  wk_batch_tx_free(tx);
}

/* Rows copied into the builder's arena survive growth past a chunk (a string larger than one,
 * many small ones) and a reset; what a batch renders is only its own rows. */
TEST(rows_survive_arena_growth_and_reset) {
  wk_batch_tx_t *tx = NULL;
  char err[256];
  ASSERT_OK(wk_batch_tx_new("s", "grp", &tx, err, sizeof err));
  enum { BIG = 100000 };
  char *big = malloc(BIG + 1);
  ASSERT_NOT_NULL(big);
  for (int round = 0; round < 3; round++) {
    wk_batch_tx_reset(tx);
    memset(big, 'a' + round, BIG);
    big[BIG] = '\0';
    for (int i = 0; i < 3000; i++) {
      char id[32];
      snprintf(id, sizeof id, "r%d-%04d", round, i);
      wk_result_row_t r = {.domain = "fraud", .event_id = id, .score = 0.5f,
                           .decision = WK_DECISION_ALLOW, .model_version = "m",
                           .top_features_json = i == 1500 ? big : NULL, .topic = "t",
                           .partition = 0, .offset = i};
      wk_batch_tx_add_result(tx, &r);
    }
    ASSERT_EQ(wk_batch_tx_n_results(tx), 3000);
    const char *sql;
    const char *const *v;
    const int *len, *fmt;
    wk_batch_tx_finish_binary(tx, &sql, &v, &len, &fmt);
    /* $2: header 20 bytes, then 3000 ids of 7 bytes each with their 4-byte lengths. */
    ASSERT_EQ(len[1], 20 + 3000 * (4 + 7));
    char want[32];
    snprintf(want, sizeof want, "r%d-2999", round);
    ASSERT(memcmp(v[1] + len[1] - 7, want, 7) == 0);
    /* $8: 2999 "[]" and the big one. */
    ASSERT_EQ(len[7], 20 + 2999 * (4 + 2) + 4 + BIG);
    ASSERT_EQ(v[7][20 + 1500 * 6 + 4], 'a' + round);
  }
  free(big);
  wk_batch_tx_free(tx);
}
