/*
 * The fault pipeline's input side: decoding and validating one record of sluice.fault.events
 * (an Envelope carrying a SensorReading), and building the tabular model input (the AI4I
 * model: one reading -> its numeric channels and its categorical inputs) by name.
 *
 * Event time: the envelope's event_time_ms is the reading's time; a reading's own
 * timestamp_ms, when present, must equal it (the replay tool sets both), so that windows and
 * alerts have one clock. The device is the reading's device_id; the envelope key, when set,
 * must be the same device (one device's readings stay on one partition).
 *
 * Rejections reuse the fraud pipeline's reasons (wk_reject_t, fraud-input.h): the reason is
 * the DLQ header and the metric label, the detail names the field and value at fault.
 *
 * Threads: pure computation on its arguments; any thread.
 */
#ifndef WK_FAULT_INPUT_H
#define WK_FAULT_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fraud-input.h"
#include "sluice/v1/envelope.pb-c.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_FAULT_MAX_ID_LEN 128     /* event id, key, device id, device type */
#define WK_FAULT_MAX_CHANNELS 64    /* values per reading */
#define WK_FAULT_MAX_NAME_LEN 64    /* channel name */
#define WK_FAULT_MAX_ABS_VALUE 1e12 /* a reading beyond this is a broken sensor, not data */

/*
 * Decodes and validates one record value. Returns the envelope (free it with
 * sluice__v1__envelope__free_unpacked(env, NULL)), or NULL with *rej filled in. Records longer
 * than max_bytes are rejected as oversize without being parsed.
 */
Sluice__V1__Envelope *wk_fault_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                                      wk_reject_t *rej);

/*
 * Validation alone: ids present, bounded and free of control characters; event_time_ms in
 * 2000..2100; payload a SensorReading with a device_id (equal to the key when the key is set),
 * timestamp_ms absent or equal to event_time_ms, 1..WK_FAULT_MAX_CHANNELS values, each with a
 * unique non-empty name and a finite value of magnitude <= WK_FAULT_MAX_ABS_VALUE.
 * True when valid, else *rej is filled.
 */
bool wk_fault_validate(const Sluice__V1__Envelope *env, wk_reject_t *rej);

/*
 * The age channel of a sensor model (`sluice train --age`): the device's cycle count, which a
 * reading carries as its sequence. A reading with a value of that name gives that value instead.
 * The same name as CLI_AGE_CHANNEL (services/cli/dataset.h), which training writes into models.
 */
#define WK_FAULT_AGE_CHANNEL "cycle"

/* The value of channel `name` in a reading (for WK_FAULT_AGE_CHANNEL, its sequence when it has
 * no value of that name); false when the reading does not carry it. */
bool wk_fault_channel_value(const Sluice__V1__SensorReading *rd, const char *name, double *out);

/* ---- the tabular (AI4I) model input, by name ------------------------------------------ */

/*
 * Where each of a tabular model's inputs comes from. Numeric input i is the reading's channel
 * of the same name ("Torque [Nm]"). A categorical input named "Type" or "device_type" is the
 * reading's device_type, looked up in that input's vocabulary (an unknown or absent type is id
 * 0, the "<unk>" entry by the engine's convention); no other categorical input is known.
 */
typedef struct wk_fault_tab_map_s {
  size_t n_numeric;
  char **numeric;       /* (n_numeric) channel names, copied */
  size_t n_categorical;
  size_t *cat_vocab_n;  /* (n_categorical) vocabulary sizes */
  char ***cat_vocab;    /* (n_categorical, cat_vocab_n[i]) vocabulary entries, copied */
} wk_fault_tab_map_t;

/*
 * Builds the map from the model's input names (moe_model_numeric_name, ...categorical_name,
 * ...categorical_value in the wiring). cat_vocab[i] has cat_vocab_n[i] entries. Returns
 * SVC_OK; SVC_ECONFIG naming the categorical input that is not known; SVC_ENOMEM. Release
 * with wk_fault_tab_map_close (also after a failed init: it is then a no-op).
 */
svc_err_t wk_fault_tab_map_init(wk_fault_tab_map_t *map, const char *const *numeric,
                                size_t n_numeric, const char *const *categorical,
                                const char *const *const *cat_vocab, const size_t *cat_vocab_n,
                                size_t n_categorical, char *errstr, size_t errstr_size);
void wk_fault_tab_map_close(wk_fault_tab_map_t *map);

/*
 * Fills numeric[n_numeric] and categorical[n_categorical] for one valid reading. Returns true;
 * false with *rej (WK_REJECT_INVALID, naming the channel) when a numeric input's channel is
 * missing from the reading: a model input is never invented.
 */
bool wk_fault_tab_build(const wk_fault_tab_map_t *map, const Sluice__V1__SensorReading *rd,
                        float *numeric, int32_t *categorical, wk_reject_t *rej);

#ifdef __cplusplus
}
#endif
#endif /* WK_FAULT_INPUT_H */
