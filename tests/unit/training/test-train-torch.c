/*
 * Agreement with PyTorch: tests/golden/train/gen_train_golden.py trains the same models (tabular
 * with three losses, sensor with pool "mean" and with pool "summary" on rows of n_steps, text)
 * (float64 autograd, torch.optim.AdamW, clip_grad_norm_, the warmup + cosine schedule, the
 * balance loss and the selection-bias update) for a few steps from a given fp32 model file on
 * given batches. The C trainer loads that file, runs the same steps in float32, and must report
 * the same loss at every step and end with the same parameters and selection biases, within the
 * tolerances below (float32 against float64 over a handful of steps).
 */
#include "test.h"

#include <stdio.h>

#include "io/json.h"
#include "io/safetensors.h"
#include "moe/train.h"

/* Loss per step: relative. */
#define LOSS_TOL 1e-5
/* Final parameters: |c - t| <= PARAM_ATOL + PARAM_RTOL |t|. Adam normalises each update to
 * about lr, so float rounding in a gradient moves a parameter by a tiny fraction of lr. */
#define PARAM_ATOL 2e-6
#define PARAM_RTOL 2e-5

static double opt_num(const moe_json_t *o, const char *key, double dflt) {
  const moe_json_t *v = moe_json_get(o, key);
  return v != NULL && v->type == MOE_JSON_NUMBER ? v->u.num.d : dflt;
}

static void run_case(const char *name) {
  char err[256], init[256], io_path[256], out[256];
  snprintf(init, sizeof init, "tests/golden/train/fixtures/%s.init.safetensors", name);
  snprintf(io_path, sizeof io_path, "tests/golden/train/fixtures/%s.io.safetensors", name);
  test_unique_name(out, sizeof out, "/tmp/test-train-torch");
  strncat(out, ".safetensors", sizeof out - strlen(out) - 1);
  moe_st_file_t *io;
  int rc = moe_st_open(io_path, &io, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s: %s", io_path, err);
  const char *opts_json = moe_st_metadata_find(io, "opts");
  ASSERT_NOT_NULL(opts_json);
  moe_json_doc_t *doc;
  ASSERT_OK(moe_json_parse(opts_json, strlen(opts_json), NULL, &doc, err, sizeof err));
  const moe_json_t *oj = moe_json_root(doc);
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.lr = (float)opt_num(oj, "lr", -1);
  o.min_lr = (float)opt_num(oj, "min_lr", -1);
  o.warmup_steps = (int)opt_num(oj, "warmup_steps", -1);
  o.total_steps = (int)opt_num(oj, "total_steps", -1);
  o.beta1 = (float)opt_num(oj, "beta1", -1);
  o.beta2 = (float)opt_num(oj, "beta2", -1);
  o.adam_eps = (float)opt_num(oj, "adam_eps", -1);
  o.weight_decay = (float)opt_num(oj, "weight_decay", -1);
  o.clip_norm = (float)opt_num(oj, "clip_norm", -1);
  o.bias_gamma = (float)opt_num(oj, "bias_gamma", -1);
  o.balance_alpha = (float)opt_num(oj, "balance_alpha", -1);
  o.pos_weight = (float)opt_num(oj, "pos_weight", 1);
  o.label_smoothing = (float)opt_num(oj, "label_smoothing", 0);
  o.huber_delta = (float)opt_num(oj, "huber_delta", 1);
  const char *loss_name;
  ASSERT_OK(moe_json_get_str(oj, "loss", "opts", &loss_name, NULL, err, sizeof err));
  o.loss = strcmp(loss_name, "bce") == 0 ? MOE_LOSS_BCE : strcmp(loss_name, "ce") == 0 ? MOE_LOSS_CE : MOE_LOSS_HUBER;

  moe_trainer_t *tr;
  rc = moe_trainer_load(init, 0, &o, &tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s: %s", init, err);
  const moe_st_tensor_t *num = moe_st_tensor_find(io, "numeric"), *cat = moe_st_tensor_find(io, "categorical");
  const moe_st_tensor_t *win = moe_st_tensor_find(io, "window"), *tok = moe_st_tensor_find(io, "tokens");
  const moe_st_tensor_t *ntok = moe_st_tensor_find(io, "n_tokens"), *nst = moe_st_tensor_find(io, "n_steps");
  const moe_st_tensor_t *lab = moe_st_tensor_find(io, "label"), *tgt = moe_st_tensor_find(io, "target");
  const moe_st_tensor_t *loss = moe_st_tensor_find(io, "loss");
  ASSERT(((num && cat) || win || (tok && ntok)) && loss && (lab || tgt));
  const int S = (int)loss->shape[0], M = (int)(lab ? lab->shape[1] : tgt->shape[1]);
  /* Values per row of each input, 0 when absent. */
  const size_t nn = num ? (size_t)num->shape[2] : 0, nc = cat ? (size_t)cat->shape[2] : 0;
  const size_t nw = win ? (size_t)win->shape[2] * win->shape[3] : 0, nk = tok ? (size_t)tok->shape[2] : 0;
  const size_t nt = tgt ? (size_t)tgt->shape[2] : 0;
  double worst_loss = 0;
  for (int t = 0; t < S; t++) {
    const size_t r0 = (size_t)t * M;
    moe_train_data_t b = {M,
                          num ? (const float *)num->data + r0 * nn : NULL,
                          cat ? (const int32_t *)cat->data + r0 * nc : NULL,
                          lab ? (const int32_t *)lab->data + r0 : NULL,
                          tgt ? (const float *)tgt->data + r0 * nt : NULL,
                          win ? (const float *)win->data + r0 * nw : NULL,
                          tok ? (const int32_t *)tok->data + r0 * nk : NULL,
                          ntok ? (const int32_t *)ntok->data + r0 : NULL,
                          nst ? (const int32_t *)nst->data + r0 : NULL};
    double l;
    ASSERT_OK(moe_trainer_step(tr, &b, &l));
    const double want = ((const float *)loss->data)[t];
    worst_loss = fmax(worst_loss, fabs(l - want) / fabs(want));
    ASSERT_NEAR(l, want, LOSS_TOL);
  }
  /* Compare the parameters through the exported fp32 file. */
  ASSERT_OK(moe_trainer_export(tr, out, MOE_QUANT_F32, err, sizeof err));
  moe_st_file_t *res;
  ASSERT_OK(moe_st_open(out, &res, err, sizeof err));
  int n_final = 0;
  double worst = 0, worst_abs = 0, moved = 0;
  const moe_st_tensor_t *init_t;
  moe_st_file_t *init_f;
  ASSERT_OK(moe_st_open(init, &init_f, err, sizeof err));
  for (size_t i = 0; i < moe_st_n_tensors(io); i++) {
    const moe_st_tensor_t *want = moe_st_tensor_at(io, i);
    if (strncmp(want->name, "final.", 6) != 0) continue;
    const moe_st_tensor_t *got = moe_st_tensor_find(res, want->name + 6);
    ASSERT_MSG(got != NULL, "exported file lacks %s", want->name + 6);
    ASSERT_EQ(got->nbytes, want->nbytes);
    init_t = moe_st_tensor_find(init_f, want->name + 6);
    ASSERT_NOT_NULL(init_t);
    const float *a = got->data, *w = want->data, *p0 = init_t->data;
    for (size_t j = 0; j < want->nbytes / sizeof(float); j++) {
      const double e = fabs((double)a[j] - w[j]);
      worst = fmax(worst, e / (PARAM_ATOL + PARAM_RTOL * fabs(w[j])));
      worst_abs = fmax(worst_abs, e);
      moved = fmax(moved, fabs((double)w[j] - p0[j]));
      ASSERT_MSG(e <= PARAM_ATOL + PARAM_RTOL * fabs(w[j]), "%s: %s[%zu] = %.8g, PyTorch %.8g", name, want->name + 6,
                 j, a[j], w[j]);
    }
    n_final++;
  }
  ASSERT_EQ(n_final, moe_st_n_tensors(res));
  /* The steps really moved the parameters (by far more than the tolerance). */
  ASSERT_OP(moved, >, 100 * PARAM_ATOL);
  printf("  %-17s %d steps: max loss rel error %.2e; %d tensors, max |C - PyTorch| %.2e (%.1f%% of the tolerance),"
         " largest parameter move %.3g\n",
         name, S, worst_loss, n_final, worst_abs, 100 * worst, moved);
  moe_st_close(init_f);
  moe_st_close(res);
  remove(out);
  moe_trainer_free(tr);
  moe_json_free(doc);
  moe_st_close(io);
}

TEST(binary_bce) { run_case("binary-bce"); }
TEST(multiclass_ce) { run_case("multiclass-ce"); }
TEST(regression_huber) { run_case("regression-huber"); }
TEST(sensor_ce) { run_case("sensor-ce"); }
TEST(text_bce) { run_case("text-bce"); }
/* Pool "summary" after a stride-2 conv stack, on rows of observed steps 0, 1, partial and all. */
TEST(sensor_summary_huber) { run_case("sensor-summary-huber"); }
