/*
 * libmoe's trainer: fp32 master parameters for a model architecture (built from the same JSON
 * config schema as the model files, engine/MODEL_FORMAT.md), a forward pass that keeps what the
 * backward pass needs, the backward pass of every layer, AdamW with linear warmup and cosine
 * decay, gradient clipping by global norm, the task losses, DeepSeek-V3-style expert balance
 * (selection bias nudged from each batch's expert load, outside the gradient) with an optional
 * auxiliary balance loss, mini-batch epochs with a seeded shuffle, early stopping on a
 * validation split with best-checkpoint restore, quantization-aware training (fake-quant
 * weights in the forward pass, straight-through gradients) and export to a model file in fp32,
 * q8_0 or q4_0 (post-training quantization, exactly the format moe_model_load reads).
 *
 * Every encoder is supported: tabular (numeric + categorical embeddings), sensor (1-D
 * convolution stack) and text (token and position embeddings, windowed multi-head attention with
 * global tokens, SwiGLU feed-forward, norms), with any number of MoE blocks and the three task
 * heads. Text attention keeps each row's (n, n) probabilities per head for the backward pass, so
 * its memory grows with max_len^2.
 *
 * Threading: a trainer belongs to one thread at a time. For a given seed, options and data the
 * results are bit-identical from run to run (one thread; OpenBLAS with a fixed thread count).
 * All per-step scratch comes from the trainer's arena, reset per step: no allocation per step
 * once it has warmed up.
 */
#ifndef MOE_TRAIN_H
#define MOE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"
#include "moe/moe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moe_trainer_s moe_trainer_t;

typedef enum {
  MOE_LOSS_AUTO = 0, /* binary: BCE; multiclass: cross-entropy; regression: MSE */
  MOE_LOSS_BCE = 1,  /* binary: class-weighted binary cross-entropy on the logit */
  MOE_LOSS_FOCAL = 2, /* binary: focal loss (Lin et al.), class weights as alpha */
  MOE_LOSS_CE = 3,   /* multiclass: cross-entropy with label smoothing */
  MOE_LOSS_MSE = 4,  /* regression: mean squared error over rows and targets */
  MOE_LOSS_HUBER = 5 /* regression: Huber loss with huber_delta */
} moe_loss_t;

/* Validation metric for early stopping and moe_trainer_eval. */
typedef enum {
  MOE_METRIC_LOSS = 0,    /* the training loss on the split (lower is better) */
  MOE_METRIC_PR_AUC = 1,  /* binary */
  MOE_METRIC_ROC_AUC = 2, /* binary */
  MOE_METRIC_ACCURACY = 3, /* multiclass */
  MOE_METRIC_MACRO_F1 = 4, /* multiclass */
  MOE_METRIC_RMSE = 5     /* regression, over all targets (lower is better) */
} moe_metric_kind_t;

/* Training options. Fill with moe_train_opts_default, then change what you need. */
typedef struct moe_train_opts_s {
  moe_loss_t loss;
  float pos_weight;      /* binary: weight of positive rows in BCE / alpha of focal (1) */
  float focal_gamma;     /* focal loss exponent (2) */
  float label_smoothing; /* multiclass: epsilon in [0, 1) (0) */
  const float *class_weight; /* multiclass: (n_labels) weight of each class's rows in the
                                cross-entropy, each > 0, e.g. n / (n_labels * count) for balanced
                                classes; NULL: all 1 (NULL). Copied by moe_trainer_new. */
  float huber_delta;     /* Huber threshold (1) */
  float lr;              /* peak learning rate (1e-3) */
  float min_lr;          /* where the cosine decay ends (0) */
  int warmup_steps;      /* linear warmup from lr / warmup_steps to lr (0: none) */
  int total_steps;       /* cosine horizon; 0: moe_trainer_fit sets epochs * batches */
  float beta1, beta2, adam_eps; /* AdamW (0.9, 0.999, 1e-8) */
  float weight_decay;    /* decoupled, on matrices and embeddings only (0.01) */
  float clip_norm;       /* clip the global gradient norm to this; 0: no clipping (1) */
  float bias_gamma;      /* selection-bias step per batch; 0: no balancing (1e-3) */
  float balance_alpha;   /* weight of the auxiliary balance loss; 0: none (0) */
  moe_quant_t qat;       /* MOE_QUANT_F32: plain training; Q8_0 / Q4_0: fake-quant forward */
  float ema_decay;       /* in [0, 1): keep an exponential moving average of the weights,
                            a = d a + (1 - d) p after every step (a starts at the first step's
                            p; d is min(ema_decay, (1 + n) / (10 + n)) after n updates, so
                            that early weights fade fast), and let moe_trainer_fit evaluate,
                            keep and restore the average instead of the raw weights; the
                            selection biases are not averaged. 0: none (0) */
} moe_train_opts_t;

void moe_train_opts_default(moe_train_opts_t *opts);

/*
 * A data set (or one batch) of rows, all borrowed: numeric + categorical for the tabular
 * encoder, window for the sensor encoder, tokens + n_tokens for the text encoder. label is read for binary (0 or 1)
 * and multiclass (class index) tasks, target (n_rows, n_labels) for regression.
 */
typedef struct moe_train_data_s {
  int n_rows;
  const float *numeric;       /* (n_rows, n_numeric) raw values, before normalisation */
  const int32_t *categorical; /* (n_rows, n_categorical) ids */
  const int32_t *label;       /* (n_rows) */
  const float *target;        /* (n_rows, n_labels) */
  const float *window;        /* sensor: (n_rows, window, channels) raw readings, time major */
  const int32_t *tokens;      /* text: (n_rows, max_len) ids; row r uses its first n_tokens[r] */
  const int32_t *n_tokens;    /* text: (n_rows), each in [1, max_len] */
  const int32_t *n_steps;     /* sensor, optional: (n_rows) observed steps (moe_input_t.n_steps) */
} moe_train_data_t;

/*
 * Builds a trainer for the model described by config_json (the config schema of model files;
 * "quant" is ignored: training is in fp32 and the export chooses the format), initialised
 * deterministically from seed. opts may be NULL for the defaults; it is copied.
 * Returns MOE_OK, MOE_ECONFIG (errstr names the field), MOE_EUNSUPPORTED (sensor / text
 * encoder), MOE_EINVAL (bad options, named in errstr) or MOE_ENOMEM.
 */
int moe_trainer_new(const char *config_json, uint64_t seed, const moe_train_opts_t *opts,
                    moe_trainer_t **tr_out, char *errstr, size_t errstr_size);

/*
 * The same, starting from the parameters of an fp32 model file (fine-tuning, or a reference
 * initialisation). MOE_ENOTTRAINABLE when the file is quantized; otherwise as moe_model_load
 * and moe_trainer_new.
 */
int moe_trainer_load(const char *path, uint64_t seed, const moe_train_opts_t *opts,
                     moe_trainer_t **tr_out, char *errstr, size_t errstr_size);

/* NULL is a no-op. */
void moe_trainer_free(moe_trainer_t *tr);

/* Number of trainable values (the selection biases are not counted: they are not learnt by
 * gradient). */
int64_t moe_trainer_n_params(const moe_trainer_t *tr);
/* Optimizer steps taken so far. */
int64_t moe_trainer_steps(const moe_trainer_t *tr);
/* The message of the last failed call ("" after a success). */
const char *moe_trainer_error(const moe_trainer_t *tr);

/*
 * Text pool "bag" with config.encoder.idf: sets the piece weights enc.idf.weight to the smoothed
 * inverse document frequency of the rows, ln((1 + n_rows) / (1 + df_t)) + 1 with df_t the rows
 * that contain piece t (scikit-learn's TfidfVectorizer default), so that training starts from a
 * TF-IDF weighting; they are then learnt like any parameter. Call it with the training rows
 * before moe_trainer_fit (a new trainer starts them at 1). Returns MOE_OK, MOE_EINVAL (the
 * model has no piece weights, or no token rows) or MOE_EDATA (a bad row, named by
 * moe_trainer_error), or MOE_ENOMEM.
 */
int moe_trainer_set_idf(moe_trainer_t *tr, const moe_train_data_t *data);

/* Options of moe_trainer_fit_linear. */
typedef struct moe_linear_opts_s {
  double c;     /* inverse L2 strength, as scikit-learn's C (> 0) */
  int max_iter; /* L-BFGS iterations at most (>= 1) */
  double tol;   /* stop once every gradient component is below this in magnitude (>= 0) */
} moe_linear_opts_t;

typedef struct moe_linear_result_s {
  int iterations;
  int n_pieces;     /* pieces that occur in the rows (the others' coefficients are 0) */
  double objective; /* at the solution */
  double grad_max;  /* largest gradient component magnitude at the solution */
} moe_linear_result_t;

/*
 * Text pool "bag" with "head_norm": false, multiclass, n_labels <= d_model: fits multinomial
 * logistic regression with an L2 penalty on the model's own bag features (the pooled weights
 * w_t of MODEL_FORMAT.md with the current piece weights, so call moe_trainer_set_idf first when
 * the model has them), deterministically (L-BFGS from 0, in double), minimising
 *   (1/n) sum_r cw[y_r] CE(B x_r + b, y_r) + |B|^2 / (2 c n)
 * (scikit-learn's LogisticRegression objective over C n; cw the class weights, 1 without; no
 * label smoothing; intercepts not penalised), and puts the solution into the model: enc.tok
 * row t = (B[0][t] .. B[K-1][t], 0 ...), the head the identity on the first K dimensions with b
 * as its bias, every expert's and shared expert's down projection 0 (the MoE blocks add nothing).
 * The model then scores exactly that classifier; moe_trainer_fit can fine-tune from it.
 * Returns MOE_OK, MOE_EINVAL (the model or options do not fit, in moe_trainer_error), MOE_EDATA
 * (a bad row) or MOE_ENOMEM.
 */
int moe_trainer_fit_linear(moe_trainer_t *tr, const moe_train_data_t *train, const moe_linear_opts_t *opts,
                           moe_linear_result_t *result);

/*
 * One optimizer step on one batch (1 <= n_rows): forward, loss, backward, clipping, AdamW,
 * then the selection-bias update from the batch's expert load. *loss (may be NULL) gets the
 * batch loss before the step, auxiliary balance loss included. Returns MOE_OK, MOE_EDATA (a
 * bad row, named by moe_trainer_error), MOE_EDIVERGED (non-finite loss or gradient; the
 * parameters are left as before the step) or MOE_ENOMEM.
 */
int moe_trainer_step(moe_trainer_t *tr, const moe_train_data_t *batch, double *loss);

/*
 * Scores every row with the trainer's current parameters (fake-quantized when training with
 * QAT), exactly as moe_session_run would for the exported model of the same format:
 * scores (n_rows * n_outputs). Returns as moe_trainer_step, without MOE_EDIVERGED.
 */
int moe_trainer_predict(moe_trainer_t *tr, const moe_train_data_t *data, float *scores);

/*
 * Evaluates the data set: *value gets the metric (MOE_ERANGE when it is undefined for the data,
 * e.g. AUC with one class; MOE_EINVAL when the metric does not fit the task). MOE_METRIC_LOSS is
 * the training loss (auxiliary balance loss included) averaged over rows.
 */
int moe_trainer_eval(moe_trainer_t *tr, const moe_train_data_t *data, moe_metric_kind_t metric,
                     double *value);

/* Whether higher values of the metric are better. */
int moe_metric_higher_is_better(moe_metric_kind_t metric);

/* Called after each epoch; return non-zero to stop training. */
typedef int (*moe_fit_progress_cb)(void *data, int epoch, double train_loss, double val_metric);

typedef struct moe_fit_opts_s {
  int epochs;               /* maximum epochs (>= 1) */
  int batch_size;           /* rows per step (>= 1) */
  int patience;             /* stop after this many epochs without improvement; 0: never */
  moe_metric_kind_t metric; /* on the validation split */
  int judge_start;          /* with a validation split: the starting parameters are judged
                               first (epoch 0) and kept when no epoch beats them, e.g. after
                               moe_trainer_fit_linear (0: the best epoch >= 1 is kept) */
  int keep_last;            /* 1: the last epoch's parameters are kept, not the best epoch's
                               (validation is still evaluated and reported each epoch;
                               patience never stops): with a schedule that anneals to the end,
                               picking the best of many noisy epochs on a small validation
                               part flatters that part more than it helps held-out data */
  moe_fit_progress_cb progress; /* may be NULL */
  void *data;               /* for progress */
} moe_fit_opts_t;

typedef struct moe_fit_result_s {
  int epochs_run;
  int best_epoch;        /* 1-based (0: the start, with judge_start); its parameters are the
                            trainer's after fit (with keep_last: the last epoch run) */
  double best_metric;
  double last_train_loss;
} moe_fit_result_t;

/*
 * Mini-batch training: each epoch visits the training rows in an order shuffled by the
 * trainer's seed, then evaluates the validation split (val may be NULL: then the metric is the
 * epoch's mean training loss). Keeps a copy of the best parameters and restores them at the
 * end. With opts.ema_decay > 0 the validation metric is that of the averaged weights, and the
 * best average is what is kept and restored (further steps continue from it). When the
 * options' total_steps is 0 it becomes epochs * batches per epoch. Returns as
 * moe_trainer_step / moe_trainer_eval.
 */
int moe_trainer_fit(moe_trainer_t *tr, const moe_train_data_t *train, const moe_train_data_t *val,
                    const moe_fit_opts_t *fo, moe_fit_result_t *result);

/*
 * Writes the model file: the config (as given, with "quant" set to the chosen format) and the
 * tensors; quantizable linears (MODEL_FORMAT.md) are quantized post-training in blocks of 32
 * (q8_0: max-abs / 127, round half to even; q4_0: the value of largest magnitude maps to -8)
 * with fp16 scales. No calibration data is needed: the weight scales depend on the weights
 * only, and the engine quantizes activations per row at run time (dynamic q8_0), so there is no
 * activation-dependent choice to make. To recover what rounding costs, fine-tune with
 * opts.qat set to the target format first. Returns MOE_OK, MOE_EINVAL (bad quant), MOE_EIO
 * (errstr says why) or MOE_ENOMEM.
 */
int moe_trainer_export(moe_trainer_t *tr, const char *path, moe_quant_t quant, char *errstr,
                       size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* MOE_TRAIN_H */
