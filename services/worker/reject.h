/*
 * Why an event was rejected, shared by the three pipelines (fraud, fault, records): the reason
 * names the DLQ record's `reason` header and the dead-letter metric's label, the detail names
 * the field and what was wrong with it. Pure functions, any thread.
 */
#ifndef WK_REJECT_H
#define WK_REJECT_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/v1/envelope.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_REJECT_MAP(XX)                                                  \
  XX(DECODE, "decode")       /* not a protobuf Envelope */                  \
  XX(OVERSIZE, "oversize")   /* larger than the configured maximum */      \
  XX(INVALID, "invalid")     /* decoded, but a field is missing or wrong */ \
  XX(WRONG_PAYLOAD, "wrong_payload") /* an Envelope without the pipeline's payload */    \
  XX(LATE, "late")           /* older than the key's newest event minus the lateness */    \
  XX(DUPLICATE, "duplicate") /* the same event time as an event already held */            \
  XX(TOO_OLD, "too_old")     /* older than a whole window or the key's last reset */

typedef enum {
  WK_REJECT_NONE = 0,
#define WK__REJECT_ENUM(id, name) WK_REJECT_##id,
  WK_REJECT_MAP(WK__REJECT_ENUM)
#undef WK__REJECT_ENUM
  WK_REJECT__COUNT
} wk_reject_reason_t;

/* "decode", "oversize", ...; "none" for WK_REJECT_NONE. */
const char *wk_reject_name(wk_reject_reason_t reason);

typedef struct wk_reject_s {
  wk_reject_reason_t reason;
  char detail[256]; /* e.g. "transaction.amount -3 is negative" */
} wk_reject_t;

/* Fills *rej with the reason and a printf-formatted detail; returns false, so that a validator
 * can `return wk_reject(rej, ...)`. */
bool wk_reject(wk_reject_t *rej, wk_reject_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * An identifier field (`field` names it in the detail): absent or empty is fine unless
 * `required`; otherwise at most max_len bytes, valid UTF-8 and no control characters (ids
 * become PostgreSQL text, which refuses malformed UTF-8: one such id would fail its whole
 * batch, again and again, instead of going to the DLQ). Returns true when valid, else false
 * with *rej filled (WK_REJECT_INVALID).
 */
bool wk_reject_check_id(const char *field, const char *s, bool required, size_t max_len,
                        wk_reject_t *rej);

/* Event times accepted by every pipeline: 2000-01-01 <= event_time_ms < 2100-01-01. */
#define WK_MIN_EVENT_TIME_MS 946684800000LL
#define WK_MAX_EVENT_TIME_MS 4102444800000LL

/*
 * What every pipeline checks of the envelope itself: event_id (required) and key as
 * identifiers of at most max_id_len bytes, schema_version 1 when given, event_time_ms present
 * and within the range above, and the payload being `want` (WRONG_PAYLOAD otherwise;
 * `want_name` names it in the detail, e.g. "transaction (10)"). Clears *rej first. Returns
 * true when valid, else false with *rej filled.
 */
bool wk_reject_check_envelope(const Sluice__V1__Envelope *env, Sluice__V1__Envelope__PayloadCase want,
                              const char *want_name, size_t max_id_len, wk_reject_t *rej);

/* The offset of the first byte that is not part of well-formed UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF are not), or len when all of it is. */
size_t wk_utf8_invalid_at(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* WK_REJECT_H */
