/*
 * libmoe's public API: load a model file (one safetensors file whose __metadata__["config"] is
 * the JSON config described in engine/MODEL_FORMAT.md), ask it what it is (task, inputs,
 * labels, MoE layout), and score batches of rows through a per-thread session.
 *
 * Threading: a loaded moe_model_t is immutable and may be shared by any number of threads.
 * A moe_session_t belongs to one thread at a time; it owns the scratch arena that every batch
 * uses (reset per batch: no allocation per tensor on the hot path once it has warmed up).
 *
 * The forward pass is: encoder (tabular | sensor | text) -> d_model vector per row -> MoE
 * blocks (pre-norm, residual; router top-k of N routed experts plus always-on shared experts)
 * -> final norm -> task head (binary | multiclass | regression).
 */
#ifndef MOE_MOE_H
#define MOE_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format_version this library writes and reads. */
#define MOE_FORMAT_VERSION 1

typedef struct moe_model_s moe_model_t;
typedef struct moe_session_s moe_session_t;

typedef enum {
  MOE_TASK_BINARY = 0,     /* one output: probability of labels[1] */
  MOE_TASK_MULTICLASS = 1, /* n_labels outputs: class probabilities (softmax) */
  MOE_TASK_REGRESSION = 2  /* n_labels outputs: one value per target name */
} moe_task_t;

typedef enum {
  MOE_ENCODER_TABULAR = 0, /* numeric features (normalised inside) + categorical embeddings */
  MOE_ENCODER_SENSOR = 1,  /* a window [T, C] of channel readings, 1-D convolution stack */
  MOE_ENCODER_TEXT = 2     /* token ids, embeddings, windowed-attention transformer blocks */
} moe_encoder_kind_t;

typedef enum {
  MOE_QUANT_F32 = 0,  /* fp32 weights, GEMM through OpenBLAS */
  MOE_QUANT_Q8_0 = 1, /* int8, blocks of 32 along the input dimension with one scale */
  MOE_QUANT_Q4_0 = 2  /* int4 (stored q+8 in a nibble), blocks of 32 with one scale */
} moe_quant_t;

/* ---- loading ------------------------------------------------------------------------- */

/*
 * Loads and validates a model file. On success *model_out owns everything it needs (the file
 * is read and closed; nothing stays mapped). On failure returns MOE_EIO / MOE_ENOENT /
 * MOE_EFORMAT / MOE_ECONFIG / MOE_ESHAPE / MOE_EDTYPE / MOE_EMISSING / MOE_ENOMEM, leaves
 * *model_out NULL and writes a sentence naming the field or tensor at fault into errstr
 * (always NUL-terminated when errstr_size > 0; errstr may be NULL). Any thread.
 */
int moe_model_load(const char *path, moe_model_t **model_out, char *errstr, size_t errstr_size);

/* The same from memory. Borrows buf only for the duration of the call. For tests and fuzzing. */
int moe_model_load_memory(const void *buf, size_t len, moe_model_t **model_out, char *errstr,
                          size_t errstr_size);

/* Frees a model. NULL is a no-op. No session of this model may still exist. */
void moe_model_free(moe_model_t *model);

/* ---- what the model is (all borrowed pointers live as long as the model) ------------- */

moe_task_t moe_model_task(const moe_model_t *model);
moe_encoder_kind_t moe_model_encoder(const moe_model_t *model);
moe_quant_t moe_model_quant(const moe_model_t *model);
/* Number of floats per row in moe_output_t.scores: 1 for binary, n_labels otherwise. */
int moe_model_n_outputs(const moe_model_t *model);
int moe_model_n_labels(const moe_model_t *model);
const char *moe_model_label(const moe_model_t *model, int i);
/* The decision threshold on the binary probability (config task.threshold, default 0.5). */
float moe_model_threshold(const moe_model_t *model);
/* config "version" (e.g. "fraud-2026.11.1"). */
const char *moe_model_version(const moe_model_t *model);
/* The whole config JSON exactly as stored in the file (includes provenance). */
const char *moe_model_config_json(const moe_model_t *model);
/* Total number of weight values (all tensors), for model cards and benchmarks. */
int64_t moe_model_n_params(const moe_model_t *model);

/* Tabular inputs: numeric features (raw, before normalisation) and categorical features. */
int moe_model_n_numeric(const moe_model_t *model);
const char *moe_model_numeric_name(const moe_model_t *model, int i);
int moe_model_n_categorical(const moe_model_t *model);
const char *moe_model_categorical_name(const moe_model_t *model, int i);
/* Vocabulary size of categorical feature i; valid ids are 0 .. size-1. */
int moe_model_categorical_vocab_size(const moe_model_t *model, int i);
/* Entry `id` of categorical feature i's vocabulary, NULL when out of range. */
const char *moe_model_categorical_value(const moe_model_t *model, int i, int id);

/* Sensor inputs: window length T and channels C (input is [T, C] row-major). */
int moe_model_sensor_window(const moe_model_t *model);
int moe_model_sensor_channels(const moe_model_t *model);
const char *moe_model_sensor_channel_name(const moe_model_t *model, int c);

/* Text inputs: token ids in [0, vocab_size), 1 .. max_len tokens per row. */
int moe_model_text_vocab_size(const moe_model_t *model);
int moe_model_text_max_len(const moe_model_t *model);
/*
 * The tokenizer hook: config encoder.tokenizer re-serialised as JSON (NULL if absent). The
 * text module (engine/src/text/) builds its tokenizer from this; the engine itself only ever
 * sees token ids.
 */
const char *moe_model_tokenizer_json(const moe_model_t *model);

/*
 * The MoE layout, for sizing the optional explanation buffers of moe_output_t:
 * route_size = sum over MoE blocks of top_k (entries per row in expert_ids/expert_weights),
 * load_size = sum over MoE blocks of n_expert (entries per batch in expert_load).
 */
typedef struct moe_block_info_s {
  int n_expert;     /* routed experts */
  int top_k;        /* experts chosen per row */
  int n_shared;     /* always-on shared experts */
  int d_ff;         /* hidden width of each expert */
  int route_offset; /* where this block's top_k entries start inside a row's route slots */
  int load_offset;  /* where this block's n_expert counts start inside expert_load */
} moe_block_info_t;

int moe_model_n_moe_blocks(const moe_model_t *model);
/* Fills *info for block b (0 <= b < n_moe_blocks); returns MOE_EINVAL when b is out of range. */
int moe_model_moe_block(const moe_model_t *model, int b, moe_block_info_t *info);
int moe_model_route_size(const moe_model_t *model);
int moe_model_load_size(const moe_model_t *model);

/*
 * The tensors of the file the model was loaded from, as stored there (before any repacking),
 * for tools that list a model's contents: every tensor of a loaded model is one the config
 * uses, so this is also the complete weight inventory. Tensors are numbered 0 .. n_tensors-1
 * in file order (by data offset).
 */
#define MOE_TENSOR_MAX_DIMS 8

typedef struct moe_tensor_info_s {
  const char *name;  /* borrowed: lives as long as the model */
  const char *dtype; /* safetensors dtype name as stored ("F32", "I8", "U8", ...); static */
  int ndim;          /* 0 .. MOE_TENSOR_MAX_DIMS */
  int64_t shape[MOE_TENSOR_MAX_DIMS]; /* (ndim); the entries past ndim are 0 */
  uint64_t bytes;    /* size of its data in the file: product(shape) * dtype size */
} moe_tensor_info_t;

int moe_model_n_tensors(const moe_model_t *model);
/* Fills *info for tensor i (0 <= i < n_tensors); returns MOE_EINVAL when i is out of range. Any
 * thread. */
int moe_model_tensor(const moe_model_t *model, int i, moe_tensor_info_t *info);

/* ---- scoring -------------------------------------------------------------------------- */

/*
 * One input row. Only the fields of the model's encoder kind are read; the pointers are
 * borrowed for the duration of moe_session_run.
 */
typedef struct moe_input_s {
  /* tabular: n_numeric raw values (NaN or Inf is an error) and n_categorical ids. */
  const float *numeric;
  const int32_t *categorical;
  /* sensor: [window, channels] raw readings, row-major (time major). */
  const float *window;
  /* sensor: how many of the window's last steps were observed, 1..window; 0 means all. The
   * steps before them must still be finite (readers repeat the first reading). Pool "summary"
   * reads the observed steps only; pool "mean" reads the whole window as it is. */
  int32_t n_steps;
  /* text: n_tokens ids, 1 <= n_tokens <= max_len. */
  const int32_t *tokens;
  int32_t n_tokens;
} moe_input_t;

/*
 * Caller-owned output buffers. scores is required; the explanation buffers are optional
 * (NULL to skip, at no cost).
 *   scores         [n_rows * n_outputs]  binary: P(labels[1]); multiclass: probabilities;
 *                                        regression: values.
 *   expert_ids     [n_rows * route_size] experts chosen per row per MoE block, by descending
 *                                        selection score (score + selection bias).
 *   expert_weights [n_rows * route_size] the gate weight each chosen expert's output got.
 *   expert_load    [load_size]           rows routed to each expert in this batch.
 */
typedef struct moe_output_s {
  float *scores;
  int32_t *expert_ids;
  float *expert_weights;
  int32_t *expert_load;
} moe_output_t;

/*
 * Creates a session for batches of up to max_batch rows (1 <= max_batch <= 65536). The
 * session borrows model, which must outlive it. Returns MOE_EINVAL or MOE_ENOMEM.
 */
int moe_session_new(const moe_model_t *model, int max_batch, moe_session_t **sess_out);
/* NULL is a no-op. */
void moe_session_free(moe_session_t *sess);

/*
 * Scores n_rows rows (1 <= n_rows <= max_batch). Rows are grouped by expert inside, so that
 * each active expert runs one GEMM over its rows; shared experts run over the whole batch.
 * Returns MOE_OK; MOE_EINVAL for a bad n_rows, a missing scores buffer or a text batch of more
 * than 2^26 tokens; MOE_EDATA for a bad row (non-finite value, id out of range, bad n_tokens;
 * moe_session_error() names the row and feature); MOE_ENOMEM. On error the outputs are
 * unspecified. The thread that owns sess only.
 */
int moe_session_run(moe_session_t *sess, const moe_input_t *rows, int n_rows, moe_output_t *out);

/* The message of the last failed run ("" after a success). Valid until the next run. */
const char *moe_session_error(const moe_session_t *sess);

/* ---- explanations ------------------------------------------------------------------------ */

/*
 * Number of attributions moe_session_attribute gives for this model: tabular n_numeric +
 * n_categorical (numeric features first, in config order); sensor n_channels; text 0 (it is
 * per row: one per token).
 */
int moe_model_n_attributions(const moe_model_t *model);

/*
 * Feature attributions by occlusion, on demand (the plain scoring path pays nothing for it):
 * attr[f] = score(row)[output] - score(row with feature f neutral)[output], where neutral is a
 * numeric feature at its training mean, a categorical one at id 0 (vocab[0], "<unk>" by
 * convention), a sensor channel at its mean for the whole window, a token replaced by id 0.
 * Positive: the feature pushed the output up. Runs n + 1 rows through the session (in batches
 * of max_batch), so its arena is reused and its last outputs are overwritten. n_attr must be
 * >= the number of features (moe_model_n_attributions, or row->n_tokens for text); output is
 * an index into the row's scores (0 for binary). Returns MOE_OK, MOE_EINVAL, MOE_EDATA (as
 * moe_session_run) or MOE_ENOMEM. The thread that owns sess only.
 */
int moe_session_attribute(moe_session_t *sess, const moe_input_t *row, int output, float *attr, int n_attr);

#ifdef __cplusplus
}
#endif
#endif /* MOE_MOE_H */
