/*
 * Unit tests of libmoe's layers against naive formulas written out here: the session arena,
 * linear (fp32 and quantized), norms, activations, the 1-D convolution, windowed attention,
 * routing with selection bias, and the MoE block's grouping of rows by expert.
 */
#include "test.h"

#include "core/arena.h"
#include "kernels/kernels.h"
#include "moe/model-impl.h"
#include "nn/nn.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *rand_vec(size_t n, float scale) {
  float *v = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) v[i] = frand() * scale;
  return v;
}

/* ---- arena --------------------------------------------------------------------------- */

TEST(arena_aligns_overflows_and_settles) {
  moe__arena_t a;
  ASSERT_OK(moe__arena_init(&a, 1000));
  char *p = moe__arena_alloc(&a, 3);
  char *q = moe__arena_alloc(&a, 5);
  ASSERT_EQ((uintptr_t)p % MOE__ARENA_ALIGN, 0);
  ASSERT_EQ((uintptr_t)q % MOE__ARENA_ALIGN, 0);
  ASSERT(q >= p + 3);
  /* Far beyond the block: served by overflow chunks, all writable. */
  for (int i = 0; i < 10; i++) {
    char *big = moe__arena_alloc(&a, 50000);
    ASSERT_NOT_NULL(big);
    ASSERT_EQ((uintptr_t)big % MOE__ARENA_ALIGN, 0);
    memset(big, i, 50000);
  }
  ASSERT_NOT_NULL(a.extra);
  ASSERT_OK(moe__arena_reset(&a));
  /* After the reset one block holds the whole previous batch: no overflow the second time. */
  ASSERT_NULL(a.extra);
  ASSERT_OP(a.size, >=, 500000);
  moe__arena_alloc(&a, 3);
  moe__arena_alloc(&a, 5);
  for (int i = 0; i < 10; i++) ASSERT_NOT_NULL(moe__arena_alloc(&a, 50000));
  ASSERT_NULL(a.extra);
  moe__arena_close(&a);
}

/* ---- linear ---------------------------------------------------------------------------- */

static void naive_linear(const float *w, const float *b, const float *x, int m, int n, int k, float *y) {
  for (int r = 0; r < m; r++)
    for (int j = 0; j < n; j++) {
      double s = b ? b[j] : 0;
      for (int i = 0; i < k; i++) s += (double)w[(size_t)j * k + i] * x[(size_t)r * k + i];
      y[(size_t)r * n + j] = (float)s;
    }
}

TEST(linear_f32_matches_naive_for_one_and_many_rows) {
  const int n = 7, k = 13;
  float *w = rand_vec((size_t)n * k, 1), *b = rand_vec(n, 1), *x = rand_vec(5 * (size_t)k, 1);
  float y[5 * 7], want[5 * 7];
  moe__linear_t lin = {n, k, MOE_QUANT_F32, w, NULL, b};
  moe__arena_t a;
  ASSERT_OK(moe__arena_init(&a, 0));
  for (int m = 1; m <= 5; m += 4) {
    ASSERT_OK(moe__linear_forward(&lin, &a, x, m, y));
    naive_linear(w, b, x, m, n, k, want);
    for (int i = 0; i < m * n; i++) ASSERT_NEAR(y[i], want[i], 1e-5);
  }
  moe__arena_close(&a);
  free(w), free(b), free(x);
}

/*
 * Quantized linears against the fp32 product of the dequantized weights: the only extra error
 * is the int8 activation rounding, at most half a quantum (max|x|/254) per input, so
 * |err| <= sum_i |w_i| * max|x| / 254 per output; checked with that bound.
 */
TEST(linear_quantized_within_activation_rounding_bound) {
  const int n = 9, k = 64, m = 3;
  const kern_ops_t *ops = kern_ops();
  float *w = rand_vec((size_t)n * k, 1), *x = rand_vec((size_t)m * k, 2), *b = rand_vec(n, 1);
  float *wdq = malloc((size_t)n * k * sizeof(float));
  float y[27], want[27];
  moe__arena_t a;
  ASSERT_OK(moe__arena_init(&a, 0));
  for (int qi = 0; qi < 2; qi++) {
    moe_quant_t q = qi == 0 ? MOE_QUANT_Q8_0 : MOE_QUANT_Q4_0;
    size_t row = moe__quant_row_bytes(q, k);
    char *blocks = malloc(row * n);
    for (int j = 0; j < n; j++) {
      if (q == MOE_QUANT_Q8_0) {
        ops->quantize_row_q8_0(w + (size_t)j * k, (blk_q8_0 *)(blocks + row * j), k);
        ops->dequantize_row_q8_0((blk_q8_0 *)(blocks + row * j), wdq + (size_t)j * k, k);
      } else {
        ops->quantize_row_q4_0(w + (size_t)j * k, (blk_q4_0 *)(blocks + row * j), k);
        ops->dequantize_row_q4_0((blk_q4_0 *)(blocks + row * j), wdq + (size_t)j * k, k);
      }
    }
    size_t psize = q == MOE_QUANT_Q8_0 ? ops->pack_size_q8_0(n, k) : ops->pack_size_q4_0(n, k);
    void *packed = aligned_alloc(64, (psize + 63) / 64 * 64);
    if (q == MOE_QUANT_Q8_0) ops->pack_q8_0(n, k, (blk_q8_0 *)blocks, packed);
    else ops->pack_q4_0(n, k, (blk_q4_0 *)blocks, packed);
    moe__linear_t lin = {n, k, q, NULL, packed, b};
    ASSERT_OK(moe__linear_forward(&lin, &a, x, m, y));
    naive_linear(wdq, b, x, m, n, k, want);
    for (int r = 0; r < m; r++) {
      float amax = 0;
      for (int i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[(size_t)r * k + i]));
      for (int j = 0; j < n; j++) {
        double bound = 1e-5;
        for (int i = 0; i < k; i++) bound += fabs(wdq[(size_t)j * k + i]) * amax / 254.0 * 1.01;
        ASSERT_OP(fabs(y[r * n + j] - want[r * n + j]), <=, bound);
      }
    }
    free(packed);
    free(blocks);
  }
  moe__arena_close(&a);
  free(w), free(x), free(b), free(wdq);
}

/* ---- norms and activations ---------------------------------------------------------------- */

TEST(norms_match_their_formulas) {
  float x[8] = {1, -2, 3, 0.5f, -1, 2, 0, 4}, y[8], w[4] = {1, 2, 0.5f, -1}, b[4] = {0.1f, 0, -0.1f, 1};
  moe__norm_t rms = {MOE__NORM_RMS, 4, 1e-5f, w, NULL};
  moe__norm_forward(&rms, x, 2, y);
  /* row 0: mean square (1 + 4 + 9 + 0.25) / 4 = 3.5625 */
  double inv = 1.0 / sqrt(3.5625 + 1e-5);
  ASSERT_NEAR(y[0], 1 * inv * 1, 1e-6);
  ASSERT_NEAR(y[1], -2 * inv * 2, 1e-6);
  ASSERT_NEAR(y[3], 0.5 * inv * -1, 1e-6);
  moe__norm_t ln = {MOE__NORM_LAYER, 4, 1e-5f, w, b};
  moe__norm_forward(&ln, x + 4, 1, y);
  /* (-1, 2, 0, 4): mean 1.25, biased variance ((2.25^2 + 0.75^2 + 1.25^2 + 2.75^2) / 4 = 3.6875 */
  inv = 1.0 / sqrt(3.6875 + 1e-5);
  ASSERT_NEAR(y[0], (-1 - 1.25) * inv * 1 + 0.1, 1e-6);
  ASSERT_NEAR(y[3], (4 - 1.25) * inv * -1 + 1, 1e-6);
}

TEST(activations_match_known_values) {
  /* GELU(x) = x * Phi(x): Phi(1) = 0.841344746, Phi(-2) = 0.022750132. */
  float g[3] = {1, -2, 0};
  moe__gelu(g, 3);
  ASSERT_NEAR(g[0], 0.841344746, 1e-6);
  ASSERT_NEAR(g[1], -2 * 0.022750132, 1e-6);
  ASSERT_EQ(g[2], 0);
  float s[2] = {2, -100};
  moe__silu(s, 2);
  ASSERT_NEAR(s[0], 2 / (1 + exp(-2.0)), 1e-6);
  ASSERT_NEAR(s[1], 0, 1e-6);
  ASSERT_NEAR(moe__sigmoid(-200), 0, 1e-30);
  ASSERT_NEAR(moe__sigmoid(0), 0.5, 1e-7);
  float p[3] = {1000, 1001, 999};
  moe__softmax(p, 3);
  ASSERT_NEAR(p[0] + p[1] + p[2], 1, 1e-6);
  ASSERT_NEAR(p[1] / p[0], exp(1.0), 1e-4);
}

/* ---- convolution and attention ------------------------------------------------------------ */

TEST(conv1d_matches_direct_loops) {
  const int m = 2, t_in = 11, c_in = 3, c_out = 4, kernel = 3, stride = 2;
  float *w = rand_vec((size_t)c_out * c_in * kernel, 1), *b = rand_vec(c_out, 1);
  float *x = rand_vec((size_t)m * t_in * c_in, 1);
  float *packed = malloc((size_t)c_out * c_in * kernel * sizeof(float));
  moe__conv1d_pack(c_out, c_in, kernel, w, packed);
  moe__conv1d_t conv = {c_in, c_out, kernel, stride, packed, b};
  const int t_out = moe__conv1d_out_len(&conv, t_in);
  ASSERT_EQ(t_out, 5);
  float y[2 * 5 * 4];
  moe__arena_t a;
  ASSERT_OK(moe__arena_init(&a, 0));
  ASSERT_OK(moe__conv1d_forward(&conv, &a, x, m, t_in, y));
  for (int s = 0; s < m; s++)
    for (int t = 0; t < t_out; t++)
      for (int o = 0; o < c_out; o++) {
        double want = b[o];
        for (int i = 0; i < c_in; i++)
          for (int j = 0; j < kernel; j++)
            want += (double)w[(o * c_in + i) * kernel + j] * x[((size_t)s * t_in + t * stride + j) * c_in + i];
        ASSERT_NEAR(y[((size_t)s * t_out + t) * c_out + o], want, 1e-5);
      }
  moe__arena_close(&a);
  free(w), free(b), free(x), free(packed);
}

/* Attention against a dense masked softmax computed here. */
static void naive_attention(const float *qkv, int n, int d, int nh, int window, int g, float *out) {
  const int dh = d / nh;
  for (int h = 0; h < nh; h++)
    for (int i = 0; i < n; i++) {
      double s[128], mx = -1e300, sum = 0;
      for (int j = 0; j < n; j++) {
        int ok = abs(i - j) <= window / 2 || i < g || j < g;
        s[j] = -1e300;
        if (!ok) continue;
        double dot = 0;
        for (int e = 0; e < dh; e++) dot += (double)qkv[i * 3 * d + h * dh + e] * qkv[j * 3 * d + d + h * dh + e];
        s[j] = dot / sqrt((double)dh);
        mx = s[j] > mx ? s[j] : mx;
      }
      for (int j = 0; j < n; j++) sum += s[j] > -1e300 ? exp(s[j] - mx) : 0;
      for (int e = 0; e < dh; e++) {
        double o = 0;
        for (int j = 0; j < n; j++)
          if (s[j] > -1e300) o += exp(s[j] - mx) / sum * qkv[j * 3 * d + 2 * d + h * dh + e];
        out[i * d + h * dh + e] = (float)o;
      }
    }
}

TEST(attention_window_and_global_tokens) {
  enum { n = 75 }; /* several query blocks of MOE__ATTN_BLOCK */
  const int d = 8, nh = 2;
  float *qkv = rand_vec((size_t)n * 3 * d, 1.5f);
  float out[n * 8], want[n * 8], sc[MOE__ATTN_SCRATCH(n)];
  const int cases[][2] = {{4, 1}, {6, 0}, {1, 2}, {64, 0}, {20, 3}, {200, 1}, {33, 40}};
  for (int c = 0; c < 7; c++) {
    moe__attention_windowed(qkv, n, d, nh, cases[c][0], cases[c][1], sc, out);
    naive_attention(qkv, n, d, nh, cases[c][0], cases[c][1], want);
    for (int i = 0; i < n * d; i++) ASSERT_NEAR(out[i], want[i], 1e-5);
  }
  /* Window 1 without global tokens: each token sees only itself, so out = v. */
  moe__attention_windowed(qkv, n, d, nh, 1, 0, sc, out);
  for (int i = 0; i < n; i++)
    for (int e = 0; e < d; e++) ASSERT_NEAR(out[i * d + e], qkv[i * 3 * d + 2 * d + e], 1e-6);
  free(qkv);
}

/* ---- routing ------------------------------------------------------------------------------- */

TEST(selection_bias_changes_choice_never_gate_weights) {
  moe__moe_cfg_t cfg = {.n_expert = 5, .top_k = 2, .n_shared = 0, .d_ff = 1, .score = MOE__SCORE_SIGMOID,
                        .normalize = false, .route_scale = 1.0f};
  const float scores[5] = {0.9f, 0.8f, 0.3f, 0.2f, 0.7f};
  const float no_bias[5] = {0};
  const float bias[5] = {-0.5f, 0, 0.45f, 0, 0};
  int32_t ids[2];
  float gates[2];
  moe__route_row(&cfg, scores, no_bias, ids, gates);
  ASSERT_EQ(ids[0], 0);
  ASSERT_EQ(ids[1], 1);
  ASSERT_EQ(gates[0], scores[0]);
  /* With the bias: selection scores 0.4, 0.8, 0.75, 0.2, 0.7 -> experts 1 and 2 ... */
  moe__route_row(&cfg, scores, bias, ids, gates);
  ASSERT_EQ(ids[0], 1);
  ASSERT_EQ(ids[1], 2);
  /* ... whose gates are their unbiased scores, not the biased ones. */
  ASSERT_EQ(gates[0], scores[1]);
  ASSERT_EQ(gates[1], scores[2]);
  /* Normalised and scaled: the unbiased scores of the chosen, divided by their sum. */
  cfg.normalize = true;
  cfg.route_scale = 2.0f;
  moe__route_row(&cfg, scores, bias, ids, gates);
  ASSERT_NEAR(gates[0], 2.0 * 0.8 / 1.1, 1e-6);
  ASSERT_NEAR(gates[1], 2.0 * 0.3 / 1.1, 1e-6);
  /* Ties go to the lower id. */
  const float tie[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  moe__route_row(&cfg, tie, no_bias, ids, gates);
  ASSERT_EQ(ids[0], 0);
  ASSERT_EQ(ids[1], 1);
}

/* ---- MoE block: grouped batch vs row-by-row ------------------------------------------------ */

static void make_ffn(moe__ffn_t *f, int d, int d_ff) {
  f->d_model = d;
  f->d_ff = d_ff;
  f->gate_up = (moe__linear_t){2 * d_ff, d, MOE_QUANT_F32, rand_vec((size_t)2 * d_ff * d, 0.5f), NULL, NULL};
  f->down = (moe__linear_t){d, d_ff, MOE_QUANT_F32, rand_vec((size_t)d * d_ff, 0.5f), NULL, NULL};
}

/* The block written out per row: all experts' scores, top-k, weighted sum, shared experts. */
static void naive_block_row(const moe__moe_block_t *blk, const float *x, int d, float *y) {
  const moe__moe_cfg_t *c = &blk->cfg;
  float u[64], s[16], sel[16], h[64];
  double inv = 0;
  for (int i = 0; i < d; i++) inv += (double)x[i] * x[i];
  inv = 1.0 / sqrt(inv / d + blk->norm.eps);
  for (int i = 0; i < d; i++) u[i] = (float)(x[i] * inv * blk->norm.w[i]);
  double mx = -1e300, sum = 0;
  for (int e = 0; e < c->n_expert; e++) {
    double v = 0;
    for (int i = 0; i < d; i++) v += (double)blk->router[e * d + i] * u[i];
    s[e] = (float)v;
    mx = v > mx ? v : mx;
  }
  for (int e = 0; e < c->n_expert; e++) sum += exp(s[e] - mx);
  for (int e = 0; e < c->n_expert; e++) {
    s[e] = (float)(exp(s[e] - mx) / sum);
    sel[e] = s[e] + blk->sel_bias[e];
  }
  int chosen[16] = {0};
  double gsum = 0;
  int ids[8];
  for (int j = 0; j < c->top_k; j++) {
    int best = -1;
    for (int e = 0; e < c->n_expert; e++)
      if (!chosen[e] && (best < 0 || sel[e] > sel[best])) best = e;
    chosen[best] = 1;
    ids[j] = best;
    gsum += s[best];
  }
  for (int i = 0; i < d; i++) y[i] = x[i];
  for (int j = 0; j < c->top_k + c->n_shared; j++) {
    const moe__ffn_t *f = j < c->top_k ? &blk->experts[ids[j]] : &blk->shared[j - c->top_k];
    double g = j < c->top_k ? s[ids[j]] / gsum : 1.0;
    for (int t = 0; t < f->d_ff; t++) {
      double a = 0, b = 0;
      for (int i = 0; i < d; i++) {
        a += (double)f->gate_up.w[t * d + i] * u[i];
        b += (double)f->gate_up.w[(f->d_ff + t) * d + i] * u[i];
      }
      h[t] = (float)(a / (1 + exp(-a)) * b);
    }
    for (int i = 0; i < d; i++) {
      double o = 0;
      for (int t = 0; t < f->d_ff; t++) o += (double)f->down.w[i * f->d_ff + t] * h[t];
      y[i] += (float)(g * o);
    }
  }
}

TEST(moe_block_grouped_batch_equals_per_row) {
  const int d = 16, d_ff = 24, E = 6, m = 37;
  moe__moe_block_t blk = {0};
  blk.cfg = (moe__moe_cfg_t){E, 2, 1, d_ff, MOE__SCORE_SOFTMAX, true, 1.0f};
  float normw[16];
  for (int i = 0; i < d; i++) normw[i] = 1.0f + 0.1f * frand();
  blk.norm = (moe__norm_t){MOE__NORM_RMS, d, 1e-5f, normw, NULL};
  blk.router = rand_vec((size_t)E * d, 1);
  blk.sel_bias = rand_vec(E, 0.2f);
  moe__ffn_t experts[6], shared[1];
  for (int e = 0; e < E; e++) make_ffn(&experts[e], d, d_ff);
  make_ffn(&shared[0], d, d_ff);
  blk.experts = experts;
  blk.shared = shared;
  float *x = rand_vec((size_t)m * d, 2);
  float *want = malloc((size_t)m * d * sizeof(float));
  for (int r = 0; r < m; r++) naive_block_row(&blk, x + (size_t)r * d, d, want + (size_t)r * d);
  int32_t ids[37 * 2], load[6] = {0};
  float gw[37 * 2];
  moe__arena_t a;
  ASSERT_OK(moe__arena_init(&a, 0));
  ASSERT_OK(moe__moe_block_forward(&blk, &a, x, m, d, 2, ids, gw, load));
  for (int i = 0; i < m * d; i++) ASSERT_NEAR(x[i], want[i], 1e-5);
  int total = 0, active = 0;
  for (int e = 0; e < E; e++) {
    total += load[e];
    active += load[e] > 0;
  }
  ASSERT_EQ(total, m * 2);
  ASSERT_OP(active, >=, 3); /* several experts really ran over several rows each */
  for (int r = 0; r < m; r++) {
    ASSERT_NE(ids[2 * r], ids[2 * r + 1]);
    ASSERT_NEAR(gw[2 * r] + gw[2 * r + 1], 1.0, 1e-6);
  }
  moe__arena_close(&a);
  for (int e = 0; e < E; e++) free(experts[e].gate_up.w), free(experts[e].down.w);
  free(shared[0].gate_up.w), free(shared[0].down.w);
  free(blk.router), free(blk.sel_bias), free(x), free(want);
}
