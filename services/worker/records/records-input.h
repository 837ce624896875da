/*
 * The records pipeline's input side: decoding and validating one record of
 * sluice.records.events (an Envelope carrying a ClinicalNote). A note must have a note_id (the
 * envelope key, when set, must be the same note), text that is valid UTF-8, not empty or
 * blank, and at most max_text_bytes long. Rejections reuse the fraud pipeline's reasons
 * (wk_reject_t, fraud-input.h); a too-long text is OVERSIZE, bad UTF-8 names its byte offset.
 *
 * Threads: pure computation on its arguments; any thread.
 */
#ifndef WK_RECORDS_INPUT_H
#define WK_RECORDS_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fraud-input.h"
#include "sluice/v1/envelope.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_RECORDS_MAX_ID_LEN 128
/* The default text limit: MTSamples' longest note is about 18 KB. */
#define WK_RECORDS_DEFAULT_MAX_TEXT (256u * 1024u)

/*
 * Decodes and validates one record value. Returns the envelope (free it with
 * sluice__v1__envelope__free_unpacked(env, NULL)), or NULL with *rej filled in. Records longer
 * than max_bytes are rejected as oversize without being parsed.
 */
Sluice__V1__Envelope *wk_records_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                        size_t max_text_bytes, wk_reject_t *rej);

/* Validation alone; true when valid, else *rej is filled. */
bool wk_records_validate(const Sluice__V1__Envelope *env, size_t max_text_bytes, wk_reject_t *rej);

/* wk_utf8_invalid_at (reject.h) checks the text. */

#ifdef __cplusplus
}
#endif
#endif /* WK_RECORDS_INPUT_H */
