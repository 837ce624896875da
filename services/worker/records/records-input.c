/*
 * Decoding and validation of sluice.records.events. The contract is in records-input.h.
 */
#include "records-input.h"

#include <stdio.h>
#include <string.h>

/* An identifier as every pipeline checks it, and valid UTF-8 besides. */
static bool records__check_id(const char *field, const char *s, bool required, wk_reject_t *rej) {
  if (!wk_reject_check_id(field, s, required, WK_RECORDS_MAX_ID_LEN, rej)) return false;
  if (s == NULL) return true;
  size_t n = strlen(s);
  if (wk_utf8_invalid_at(s, n) != n)
    return wk_reject(rej, WK_REJECT_INVALID, "%s is not valid UTF-8 at byte %zu", field,
                     wk_utf8_invalid_at(s, n));
  return true;
}

size_t wk_utf8_invalid_at(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    size_t n;
    unsigned cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + n > len) return i;
    for (size_t k = 1; k < n; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n;
  }
  return len;
}

bool wk_records_validate(const Sluice__V1__Envelope *env, size_t max_text_bytes, wk_reject_t *rej) {
  rej->reason = WK_REJECT_NONE;
  rej->detail[0] = '\0';
  if (!records__check_id("event_id", env->event_id, true, rej)) return false;
  if (!records__check_id("key", env->key, false, rej)) return false;
  if (env->has_schema_version && env->schema_version != 1)
    return wk_reject(rej, WK_REJECT_INVALID, "schema_version %u is not supported (1 is)",
                     env->schema_version);
  if (!env->has_event_time_ms)
    return wk_reject(rej, WK_REJECT_INVALID, "event_time_ms is missing");
  if (env->event_time_ms < WK_FRAUD_MIN_TIME_MS || env->event_time_ms >= WK_FRAUD_MAX_TIME_MS)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "event_time_ms %lld is outside 2000-01-01..2100-01-01",
                     (long long)env->event_time_ms);
  if (env->payload_case != SLUICE__V1__ENVELOPE__PAYLOAD_CLINICAL_NOTE || env->clinical_note == NULL)
    return wk_reject(rej, WK_REJECT_WRONG_PAYLOAD,
                     "payload is %d, not a clinical_note (12)", (int)env->payload_case);
  const Sluice__V1__ClinicalNote *note = env->clinical_note;
  if (!records__check_id("clinical_note.note_id", note->note_id, true, rej)) return false;
  if (env->key != NULL && env->key[0] != '\0' && strcmp(env->key, note->note_id) != 0)
    return wk_reject(rej, WK_REJECT_INVALID,
                     "key \"%.64s\" is not the note's note_id \"%.64s\"", env->key,
                     note->note_id);
  if (!records__check_id("clinical_note.patient_id", note->patient_id, false, rej)) return false;
  if (!records__check_id("clinical_note.encounter_id", note->encounter_id, false, rej)) return false;
  if (!records__check_id("clinical_note.note_type", note->note_type, false, rej)) return false;
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
