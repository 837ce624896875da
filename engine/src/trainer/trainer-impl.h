/*
 * The inside of a trainer (internal to libmoe): the parameter registry (every trainable tensor
 * at an offset of one flat buffer, so that parameters, gradients, Adam moments, the
 * fake-quantized forward copy and the best checkpoint share one layout), the per-step cache of
 * the forward pass, and the forward/backward entry points that the unit tests drive directly.
 *
 * tr_real is float in libmoe. The gradient-check tests build the same sources with
 * MOE_TRAIN_F64 defined, so that finite differences in double can check every backward formula
 * without float noise.
 */
#ifndef MOE_TRAINER_IMPL_H
#define MOE_TRAINER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "io/json.h"
#include "moe/model-impl.h"
#include "moe/train.h"

#ifdef MOE_TRAIN_F64
typedef double tr_real;
#else
typedef float tr_real;
#endif

#define TR_NONE ((size_t)-1)

/* One trainable tensor. */
typedef struct tr_tensor_s {
  char name[64];
  int ndim;
  int shape[3];     /* unused trailing dimensions are 1 */
  size_t off, n;    /* offset into the flat buffers, number of values */
  bool decay;       /* weight decay applies (matrices and embeddings) */
  bool quantizable; /* a linear the model format quantizes (when k % 32 == 0) */
} tr_tensor_t;

/* Offsets of a layer's tensors (TR_NONE: absent). */
typedef struct tr_lin_s {
  int n, k;
  size_t w, b;
} tr_lin_t;

typedef struct tr_norm_s {
  size_t w, b;
} tr_norm_t;

typedef struct tr_ffn_s {
  tr_lin_t gate, up, down;
} tr_ffn_t;

typedef struct tr_text_layer_s {
  tr_norm_t attn_norm, ffn_norm;
  tr_lin_t qkv, out; /* (3 d, d), (d, d), no biases */
  tr_ffn_t ffn;
} tr_text_layer_t;

typedef struct tr_block_s {
  moe__moe_cfg_t cfg;
  tr_norm_t norm;
  tr_lin_t router; /* (n_expert, d_model), no bias */
  tr_ffn_t *experts; /* (n_expert) */
  tr_ffn_t *shared;  /* (n_shared) */
  tr_real *sel_bias; /* (n_expert): selection bias, updated from the load, never by gradient */
} tr_block_t;

/* What the backward pass needs from the forward pass of one MoE block (arena memory). */
typedef struct tr_block_cache_s {
  tr_real *h;      /* (m, d) block input */
  tr_real *u;      /* (m, d) normalised input */
  tr_real *nmu, *nrs; /* (m) norm mean (layer norm) and reciprocal std */
  tr_real *s;      /* (m, E) router scores (after softmax / sigmoid) */
  int32_t *ids;    /* (m, K) chosen experts */
  tr_real *gates;  /* (m, K) gate weights */
  int32_t *count;  /* (E + 1) slot ranges per expert */
  int32_t *slot_row, *slot_j; /* (m K) row and rank of each slot, grouped by expert */
  tr_real *A, *B, *O; /* (m K, F) gate and up pre-activations, (m K, d) expert outputs */
  tr_real **SA, **SB; /* (n_shared) of (m, F) */
} tr_block_cache_t;

typedef struct tr_cache_s {
  int m;
  const moe_train_data_t *batch; /* borrowed: the rows of this forward */
  tr_real *x0;        /* (m, d_in) encoder input */
  tr_block_cache_t *blk; /* (n_moe) */
  tr_real *hf;        /* (m, d) after the last block */
  tr_real *z, *zmu, *zrs; /* (m, d) head norm output, (m) its stats */
  tr_real *logits;    /* (m, n_out) */
  /* sensor encoder */
  tr_real **cx;       /* (n_conv + 1) conv inputs: cx[0] (m, T, C) normalised, cx[l] after conv l-1's activation */
  tr_real **cz;       /* (n_conv) conv pre-activations (m, t_out_l, out_l) */
  int *ct;            /* (n_conv + 1) time steps: ct[0] = T */
  /* text encoder: N tokens of all rows, row r's at [ts[r], ts[r + 1]) */
  int *ts;            /* (m + 1) */
  struct tr_text_layer_cache_s *tl; /* (n_layer) */
  tr_real *tfin, *te, *temu, *ters; /* (N, d) last layer output, enc.norm output, (N) its stats */
  /* text pool "bag": row r's distinct pieces at [bs[r], bs[r + 1]) of bu (ids), bw (their
   * normalised weights w_t) and bsub (1 + ln count); binv (m) is each row's 1 / |u| */
  int *bs;            /* (m + 1) */
  int32_t *bu;        /* (N) */
  tr_real *bw, *bsub; /* (N) */
  tr_real *binv;      /* (m) */
} tr_cache_t;

/* One text layer's forward, for its backward. */
typedef struct tr_text_layer_cache_s {
  tr_real *hin, *a, *amu, *ars; /* (N, d) input, attn_norm output, (N) stats */
  tr_real *qkv, *o;             /* (N, 3 d) projections, (N, d) attention output */
  tr_real *P;                   /* per row r and head: (n_r, n_r) probabilities at poff[r] + head n_r^2 */
  size_t *poff;                 /* (m) */
  tr_real *hmid, *b, *bmu, *brs; /* (N, d) after attention, ffn_norm output, stats */
  tr_real *FA, *FB;             /* (N, d_ff) ffn pre-activations */
} tr_text_layer_cache_t;

struct moe_trainer_s {
  moe__config_t cfg;
  moe_json_doc_t *doc; /* the config; cfg borrows its strings */
  moe_train_opts_t opts; /* opts.class_weight is NULL once copied into class_w */
  tr_real *class_w;    /* multiclass: (n_labels) cross-entropy weight per class, or NULL */
  uint64_t rng[4];     /* xoshiro256** state: init and shuffles */
  int d, d_in, n_out;
  /* registry and layout */
  tr_tensor_t *tensors;
  int n_tensors, cap_tensors;
  size_t n_values;
  size_t *cat;         /* (n_categorical) offsets of the embeddings */
  tr_lin_t *conv;      /* (n_conv) sensor convolutions: w (out, in, kernel) with n = out, k = in * kernel */
  size_t tok, pos;     /* text embeddings (vocab_size, d), (max_len, d) */
  size_t idf;          /* bag with idf: piece weights (vocab_size), else TR_NONE */
  struct tr_text_layer_s *layers; /* (n_layer) */
  tr_norm_t enc_norm;  /* text */
  tr_lin_t enc_in;
  tr_block_t *blocks;  /* (n_moe) */
  tr_norm_t head_norm;
  tr_lin_t head;
  /* flat buffers of n_values */
  tr_real *p, *g, *adam_m, *adam_v;
  tr_real *fq;         /* QAT: the fake-quantized copy the forward pass reads, else NULL */
  tr_real *ema;        /* opts.ema_decay > 0: the moving average of p, else NULL */
  int64_t ema_n;       /* updates folded into ema so far */
  int64_t step;
  moe__arena_t arena;
  char err[256];
};

/* ---- forward / backward (trainer/graph.c) --------------------------------------------- */

/*
 * Forward over one batch with parameters W (tr->p, or tr->fq for QAT), keeping the cache in the
 * trainer's arena (the caller resets it). Row errors give MOE_EDATA with tr->err set.
 */
int moe__tr_forward(moe_trainer_t *tr, const tr_real *W, const moe_train_data_t *batch, tr_cache_t *c);

/* The loss of the cached forward (auxiliary balance loss included) and, when dlogits is not
 * NULL, its gradient with respect to the logits (m, n_out). */
double moe__tr_loss(moe_trainer_t *tr, const tr_cache_t *c, const moe_train_data_t *batch, tr_real *dlogits);

/* Accumulates into G the gradient of the loss, given dlogits, through the cached forward. */
int moe__tr_backward(moe_trainer_t *tr, const tr_real *W, const tr_cache_t *c, const tr_real *dlogits,
                     tr_real *G);

/* Resets the arena, then forward + loss + backward into tr->g (zeroed first). */
int moe__tr_loss_grad(moe_trainer_t *tr, const moe_train_data_t *batch, double *loss, tr_cache_t *c);

/* Route one row: scores (E) + bias -> ids, gates (as moe__route_row, in tr_real). */
void moe__tr_route_row(const moe__moe_cfg_t *cfg, const tr_real *s, const tr_real *bias, int32_t *ids,
                       tr_real *gates);

/* ---- quantization (trainer/export.c) ------------------------------------------------- */

/* Quantizes one row of k (k % 32 == 0) values to the format and back (what the model will
 * compute with). */
void moe__tr_fake_quant_row(moe_quant_t q, const tr_real *x, int k, tr_real *y);
/* Fills tr->fq from tr->p: quantizable linears fake-quantized, everything else copied. */
void moe__tr_fake_quant_all(moe_trainer_t *tr);

#endif /* MOE_TRAINER_IMPL_H */
