/*
 * Gradient checks of the trainer's backward pass against central finite differences, in double
 * (this executable builds the trainer with MOE_TRAIN_F64), for every parameter tensor kind of
 * the tabular, sensor and text models (text: pool "mean" and pool "bag", the bag also without
 * the head norm): token and position embeddings, windowed multi-head
 * attention with a global token (qkv and out projections), the text FFN and norms, 1-D convolutions (strides 1 and 2, GELU and SiLU), categorical
 * embeddings, enc.in weight and bias, RMS and layer norm weights
 * and biases, routers (softmax and sigmoid scores, normalised and scaled gates, top-1 and
 * top-2, with the auxiliary balance loss), routed and shared experts' gate / up / down, the
 * head; under each loss (BCE with class weight, focal, cross-entropy with label smoothing, MSE,
 * Huber); the sensor pool "summary" with and without conv layers and with per-row observed
 * steps (n_steps), whose unobserved steps must not move the loss at all. The selection biases are random so that they change some choices; an entry whose
 * perturbation changes a routing decision is skipped (top-k is not differentiable there).
 */
#include "test.h"

#include "trainer/trainer-impl.h"

/* Relative error allowed between the analytic and the numeric derivative. In double with
 * eps 1e-6 the truncation error is ~1e-12 relative and the rounding error of the loss
 * difference ~1e-16 / 1e-6 = 1e-10 absolute, so the relative error is taken over
 * max(|a| + |n|, GC_FLOOR): 1e-5 relative, 1e-9 absolute for tiny derivatives. A wrong formula
 * gives errors of order 1. */
#define GC_TOL 1e-5
#define GC_FLOOR 1e-4
#define GC_EPS 1e-6

static uint64_t lcg = 12345;
static double urand(void) {
  lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(lcg >> 11) / 9007199254740992.0;
}

static double loss_only(moe_trainer_t *tr, const moe_train_data_t *b, int32_t *ids_out, size_t n_ids) {
  tr_cache_t c;
  ASSERT_OK(moe__arena_reset(&tr->arena));
  ASSERT_OK(moe__tr_forward(tr, tr->p, b, &c));
  size_t k = 0;
  memset(ids_out, 0, n_ids * sizeof *ids_out);
  for (int bl = 0; bl < tr->cfg.n_moe; bl++)
    for (int i = 0; i < c.m * tr->blocks[bl].cfg.top_k && k < n_ids; i++) ids_out[k++] = c.blk[bl].ids[i];
  return moe__tr_loss(tr, &c, b, NULL);
}

typedef struct {
  const char *name;
  const char *cfg;
  moe_loss_t loss;
  const int32_t *n_steps; /* sensor, optional: (9) observed steps per row (moe_train_data_t.n_steps) */
} gc_case_t;

/* Sensor pool "summary" with cs->n_steps: the input steps before the first one that the pooled
 * conv steps read are not part of the model's view of the row, so changing them must leave the
 * loss exactly as it was (not merely give a zero gradient within tolerance); changing the
 * first step read must not. Returns how many rows were checked that way. */
static int check_unread_steps(moe_trainer_t *tr, const moe_train_data_t *b, float *win) {
  const moe__config_t *cfg = &tr->cfg;
  const int T = cfg->window, C = cfg->n_channels;
  int32_t ids[512];
  const double l0 = loss_only(tr, b, ids, 512);
  int rows = 0;
  for (int r = 0; r < b->n_rows; r++) {
    const int n = b->n_steps[r];
    if (n == 0 || n == T) continue;
    /* The last conv layer's steps, then back through each layer to the first input step read:
     * output step s of a layer reads its input steps s * stride onwards. */
    int t = T;
    for (int l = 0; l < cfg->n_conv; l++) t = (t - cfg->conv[l].kernel) / cfg->conv[l].stride + 1;
    int first = t - moe__sensor_pool_steps(cfg, n);
    for (int l = cfg->n_conv - 1; l >= 0; l--) first *= cfg->conv[l].stride;
    if (first < T - n) continue; /* too few observed steps for one conv output: the pool clamps */
    for (int u = 0; u < T - n; u++)
      for (int i = 0; i < C; i++) {
        float *v = &win[((size_t)r * T + u) * C + i];
        const float v0 = *v;
        *v = v0 + 1.5f;
        const double l = loss_only(tr, b, ids, 512);
        *v = v0;
        ASSERT_MSG(l == l0, "row %d (n_steps %d): unobserved step %d channel %d changed the loss %.17g -> %.17g", r,
                   n, u, i, l0, l);
      }
    /* The first step read must count (the window's last step need not: a stride-2 layer whose
     * input length is off by one from its kernel drops it). */
    float *v = &win[((size_t)r * T + first) * C];
    const float v0 = *v;
    *v = v0 + 1.5f;
    const double l = loss_only(tr, b, ids, 512);
    *v = v0;
    ASSERT_MSG(l != l0, "row %d: its first read step %d did not change the loss", r, first);
    rows++;
  }
  return rows;
}

static void run_case(const gc_case_t *cs) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  o.loss = cs->loss;
  o.pos_weight = 3.0f;
  o.label_smoothing = 0.1f;
  o.huber_delta = 0.5f;
  o.balance_alpha = 0.05f;
  /* Multiclass cases weigh their classes unevenly (opts.class_weight). */
  static const float class_w[3] = {1.5f, 0.5f, 2.25f};
  if (strstr(cs->cfg, "\"multiclass\"") != NULL) o.class_weight = class_w;
  moe_trainer_t *tr = NULL;
  int rc = moe_trainer_new(cs->cfg, 7, &o, &tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s: %s", cs->name, err);
  /* Non-trivial norms, biases and selection biases. */
  for (int i = 0; i < tr->n_tensors; i++) {
    const tr_tensor_t *t = &tr->tensors[i];
    if (t->ndim == 1)
      for (size_t j = 0; j < t->n; j++) tr->p[t->off + j] += 0.3 * (urand() - 0.5);
  }
  for (int b = 0; b < tr->cfg.n_moe; b++)
    for (int e = 0; e < tr->blocks[b].cfg.n_expert; e++) tr->blocks[b].sel_bias[e] = 0.2 * (urand() - 0.5);
  enum { M = 9 };
  const int nn = tr->cfg.n_numeric, nc = tr->cfg.n_categorical, no = tr->n_out;
  float num[M * 8];
  int32_t cat[M * 4], lab[M];
  float tgt[M * 4];
  for (int r = 0; r < M; r++) {
    for (int i = 0; i < nn; i++) num[r * nn + i] = (float)(4 * urand() - 2);
    for (int i = 0; i < nc; i++) cat[r * nc + i] = (int32_t)(urand() * tr->cfg.categorical[i].vocab_size);
    lab[r] = tr->cfg.task == MOE_TASK_BINARY ? r % 2 : r % tr->cfg.n_labels;
    for (int k = 0; k < no; k++) tgt[r * no + k] = (float)(2 * urand() - 1);
  }
  float win[M * 64];
  const int nw = tr->cfg.window * tr->cfg.n_channels;
  ASSERT(nw <= 64);
  for (int i = 0; i < M * nw; i++) win[i] = (float)(3 * urand() - 1);
  int32_t tok[M * 16], ntok[M];
  ASSERT(tr->cfg.max_len <= 16);
  for (int r = 0; r < M; r++) {
    ntok[r] = tr->cfg.max_len > 0 ? 1 + (r * 5) % tr->cfg.max_len : 0;
    for (int i = 0; i < tr->cfg.max_len; i++) tok[r * tr->cfg.max_len + i] = (int32_t)(urand() * tr->cfg.vocab_size);
  }
  moe_train_data_t batch = {M, num, cat, lab, tgt, win, tok, ntok, cs->n_steps};
  tr_cache_t c;
  double loss;
  ASSERT_OK(moe__tr_loss_grad(tr, &batch, &loss, &c));
  ASSERT(isfinite(loss));
  double *ga = malloc(tr->n_values * sizeof(double));
  ASSERT_NOT_NULL(ga);
  memcpy(ga, tr->g, tr->n_values * sizeof(double));
  int32_t ids0[512], ids1[512], ids2[512];
  (void)loss_only(tr, &batch, ids0, 512);
  double worst = 0;
  int checked = 0, skipped = 0;
  for (int i = 0; i < tr->n_tensors; i++) {
    const tr_tensor_t *t = &tr->tensors[i];
    /* The entry of largest gradient, then random ones. */
    size_t pick[6];
    pick[0] = 0;
    for (size_t j = 1; j < t->n; j++)
      if (fabs(ga[t->off + j]) > fabs(ga[t->off + pick[0]])) pick[0] = j;
    for (int q = 1; q < 6; q++) pick[q] = (size_t)(urand() * t->n);
    double tworst = 0;
    for (int q = 0; q < 6; q++) {
      const size_t j = t->off + pick[q];
      const double p0 = tr->p[j];
      tr->p[j] = p0 + GC_EPS;
      const double lp = loss_only(tr, &batch, ids1, 512);
      tr->p[j] = p0 - GC_EPS;
      const double lm = loss_only(tr, &batch, ids2, 512);
      tr->p[j] = p0;
      if (memcmp(ids0, ids1, sizeof ids0) != 0 || memcmp(ids0, ids2, sizeof ids0) != 0) {
        skipped++;
        continue;
      }
      const double fd = (lp - lm) / (2 * GC_EPS);
      const double rel = fabs(fd - ga[j]) / fmax(fabs(fd) + fabs(ga[j]), GC_FLOOR);
      if (rel > tworst) tworst = rel;
      ASSERT_MSG(rel <= GC_TOL, "%s: %s[%zu]: analytic %.10g, numeric %.10g (rel %.3g)", cs->name, t->name, pick[q],
                 ga[j], fd, rel);
      checked++;
    }
    if (tworst > worst) worst = tworst;
  }
  /* The largest gradient entries must be far from zero somewhere: a backward pass that wrote
   * nothing would pass the comparison trivially only if the numeric side were zero too. */
  double gmax = 0;
  for (size_t j = 0; j < tr->n_values; j++) gmax = fmax(gmax, fabs(ga[j]));
  ASSERT_OP(gmax, >, 1e-3);
  ASSERT_OP(skipped, <, checked / 10 + 1);
  printf("  %-26s loss %.5f: %d entries of %d tensors, max relative error %.2e (%d skipped)\n", cs->name, loss,
         checked, tr->n_tensors, worst, skipped);
  if (cs->n_steps != NULL && tr->cfg.sensor_summary) {
    const int rows = check_unread_steps(tr, &batch, win);
    ASSERT_OP(rows, >, 0);
    printf("  %-26s unobserved steps leave the loss unchanged in %d rows\n", "", rows);
  }
  free(ga);
  moe_trainer_free(tr);
}

#define CFG_HEAD "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"gc\",\"quant\":\"f32\",\"d_model\":8,"
#define CFG_ENC                                                                                              \
  "\"encoder\":{\"kind\":\"tabular\",\"numeric\":[{\"name\":\"a\",\"mean\":0.5,\"std\":2},"                  \
  "{\"name\":\"b\",\"mean\":-1,\"std\":0.5},{\"name\":\"c\",\"mean\":0,\"std\":1}],"                        \
  "\"categorical\":[{\"name\":\"mcc\",\"vocab\":[\"<unk>\",\"x\",\"y\",\"z\"],\"dim\":3},"                   \
  "{\"name\":\"cc\",\"vocab\":[\"<unk>\",\"de\",\"fr\"],\"dim\":2}]},"
#define MOE_TWO                                                                                              \
  "\"moe\":[{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":6,\"score\":\"softmax\"},"                   \
  "{\"n_expert\":4,\"top_k\":2,\"n_shared\":1,\"d_ff\":5,\"score\":\"sigmoid\",\"normalize\":false,"        \
  "\"route_scale\":1.5}],"

TEST(binary_bce_rmsnorm_two_blocks) {
  gc_case_t cs = {"binary BCE, rmsnorm",
                  CFG_HEAD CFG_ENC MOE_TWO "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}", MOE_LOSS_BCE};
  run_case(&cs);
}

TEST(binary_focal_layernorm) {
  gc_case_t cs = {"binary focal, layernorm",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_ENC MOE_TWO
                           "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_FOCAL};
  run_case(&cs);
}

TEST(multiclass_ce_smoothing) {
  gc_case_t cs = {"multiclass CE smoothing",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_ENC
                           "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":0,\"d_ff\":4,\"score\":\"sigmoid\","
                           "\"route_scale\":2}],"
                           "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                  MOE_LOSS_CE};
  run_case(&cs);
}

TEST(regression_mse_top1) {
  gc_case_t cs = {"regression MSE, top-1",
                  CFG_HEAD CFG_ENC "\"moe\":[{\"n_expert\":3,\"top_k\":1,\"n_shared\":2,\"d_ff\":4,\"score\":\"softmax\","
                                   "\"normalize\":false}],"
                                   "\"task\":{\"kind\":\"regression\",\"labels\":[\"y1\",\"y2\"]}}",
                  MOE_LOSS_MSE};
  run_case(&cs);
}

TEST(regression_huber_no_moe) {
  gc_case_t cs = {"regression Huber, no MoE",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_ENC "\"moe\":[],"
                           "\"task\":{\"kind\":\"regression\",\"labels\":[\"y1\"]}}",
                  MOE_LOSS_HUBER};
  run_case(&cs);
}

#define CFG_SENSOR(act)                                                                                      \
  "\"encoder\":{\"kind\":\"sensor\",\"window\":12,\"channels\":[{\"name\":\"t\",\"mean\":0.5,\"std\":2},"        \
  "{\"name\":\"v\",\"mean\":0,\"std\":1}],\"conv\":[{\"out\":3,\"kernel\":3,\"stride\":1},"                       \
  "{\"out\":4,\"kernel\":3,\"stride\":2}],\"activation\":\"" act "\"},"

TEST(sensor_gelu_binary) {
  gc_case_t cs = {"sensor GELU, binary",
                  CFG_HEAD CFG_SENSOR("gelu") MOE_TWO "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_BCE};
  run_case(&cs);
}

TEST(sensor_silu_multiclass_layernorm) {
  gc_case_t cs = {"sensor SiLU, multiclass",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_SENSOR("silu")
                           "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"softmax\"}],"
                           "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                  MOE_LOSS_CE};
  run_case(&cs);
}

/* Pool "summary" (each channel's last value, mean and least-squares rise over the observed
 * steps): on the normalised channels themselves ("conv": []), and after the two conv layers of
 * CFG_SENSOR (the second of stride 2: 12 -> 10 -> 4 steps). */
#define CFG_SUMMARY_NO_CONV                                                                                  \
  "\"encoder\":{\"kind\":\"sensor\",\"window\":12,\"channels\":[{\"name\":\"t\",\"mean\":0.5,\"std\":2},"        \
  "{\"name\":\"v\",\"mean\":0,\"std\":1}],\"conv\":[],\"pool\":\"summary\"},"
#define CFG_SUMMARY(act)                                                                                     \
  "\"encoder\":{\"kind\":\"sensor\",\"window\":12,\"channels\":[{\"name\":\"t\",\"mean\":0.5,\"std\":2},"        \
  "{\"name\":\"v\",\"mean\":0,\"std\":1}],\"conv\":[{\"out\":3,\"kernel\":3,\"stride\":1},"                       \
  "{\"out\":4,\"kernel\":3,\"stride\":2}],\"activation\":\"" act "\",\"pool\":\"summary\"},"

/* Observed steps of the 9 rows of a batch: one step, partial counts, 0 (all) and the whole
 * window (12) spelt out. Through CFG_SUMMARY's convs 1, 2, 3, 5 and 7 observed steps leave one
 * pooled step (the pool clamps to the last), 9 leaves 2 and 12 / 0 all 4. */
static const int32_t summary_steps[9] = {1, 5, 0, 12, 3, 9, 2, 0, 7};

TEST(sensor_summary_no_conv_regression) {
  gc_case_t cs = {"summary, no conv, MSE",
                  CFG_HEAD CFG_SUMMARY_NO_CONV
                  "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"softmax\"}],"
                  "\"task\":{\"kind\":\"regression\",\"labels\":[\"y1\",\"y2\"]}}",
                  MOE_LOSS_MSE, NULL};
  run_case(&cs);
}

TEST(sensor_summary_no_conv_n_steps_huber) {
  gc_case_t cs = {"summary, no conv, n_steps",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_SUMMARY_NO_CONV MOE_TWO
                  "\"task\":{\"kind\":\"regression\",\"labels\":[\"y\"]}}",
                  MOE_LOSS_HUBER, summary_steps};
  run_case(&cs);
}

TEST(sensor_summary_conv_stride2_binary) {
  gc_case_t cs = {"summary, conv s2, binary",
                  CFG_HEAD CFG_SUMMARY("gelu") MOE_TWO "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_BCE, NULL};
  run_case(&cs);
}

TEST(sensor_summary_conv_n_steps_multiclass) {
  gc_case_t cs = {"summary, conv s2, n_steps",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_SUMMARY("silu")
                  "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"softmax\"}],"
                  "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                  MOE_LOSS_CE, summary_steps};
  run_case(&cs);
}

/* A mean-pool row reads the whole window whatever n_steps says (moe_input_t.n_steps): the same
 * rows with and without n_steps give the same loss; n_steps outside [0, window] is refused
 * naming the row and the value. */
TEST(sensor_mean_ignores_n_steps) {
  char err[256];
  moe_trainer_t *tr = NULL;
  ASSERT_OK(moe_trainer_new(CFG_HEAD CFG_SENSOR("gelu") MOE_TWO "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                            7, NULL, &tr, err, sizeof err));
  float win[9 * 24];
  int32_t lab[9], ids[512];
  for (int i = 0; i < 9 * 24; i++) win[i] = (float)(3 * urand() - 1);
  for (int r = 0; r < 9; r++) lab[r] = r % 2;
  moe_train_data_t b = {.n_rows = 9, .label = lab, .window = win};
  const double l_all = loss_only(tr, &b, ids, 512);
  b.n_steps = summary_steps;
  ASSERT_EQ(loss_only(tr, &b, ids, 512) == l_all, 1);
  int32_t bad[9];
  memcpy(bad, summary_steps, sizeof bad);
  bad[4] = 13;
  b.n_steps = bad;
  double loss;
  ASSERT_EQ(moe_trainer_step(tr, &b, &loss), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 4: n_steps is 13");
  bad[4] = -1;
  ASSERT_EQ(moe_trainer_step(tr, &b, &loss), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 4: n_steps is -1");
  moe_trainer_free(tr);
}

#define CFG_TEXT                                                                                             \
  "\"encoder\":{\"kind\":\"text\",\"vocab_size\":12,\"max_len\":7,\"n_layer\":2,\"n_head\":2,\"d_ff\":6,"        \
  "\"window\":[2,4],\"n_global\":1},"

TEST(text_regression) {
  gc_case_t cs = {"text, regression",
                  CFG_HEAD CFG_TEXT "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"sigmoid\"}],"
                                    "\"task\":{\"kind\":\"regression\",\"labels\":[\"y\"]}}",
                  MOE_LOSS_MSE};
  run_case(&cs);
}

TEST(text_binary_layernorm) {
  gc_case_t cs = {"text, binary, layernorm",
                  CFG_HEAD "\"norm\":\"layernorm\"," CFG_TEXT MOE_TWO
                           "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_BCE};
  run_case(&cs);
}

/* Pool "bag": 16 tokens over 6 ids, so that most rows repeat pieces (counts > 1 weigh 1 + ln c). */
TEST(text_bag_multiclass) {
  gc_case_t cs = {"text bag, multiclass",
                  CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,\"n_head\":1,"
                           "\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\"},"
                           "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"softmax\"}],"
                           "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                  MOE_LOSS_CE};
  run_case(&cs);
}

/* Pool "bag" with learnt piece weights (enc.idf.weight): their gradient goes through the row's
 * L2 normalisation. */
TEST(text_bag_idf_binary_layernorm) {
  gc_case_t cs = {"text bag idf, binary",
                  CFG_HEAD "\"norm\":\"layernorm\","
                           "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,\"n_head\":1,"
                           "\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"idf\":true},"
                           MOE_TWO "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_BCE};
  run_case(&cs);
}

/* Pool "bag" without the head norm ("head_norm": false): the head reads the pooled vector (plus
 * the MoE block's output) as it is, so its gradient reaches the embeddings unscaled; with piece
 * weights, and with no MoE block (the head straight on the bag). */
TEST(text_bag_no_head_norm_multiclass) {
  gc_case_t cs = {"text bag idf, no head norm, multiclass",
                  CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,\"n_head\":1,"
                           "\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"idf\":true,\"head_norm\":false},"
                           "\"moe\":[{\"n_expert\":3,\"top_k\":2,\"n_shared\":1,\"d_ff\":4,\"score\":\"softmax\"}],"
                           "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                  MOE_LOSS_CE};
  run_case(&cs);
}

TEST(text_bag_no_head_norm_no_moe_binary) {
  gc_case_t cs = {"text bag, no head norm, no MoE block, binary",
                  CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,\"n_head\":1,"
                           "\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"head_norm\":false},"
                           "\"moe\":[],\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}",
                  MOE_LOSS_BCE};
  run_case(&cs);
}

/* "head_norm": false is a bag option: a mean-pool config naming it is refused with the key's
 * path, and a bag without it has no head.norm tensor to train or export. */
TEST(text_head_norm_option) {
  char err[256];
  moe_train_opts_t o;
  moe_train_opts_default(&o);
  moe_trainer_t *tr = NULL;
  const char *mean = CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,"
                              "\"n_head\":1,\"d_ff\":4,\"window\":[],\"n_global\":0,\"head_norm\":false},\"moe\":[],"
                              "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}";
  ASSERT_EQ(moe_trainer_new(mean, 7, &o, &tr, err, sizeof err), MOE_ECONFIG);
  ASSERT_NOT_NULL(strstr(err, "config.encoder.head_norm"));
#define BAG_CFG(hn)                                                                                          \
  CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":16,\"n_layer\":0,\"n_head\":1,\"d_ff\":4," \
           "\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"head_norm\":" hn "},\"moe\":[],"                     \
           "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}"
  static const char *const bag[2] = {BAG_CFG("false"), BAG_CFG("true")};
#undef BAG_CFG
  for (int with = 0; with < 2; with++) {
    const char *cfg = bag[with];
    ASSERT_OK(moe_trainer_new(cfg, 7, &o, &tr, err, sizeof err));
    int found = 0;
    for (int i = 0; i < tr->n_tensors; i++) found += strncmp(tr->tensors[i].name, "head.norm.", 10) == 0;
    ASSERT_EQ(found, with);
    moe_trainer_free(tr);
    tr = NULL;
  }
}

/* [PAD] (id 0) is no piece of a bag: a row with [PAD] in place of some pieces scores as the row
 * without them (not as a row with a heavy extra piece), in the trainer as in the engine. */
TEST(text_bag_pad_is_no_piece) {
  char err[256];
  moe_trainer_t *tr = NULL;
  ASSERT_OK(moe_trainer_new(CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":8,\"n_layer\":0,"
                                     "\"n_head\":1,\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"idf\":true,"
                                     "\"head_norm\":false},\"moe\":[],"
                                     "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}",
                            7, NULL, &tr, err, sizeof err));
  /* Rows: pieces 2 3 3 5; the same with two [PAD] in between; [PAD] added at the end; and
   * [PAD] alone (the zero vector: the head's bias only). */
  const int32_t tok[4 * 8] = {2, 3, 3, 5, 0, 0, 0, 0, 2, 0, 3, 3, 0, 5, 0, 0,
                              2, 3, 3, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const int32_t ntok[4] = {4, 6, 7, 3};
  moe_train_data_t d = {.n_rows = 4, .tokens = tok, .n_tokens = ntok};
  float s[4 * 3];
  ASSERT_OK(moe_trainer_predict(tr, &d, s));
  for (int k = 0; k < 3; k++) {
    ASSERT_NEAR(s[3 + k], s[k], 1e-12);
    ASSERT_NEAR(s[6 + k], s[k], 1e-12);
  }
  /* The zero vector: softmax of the head's bias (0 at init), so uniform, unlike row 0. */
  for (int k = 0; k < 3; k++) ASSERT_NEAR(s[9 + k], 1.0 / 3.0, 1e-7); /* scores are float */
  ASSERT(fabs(s[0] - 1.0 / 3.0) > 1e-6);
  moe_trainer_free(tr);
}

/* moe_trainer_set_idf: the smoothed IDF of the rows, ln((1 + n) / (1 + df)) + 1, a piece counted
 * once per row however often it repeats there and only within the row's n_tokens; refused for a
 * model without piece weights. */
TEST(text_bag_set_idf) {
  const char *cfg = CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":4,\"n_layer\":0,\"n_head\":1,"
                             "\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\",\"idf\":true},\"moe\":[],"
                             "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}";
  /* Piece 2 in all three rows, 3 in two (twice in one), 4 in one; the 0s and the 5 are padding
   * past n_tokens. */
  const int32_t tok[3 * 4] = {2, 3, 3, 0, 2, 4, 5, 0, 2, 3, 0, 0};
  const int32_t nt[3] = {3, 2, 2}, lab[3] = {0, 1, 0};
  const moe_train_data_t d = {.n_rows = 3, .label = lab, .tokens = tok, .n_tokens = nt};
  const double df[6] = {0, 0, 3, 2, 1, 0};
  char err[256];
  moe_trainer_t *tr = NULL;
  ASSERT_OK(moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err));
  ASSERT(tr->idf != TR_NONE);
  for (int t = 0; t < 6; t++) ASSERT_NEAR(tr->p[tr->idf + t], 1.0, 1e-12); /* before: neutral */
  ASSERT_OK(moe_trainer_set_idf(tr, &d));
  for (int t = 0; t < 6; t++) ASSERT_NEAR(tr->p[tr->idf + t], log(4.0 / (1.0 + df[t])) + 1.0, 1e-12);
  /* A token id outside the vocabulary is named. */
  const int32_t bad[4] = {2, 9, 0, 0}, nb[1] = {2};
  const moe_train_data_t db = {.n_rows = 1, .label = lab, .tokens = bad, .n_tokens = nb};
  ASSERT_EQ(moe_trainer_set_idf(tr, &db), MOE_EDATA);
  ASSERT_STR_CONTAINS(moe_trainer_error(tr), "row 0: token 1 has id 9");
  moe_trainer_free(tr);
  const char *plain = CFG_HEAD "\"encoder\":{\"kind\":\"text\",\"vocab_size\":6,\"max_len\":4,\"n_layer\":0,"
                               "\"n_head\":1,\"d_ff\":4,\"window\":[],\"n_global\":0,\"pool\":\"bag\"},\"moe\":[],"
                               "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}";
  ASSERT_OK(moe_trainer_new(plain, 1, NULL, &tr, err, sizeof err));
  ASSERT_EQ(moe_trainer_set_idf(tr, &d), MOE_EINVAL);
  moe_trainer_free(tr);
}
