/*
 * Tests of the strict JSON parser and writer (engine/src/io/json.c): a corpus of valid
 * documents with their values, every syntax error with its exact position and message, the
 * depth and size limits, Unicode unescaping, the typed config getters' messages, and writer
 * round trips.
 */
#include "test.h"

#include <float.h>
#include <stdint.h>

#include "core/alloc-impl.h"
#include "io/json.h"

static moe_json_doc_t *parse_ok(const char *text) {
  moe_json_doc_t *doc = NULL;
  char err[256];
  moe_err_t rc = moe_json_parse(text, strlen(text), NULL, &doc, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "parse of %s failed: %s", text, err);
  ASSERT_NOT_NULL(doc);
  return doc;
}

/* Parses text expecting failure with `code` and the exact message `msg`. */
static void parse_fails(const char *text, size_t len, moe_err_t code, const char *msg) {
  moe_json_doc_t *doc = (moe_json_doc_t *)1;
  char err[256];
  moe_err_t rc = moe_json_parse(text, len, NULL, &doc, err, sizeof err);
  ASSERT_MSG(rc == code, "parse of [%.*s]: got %s (%s), want %s", (int)len, text,
             moe_err_name(rc), err, moe_err_name(code));
  ASSERT_NULL(doc);
  ASSERT_STR_EQ(err, msg);
}

#define FAILS(text, code, msg) parse_fails(text, sizeof(text) - 1, code, msg)

TEST(valid_corpus) {
  static const char *corpus[] = {
      "0", "-0", "1.5", "-1.25e-3", "1E+2", "true", "false", "null", "\"\"", "\"a\"", "[]",
      "{}", " \t\r\n[ 1 , 2 ]\n", "[[[]]]", "{\"a\":{\"b\":[null,true,{}]}}",
      "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "[1e308, -1e-320, 123456789012345678901234567890]",
      "{\"\":0}", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
  };
  for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) moe_json_free(parse_ok(corpus[i]));
}

TEST(values_and_lookup) {
  moe_json_doc_t *doc = parse_ok(
      "{\"name\": \"tiny\", \"n\": 42, \"x\": -2.5, \"ok\": true, \"none\": null,\n"
      " \"list\": [3, \"b\", [1]], \"z\": {\"k\": 1}}");
  const moe_json_t *r = moe_json_root(doc);
  ASSERT_EQ(r->type, MOE_JSON_OBJECT);
  ASSERT_EQ(moe_json_len(r), 7);
  /* Document order is kept for iteration even though lookup is by sorted keys. */
  ASSERT_STR_EQ(moe_json_member_at(r, 0)->key, "name");
  ASSERT_STR_EQ(moe_json_member_at(r, 6)->key, "z");
  ASSERT_NULL(moe_json_member_at(r, 7));
  const moe_json_t *n = moe_json_get(r, "n");
  ASSERT_NOT_NULL(n);
  ASSERT(moe_json_is_int(n));
  ASSERT_EQ(n->u.num.i, 42);
  ASSERT_EQ(n->line, 1);
  ASSERT_EQ(n->col, 23);
  ASSERT_NEAR(moe_json_get(r, "x")->u.num.d, -2.5, 0);
  ASSERT(!moe_json_is_int(moe_json_get(r, "x")));
  ASSERT_EQ(moe_json_get(r, "ok")->u.b, 1);
  ASSERT_EQ(moe_json_get(r, "none")->type, MOE_JSON_NULL);
  const moe_json_t *list = moe_json_get(r, "list");
  ASSERT_EQ(list->line, 2);
  ASSERT_EQ(list->col, 10);
  ASSERT_EQ(moe_json_len(list), 3);
  ASSERT_EQ(moe_json_at(list, 0)->u.num.i, 3);
  ASSERT_STR_EQ(moe_json_at(list, 1)->u.str.s, "b");
  ASSERT_EQ(moe_json_len(moe_json_at(list, 2)), 1);
  ASSERT_NULL(moe_json_at(list, 3));
  ASSERT_NULL(moe_json_at(r, 0)); /* not an array */
  ASSERT_NULL(moe_json_get(r, "missing"));
  ASSERT_NULL(moe_json_get(r, "nam"));
  ASSERT_NULL(moe_json_get(list, "n")); /* not an object */
  ASSERT_NOT_NULL(moe_json_getn(r, "namex", 4));
  moe_json_free(doc);
}

TEST(many_members_lookup) {
  /* Lookup is a binary search over sorted keys; check every key of a large object. */
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  char key[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%d", (i * 7919) % 2000);
    moe_jw_key(&jw, key);
    moe_jw_int(&jw, (i * 7919) % 2000);
  }
  moe_jw_obj_end(&jw);
  char *text;
  size_t len;
  ASSERT_OK(moe_jw_finish(&jw, &text, &len));
  moe_jw_close(&jw);
  moe_json_doc_t *doc = parse_ok(text);
  moe__free(text);
  for (int i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    const moe_json_t *v = moe_json_get(moe_json_root(doc), key);
    ASSERT_MSG(v != NULL, "key %s not found", key);
    ASSERT_EQ(v->u.num.i, i);
  }
  moe_json_free(doc);
}

TEST(numbers) {
  moe_json_doc_t *doc = parse_ok(
      "[9223372036854775807, -9223372036854775808, 9223372036854775808, 1.0, 1e3, 2.5e-1,"
      " -0, 0.1, 9007199254740993, 1e300, 1e-400, 123456789012345678901234567890e-10]");
  const moe_json_t *a = moe_json_root(doc);
  ASSERT(moe_json_is_int(moe_json_at(a, 0)));
  ASSERT(moe_json_at(a, 0)->u.num.i == INT64_MAX);
  ASSERT(moe_json_is_int(moe_json_at(a, 1)));
  ASSERT(moe_json_at(a, 1)->u.num.i == INT64_MIN);
  ASSERT(!moe_json_is_int(moe_json_at(a, 2))); /* 2^63 does not fit */
  ASSERT_NEAR(moe_json_at(a, 2)->u.num.d, 9223372036854775808.0, 0);
  ASSERT(moe_json_is_int(moe_json_at(a, 3)));
  ASSERT_EQ(moe_json_at(a, 3)->u.num.i, 1);
  ASSERT(moe_json_is_int(moe_json_at(a, 4)));
  ASSERT_EQ(moe_json_at(a, 4)->u.num.i, 1000);
  ASSERT(!moe_json_is_int(moe_json_at(a, 5)));
  ASSERT_NEAR(moe_json_at(a, 5)->u.num.d, 0.25, 0);
  ASSERT(moe_json_is_int(moe_json_at(a, 6)));
  ASSERT_EQ(moe_json_at(a, 6)->u.num.i, 0);
  ASSERT(moe_json_at(a, 7)->u.num.d == 0.1);
  /* An integer literal is exact even where a double would round (2^53 + 1). */
  ASSERT(moe_json_at(a, 8)->u.num.i == 9007199254740993LL);
  ASSERT(!moe_json_is_int(moe_json_at(a, 9))); /* integral but beyond int64 */
  ASSERT(moe_json_at(a, 10)->u.num.d == 0.0);  /* underflow rounds to zero, allowed */
  ASSERT_NEAR(moe_json_at(a, 11)->u.num.d, 12345678901234567890.0, 1e-15);
  moe_json_free(doc);
}

TEST(unicode) {
  moe_json_doc_t *doc = parse_ok(
      "[\"\\u00e9\", \"\\u20AC\", \"\\ud83d\\ude00\", \"a\\u0000b\", \"\xc3\xa9\", \"\\uFFFF\"]");
  const moe_json_t *a = moe_json_root(doc);
  ASSERT_STR_EQ(moe_json_at(a, 0)->u.str.s, "\xc3\xa9");
  ASSERT_STR_EQ(moe_json_at(a, 1)->u.str.s, "\xe2\x82\xac");
  ASSERT_STR_EQ(moe_json_at(a, 2)->u.str.s, "\xf0\x9f\x98\x80");
  ASSERT_EQ(moe_json_at(a, 3)->u.str.len, 3);
  ASSERT(memcmp(moe_json_at(a, 3)->u.str.s, "a\0b", 4) == 0);
  ASSERT_STR_EQ(moe_json_at(a, 4)->u.str.s, "\xc3\xa9");
  ASSERT_STR_EQ(moe_json_at(a, 5)->u.str.s, "\xef\xbf\xbf");
  /* A string with NUL is refused where a C string is wanted. */
  const char *s;
  char err[128];
  ASSERT_EQ(moe_json_to_str(moe_json_at(a, 3), "labels[3]", &s, NULL, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "labels[3]: string contains a NUL character");
  moe_json_free(doc);
}

TEST(syntax_errors) {
  FAILS("", MOE_EDATA, "line 1 col 1: expected a value, got end of input");
  FAILS("   \n  ", MOE_EDATA, "line 2 col 3: expected a value, got end of input");
  FAILS("{\"a\":1,}", MOE_EDATA,
        "line 1 col 8: expected a string (object member name), got '}' (trailing comma?)");
  FAILS("[1,]", MOE_EDATA, "line 1 col 4: expected a value, got ']' (trailing comma?)");
  FAILS("{\n  \"a\": 1\n  \"b\": 2\n}", MOE_EDATA,
        "line 3 col 3: expected ',' or '}' after object member, got '\"'");
  FAILS("[1 2]", MOE_EDATA, "line 1 col 4: expected ',' or ']' after array item, got '2'");
  FAILS("{\"a\" 1}", MOE_EDATA, "line 1 col 6: expected ':' after object member name, got '1'");
  FAILS("{a:1}", MOE_EDATA, "line 1 col 2: expected a string (object member name), got 'a'");
  FAILS("{\"a\":1", MOE_EDATA,
        "line 1 col 7: expected ',' or '}' after object member, got end of input");
  FAILS("[", MOE_EDATA, "line 1 col 2: expected a value, got end of input");
  FAILS("tru", MOE_EDATA, "line 1 col 1: invalid literal (expected true, false or null)");
  FAILS("nul", MOE_EDATA, "line 1 col 1: invalid literal (expected true, false or null)");
  FAILS("True", MOE_EDATA, "line 1 col 1: expected a value, got 'T'");
  FAILS("1 2", MOE_EDATA, "line 1 col 3: unexpected '2' after the top-level value");
  FAILS("{} x", MOE_EDATA, "line 1 col 4: unexpected 'x' after the top-level value");
  FAILS("[1]\x00", MOE_EDATA, "line 1 col 4: unexpected byte 0x00 after the top-level value");
  FAILS("// c\n1", MOE_EDATA, "line 1 col 1: expected a value, got '/'");
  FAILS("\xef\xbb\xbf{}", MOE_EDATA, "line 1 col 1: expected a value, got byte 0xEF");
  FAILS("'a'", MOE_EDATA, "line 1 col 1: expected a value, got '''");
  FAILS("{\"a\":1,\"b\":2,\"a\":3}", MOE_EDATA, "line 1 col 14: duplicate object member \"a\"");
  FAILS("{\"x\":{\"k\":1},\n \"y\":{\"k\":1,\n  \"k\":2}}", MOE_EDATA,
        "line 3 col 3: duplicate object member \"k\"");
}

TEST(number_errors) {
  FAILS("01", MOE_EDATA, "line 1 col 1: leading zeros are not allowed in numbers");
  FAILS("[-01]", MOE_EDATA, "line 1 col 3: leading zeros are not allowed in numbers");
  FAILS("-", MOE_EDATA, "line 1 col 2: expected a digit after '-'");
  FAILS("-a", MOE_EDATA, "line 1 col 2: expected a digit after '-'");
  FAILS("1.", MOE_EDATA, "line 1 col 3: expected a digit after '.'");
  FAILS("1.e5", MOE_EDATA, "line 1 col 3: expected a digit after '.'");
  FAILS(".5", MOE_EDATA, "line 1 col 1: expected a value, got '.'");
  FAILS("1e", MOE_EDATA, "line 1 col 3: expected a digit in the exponent");
  FAILS("1e+", MOE_EDATA, "line 1 col 4: expected a digit in the exponent");
  FAILS("+1", MOE_EDATA, "line 1 col 1: expected a value, got '+'");
  FAILS("[1e999]", MOE_ERANGE, "line 1 col 2: number 1e999 is out of range");
  FAILS("-1e999", MOE_ERANGE, "line 1 col 1: number -1e999 is out of range");
  FAILS("NaN", MOE_EDATA, "line 1 col 1: expected a value, got 'N'");
  FAILS("0x10", MOE_EDATA, "line 1 col 2: unexpected 'x' after the top-level value");
}

TEST(string_errors) {
  FAILS("\"abc", MOE_EDATA, "line 1 col 1: unterminated string");
  FAILS("[\"a\\\"]", MOE_EDATA, "line 1 col 2: unterminated string");
  FAILS("\"a\tb\"", MOE_EDATA, "line 1 col 3: control character 0x09 in string (must be escaped)");
  FAILS("\"a\nb\"", MOE_EDATA, "line 1 col 3: control character 0x0A in string (must be escaped)");
  parse_fails("\"a\0b\"", 5, MOE_EDATA,
              "line 1 col 3: control character 0x00 in string (must be escaped)");
  FAILS("\"\\q\"", MOE_EDATA, "line 1 col 2: invalid escape '\\q' in string");
  FAILS("\"\\'\"", MOE_EDATA, "line 1 col 2: invalid escape '\\'' in string");
  FAILS("\"\\u12\"", MOE_EDATA, "line 1 col 2: invalid \\u escape (expected 4 hex digits)");
  FAILS("\"\\u12G4\"", MOE_EDATA, "line 1 col 2: invalid \\u escape (expected 4 hex digits)");
  FAILS("\"x\\uD800\"", MOE_EDATA,
        "line 1 col 3: high surrogate \\uD800 not followed by a low surrogate \\uDC00-\\uDFFF");
  FAILS("\"\\uD83D\\u0041\"", MOE_EDATA,
        "line 1 col 2: high surrogate \\uD83D not followed by a low surrogate \\uDC00-\\uDFFF");
  FAILS("\"\\uDE00\"", MOE_EDATA, "line 1 col 2: lone low surrogate \\uDE00 in string");
  FAILS("\"\xff\"", MOE_EDATA, "line 1 col 2: invalid UTF-8 byte 0xFF in string");
  FAILS("\"\xc3\"", MOE_EDATA, "line 1 col 2: invalid UTF-8 byte 0xC3 in string");
  FAILS("\"\xc0\xaf\"", MOE_EDATA, "line 1 col 2: invalid UTF-8 byte 0xC0 in string");
  FAILS("\"ab\xed\xa0\x80\"", MOE_EDATA, "line 1 col 4: invalid UTF-8 byte 0xED in string");
  FAILS("\"\xf4\x90\x80\x80\"", MOE_EDATA, "line 1 col 2: invalid UTF-8 byte 0xF4 in string");
  FAILS("\"\xe0\x80\xaf\"", MOE_EDATA, "line 1 col 2: invalid UTF-8 byte 0xE0 in string");
  FAILS("{\"k\\u00\": 1}", MOE_EDATA, "line 1 col 4: invalid \\u escape (expected 4 hex digits)");
}

static char *nested(size_t depth) {
  char *s = malloc(2 * depth + 1);
  ASSERT_NOT_NULL(s);
  memset(s, '[', depth);
  memset(s + depth, ']', depth);
  s[2 * depth] = '\0';
  return s;
}

TEST(depth_limit) {
  char *ok = nested(MOE_JSON_DEFAULT_MAX_DEPTH);
  moe_json_free(parse_ok(ok));
  free(ok);
  char *deep = nested(MOE_JSON_DEFAULT_MAX_DEPTH + 1);
  parse_fails(deep, strlen(deep), MOE_ERANGE, "line 1 col 129: nesting deeper than 128 levels");
  free(deep);
  /* A caller's limit, and mixed containers. */
  moe_json_limits_t lim = {.max_depth = 3};
  moe_json_doc_t *doc;
  char err[128];
  ASSERT_OK(moe_json_parse("{\"a\":[{}]}", 10, &lim, &doc, err, sizeof err));
  moe_json_free(doc);
  ASSERT_EQ(moe_json_parse("{\"a\":[{\"b\":[]}]}", 16, &lim, &doc, err, sizeof err), MOE_ERANGE);
  ASSERT_STR_EQ(err, "line 1 col 12: nesting deeper than 3 levels");
  /* Far beyond any limit: must fail cleanly, not exhaust the stack. */
  char *huge = nested(200000);
  lim.max_depth = 1000000;
  ASSERT_EQ(moe_json_parse(huge, strlen(huge), &lim, &doc, err, sizeof err), MOE_ERANGE);
  ASSERT_STR_CONTAINS(err, "nesting deeper than 1024 levels");
  free(huge);
}

TEST(size_limit) {
  moe_json_limits_t lim = {.max_bytes = 8};
  moe_json_doc_t *doc;
  char err[128];
  ASSERT_OK(moe_json_parse("[1,2,33]", 8, &lim, &doc, err, sizeof err));
  moe_json_free(doc);
  ASSERT_EQ(moe_json_parse("[1,2,333]", 9, &lim, &doc, err, sizeof err), MOE_ERANGE);
  ASSERT_NULL(doc);
  ASSERT_STR_EQ(err, "JSON text of 9 bytes exceeds the limit of 8 bytes");
}

TEST(not_nul_terminated) {
  /* The parser must respect len and never read past it (ASan would catch an overread). */
  const char *src = "{\"a\": [1, 2.5, \"xyz\"]}";
  size_t n = strlen(src);
  char *buf = malloc(n);
  ASSERT_NOT_NULL(buf);
  memcpy(buf, src, n);
  moe_json_doc_t *doc;
  char err[128];
  ASSERT_OK(moe_json_parse(buf, n, NULL, &doc, err, sizeof err));
  moe_json_free(doc);
  /* Every proper prefix is an error, never a crash. */
  for (size_t k = 0; k < n; k++) {
    ASSERT(moe_json_parse(buf, k, NULL, &doc, err, sizeof err) != MOE_OK);
    ASSERT_NULL(doc);
  }
  free(buf);
}

TEST(typed_getters) {
  moe_json_doc_t *doc = parse_ok(
      "{\"moe\": {\"n_expert\": \"8\", \"top_k\": 2, \"bias\": 0.5, \"shared\": 1, \"big\": 300,"
      " \"name\": \"x\", \"flag\": false, \"nul\": null, \"frac\": 2.5}}");
  const moe_json_t *root = moe_json_root(doc);
  const moe_json_t *moe;
  char err[256];
  int64_t i = -1;
  double d = -1;
  bool b = true;
  const char *s = NULL;
  size_t slen = 0;
  ASSERT_OK(moe_json_get_member(root, "moe", MOE_JSON_OBJECT, "config", &moe, err, sizeof err));
  ASSERT_EQ(moe_json_get_int(moe, "n_expert", "config.moe", 1, 256, &i, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.n_expert: expected integer, got string");
  ASSERT_EQ(i, -1);
  ASSERT_OK(moe_json_get_int(moe, "top_k", "config.moe", 1, 8, &i, err, sizeof err));
  ASSERT_EQ(i, 2);
  ASSERT_EQ(moe_json_get_int(moe, "big", "config.moe", 1, 256, &i, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.big: 300 is out of range [1, 256]");
  ASSERT_EQ(moe_json_get_int(moe, "frac", "config.moe", 0, 9, &i, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.frac: expected integer, got number");
  ASSERT_EQ(moe_json_get_int(moe, "absent", "config.moe", 0, 9, &i, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.absent: missing");
  ASSERT_OK(moe_json_get_num(moe, "bias", "config.moe", 0, 1, &d, err, sizeof err));
  ASSERT_NEAR(d, 0.5, 0);
  ASSERT_OK(moe_json_get_num(moe, "top_k", "config.moe", 0, 10, &d, err, sizeof err));
  ASSERT_NEAR(d, 2, 0);
  ASSERT_EQ(moe_json_get_num(moe, "bias", "config.moe", 1, 2, &d, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.bias: 0.5 is out of range [1, 2]");
  ASSERT_EQ(moe_json_get_num(moe, "bias", "config.moe", 0.1, 0.3, &d, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.bias: 0.5 is out of range [0.1, 0.3]");
  ASSERT_EQ(moe_json_get_bool(moe, "shared", "config.moe", &b, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.shared: expected boolean, got integer");
  ASSERT_OK(moe_json_get_bool(moe, "flag", "config.moe", &b, err, sizeof err));
  ASSERT_EQ(b, 0);
  ASSERT_OK(moe_json_get_str(moe, "name", "config.moe", &s, &slen, err, sizeof err));
  ASSERT_STR_EQ(s, "x");
  ASSERT_EQ(slen, 1);
  ASSERT_EQ(moe_json_get_str(moe, "nul", "config.moe", &s, NULL, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.nul: expected string, got null");
  ASSERT_EQ(moe_json_get_member(moe, "top_k", MOE_JSON_ARRAY, "config.moe", &moe, err,
                                sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.top_k: expected array, got integer");
  /* The container itself has the wrong type: the message names the container. */
  const moe_json_t *top_k = moe_json_get(moe, "top_k");
  ASSERT_EQ(moe_json_get_int(top_k, "x", "config.moe.top_k", 0, 1, &i, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.top_k: expected object, got integer");
  /* Optional members take the default when absent or null, and are checked when present. */
  ASSERT_OK(moe_json_opt_int(moe, "absent", "config.moe", 0, 9, 7, &i, err, sizeof err));
  ASSERT_EQ(i, 7);
  ASSERT_OK(moe_json_opt_int(moe, "nul", "config.moe", 0, 9, 5, &i, err, sizeof err));
  ASSERT_EQ(i, 5);
  ASSERT_EQ(moe_json_opt_int(moe, "name", "config.moe", 0, 9, 5, &i, err, sizeof err),
            MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe.name: expected integer, got string");
  ASSERT_OK(moe_json_opt_num(moe, "absent", "config.moe", 0, 9, 1.5, &d, err, sizeof err));
  ASSERT_NEAR(d, 1.5, 0);
  ASSERT_OK(moe_json_opt_bool(moe, "absent", "config.moe", true, &b, err, sizeof err));
  ASSERT_EQ(b, 1);
  ASSERT_OK(moe_json_opt_str(moe, "absent", "config.moe", "dflt", &s, err, sizeof err));
  ASSERT_STR_EQ(s, "dflt");
  /* Unknown members (misspelt keys). */
  static const char *const allowed[] = {"n_expert", "top_k", "bias", "shared", "big",
                                        "name",     "flag",  "nul"};
  ASSERT_EQ(moe_json_check_members(moe, "config.moe", allowed, 8, err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.moe: unknown member \"frac\"");
  static const char *const all[] = {"n_expert", "top_k", "bias", "shared", "big",
                                    "name",     "flag",  "nul",  "frac"};
  ASSERT_OK(moe_json_check_members(moe, "config.moe", all, 9, err, sizeof err));
  ASSERT_EQ(moe_json_check_type(NULL, MOE_JSON_OBJECT, "config.x", err, sizeof err), MOE_ECONFIG);
  ASSERT_STR_EQ(err, "config.x: missing");
  moe_json_free(doc);
}

static char *write_sample(moe_err_t *rc) {
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  moe_jw_key(&jw, "s");
  moe_jw_str(&jw, "q\"b\\s/\n\t\x01\xc3\xa9");
  moe_jw_key(&jw, "i");
  moe_jw_int(&jw, INT64_MIN);
  moe_jw_key(&jw, "u");
  moe_jw_uint(&jw, UINT64_MAX);
  moe_jw_key(&jw, "d");
  moe_jw_arr_begin(&jw);
  moe_jw_num(&jw, 0.1);
  moe_jw_num(&jw, 1.0 / 3.0);
  moe_jw_num(&jw, -1e300);
  moe_jw_num(&jw, 5e-324);
  moe_jw_num(&jw, 3.0);
  moe_jw_arr_end(&jw);
  moe_jw_key(&jw, "b");
  moe_jw_bool(&jw, true);
  moe_jw_key(&jw, "n");
  moe_jw_null(&jw);
  moe_jw_key(&jw, "raw");
  moe_jw_raw(&jw, "{\"x\":[]}", 8);
  moe_jw_key(&jw, "e");
  moe_jw_obj_begin(&jw);
  moe_jw_obj_end(&jw);
  moe_jw_obj_end(&jw);
  char *out = NULL;
  *rc = moe_jw_finish(&jw, &out, NULL);
  moe_jw_close(&jw);
  return out;
}

TEST(writer_round_trip) {
  moe_err_t rc;
  char *text = write_sample(&rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(text,
                "{\"s\":\"q\\\"b\\\\s/\\n\\t\\u0001\xc3\xa9\",\"i\":-9223372036854775808,"
                "\"u\":18446744073709551615,\"d\":[0.1,0.3333333333333333,-1e+300,"
                "4.94065645841247e-324,3],\"b\":true,\"n\":null,\"raw\":{\"x\":[]},\"e\":{}}");
  moe_json_doc_t *doc = parse_ok(text);
  const moe_json_t *r = moe_json_root(doc);
  ASSERT_STR_EQ(moe_json_get(r, "s")->u.str.s, "q\"b\\s/\n\t\x01\xc3\xa9");
  ASSERT(moe_json_get(r, "i")->u.num.i == INT64_MIN);
  const moe_json_t *d = moe_json_get(r, "d");
  ASSERT(moe_json_at(d, 0)->u.num.d == 0.1);
  ASSERT(moe_json_at(d, 1)->u.num.d == 1.0 / 3.0);
  ASSERT(moe_json_at(d, 2)->u.num.d == -1e300);
  ASSERT(moe_json_at(d, 3)->u.num.d == 5e-324);
  moe_json_free(doc);
  moe__free(text);
}

TEST(writer_misuse) {
  moe_jw_t jw;
  char *out = NULL;
  /* A value inside an object without a key. */
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  moe_jw_int(&jw, 1);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* A key inside an array. */
  moe_jw_init(&jw);
  moe_jw_arr_begin(&jw);
  moe_jw_key(&jw, "k");
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* Unbalanced and mismatched ends. */
  moe_jw_init(&jw);
  moe_jw_arr_begin(&jw);
  moe_jw_obj_end(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  moe_jw_init(&jw);
  moe_jw_arr_begin(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* Nothing written, and two top-level values. */
  moe_jw_init(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  moe_jw_init(&jw);
  moe_jw_int(&jw, 1);
  moe_jw_int(&jw, 2);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* A key without its value. */
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  moe_jw_key(&jw, "k");
  moe_jw_obj_end(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* NaN and infinity have no JSON form. */
  moe_jw_init(&jw);
  moe_jw_arr_begin(&jw);
  moe_jw_num(&jw, NAN);
  moe_jw_arr_end(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_ERANGE);
  moe_jw_close(&jw);
  moe_jw_init(&jw);
  moe_jw_num(&jw, INFINITY);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_ERANGE);
  moe_jw_close(&jw);
  /* Invalid UTF-8 cannot be written as a JSON string. */
  moe_jw_init(&jw);
  moe_jw_str(&jw, "a\xff");
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  /* Nesting beyond the writer's depth. */
  moe_jw_init(&jw);
  for (int k = 0; k < MOE_JW_MAX_DEPTH + 2; k++) moe_jw_arr_begin(&jw);
  ASSERT_EQ(moe_jw_finish(&jw, &out, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  ASSERT_NULL(out);
}

TEST(writer_fault_injection) {
  /* Every allocation failure surfaces as MOE_ENOMEM and leaks nothing. */
  int64_t live0 = moe_alloc_live();
  for (uint64_t n = 1;; n++) {
    moe_alloc_fault_arm(n);
    moe_err_t rc;
    char *text = write_sample(&rc);
    int fired = moe_alloc_fault_fired();
    moe_alloc_fault_disarm();
    if (!fired) {
      ASSERT_OK(rc);
      moe__free(text);
      break;
    }
    ASSERT_EQ(rc, MOE_ENOMEM);
    ASSERT_NULL(text);
    ASSERT_OP(n, <, 100);
  }
  ASSERT_EQ(moe_alloc_live(), live0);
}

TEST(parser_fault_injection) {
  /* Large enough for several arena chunks and a scratch stack regrowth. */
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_obj_begin(&jw);
  char key[32];
  for (int i = 0; i < 600; i++) {
    snprintf(key, sizeof key, "member-%d", i);
    moe_jw_key(&jw, key);
    moe_jw_arr_begin(&jw);
    moe_jw_str(&jw, "a string value that takes some room in the arena");
    moe_jw_num(&jw, i * 0.5);
    moe_jw_arr_end(&jw);
  }
  moe_jw_obj_end(&jw);
  char *text;
  size_t len;
  ASSERT_OK(moe_jw_finish(&jw, &text, &len));
  moe_jw_close(&jw);
  int64_t live0 = moe_alloc_live();
  uint64_t n;
  for (n = 1;; n++) {
    moe_json_doc_t *doc = NULL;
    char err[128];
    moe_alloc_fault_arm(n);
    moe_err_t rc = moe_json_parse(text, len, NULL, &doc, err, sizeof err);
    int fired = moe_alloc_fault_fired();
    moe_alloc_fault_disarm();
    if (!fired) {
      ASSERT_OK(rc);
      ASSERT_EQ(moe_json_len(moe_json_root(doc)), 600);
      moe_json_free(doc);
      break;
    }
    ASSERT_EQ(rc, MOE_ENOMEM);
    ASSERT_NULL(doc);
    ASSERT_STR_EQ(err, "out of memory while parsing JSON");
    ASSERT_EQ(moe_alloc_live(), live0);
  }
  ASSERT_OP(n, >, 4); /* the document really needed several allocations */
  moe__free(text);
}

TEST(fmt_num) {
  char b[40];
  ASSERT_EQ(moe_json_fmt_num(b, sizeof b, 0.1), 3);
  ASSERT_STR_EQ(b, "0.1");
  moe_json_fmt_num(b, sizeof b, -2.0);
  ASSERT_STR_EQ(b, "-2");
  moe_json_fmt_num(b, sizeof b, 1e21);
  ASSERT_STR_EQ(b, "1e+21");
  moe_json_fmt_num(b, sizeof b, 0.1 + 0.2); /* needs 17 digits to survive a round trip */
  ASSERT_STR_EQ(b, "0.30000000000000004");
  moe_json_fmt_num(b, sizeof b, -INFINITY);
  ASSERT_STR_EQ(b, "-inf");
  moe_json_fmt_num(b, sizeof b, NAN);
  ASSERT_STR_EQ(b, "nan");
}

/* Structural equality of two parsed values (numbers bit-exact, strings byte-exact). */
static int json_equal(const moe_json_t *a, const moe_json_t *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case MOE_JSON_NULL: return 1;
  case MOE_JSON_BOOL: return a->u.b == b->u.b;
  case MOE_JSON_NUMBER:
    return a->u.num.d == b->u.num.d && a->u.num.is_int == b->u.num.is_int &&
           (!a->u.num.is_int || a->u.num.i == b->u.num.i);
  case MOE_JSON_STRING:
    return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
  case MOE_JSON_ARRAY:
    if (a->u.arr.n != b->u.arr.n) return 0;
    for (size_t i = 0; i < a->u.arr.n; i++)
      if (!json_equal(a->u.arr.items[i], b->u.arr.items[i])) return 0;
    return 1;
  case MOE_JSON_OBJECT:
    if (a->u.obj.n != b->u.obj.n) return 0;
    for (size_t i = 0; i < a->u.obj.n; i++) {
      const moe_json_member_t *x = a->u.obj.members[i], *y = b->u.obj.members[i];
      if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0) return 0;
      if (!json_equal(x->value, y->value)) return 0;
    }
    return 1;
  }
  return 0;
}

TEST(value_round_trip) {
  const char *src =
      "{\"tokenizer\": {\"kind\": \"wordpiece\", \"vocab\": [\"[PAD]\", \"caf\\u00e9\", "
      "\"\\ud83d\\ude00\", \"a\\u0000b\", \"q\\\"\"], \"k\\u0000ey\": 1},"
      " \"n\": [0, -1, 9223372036854775807, 0.1, -2.5e-300, 1e3, true, false, null, [], {},"
      " 23720322337203696.59, 1e20, 99999999999999999999]}";
  moe_json_doc_t *doc = parse_ok(src);
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_value(&jw, moe_json_root(doc));
  char *text;
  size_t len;
  ASSERT_OK(moe_jw_finish(&jw, &text, &len));
  moe_jw_close(&jw);
  moe_json_doc_t *again = parse_ok(text);
  ASSERT(json_equal(moe_json_root(doc), moe_json_root(again)));
  /* Found by the fuzzer: a fraction that rounds to an integral double beyond 2^53 must not come
   * back as an exact integer. */
  ASSERT_STR_CONTAINS(text, ",23720322337203696.0,1e+20,1e+20]");
  /* The NUL inside the key survives (moe_jw_keyn). */
  const moe_json_t *tok = moe_json_get(moe_json_root(again), "tokenizer");
  ASSERT_NOT_NULL(moe_json_getn(tok, "k\0ey", 4));
  /* A sub-value alone. */
  moe_jw_init(&jw);
  moe_jw_value(&jw, moe_json_get(tok, "vocab"));
  char *sub;
  ASSERT_OK(moe_jw_finish(&jw, &sub, NULL));
  moe_jw_close(&jw);
  ASSERT_STR_EQ(sub, "[\"[PAD]\",\"caf\xc3\xa9\",\"\xf0\x9f\x98\x80\",\"a\\u0000b\",\"q\\\"\"]");
  moe__free(sub);
  moe__free(text);
  moe_json_free(again);
  moe_json_free(doc);
  /* Deeper than the writer allows: a clean MOE_EINVAL. */
  char *deep = nested(MOE_JW_MAX_DEPTH + 1);
  doc = parse_ok(deep);
  moe_jw_init(&jw);
  moe_jw_value(&jw, moe_json_root(doc));
  ASSERT_EQ(moe_jw_finish(&jw, NULL, NULL), MOE_EINVAL);
  moe_jw_close(&jw);
  moe_json_free(doc);
  free(deep);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

TEST(numbers_match_strtod) {
  /*
   * The parser converts most numbers without strtod (exact fast path); every literal must still
   * give bit for bit the double that the C library's correctly rounded strtod gives.
   */
  char lit[128];
  int fast_range = 0;
  for (int k = 0; k < 40000; k++) {
    size_t o = 0;
    if (rnd() % 2) lit[o++] = '-';
    int n_int = 1 + (int)(rnd() % 22);
    lit[o++] = (char)('1' + rnd() % 9);
    for (int i = 1; i < n_int; i++) lit[o++] = (char)('0' + rnd() % 10);
    if (rnd() % 4 == 0) { /* 0 or 0.xxx instead */
      o = lit[0] == '-' ? 1 : 0;
      lit[o++] = '0';
    }
    if (rnd() % 2) {
      lit[o++] = '.';
      int n_frac = 1 + (int)(rnd() % 22);
      for (int i = 0; i < n_frac; i++) lit[o++] = (char)('0' + (rnd() % 3 ? rnd() % 10 : 0));
    }
    if (rnd() % 2) {
      int ex = (int)(rnd() % 80) - 40;
      if (rnd() % 8 == 0) ex *= 9; /* sometimes far out, towards overflow and subnormals */
      o += (size_t)snprintf(lit + o, sizeof lit - o, "%s%d", rnd() % 2 ? "e" : "E", ex);
    }
    lit[o] = '\0';
    double want = strtod(lit, NULL);
    if (isinf(want)) continue;
    moe_json_doc_t *doc;
    char err[128];
    ASSERT_MSG(moe_json_parse(lit, o, NULL, &doc, err, sizeof err) == MOE_OK, "%s: %s", lit, err);
    double got = moe_json_root(doc)->u.num.d;
    ASSERT_MSG(memcmp(&got, &want, sizeof got) == 0, "%s: parsed %.17g, strtod %.17g", lit, got,
               want);
    if (fabs(want) > 1e-22 && fabs(want) < 1e22) fast_range++;
    moe_json_free(doc);
  }
  ASSERT_OP(fast_range, >, 10000);
}
