/*
 * Unit tests of the generic batch statement builder (stmt.h) without a database: the SQL's
 * shape for a declaration (one CTE per table, its ON CONFLICT verbatim, casts per column
 * type, the flat bulky values sliced per row, parameters numbered in declaration order), the
 * binary parameters decoded back element by element (NULLs, empty bytea and reals), key
 * merging (the newest row of a key replaces the earlier one, across thousands of keys and
 * through resets), offsets merged per partition keeping the highest, and declarations refused
 * with a message naming the fault. The statement runs against PostgreSQL in test-worker-stmt.
 */
#include <string.h>

#include "stmt.h"
#include "test.h"

static const wk_col_t res_cols[] = {
    {"id", WK_COL_TEXT},   {"doc", WK_COL_JSONB},   {"score", WK_COL_FLOAT4},
    {"n", WK_COL_INT4},    {"big", WK_COL_INT8},    {"flag", WK_COL_BOOL},
    {"at", WK_COL_TIME_MS}, {"blob", WK_COL_BYTEA}, {"vec", WK_COL_REALS}};
static const wk_col_t state_cols[] = {
    {"key", WK_COL_TEXT}, {"part", WK_COL_INT4}, {"last_offset", WK_COL_INT8},
    {"state", WK_COL_BYTEA}};
static const wk_table_t decl[] = {
    {.name = "res", .role = WK_TABLE_RESULTS, .cols = res_cols, .n_cols = 9, .key_cols = 0,
     .on_conflict = "ON CONFLICT (id) DO NOTHING"},
    {.name = "st", .role = WK_TABLE_STATE, .cols = state_cols, .n_cols = 4, .key_cols = 2,
     .on_conflict = "ON CONFLICT (key, part) DO UPDATE SET state = EXCLUDED.state "
                    "WHERE t.last_offset < EXCLUDED.last_offset"}};

/* ---- a reader of PostgreSQL's binary arrays ------------------------------------------- */

static uint32_t rd32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

typedef struct {
  const char *p, *end;
  uint32_t oid, n;
} arr_t;

static arr_t arr_open(const char *p, int len, uint32_t want_oid) {
  arr_t a = {.p = p, .end = p + len};
  ASSERT_OP(len, >=, 12);
  uint32_t ndim = rd32(p);
  a.oid = rd32(p + 8);
  ASSERT_EQ(a.oid, want_oid);
  if (ndim == 0) {
    ASSERT_EQ(len, 12);
    a.p += 12;
    return a;
  }
  ASSERT_EQ(ndim, 1u);
  a.n = rd32(p + 12);
  ASSERT_EQ(rd32(p + 16), 1u); /* lower bound */
  a.p += 20;
  return a;
}

/* The next element: its bytes and length, or NULL with *n = -1. */
static const char *arr_next(arr_t *a, int *n) {
  ASSERT_OP(a->end - a->p, >=, 4);
  int32_t l = (int32_t)rd32(a->p);
  a->p += 4;
  *n = l;
  if (l < 0) return NULL;
  const char *e = a->p;
  a->p += l;
  ASSERT(a->p <= a->end);
  return e;
}

static int32_t next_i4(arr_t *a, bool *is_null) {
  int n;
  const char *e = arr_next(a, &n);
  *is_null = e == NULL;
  if (e == NULL) return 0;
  ASSERT_EQ(n, 4);
  return (int32_t)rd32(e);
}

static int64_t next_i8(arr_t *a) {
  int n;
  const char *e = arr_next(a, &n);
  ASSERT_NOT_NULL(e);
  ASSERT_EQ(n, 8);
  return (int64_t)((uint64_t)rd32(e) << 32 | rd32(e + 4));
}

static float next_f4(arr_t *a) {
  int n;
  const char *e = arr_next(a, &n);
  ASSERT_NOT_NULL(e);
  ASSERT_EQ(n, 4);
  uint32_t bits = rd32(e);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ---- tests ---------------------------------------------------------------------------- */

TEST(sql_shape_follows_the_declaration) {
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_OK(wk_stmt_new("sch", "grp", decl, 2, &st, err, sizeof err));
  const char *sql, *const *values;
  const int *lengths, *formats;
  int np = 0;
  wk_stmt_render(st, &sql, &np, &values, &lengths, &formats);
  /* res: 7 scalar columns + 2 bulky (3 each) = 13; st: 3 + 3 = 6; outbox 7, group 1, offsets 3 */
  ASSERT_EQ(np, 13 + 6 + 7 + 1 + 3);
  ASSERT_STR_CONTAINS(sql, "INSERT INTO \"sch\".\"res\" AS t (\"id\", \"doc\", \"score\", \"n\", "
                           "\"big\", \"flag\", \"at\", \"blob\", \"vec\")");
  ASSERT_STR_CONTAINS(sql, "ON CONFLICT (id) DO NOTHING\n");
  ASSERT_STR_CONTAINS(sql, "WHERE t.last_offset < EXCLUDED.last_offset\n");
  ASSERT_STR_CONTAINS(sql, "u.c2::jsonb");
  ASSERT_STR_CONTAINS(sql, "to_timestamp(u.c7::double precision / 1000)");
  ASSERT_STR_CONTAINS(sql, "$8::bytea AS f8");                 /* blob: flat, start, length */
  ASSERT_STR_CONTAINS(sql, "substring(v.f8 FROM u.c9 FOR u.c10)");
  ASSERT_STR_CONTAINS(sql, "$11::real[] AS f11");              /* vec */
  ASSERT_STR_CONTAINS(sql, "v.f11[u.c12:u.c12 + u.c13 - 1]");
  ASSERT_STR_CONTAINS(sql, "$1::text[], $2::text[], $3::real[], $4::integer[], $5::bigint[], "
                           "$6::boolean[], $7::bigint[], $9::integer[], $10::integer[], "
                           "$12::integer[], $13::integer[]");
  ASSERT_STR_CONTAINS(sql, "INSERT INTO \"sch\".\"st\" AS t (\"key\", \"part\", "
                           "\"last_offset\", \"state\")");
  ASSERT_STR_CONTAINS(sql, "$17::bytea AS f17");
  ASSERT_STR_CONTAINS(sql, "INSERT INTO \"sch\".outbox");
  ASSERT_STR_CONTAINS(sql, "$24::bytea AS f24");               /* outbox payloads: 20..26 */
  ASSERT_STR_CONTAINS(sql, "SELECT $27::text, tp, pa, n");     /* the group */
  ASSERT_STR_CONTAINS(sql, "unnest($28::text[], $29::integer[], $30::bigint[])");
  ASSERT_STR_CONTAINS(sql, "SELECT (SELECT count(*) FROM t0), (SELECT count(*) FROM t1), "
                           "(SELECT count(*) FROM o), (SELECT count(*) FROM k)");
  /* Only the group is text; an empty batch renders empty arrays. */
  for (int i = 0; i < np; i++) ASSERT_EQ(formats[i], i == 26 ? 0 : 1);
  ASSERT_STR_EQ(values[26], "grp");
  arr_t a = arr_open(values[0], lengths[0], 25);
  ASSERT_EQ(a.n, 0u);
  ASSERT_EQ(lengths[7], 0); /* the flat bytea of no rows */
  wk_stmt_free(st);

  /* Two results tables and no state table: counts sum by role. */
  wk_table_t two[] = {decl[0], decl[0]};
  two[1].name = "res2";
  ASSERT_OK(wk_stmt_new("sch", "grp", two, 2, &st, err, sizeof err));
  wk_stmt_render(st, &sql, &np, &values, &lengths, &formats);
  ASSERT_STR_CONTAINS(sql, "SELECT (SELECT count(*) FROM t0) + (SELECT count(*) FROM t1), "
                           "0::bigint, ");
  wk_stmt_free(st);
}

TEST(values_render_as_binary_arrays) {
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_OK(wk_stmt_new("sch", "grp", decl, 2, &st, err, sizeof err));
  const uint8_t blob[] = {0, 0xff, '\\', 'x'};
  const float vec[] = {1.5f, -0.0f, 3e-42f};
  /* row 0: every value; row 1: NULLs; row 2: empty bytea and empty reals */
  wk_stmt_row_begin(st, 0);
  wk_stmt_text(st, "a\"b\\c{d},e");
  wk_stmt_text(st, "{\"k\":[1,2]}");
  wk_stmt_float4(st, 0.1f);
  wk_stmt_int4(st, -7);
  wk_stmt_int8(st, INT64_MIN + 1);
  wk_stmt_bool(st, true);
  wk_stmt_int8(st, 1700000000123);
  wk_stmt_bytes(st, blob, sizeof blob);
  wk_stmt_reals(st, vec, 3);
  wk_stmt_row_end(st);
  wk_stmt_row_begin(st, 0);
  wk_stmt_text(st, "second");
  wk_stmt_text(st, NULL);
  for (int i = 0; i < 7; i++) wk_stmt_null(st);
  wk_stmt_row_end(st);
  wk_stmt_row_begin(st, 0);
  wk_stmt_text(st, "");
  wk_stmt_text(st, "[]");
  wk_stmt_float4(st, 2.0f);
  wk_stmt_int4(st, 0);
  wk_stmt_int8(st, 0);
  wk_stmt_bool(st, false);
  wk_stmt_int8(st, 0);
  wk_stmt_bytes(st, NULL, 0);
  wk_stmt_reals(st, NULL, 0);
  wk_stmt_row_end(st);
  ASSERT_EQ(wk_stmt_n_rows(st, 0), 3u);
  const uint8_t payload[] = {9, 8, 7};
  wk_outbox_row_t o = {.alert_id = "x:1", .domain = "x", .key = NULL, .topic = "alerts",
                       .payload = payload, .payload_len = 3};
  wk_stmt_add_outbox(st, &o);
  wk_stmt_add_offset(st, "topic", 3, 10);
  wk_stmt_add_offset(st, "topic", 1, 5);
  wk_stmt_add_offset(st, "topic", 3, 8); /* older: the highest stays */
  wk_stmt_add_offset(st, "other", 3, 2);

  const char *sql, *const *v;
  const int *len, *fmt;
  int np;
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  int n;
  bool isnull;
  arr_t a = arr_open(v[0], len[0], 25); /* id */
  ASSERT_EQ(a.n, 3u);
  const char *e = arr_next(&a, &n);
  ASSERT_EQ(n, 10);
  ASSERT(memcmp(e, "a\"b\\c{d},e", 10) == 0); /* binary: nothing escaped */
  arr_next(&a, &n);
  ASSERT_EQ(n, 6);
  arr_next(&a, &n);
  ASSERT_EQ(n, 0);
  ASSERT(a.p == a.end);
  a = arr_open(v[1], len[1], 25); /* doc: NULL in row 1 */
  ASSERT_EQ(rd32(v[1] + 4), 1u);  /* has-nulls flag */
  arr_next(&a, &n);
  ASSERT_EQ(n, 11);
  ASSERT_NULL(arr_next(&a, &n));
  ASSERT_EQ(n, -1);
  a = arr_open(v[2], len[2], 700); /* score */
  float f = next_f4(&a);
  ASSERT(memcmp(&f, &(float){0.1f}, 4) == 0);
  a = arr_open(v[3], len[3], 23);
  ASSERT_EQ(next_i4(&a, &isnull), -7);
  a = arr_open(v[4], len[4], 20);
  ASSERT_EQ(next_i8(&a), INT64_MIN + 1);
  a = arr_open(v[5], len[5], 16);
  e = arr_next(&a, &n);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(e[0], 1);
  a = arr_open(v[6], len[6], 20);
  ASSERT_EQ(next_i8(&a), 1700000000123);
  /* blob: the flat bytes of all rows, then start/length per row (NULL for the NULL row) */
  ASSERT_EQ(len[7], 4);
  ASSERT(memcmp(v[7], blob, 4) == 0);
  arr_t s0 = arr_open(v[8], len[8], 23), sl = arr_open(v[9], len[9], 23);
  ASSERT_EQ(next_i4(&s0, &isnull), 1);
  ASSERT_EQ(next_i4(&sl, &isnull), 4);
  next_i4(&s0, &isnull);
  ASSERT(isnull);
  next_i4(&sl, &isnull);
  ASSERT(isnull);
  ASSERT_EQ(next_i4(&s0, &isnull), 5); /* empty: starts after the rows before, length 0 */
  ASSERT(!isnull);
  ASSERT_EQ(next_i4(&sl, &isnull), 0);
  /* vec: one flat real[] of all rows' values */
  a = arr_open(v[10], len[10], 700);
  ASSERT_EQ(a.n, 3u);
  for (int i = 0; i < 3; i++) {
    f = next_f4(&a);
    ASSERT(memcmp(&f, &vec[i], 4) == 0); /* bit for bit: -0 and the subnormal too */
  }
  s0 = arr_open(v[11], len[11], 23);
  sl = arr_open(v[12], len[12], 23);
  ASSERT_EQ(next_i4(&s0, &isnull), 1);
  ASSERT_EQ(next_i4(&sl, &isnull), 3);
  /* the outbox (params 20..26): a NULL key is stored as "", the payload flat */
  a = arr_open(v[21], len[21], 25);
  arr_next(&a, &n);
  ASSERT_EQ(n, 0);
  ASSERT_EQ(len[23], 3);
  ASSERT(memcmp(v[23], payload, 3) == 0);
  /* offsets: one per (topic, partition), the highest */
  a = arr_open(v[27], len[27], 25);
  ASSERT_EQ(a.n, 3u);
  arr_t pa = arr_open(v[28], len[28], 23), no = arr_open(v[29], len[29], 20);
  ASSERT_EQ(next_i4(&pa, &isnull), 3);
  ASSERT_EQ(next_i8(&no), 10);
  ASSERT_EQ(next_i4(&pa, &isnull), 1);
  ASSERT_EQ(next_i8(&no), 5);
  ASSERT_EQ(next_i4(&pa, &isnull), 3);
  ASSERT_EQ(next_i8(&no), 2);

  /* After a reset: nothing, and the builder is reusable. */
  wk_stmt_reset(st);
  ASSERT_EQ(wk_stmt_n_rows(st, 0), 0u);
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  ASSERT_EQ(arr_open(v[0], len[0], 25).n, 0u);
  ASSERT_EQ(arr_open(v[27], len[27], 25).n, 0u);
  wk_stmt_free(st);
}

static void add_state(wk_stmt_t *st, const char *key, int32_t part, int64_t off, uint8_t byte) {
  wk_stmt_row_begin(st, 1);
  wk_stmt_text(st, key);
  wk_stmt_int4(st, part);
  wk_stmt_int8(st, off);
  wk_stmt_bytes(st, &byte, 1);
  wk_stmt_row_end(st);
}

TEST(key_merging_keeps_the_newest_row_per_key) {
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_OK(wk_stmt_new("sch", "grp", decl, 2, &st, err, sizeof err));
  for (int round = 0; round < 2; round++) { /* the second after a reset */
    enum { KEYS = 3000 };
    char key[32];
    /* Each key three times; the key is (key, part): the same text in two parts is two keys. */
    for (int rep = 0; rep < 3; rep++)
      for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "k%d", i);
        add_state(st, key, i % 2, rep * 10 + i, (uint8_t)(rep * 50 + i % 50));
      }
    add_state(st, "k1", 0, 99, 200); /* k1 in part 0: a new key */
    ASSERT_EQ(wk_stmt_n_rows(st, 1), (size_t)KEYS + 1);
    const char *sql, *const *v;
    const int *len, *fmt;
    int np;
    wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
    /* In first-seen order, each with its last value: key, part, last_offset, state. */
    arr_t keys = arr_open(v[13], len[13], 25), offs = arr_open(v[15], len[15], 20);
    ASSERT_EQ(keys.n, (uint32_t)KEYS + 1);
    ASSERT_EQ(len[16], KEYS + 1);
    for (int i = 0; i < KEYS; i++) {
      int n;
      const char *e = arr_next(&keys, &n);
      snprintf(key, sizeof key, "k%d", i);
      ASSERT_EQ(n, (int)strlen(key));
      ASSERT(memcmp(e, key, (size_t)n) == 0);
      ASSERT_EQ(next_i8(&offs), 20 + i);
      ASSERT_EQ((uint8_t)v[16][i], (uint8_t)(100 + i % 50));
    }
    ASSERT_EQ(next_i8(&offs), 99);
    ASSERT_EQ((uint8_t)v[16][KEYS], 200);
    wk_stmt_reset(st);
  }
  /* Results (key_cols 0) are never merged: the server skips duplicates by ON CONFLICT. */
  for (int i = 0; i < 2; i++) {
    wk_stmt_row_begin(st, 0);
    wk_stmt_text(st, "same");
    for (int c = 1; c < 9; c++) wk_stmt_null(st);
    wk_stmt_row_end(st);
  }
  ASSERT_EQ(wk_stmt_n_rows(st, 0), 2u);
  wk_stmt_free(st);
}

/* merge_by: a key's row with the larger value there wins, whatever the order they come in. */
TEST(merge_by_keeps_the_largest) {
  wk_table_t t[2] = {decl[0], decl[1]};
  t[1].merge_by = "last_offset";
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_OK(wk_stmt_new("sch", "grp", t, 2, &st, err, sizeof err));
  add_state(st, "k", 0, 5, 50);
  add_state(st, "k", 0, 9, 90);
  add_state(st, "k", 0, 7, 70); /* older, added later: loses */
  add_state(st, "k", 0, 9, 91); /* a tie: the later row wins */
  ASSERT_EQ(wk_stmt_n_rows(st, 1), 1u);
  const char *sql, *const *v;
  const int *len, *fmt;
  int np;
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  arr_t offs = arr_open(v[15], len[15], 20);
  ASSERT_EQ(next_i8(&offs), 9);
  ASSERT_EQ((uint8_t)v[16][0], 91);
  wk_stmt_free(st);
  /* Without merge_by the last added row wins. */
  ASSERT_OK(wk_stmt_new("sch", "grp", decl, 2, &st, err, sizeof err));
  add_state(st, "k", 0, 9, 90);
  add_state(st, "k", 0, 7, 70);
  wk_stmt_render(st, &sql, &np, &v, &len, &fmt);
  offs = arr_open(v[15], len[15], 20);
  ASSERT_EQ(next_i8(&offs), 7);
  wk_stmt_free(st);
}

TEST(bad_declarations_are_refused_by_name) {
  wk_stmt_t *st = NULL;
  char err[256];
  ASSERT_EQ(wk_stmt_new("Bad", "g", decl, 2, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "Bad");
  ASSERT_EQ(wk_stmt_new("s", "", decl, 2, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "consumer group");
  wk_col_t cols[] = {{"ok", WK_COL_TEXT}, {"bad name", WK_COL_INT4}};
  wk_table_t t = {.name = "x", .cols = cols, .n_cols = 2};
  ASSERT_EQ(wk_stmt_new("s", "g", &t, 1, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "bad name");
  cols[1].name = "ok";
  ASSERT_EQ(wk_stmt_new("s", "g", &t, 1, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "column ok twice");
  cols[1].name = "other";
  t.key_cols = 3;
  ASSERT_EQ(wk_stmt_new("s", "g", &t, 1, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "key columns");
  t.key_cols = 1;
  t.name = "outbox";
  ASSERT_EQ(wk_stmt_new("s", "g", &t, 1, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "outbox");
  wk_table_t merge = decl[1];
  merge.merge_by = "key"; /* a text column */
  ASSERT_EQ(wk_stmt_new("s", "g", &merge, 1, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "merges by \"key\"");
  merge.merge_by = "nope";
  ASSERT_EQ(wk_stmt_new("s", "g", &merge, 1, &st, err, sizeof err), SVC_ECONFIG);
  wk_table_t twice[] = {decl[0], decl[0]};
  ASSERT_EQ(wk_stmt_new("s", "g", twice, 2, &st, err, sizeof err), SVC_ECONFIG);
  ASSERT_STR_CONTAINS(err, "declared twice");
  ASSERT_NULL(st);
  /* No tables at all is fine: a pipeline that only dead-letters still commits offsets. */
  ASSERT_OK(wk_stmt_new("s", "g", NULL, 0, &st, err, sizeof err));
  wk_stmt_free(st);
}


