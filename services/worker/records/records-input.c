/*
 * Decoding and validation of sluice.records.events. The contract is in records-input.h.
 */
#include "records-input.h"

#include <stdio.h>
#include <string.h>

bool wk_records_validate(const Sluice__V1__Envelope *env, size_t max_text_bytes, wk_reject_t *rej) {
  if (!wk_reject_check_envelope(env, SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE,
                                "clinical_note (12)", WK_RECORDS_MAX_ID_LEN, rej))
    return false;
  const Sluice__V1__ClinicalNote *note = env->clinical_note;
  if (!wk_reject_check_id("clinical_note.note_id", note->note_id, true, WK_RECORDS_MAX_ID_LEN, rej)) return false;
  if (env->key != NULL && env->key[0] != '\0' && strcmp(env->key, note->note_id) != 0)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "key \"%.64s\" is not the note's note_id \"%.64s\"", env->key,
                     note->note_id);
  if (!wk_reject_check_id("clinical_note.patient_id", note->patient_id, false, WK_RECORDS_MAX_ID_LEN, rej)) return false;
  if (!wk_reject_check_id("clinical_note.encounter_id", note->encounter_id, false, WK_RECORDS_MAX_ID_LEN, rej)) return false;
  if (!wk_reject_check_id("clinical_note.note_type", note->note_type, false, WK_RECORDS_MAX_ID_LEN, rej)) return false;
  if (note->text == NULL || note->text[0] == '\0')
    return wk_reject(rej, WK_REJECT_INVALID, "clinical_note.text is empty");
  size_t n = strlen(note->text);
  if (n > max_text_bytes)
    return wk_reject(rej, WK_REJECT_OVERSIZE,
                     "clinical_note.text is %zu bytes, the limit is %zu", n, max_text_bytes);
  size_t bad = wk_utf8_invalid_at(note->text, n);
  if (bad != n)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "clinical_note.text is not valid UTF-8 at byte %zu (0x%02x)", bad,
                     (unsigned char)note->text[bad]);
  size_t i = 0;
  while (i < n && (note->text[i] == ' ' || (note->text[i] >= '\t' && note->text[i] <= '\r'))) i++;
  if (i == n)
    return wk_reject(rej, WK_REJECT_INVALID, "clinical_note.text is blank (%zu whitespace bytes)",
                     n);
  return true;
}

Sluice__V1__Envelope *wk_records_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                        size_t max_text_bytes, wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  if (len > max_bytes) {
    wk_reject(rej, WK_REJECT_OVERSIZE, "record is %zu bytes, the limit is %zu", len, max_bytes);
    return NULL;
  }
  Sluice__V1__Envelope *env = sluice__v1__envelope__unpack(NULL, len, buf);
  if (env == NULL) {
    wk_reject(rej, WK_REJECT_DECODE, "%zu bytes are not a sluice.v1.Envelope", len);
    return NULL;
  }
  if (!wk_records_validate(env, max_text_bytes, rej)) {
    sluice__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}
