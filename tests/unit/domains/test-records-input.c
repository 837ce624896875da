/*
 * Decoding and validation of sluice.records.events records: empty, blank, too long and
 * malformed UTF-8 texts are rejected with a reason naming the field and the byte.
 */
#include "test.h"

#include "records-input.h"

typedef struct {
  Sluice__V1__Envelope env;
  Sluice__V1__ClinicalNote note;
} msg_t;

static void make(msg_t *m, const char *text) {
  Sluice__V1__Envelope e = SLUICE__V1__ENVELOPE__INIT;
  Sluice__V1__ClinicalNote n = SLUICE__V1__CLINICAL_NOTE__INIT;
  m->env = e;
  m->note = n;
  m->env.event_id = (char *)"mt-2";
  m->env.key = (char *)"mtsamples_train-2";
  m->env.has_event_time_ms = 1;
  m->env.event_time_ms = 1700000000000LL;
  m->env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE;
  m->env.clinical_note = &m->note;
  m->note.note_id = (char *)"mtsamples_train-2";
  m->note.text = (char *)text;
}

static void expect(msg_t *m, size_t max_text, wk_reject_reason_t reason, const char *needle) {
  wk_reject_t rej;
  ASSERT(!wk_records_validate(&m->env, max_text, &rej));
  ASSERT_EQ(rej.reason, reason);
  ASSERT_STR_CONTAINS(rej.detail, needle);
}

TEST(valid_note_round_trip) {
  msg_t m;
  make(&m, "HISTORY OF PRESENT ILLNESS: Caf\xc3\xa9 au lait spots, 5 \xc2\xb5g.");
  size_t n = sluice__v1__envelope__get_packed_size(&m.env);
  uint8_t *buf = malloc(n);
  ASSERT_NOT_NULL(buf);
  sluice__v1__envelope__pack(&m.env, buf);
  wk_reject_t rej;
  Sluice__V1__Envelope *env = wk_records_decode(buf, n, 1 << 20, WK_RECORDS_DEFAULT_MAX_TEXT, &rej);
  ASSERT_NOT_NULL(env);
  ASSERT_STR_EQ(env->clinical_note->note_id, "mtsamples_train-2");
  sluice__v1__envelope__free_unpacked(env, NULL);
  ASSERT_NULL(wk_records_decode(buf, n, n - 1, WK_RECORDS_DEFAULT_MAX_TEXT, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_OVERSIZE);
  ASSERT_NULL(wk_records_decode(buf, 3, n, WK_RECORDS_DEFAULT_MAX_TEXT, &rej));
  ASSERT_EQ(rej.reason, WK_REJECT_DECODE);
  free(buf);
}

TEST(bad_notes_are_rejected_with_a_reason) {
  msg_t m;
  make(&m, "");
  expect(&m, 100, WK_REJECT_INVALID, "clinical_note.text is empty");
  make(&m, NULL);
  expect(&m, 100, WK_REJECT_INVALID, "clinical_note.text is empty");
  make(&m, " \n\t  ");
  expect(&m, 100, WK_REJECT_INVALID, "blank");
  make(&m, "0123456789A");
  expect(&m, 10, WK_REJECT_OVERSIZE, "11 bytes, the limit is 10");
  make(&m, "ok \xc0\x80 overlong");
  expect(&m, 100, WK_REJECT_INVALID, "UTF-8 at byte 3");
  make(&m, "surrogate \xed\xa0\x80");
  expect(&m, 100, WK_REJECT_INVALID, "UTF-8 at byte 10");
  make(&m, "cut \xe2\x82");
  expect(&m, 100, WK_REJECT_INVALID, "UTF-8 at byte 4");
  make(&m, "text");
  m.note.note_id = NULL;
  expect(&m, 100, WK_REJECT_INVALID, "note_id is missing");
  make(&m, "text");
  m.env.key = (char *)"other";
  expect(&m, 100, WK_REJECT_INVALID, "not the note's note_id");
  make(&m, "text");
  m.env.payload_case = SLUICE__V1__ENVELOPE__PAYLOAD_SENSOR_READING;
  expect(&m, 100, WK_REJECT_WRONG_PAYLOAD, "not a clinical_note");
}

TEST(utf8_scanner) {
  ASSERT_EQ(wk_utf8_invalid_at("abc", 3), 3);
  ASSERT_EQ(wk_utf8_invalid_at("\xf0\x9f\x98\x80!", 5), 5);     /* U+1F600 */
  ASSERT_EQ(wk_utf8_invalid_at("a\xf4\x90\x80\x80", 5), 1);     /* above U+10FFFF */
  ASSERT_EQ(wk_utf8_invalid_at("ab\x80", 3), 2);                /* stray continuation */
  ASSERT_EQ(wk_utf8_invalid_at("\xe0\x80\xaf", 3), 0);          /* overlong '/' */
}

TEST(mutated_records_never_crash_and_always_explain) {
  msg_t m;
  make(&m, "PLAN: follow up in 2 weeks; caf\xc3\xa9 \xe2\x80\x94 ok.");
  size_t n = sluice__v1__envelope__get_packed_size(&m.env);
  uint8_t *good = malloc(n), *buf = malloc(n);
  ASSERT(good != NULL && buf != NULL);
  sluice__v1__envelope__pack(&m.env, good);
  srand(11);
  int rejected = 0, accepted = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(buf, good, n);
    size_t len = n - (size_t)(rand() % 4 == 0 ? rand() % (int)n : 0);
    for (int k = 0; k < 1 + rand() % 3; k++) buf[rand() % (int)n] ^= (uint8_t)(1 + rand() % 255);
    wk_reject_t rej;
    Sluice__V1__Envelope *env = wk_records_decode(buf, len, n, 1000, &rej);
    if (env == NULL) {
      ASSERT_NE(rej.reason, WK_REJECT_NONE);
      ASSERT(rej.detail[0] != '\0');
      rejected++;
    } else {
      const char *t = env->clinical_note->text;
      ASSERT_EQ(wk_utf8_invalid_at(t, strlen(t)), strlen(t));
      sluice__v1__envelope__free_unpacked(env, NULL);
      accepted++;
    }
  }
  ASSERT_OP(rejected, >, 100);
  ASSERT_OP(accepted, >, 10);
  free(good);
  free(buf);
}
