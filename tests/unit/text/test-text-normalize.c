/*
 * Tests of clinical text normalisation and section detection (moe/text.h): hand-written
 * cases for each rule, offsets back into the input, and section detection on the real
 * MTSamples notes.
 */
#include "test.h"

#include "csv.h"
#include "moe/alloc.h"
#include "moe/text.h"

static void expect_norm(const char *in, const char *want) {
  moe_text_norm_t nm;
  ASSERT_OK(moe_text_normalize(in, strlen(in), &nm));
  ASSERT_STR_EQ(nm.text, want);
  ASSERT_EQ(strlen(nm.text), nm.len);
  for (size_t i = 0; i < nm.len; i++) {
    ASSERT_OP(nm.src_start[i], <=, nm.src_end[i]);
    ASSERT_OP(nm.src_end[i], <=, strlen(in));
  }
  moe_text_norm_free(&nm);
}

TEST(case_and_whitespace) {
  expect_norm("  Hello\t\n WORLD  ", "hello world");
  expect_norm("", "");
  expect_norm(" \r\n ", "");
  expect_norm("A\x01" "B", "a b");
}

TEST(unicode_cleanup) {
  /* Curly quotes, en dash, ellipsis, micro sign, NBSP, zero-width space, BOM, Latin-1. */
  expect_norm("\xE2\x80\x9CQuoted\xE2\x80\x9D \xE2\x80\x93 dash\xE2\x80\xA6 5\xC2\xA0\xC2\xB5g",
              "\"quoted\" - dash... 5 ug");
  expect_norm("\xEF\xBB\xBFzero\xE2\x80\x8Bwidth", "zerowidth");
  expect_norm("\xC3\x89T\xC3\x89", "\xC3\xA9t\xC3\xA9"); /* ÉTÉ -> été */
  expect_norm("bad\xFF" "byte", "bad byte");
  expect_norm("\xE2\x88\x92" "5", "-5"); /* minus sign */
}

TEST(abbreviations) {
  expect_norm("Pt is s/p CABG, h/o HTN. Takes ASA 81mg p.o. b.i.d. w/o food",
              "patient is status post cabg, history of hypertension. takes asa 81 mg po bid "
              "without food");
  expect_norm("72 y/o male c/o SOB, r/o MI; f/u in 2 wks w/ PCP",
              "72 year old male complains of shortness of breath, rule out mi; follow up in 2 "
              "wks with pcp");
  expect_norm("Q.I.D. and P.R.N.", "qid and prn");
  /* Whole words only. */
  expect_norm("ptosis depth optic Pt.", "ptosis depth optic patient.");
  expect_norm("dxa txt", "dxa txt");
}

TEST(numbers_and_units) {
  expect_norm("10mg 2.5mL 5cm 3x", "10 mg 2.5 ml 5 cm 3 x");
  expect_norm("2nd 3rd 1st 4th", "2nd 3rd 1st 4th");
  expect_norm("L4-L5 T12 B12", "l4-l5 t12 b12");
  expect_norm("120/80 1,000", "120/80 1,000");
}

TEST(offsets_point_into_the_input) {
  const char *in = "  H/O  Diabetes";
  moe_text_norm_t nm;
  ASSERT_OK(moe_text_normalize(in, strlen(in), &nm));
  ASSERT_STR_EQ(nm.text, "history of diabetes");
  /* Every byte of the expansion maps to the whole "H/O". */
  for (size_t i = 0; i < 10; i++) {
    ASSERT_EQ(nm.src_start[i], 2);
    ASSERT_EQ(nm.src_end[i], 5);
  }
  ASSERT_EQ(nm.src_start[11], 7); /* 'd' of Diabetes */
  ASSERT_EQ(nm.src_end[nm.len - 1], strlen(in));
  moe_text_norm_free(&nm);
}

TEST(normalize_out_of_memory) {
  const char *in = "Pt is s/p CABG with a long enough text to need growing the buffers twice";
  int fired = 0;
  for (uint64_t n = 1; n < 100; n++) {
    moe_alloc_fault_arm(n);
    moe_text_norm_t nm;
    moe_err_t err = moe_text_normalize(in, strlen(in), &nm);
    if (!moe_alloc_fault_fired()) {
      ASSERT_OK(err);
      moe_text_norm_free(&nm);
      break;
    }
    fired++;
    ASSERT_EQ(err, MOE_ENOMEM);
    ASSERT_NULL(nm.text);
  }
  moe_alloc_fault_disarm();
  ASSERT_OP(fired, >, 0);
}

/* ---- sections ---------------------------------------------------------------------- */

static void span_eq(const char *text, uint32_t s, uint32_t e, const char *want) {
  ASSERT_EQ(e - s, strlen(want));
  ASSERT_MSG(memcmp(text + s, want, e - s) == 0, "span '%.*s' != '%s'", (int)(e - s), text + s,
             want);
}

TEST(sections_by_hand) {
  const char *t = "Seen today. CHIEF COMPLAINT:, Chest pain.,HISTORY OF PRESENT ILLNESS:, The "
                  "patient reports pain. BP: 120/80.\nAssessment and plan: Rest, fluids.,"
                  "HEENT: Normal.";
  moe_text_section_t *s;
  size_t n;
  ASSERT_OK(moe_text_sections(t, strlen(t), &s, &n));
  ASSERT_EQ(n, 4);
  ASSERT_EQ(s[0].kind, MOE_SECTION_CHIEF_COMPLAINT);
  span_eq(t, s[0].head_start, s[0].head_end, "CHIEF COMPLAINT");
  span_eq(t, s[0].body_start, s[0].body_end, "Chest pain.");
  ASSERT_EQ(s[1].kind, MOE_SECTION_HPI);
  span_eq(t, s[1].body_start, s[1].body_end, "The patient reports pain. BP: 120/80.");
  ASSERT_EQ(s[2].kind, MOE_SECTION_ASSESSMENT);
  span_eq(t, s[2].head_start, s[2].head_end, "Assessment and plan");
  span_eq(t, s[2].body_start, s[2].body_end, "Rest, fluids.");
  ASSERT_EQ(s[3].kind, MOE_SECTION_OTHER); /* upper case, unknown: still a header */
  span_eq(t, s[3].head_start, s[3].head_end, "HEENT");
  ASSERT_STR_EQ(moe_section_kind_name(s[1].kind), "history_of_present_illness");
  moe_text_free(s);
  /* No header: no sections, no allocation. */
  ASSERT_OK(moe_text_sections("just text: here", 15, &s, &n));
  ASSERT_EQ(n, 0);
  ASSERT_NULL(s);
  ASSERT_EQ(moe_section_kind_of("  MEDICATIONS ", 14), MOE_SECTION_MEDICATIONS);
  ASSERT_EQ(moe_section_kind_of("ASSESSMENT & PLAN", 17), MOE_SECTION_ASSESSMENT);
}

TEST(sections_on_mtsamples) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  char path[4096], err[256];
  snprintf(path, sizeof(path), "%s/../shared/data/clinical/mtsamples_train.csv", src ? src : ".");
  cli_csv_t csv;
  ASSERT_MSG(cli_csv_open(&csv, path, ',', err, sizeof(err)) == 0,
             "the shared data set is missing: %s", err);
  int eof;
  size_t notes = 0, with = 0, total = 0, kinds[MOE_SECTION__COUNT] = {0};
  for (size_t r = 0;; r++) {
    ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
    if (eof) break;
    if (r == 0) continue;
    const char *t = csv.field[4];
    size_t len = csv.field_len[4];
    if (len == 0) continue;
    moe_text_section_t *s;
    size_t n;
    ASSERT_OK(moe_text_sections(t, len, &s, &n));
    notes++;
    with += n > 0;
    total += n;
    for (size_t k = 0; k < n; k++) {
      ASSERT_OP(s[k].head_start, <, s[k].head_end);
      ASSERT_EQ(t[s[k].head_end], ':');
      ASSERT_OP(s[k].head_end, <, s[k].body_start);
      ASSERT_OP(s[k].body_start, <=, s[k].body_end);
      ASSERT_OP(s[k].body_end, <=, len);
      if (k > 0) ASSERT_OP(s[k - 1].body_end, <=, s[k].head_start);
      kinds[s[k].kind]++;
    }
    if (r == 1) {
      /* The first note (a bariatric consult) lists these, in this order. */
      moe_section_kind_t want[] = {MOE_SECTION_PAST_HISTORY, MOE_SECTION_PAST_HISTORY,
                                   MOE_SECTION_SOCIAL_HISTORY, MOE_SECTION_FAMILY_HISTORY,
                                   MOE_SECTION_MEDICATIONS, MOE_SECTION_ALLERGIES};
      ASSERT_OP(n, >=, 6);
      for (size_t k = 0; k < 6; k++) ASSERT_EQ(s[k].kind, want[k]);
      span_eq(t, s[0].head_start, s[0].head_end, "PAST MEDICAL HISTORY");
      span_eq(t, s[5].body_start, s[5].body_start + 15, "He is allergic ");
    }
    moe_text_free(s);
  }
  cli_csv_close(&csv);
  printf("mtsamples: %zu notes, %zu with sections, %zu sections; hpi %zu, plan %zu, "
         "diagnosis %zu, other %zu\n",
         notes, with, total, kinds[MOE_SECTION_HPI], kinds[MOE_SECTION_PLAN],
         kinds[MOE_SECTION_DIAGNOSIS], kinds[MOE_SECTION_OTHER]);
  ASSERT_EQ(notes, 3990); /* 4,023 notes, 33 empty (../shared/data/README.md) */
  ASSERT_OP(with, >=, notes * 9 / 10);
  ASSERT_OP(kinds[MOE_SECTION_HPI], >, 500);
  ASSERT_OP(kinds[MOE_SECTION_DIAGNOSIS], >, 500);
}
