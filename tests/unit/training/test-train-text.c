/*
 * The trainer on the text encoder (token + position embeddings, windowed attention with a
 * global [CLS] token, SwiGLU feed-forward, mean pooling): it learns a synthetic task whose
 * label is whether a row contains the keyword token 2 (token 3 is a distractor), and the exported
 * model scores like the trainer's forward in the inference engine. The same for pool "bag"
 * (no positions, no attention), and a bag config with layers is refused.
 */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "moe/moe.h"
#include "moe/train.h"
#include "train-synth.h"

/* Trainer (float, scalar attention) against the engine (blocked GEMM attention), fp32 model. */
#define EXPORT_TOL 1e-4

enum { L = 12, V = 30 };

static const char *CFG =
    "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\",\"d_model\":16,"
    "\"encoder\":{\"kind\":\"text\",\"vocab_size\":30,\"max_len\":12,\"n_layer\":2,\"n_head\":2,\"d_ff\":16,"
    "\"window\":[4,8],\"n_global\":1},"
    "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":16,\"score\":\"softmax\"}],"
    "\"task\":{\"kind\":\"binary\",\"labels\":[\"routine\",\"urgent\"]}}";

/* Token 1 is [CLS]; urgent rows contain a 2, some rows contain the distractor 3. */
static void make(int n, uint64_t seed, int32_t **tok, int32_t **nt, int32_t **lab, moe_train_data_t *d) {
  uint64_t st = seed;
  *tok = calloc((size_t)n * L, sizeof(int32_t));
  *nt = malloc(sizeof(int32_t) * n);
  *lab = malloc(sizeof(int32_t) * n);
  for (int r = 0; r < n; r++) {
    const int len = 3 + (int)(synth_u(&st) * (L - 2));
    int32_t *t = *tok + (size_t)r * L;
    t[0] = 1;
    for (int i = 1; i < len; i++) t[i] = 4 + (int)(synth_u(&st) * (V - 4));
    const int kind = r % 4, p = 1 + (int)(synth_u(&st) * (len - 2));
    if (kind == 1) t[p] = 2;
    if (kind == 2) t[p] = 3;
    if (kind == 3) {
      t[p] = 2;
      t[p + 1] = 3;
    }
    (*nt)[r] = len;
    (*lab)[r] = kind == 1 || kind == 3;
  }
  *d = (moe_train_data_t){.n_rows = n, .label = *lab, .tokens = *tok, .n_tokens = *nt};
}

TEST(text_learns_and_exports) {
  char err[256], path[256];
  int32_t *ta, *na, *la, *tb, *nb, *lb;
  moe_train_data_t a, b;
  make(800, 1, &ta, &na, &la, &a);
  make(200, 2, &tb, &nb, &lb, &b);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 5e-3f;
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(CFG, 3, &o, &tr, err, sizeof err));
  double auc0, auc;
  ASSERT_OK(moe_trainer_eval(tr, &b, MOE_METRIC_ROC_AUC, &auc0));
  moe_fit_opts_t fo = {.epochs = 8, .batch_size = 32, .patience = 3, .metric = MOE_METRIC_ROC_AUC};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(tr, &a, &b, &fo, &res));
  ASSERT_OK(moe_trainer_eval(tr, &b, MOE_METRIC_ROC_AUC, &auc));

  test_unique_name(path, sizeof path, "/tmp/test-train-text");
  strncat(path, ".safetensors", sizeof path - strlen(path) - 1);
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
  moe_model_t *model;
  int rc = moe_model_load(path, &model, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  float s_tr[200], s_eng[200];
  ASSERT_OK(moe_trainer_predict(tr, &b, s_tr));
  moe_session_t *sess;
  ASSERT_OK(moe_session_new(model, 200, &sess));
  moe_input_t rows[200];
  for (int r = 0; r < 200; r++) rows[r] = (moe_input_t){.tokens = tb + (size_t)r * L, .n_tokens = nb[r]};
  moe_output_t out = {.scores = s_eng};
  ASSERT_OK(moe_session_run(sess, rows, 200, &out));
  double worst = 0;
  for (int i = 0; i < 200; i++) worst = fmax(worst, fabs(s_tr[i] - s_eng[i]));
  printf("  text: val ROC AUC %.3f -> %.3f (best epoch %d of %d); max |trainer - engine| %.2e\n", auc0, auc,
         res.best_epoch, res.epochs_run, worst);
  ASSERT_OP(auc, >, 0.95);
  ASSERT_OP(worst, <=, EXPORT_TOL);
  nb[3] = 13;
  ASSERT_EQ(moe_trainer_predict(tr, &b, s_tr), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 3: 13 tokens, expected 1 to max_len 12");
  moe_session_free(sess);
  moe_model_free(model);
  remove(path);
  moe_trainer_free(tr);
  free(ta);
  free(na);
  free(la);
  free(tb);
  free(nb);
  free(lb);
}

/* Pool "bag" has no attention: a config that asks for layers too is refused, naming the field. */
TEST(text_bag_refuses_layers) {
  static const char *bad =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\",\"d_model\":16,"
      "\"encoder\":{\"kind\":\"text\",\"vocab_size\":30,\"max_len\":12,\"n_layer\":1,\"n_head\":2,\"d_ff\":16,"
      "\"window\":[4],\"n_global\":1,\"pool\":\"bag\"},\"moe\":[],"
      "\"task\":{\"kind\":\"binary\",\"labels\":[\"routine\",\"urgent\"]}}";
  moe_trainer_t *tr = NULL;
  char err[256] = "";
  ASSERT_EQ(moe_trainer_new(bad, 1, NULL, &tr, err, sizeof err), MOE_ECONFIG);
  ASSERT(tr == NULL);
  ASSERT_STR_CONTAINS(err, "config.encoder.n_layer");
  ASSERT_STR_CONTAINS(err, "bag");
}

/* A bag model learns the same task (order-free: "2" anywhere means urgent) and the exported
 * file scores what the trainer scored. */
TEST(text_bag_learns_and_exports) {
  static const char *cfg =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"t\",\"quant\":\"f32\",\"d_model\":16,"
      "\"encoder\":{\"kind\":\"text\",\"vocab_size\":30,\"max_len\":12,\"n_layer\":0,\"n_head\":1,\"d_ff\":16,"
      "\"window\":[],\"n_global\":0,\"pool\":\"bag\"},"
      "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":16,\"score\":\"softmax\"}],"
      "\"task\":{\"kind\":\"binary\",\"labels\":[\"routine\",\"urgent\"]}}";
  int32_t *tok, *nt, *lab, *vtok, *vnt, *vlab;
  moe_train_data_t tr_d, va_d;
  make(400, 11, &tok, &nt, &lab, &tr_d);
  make(200, 12, &vtok, &vnt, &vlab, &va_d);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = 1e-2f;
  moe_trainer_t *tr = NULL;
  char err[256];
  ASSERT_OK(moe_trainer_new(cfg, 3, &o, &tr, err, sizeof err));
  moe_fit_opts_t fo = {.epochs = 30, .batch_size = 32, .patience = 0, .metric = MOE_METRIC_ROC_AUC};
  moe_fit_result_t res;
  ASSERT_OK(moe_trainer_fit(tr, &tr_d, &va_d, &fo, &res));
  ASSERT_OP(res.best_metric, >, 0.95);
  float *want = malloc(sizeof(float) * 200);
  ASSERT_OK(moe_trainer_predict(tr, &va_d, want));
  char path[] = "/tmp/test-train-bag-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  close(fd);
  ASSERT_OK(moe_trainer_export(tr, path, MOE_QUANT_F32, err, sizeof err));
  moe_model_t *m = NULL;
  ASSERT_OK(moe_model_load(path, &m, err, sizeof err));
  ASSERT_EQ(moe_model_n_tensors(m) > 0, 1);
  moe_session_t *s = NULL;
  ASSERT_OK(moe_session_new(m, 200, &s));
  moe_input_t rows[200];
  for (int r = 0; r < 200; r++) rows[r] = (moe_input_t){.tokens = vtok + (size_t)r * L, .n_tokens = vnt[r]};
  float got[200];
  moe_output_t out = {got, NULL, NULL, NULL};
  ASSERT_OK(moe_session_run(s, rows, 200, &out));
  for (int r = 0; r < 200; r++) ASSERT_NEAR(got[r], want[r], EXPORT_TOL);
  moe_session_free(s);
  moe_model_free(m);
  remove(path);
  moe_trainer_free(tr);
  free(want);
  free(tok);
  free(nt);
  free(lab);
  free(vtok);
  free(vnt);
  free(vlab);
}
