/*
 * The inside of a loaded model (internal to libmoe): the validated config and every layer's
 * tensors, plus the forward pieces that the session runs. A moe_model_t is immutable after
 * moe_model_load* returns; everything here is read-only from then on.
 */
#ifndef MOE_MOE_MODEL_IMPL_H
#define MOE_MOE_MODEL_IMPL_H

#include <stdbool.h>

#include "core/arena.h"
#include "io/json.h"
#include "moe/moe.h"
#include "nn/nn.h"

/* ---- config (strings borrow from the parsed JSON document the model keeps) ------------ */

typedef struct moe__feature_s {
  const char *name;
  float mean;
  float std;
} moe__feature_t;

typedef struct moe__categorical_s {
  const char *name;
  int vocab_size;
  const moe_json_t *vocab; /* array of vocab_size strings */
  int dim;                 /* embedding width */
} moe__categorical_t;

typedef struct moe__conv_cfg_s {
  int out, kernel, stride;
} moe__conv_cfg_t;

typedef enum { MOE__SCORE_SOFTMAX = 0, MOE__SCORE_SIGMOID = 1 } moe__score_t;

typedef struct moe__moe_cfg_s {
  int n_expert, top_k, n_shared, d_ff;
  moe__score_t score;
  bool normalize;    /* divide the chosen scores by their sum */
  float route_scale; /* multiply the gate weights (DeepSeek-V3's routed scaling factor) */
} moe__moe_cfg_t;

typedef struct moe__config_s {
  const char *version;
  moe_quant_t quant;
  int d_model;
  moe__norm_kind_t norm;
  float norm_eps;
  moe_encoder_kind_t enc;
  /* tabular */
  int n_numeric;
  moe__feature_t *numeric;         /* (n_numeric) */
  int n_categorical;
  moe__categorical_t *categorical; /* (n_categorical) */
  /* sensor */
  int window, n_channels;
  moe__feature_t *channels;        /* (n_channels) */
  int n_conv;
  moe__conv_cfg_t *conv;           /* (n_conv) */
  bool conv_silu;                  /* activation after each conv: SiLU, else GELU */
  bool sensor_summary;             /* pool "summary": enc.in reads each channel's last value, mean
                                      and rise over the window (d_in = 3 x last out), not the mean */
  /* text */
  int vocab_size, max_len, n_layer, n_head, text_d_ff, n_global;
  int *windows;                    /* (n_layer) attention span per layer */
  bool text_bag;                   /* pool "bag": sublinear bag of pieces, no positions (MODEL_FORMAT.md) */
  bool text_idf;                   /* bag: pieces also weighed by enc.idf.weight */
  bool no_head_norm;               /* bag with "head_norm": false: no head.norm, the head reads h */
  const moe_json_t *tokenizer;     /* or NULL */
  /* MoE blocks */
  int n_moe;
  moe__moe_cfg_t *moe;             /* (n_moe) */
  /* task */
  moe_task_t task;
  int n_labels;
  const char **labels;             /* (n_labels) */
  float threshold;
} moe__config_t;

/* Parses and validates the config JSON into cfg; arrays are allocated and freed by
 * moe__config_close. MOE_ECONFIG with the path of the bad field in errstr, or MOE_ENOMEM. */
int moe__config_parse(const moe_json_t *root, moe__config_t *cfg, char *errstr, size_t errstr_size);
void moe__config_close(moe__config_t *cfg);
/* Sensor: of the last conv layer's steps (the window's, with no conv), how many read only
 * observed input steps when the window's last n_steps were observed (0: all were). At least 1. */
int moe__sensor_pool_steps(const moe__config_t *cfg, int n_steps);

/* ---- layers ---------------------------------------------------------------------------- */

typedef struct moe__text_layer_s {
  int window;
  moe__norm_t attn_norm;
  moe__linear_t qkv;  /* (3*d_model, d_model) */
  moe__linear_t out;  /* (d_model, d_model) */
  moe__norm_t ffn_norm;
  moe__ffn_t ffn;
} moe__text_layer_t;

typedef struct moe__moe_block_s {
  moe__moe_cfg_t cfg;
  moe__norm_t norm;
  float *router;        /* (n_expert, d_model), fp32 always: routing decides, so keep it exact */
  float *sel_bias;      /* (n_expert) selection bias: changes the choice, never the gate */
  moe__ffn_t *experts;  /* (n_expert) */
  moe__ffn_t *shared;   /* (n_shared) */
  int route_offset, load_offset;
} moe__moe_block_t;

struct moe_model_s {
  moe__config_t cfg;
  moe_json_doc_t *doc;
  char *config_json;
  char *tokenizer_json;
  int64_t n_params;
  int n_outputs;
  int route_size, load_size;
  /* tabular: (vocab_size, dim) per categorical feature, then enc_in */
  float **cat_emb;
  int d_in;
  /* tabular and sensor: encoder output projection (d_model, d_in) */
  moe__linear_t enc_in;
  /* sensor */
  moe__conv1d_t *conv;  /* (n_conv) */
  int conv_t_out;       /* time steps after the last conv */
  /* text */
  float *tok_emb;       /* (vocab_size, d_model) */
  float *pos_emb;       /* (max_len, d_model) */
  float *idf;           /* bag with idf: (vocab_size) weight of each piece, else NULL */
  moe__text_layer_t *layers; /* (n_layer) */
  moe__norm_t enc_norm; /* text: before pooling */
  /* MoE and head */
  moe__moe_block_t *blocks; /* (n_moe) */
  moe__norm_t head_norm;
  moe__linear_t head;   /* (n_outputs, d_model) */
  /* every heap block the model owns (aligned allocations), freed in moe_model_free */
  void **allocs;
  int n_allocs, cap_allocs;
};

/* ---- sessions ------------------------------------------------------------------------ */

struct moe_session_s {
  const moe_model_t *model;
  int max_batch;
  moe__arena_t arena;
  char err[256];
  /* Attribution scratch (moe/attribute.c), allocated on first use: occluded copies of a row. */
  moe_input_t *attr_rows;
  void *attr_data;
  float *attr_scores;
  size_t attr_rows_cap, attr_data_cap, attr_scores_cap;
};

/* ---- forward pieces (moe/forward.c) -------------------------------------------------- */

/*
 * One MoE block over m rows: x (m, d_model) += block(x). Writes the chosen experts and gate
 * weights (route_ids/route_w may be NULL, else (m, route_size) with this block at its
 * route_offset) and adds to load (may be NULL; this block's n_expert counts).
 */
int moe__moe_block_forward(const moe__moe_block_t *blk, moe__arena_t *arena, float *x, int m,
                           int d, int route_size, int32_t *route_ids, float *route_w,
                           int32_t *load);

/*
 * Routing of one row: scores (n_expert, already softmax/sigmoid) plus selection bias ->
 * top_k expert ids by descending selection score (ties: lower id), and their gate weights
 * from the unbiased scores (normalised and scaled per cfg). Exposed for unit tests.
 */
void moe__route_row(const moe__moe_cfg_t *cfg, const float *scores, const float *sel_bias,
                    int32_t *ids, float *gates);

/*
 * Pool "bag": the distinct ids of one row's n tokens in ascending order into uniq (n), and how
 * often each occurs into count (n); returns the number of distinct ids. The engine and the
 * trainer both weight piece t by (1 + ln count_t), L2-normalised over the row, in this order.
 * Id MOE__BAG_PAD (the tokenizer's [PAD], MOE_TOKEN_PAD) is left out: padding is no piece, so
 * occlusion (pieces replaced by [PAD], moe_session_attribute and the records worker) takes the
 * pieces out of the bag instead of adding a heavy [PAD] piece that rescales all the others.
 */
#define MOE__BAG_PAD 0
int moe__bag_counts(const int32_t *ids, int n, int32_t *uniq, int32_t *count);

#endif /* MOE_MOE_MODEL_IMPL_H */
