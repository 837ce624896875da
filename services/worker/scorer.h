/*
 * The worker's scorer interface: what the pipeline needs from a model, and nothing more. A
 * scorer is immutable once opened and shared by all threads; each scoring thread opens its
 * own session (scratch memory) and scores whole batches of model-input rows through it. The
 * pipeline builds the rows by name (wk_feature_map_t over input_names), takes the decision
 * threshold from the scorer (the model card) unless configuration overrides it, and stores
 * version and explanation with every result.
 *
 * wk_scorer_moe_open is the implementation over libmoe (binary tabular models whose numeric
 * inputs are fraud features by name). Other engines plug in by filling a wk_scorer_t.
 *
 * Threads: the wk_scorer_t fields and session_new are for any thread; a session belongs to one
 * thread at a time; free only when no session is left.
 */
#ifndef WK_SCORER_H
#define WK_SCORER_H

#include <stddef.h>
#include <stdint.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Experts reported per row at most (the top ones by gate weight). */
#define WK_SCORE_MAX_EXPERTS 8
/* Contributing input features reported per explained row at most. */
#define WK_SCORE_MAX_FEATURES 5

typedef struct wk_score_s {
  float score; /* probability of the positive class (fraud) */
  uint32_t n_experts;
  struct {
    uint16_t layer;  /* MoE block */
    uint16_t expert; /* routed expert id */
    float weight;    /* its gate weight for this row */
  } experts[WK_SCORE_MAX_EXPERTS];
  uint32_t n_features; /* 0 unless the row was explained */
  struct {
    uint32_t input;     /* index into the scorer's input_names */
    float contribution; /* score change the input caused (positive: towards fraud) */
  } features[WK_SCORE_MAX_FEATURES]; /* by decreasing |contribution| */
} wk_score_t;

typedef struct wk_scorer_s wk_scorer_t;
typedef struct wk_scorer_session_s wk_scorer_session_t;

struct wk_scorer_s {
  void *impl;                      /* the implementation's own state */
  const char *version;             /* model version, e.g. "fraud-2026-11-28.1" */
  float threshold;                 /* the model card's decision threshold */
  size_t n_inputs;                 /* row width */
  const char *const *input_names;  /* (n_inputs) feature names, in row order */
  size_t max_batch;                /* rows per score call at most */
  size_t load_size;                /* entries of the per-expert load array (0: none) */

  /* Opens a session for the calling thread. SVC_OK or SVC_ENOMEM. */
  svc_err_t (*session_new)(wk_scorer_t *sc, wk_scorer_session_t **out);
  void (*session_free)(wk_scorer_session_t *sess);
  /*
   * Scores n rows (1 <= n <= max_batch) of x (n x n_inputs, row-major) into out[n], and adds
   * the rows routed to each expert into expert_load[load_size] when it is not NULL. Returns
   * SVC_OK, or SVC_EINVAL with errstr naming the row and input at fault (non-finite value).
   */
  svc_err_t (*score)(wk_scorer_session_t *sess, const float *x, size_t n, wk_score_t *out,
                     int64_t *expert_load, char *errstr, size_t errstr_size);
  /*
   * Optional (NULL when the engine cannot explain): fills out->features with the inputs that
   * contributed most to the score of one row (n_inputs values), by decreasing magnitude.
   * Costs about n_inputs + 1 scorings of the row. Returns SVC_OK or SVC_EINVAL with errstr.
   */
  svc_err_t (*explain)(wk_scorer_session_t *sess, const float *row, wk_score_t *out,
                       char *errstr, size_t errstr_size);
  /* Releases the scorer; NULL-safe through wk_scorer_free. */
  void (*free)(wk_scorer_t *sc);
};

/* Calls sc->free; NULL is a no-op. */
void wk_scorer_free(wk_scorer_t *sc);

/*
 * Loads a libmoe model file as a scorer for batches of up to max_batch rows. The model must be
 * a binary tabular model without categorical inputs whose numeric inputs are all named fraud
 * features (see fraud-input.h). Returns SVC_OK; SVC_ENOENT / SVC_EIO when the file cannot be
 * read; SVC_ECONFIG when the model is invalid or does not fit (errstr names the file and the
 * reason, e.g. the offending input); SVC_ENOMEM.
 */
svc_err_t wk_scorer_moe_open(const char *path, size_t max_batch, wk_scorer_t **out,
                             char *errstr, size_t errstr_size);

/* JSON array of a score's experts, e.g. [{"layer":0,"expert":3,"weight":0.61}], into buf
 * (always NUL-terminated; truncated rows are left out whole). Returns the length. */
size_t wk_score_experts_json(const wk_score_t *s, char *buf, size_t size);

/* JSON array of a score's top features with their names from `names`, e.g.
 * [{"name":"V14","contribution":-0.21}]; same buffer rules. Names are JSON-escaped. */
size_t wk_score_features_json(const wk_score_t *s, const char *const *names, char *buf,
                              size_t size);

#ifdef __cplusplus
}
#endif
#endif /* WK_SCORER_H */
