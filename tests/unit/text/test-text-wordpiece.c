/*
 * Tests of the WordPiece tokenizer (moe/text.h): greedy longest-match-first on a hand-made
 * vocabulary, [UNK] handling, offsets into the original text, the JSON form and its errors,
 * training determinism and round trips, allocation failures, and a vocabulary trained on
 * MTSamples (with the encoding speed printed).
 */
#include "test.h"

#include "csv.h"
#include "moe/alloc.h"
#include "moe/text.h"

static const char *hand_vocab =
    "{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,\"max_word_bytes\":100,"
    "\"vocab\":[\"[PAD]\",\"[UNK]\",\"[CLS]\",\"[SEP]\",\"[MASK]\",\"un\",\"##believ\","
    "\"##able\",\"believ\",\"u\",\"##n\",\"patient\",\"'\",\"s\",\",\",\"10\",\"mg\","
    "\"history\",\"of\",\"\\u00e9t\\u00e9\"]}";

static moe_wordpiece_t *load_hand(void) {
  moe_wordpiece_t *wp;
  char err[256];
  moe_err_t rc = moe_wordpiece_from_json(hand_vocab, strlen(hand_vocab), &wp, err, sizeof(err));
  ASSERT_MSG(rc == MOE_OK, "from_json: %s", err);
  return wp;
}

static void tok_eq(const moe_wordpiece_t *wp, const moe_token_t *t, const char *tok,
                   uint32_t start, uint32_t end) {
  ASSERT_STR_EQ(moe_wordpiece_token(wp, t->id), tok);
  ASSERT_EQ(t->start, start);
  ASSERT_EQ(t->end, end);
}

TEST(longest_match_first) {
  moe_wordpiece_t *wp = load_hand();
  ASSERT_EQ(moe_wordpiece_vocab_size(wp), 20);
  ASSERT_EQ(moe_wordpiece_id(wp, "##able", 6), 7);
  ASSERT_EQ(moe_wordpiece_id(wp, "nope", 4), -1);
  moe_token_t *t;
  size_t n;
  const char *text = "Unbelievable, Pt's 10mg";
  ASSERT_OK(moe_wordpiece_encode(wp, text, strlen(text), &t, &n));
  ASSERT_EQ(n, 9);
  tok_eq(wp, &t[0], "un", 0, 2);        /* "un" beats "u" + "##n" */
  tok_eq(wp, &t[1], "##believ", 2, 8);
  tok_eq(wp, &t[2], "##able", 8, 12);
  tok_eq(wp, &t[3], ",", 12, 13);
  tok_eq(wp, &t[4], "patient", 14, 16); /* the expansion spans the original "Pt" */
  tok_eq(wp, &t[5], "'", 16, 17);
  tok_eq(wp, &t[6], "s", 17, 18);
  tok_eq(wp, &t[7], "10", 19, 21);      /* "10mg" was split into number and unit */
  tok_eq(wp, &t[8], "mg", 21, 23);
  moe_text_free(t);
  ASSERT_OK(moe_wordpiece_encode(wp, "10mg", 4, &t, &n));
  ASSERT_EQ(n, 2);
  tok_eq(wp, &t[1], "mg", 2, 4);
  moe_text_free(t);
  moe_wordpiece_free(wp);
}

TEST(unknown_words) {
  moe_wordpiece_t *wp = load_hand();
  moe_token_t *t;
  size_t n;
  /* "unx": "un" matches but "##x" does not: the whole word is one [UNK]. */
  const char *text = "unx H/O \xC3\x89t\xC3\xA9 zzz";
  ASSERT_OK(moe_wordpiece_encode(wp, text, strlen(text), &t, &n));
  ASSERT_EQ(n, 5);
  tok_eq(wp, &t[0], "[UNK]", 0, 3);
  tok_eq(wp, &t[1], "history", 4, 7);
  tok_eq(wp, &t[2], "of", 4, 7);
  tok_eq(wp, &t[3], "\xC3\xA9t\xC3\xA9", 8, 13); /* Latin-1 capital lowercased */
  tok_eq(wp, &t[4], "[UNK]", 14, 17);
  moe_text_free(t);
  /* Longer than MOE_WORDPIECE_MAX_WORD_BYTES: [UNK] even though "u" + "##n"... would do. */
  char long_word[160];
  long_word[0] = 'u';
  memset(long_word + 1, 'n', sizeof(long_word) - 2);
  long_word[sizeof(long_word) - 1] = '\0';
  ASSERT_OK(moe_wordpiece_encode(wp, long_word, strlen(long_word), &t, &n));
  ASSERT_EQ(n, 1);
  ASSERT_EQ(t[0].id, MOE_TOKEN_UNK);
  moe_text_free(t);
  ASSERT_OK(moe_wordpiece_encode(wp, "", 0, &t, &n));
  ASSERT_EQ(n, 0);
  moe_text_free(t);
  moe_wordpiece_free(wp);
}

static void expect_json_error(const char *json, moe_err_t code, const char *needle) {
  moe_wordpiece_t *wp = (moe_wordpiece_t *)1;
  char err[256] = "";
  ASSERT_EQ(moe_wordpiece_from_json(json, strlen(json), &wp, err, sizeof(err)), code);
  ASSERT_NULL(wp);
  ASSERT_STR_CONTAINS(err, needle);
}

TEST(json_errors) {
  expect_json_error("[1,2", MOE_EDATA, "line 1");
  expect_json_error("[]", MOE_ECONFIG, "tokenizer");
  expect_json_error("{\"kind\":\"bpe\",\"version\":1,\"lowercase\":true,\"max_word_bytes\":100,"
                    "\"vocab\":[]}",
                    MOE_ECONFIG, "tokenizer.kind: expected \"wordpiece\"");
  expect_json_error("{\"kind\":\"wordpiece\",\"version\":2,\"lowercase\":true,"
                    "\"max_word_bytes\":100,\"vocab\":[]}",
                    MOE_ECONFIG, "tokenizer.version");
  expect_json_error("{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
                    "\"max_word_bytes\":100,\"vocab\":[\"[UNK]\"]}",
                    MOE_ECONFIG, "tokenizer.vocab[0]: expected \"[PAD]\"");
  expect_json_error("{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
                    "\"max_word_bytes\":100,\"vocab\":[\"[PAD]\",\"[UNK]\",\"[CLS]\","
                    "\"[SEP]\",\"[MASK]\",\"a\",\"a\"]}",
                    MOE_ECONFIG, "tokenizer.vocab[6]: \"a\" appears twice");
  expect_json_error("{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
                    "\"max_word_bytes\":100,\"vocab\":[\"[PAD]\",\"[UNK]\",\"[CLS]\","
                    "\"[SEP]\",\"[MASK]\",\"\"]}",
                    MOE_ECONFIG, "tokenizer.vocab[5]: expected a non-empty string");
  expect_json_error("{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
                    "\"max_word_bytes\":100,\"vocab\":[\"[PAD]\"]}",
                    MOE_ECONFIG, "at least the 5 special tokens");
}

static const char *corpus[] = {
    "The patient is a 45-year-old male with history of hypertension and diabetes.",
    "HISTORY OF PRESENT ILLNESS: The patient presents with chest pain radiating to the arm.",
    "Patient denies shortness of breath. Takes lisinopril 10mg p.o. b.i.d.",
    "ASSESSMENT: Hypertension, diabetes mellitus, chest pain. PLAN: Continue medications.",
    "The patient tolerated the procedure well and was transferred to recovery, stable.",
};

static moe_wordpiece_t *train_small(size_t vocab_size) {
  size_t lens[5];
  for (int i = 0; i < 5; i++) lens[i] = strlen(corpus[i]);
  moe_wordpiece_train_opts_t opts = {vocab_size, 1, 0};
  moe_wordpiece_t *wp;
  ASSERT_OK(moe_wordpiece_train(corpus, lens, 5, &opts, &wp));
  return wp;
}

TEST(train_is_deterministic_and_round_trips) {
  moe_wordpiece_t *a = train_small(260), *b = train_small(260);
  char *ja, *jb, *jc;
  size_t la, lb, lc;
  ASSERT_OK(moe_wordpiece_to_json(a, &ja, &la));
  ASSERT_OK(moe_wordpiece_to_json(b, &jb, &lb));
  ASSERT_EQ(la, lb);
  ASSERT_STR_EQ(ja, jb);
  ASSERT_EQ(moe_wordpiece_vocab_size(a), 260);
  for (int i = 0; i < MOE_TOKEN_N_SPECIAL; i++) ASSERT_NOT_NULL(moe_wordpiece_token(a, i));
  ASSERT_STR_EQ(moe_wordpiece_token(a, MOE_TOKEN_UNK), "[UNK]");
  /* Frequent words of the corpus were learned whole. */
  ASSERT_OP(moe_wordpiece_id(a, "patient", 7), >=, 0);
  ASSERT_OP(moe_wordpiece_id(a, "the", 3), >=, 0);
  moe_wordpiece_t *c;
  char err[256];
  ASSERT_OK(moe_wordpiece_from_json(ja, la, &c, err, sizeof(err)));
  ASSERT_OK(moe_wordpiece_to_json(c, &jc, &lc));
  ASSERT_STR_EQ(ja, jc);
  /* Same encodings from the trained and the reloaded tokenizer; every ASCII word encodes. */
  for (int d = 0; d < 5; d++) {
    moe_token_t *ta, *tc;
    size_t na, nc;
    ASSERT_OK(moe_wordpiece_encode(a, corpus[d], strlen(corpus[d]), &ta, &na));
    ASSERT_OK(moe_wordpiece_encode(c, corpus[d], strlen(corpus[d]), &tc, &nc));
    ASSERT_EQ(na, nc);
    for (size_t i = 0; i < na; i++) {
      ASSERT_EQ(ta[i].id, tc[i].id);
      ASSERT_EQ(ta[i].start, tc[i].start);
      ASSERT_NE(ta[i].id, MOE_TOKEN_UNK);
      /* Spans move forward; pieces of one expanded abbreviation share its span. */
      if (i > 0) ASSERT_OP(ta[i - 1].start, <=, ta[i].start);
    }
    moe_text_free(ta);
    moe_text_free(tc);
  }
  moe_text_free(ja);
  moe_text_free(jb);
  moe_text_free(jc);
  moe_wordpiece_free(a);
  moe_wordpiece_free(b);
  moe_wordpiece_free(c);
  /* Too small for the alphabet. */
  size_t len = strlen(corpus[0]);
  moe_wordpiece_train_opts_t opts = {50, 2, 0};
  moe_wordpiece_t *x;
  ASSERT_EQ(moe_wordpiece_train(corpus, &len, 1, &opts, &x), MOE_EINVAL);
  ASSERT_NULL(x);
}

TEST(out_of_memory_everywhere) {
  size_t lens[5];
  for (int i = 0; i < 5; i++) lens[i] = strlen(corpus[i]);
  moe_wordpiece_train_opts_t opts = {240, 2, 0};
  int64_t live = moe_alloc_live();
  size_t fired = 0;
  for (uint64_t n = 1;; n++) {
    moe_alloc_fault_arm(n);
    moe_wordpiece_t *wp;
    moe_err_t err = moe_wordpiece_train(corpus, lens, 5, &opts, &wp);
    if (!moe_alloc_fault_fired()) {
      moe_alloc_fault_disarm();
      ASSERT_OK(err);
      moe_wordpiece_free(wp);
      break;
    }
    fired++;
    ASSERT_EQ(err, MOE_ENOMEM);
    ASSERT_NULL(wp);
  }
  moe_alloc_fault_disarm();
  ASSERT_EQ(moe_alloc_live(), live);
  ASSERT_OP(fired, >, 10);
  moe_wordpiece_t *wp = load_hand();
  for (uint64_t n = 1;; n++) {
    moe_alloc_fault_arm(n);
    moe_token_t *t;
    size_t k;
    moe_err_t err = moe_wordpiece_encode(wp, corpus[2], strlen(corpus[2]), &t, &k);
    if (!moe_alloc_fault_fired()) {
      moe_alloc_fault_disarm();
      ASSERT_OK(err);
      moe_text_free(t);
      break;
    }
    ASSERT_EQ(err, MOE_ENOMEM);
    ASSERT_NULL(t);
  }
  moe_alloc_fault_disarm();
  moe_wordpiece_free(wp);
  ASSERT_EQ(moe_alloc_live(), live);
}

TEST(mtsamples_vocabulary) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  char path[4096], err[256];
  snprintf(path, sizeof(path), "%s/../shared/data/clinical/mtsamples_train.csv", src ? src : ".");
  cli_csv_t csv;
  ASSERT_MSG(cli_csv_open(&csv, path, ',', err, sizeof(err)) == 0,
             "the shared data set is missing: %s", err);
  size_t cap = 4096, n = 0;
  const char **docs = malloc(cap * sizeof(char *));
  size_t *lens = malloc(cap * sizeof(size_t));
  int eof;
  for (size_t r = 0;; r++) {
    ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
    if (eof) break;
    if (r == 0 || csv.field_len[4] == 0) continue;
    ASSERT(n < cap);
    docs[n] = csv.field[4]; /* fields stay valid: csv.c unescapes in place */
    lens[n] = csv.field_len[4];
    n++;
  }
  double t0 = test_now_s();
  moe_wordpiece_train_opts_t opts = {8000, 2, 0};
  moe_wordpiece_t *wp;
  ASSERT_OK(moe_wordpiece_train(docs, lens, n, &opts, &wp));
  double t_train = test_now_s() - t0;
  ASSERT_EQ(moe_wordpiece_vocab_size(wp), 8000);
  const char *common[] = {"patient", "history", "diagnosis", "##ectomy", "bid", "status", "mg"};
  for (size_t k = 0; k < sizeof(common) / sizeof(common[0]); k++)
    ASSERT_MSG(moe_wordpiece_id(wp, common[k], strlen(common[k])) >= 0, "'%s' not learned",
               common[k]);
  /* Encode every note; pieces must rebuild the normalised words exactly. */
  size_t total_tok = 0, unk = 0, bytes = 0;
  double t_enc = 0;
  for (size_t d = 0; d < n; d++) {
    moe_token_t *t;
    size_t k;
    double t1 = test_now_s();
    ASSERT_OK(moe_wordpiece_encode(wp, docs[d], lens[d], &t, &k));
    t_enc += test_now_s() - t1;
    bytes += lens[d];
    total_tok += k;
    for (size_t i = 0; i < k; i++) {
      unk += t[i].id == MOE_TOKEN_UNK;
      ASSERT_OP(t[i].start, <, t[i].end);
      ASSERT_OP(t[i].end, <=, lens[d]);
      if (i > 0) ASSERT_OP(t[i - 1].start, <=, t[i].start);
    }
    if (d == 0) {
      /* The first note starts "PAST MEDICAL HISTORY:, He has difficulty climbing stairs". */
      ASSERT_STR_EQ(moe_wordpiece_token(wp, t[0].id), "past");
      ASSERT_EQ(t[0].start, 0);
      ASSERT_EQ(t[0].end, 4);
    }
    moe_text_free(t);
  }
  double us_per_10k = t_enc / (double)bytes * 10240.0 * 1e6;
  printf("mtsamples wordpiece: %zu notes, vocab 8000 trained in %.2f s; %zu tokens, %zu [UNK] "
         "(%.4f %%); encoding %.1f MB/s, %.0f us per 10 KB note (sanitized build)\n",
         n, t_train, total_tok, unk, 100.0 * (double)unk / (double)total_tok,
         (double)bytes / t_enc / 1e6, us_per_10k);
  ASSERT_OP((double)unk / (double)total_tok, <, 0.001);
  moe_wordpiece_free(wp);
  free(docs);
  free(lens);
  cli_csv_close(&csv);
}
