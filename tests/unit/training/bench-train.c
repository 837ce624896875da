/*
 * Trainer throughput: optimizer steps per second of a ~1M-parameter tabular MoE model
 * (d_model 128, 2 MoE blocks of 8 experts top-2 + 1 shared, d_ff 128, 16 numeric + 2 categorical
 * features) at batch 256, of a sensor model (window 64 x 4 channels, two convolutions) at batch
 * 256 and of a text model (64 tokens, 2 layers of 4 heads) at batch 32. Prints figures; asserts
 * nothing about
 * speed. Not a ctest: run tests/bench-train in a build directory (BENCH_STEPS=n).
 */
#include "test.h"

#include "moe/train.h"
#include "train-synth.h"

TEST(steps_per_second) {
  char err[256];
  const char *cfg =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"b\",\"quant\":\"f32\",\"d_model\":128,"
      "\"encoder\":{\"kind\":\"tabular\",\"numeric\":["
      "{\"name\":\"x0\",\"mean\":0,\"std\":1},{\"name\":\"x1\",\"mean\":1,\"std\":1.25},"
      "{\"name\":\"x2\",\"mean\":2,\"std\":1.5},{\"name\":\"x3\",\"mean\":3,\"std\":1.75},"
      "{\"name\":\"x4\",\"mean\":0,\"std\":1},{\"name\":\"x5\",\"mean\":0,\"std\":1},"
      "{\"name\":\"x6\",\"mean\":0,\"std\":1},{\"name\":\"x7\",\"mean\":0,\"std\":1},"
      "{\"name\":\"x8\",\"mean\":0,\"std\":1},{\"name\":\"x9\",\"mean\":0,\"std\":1},"
      "{\"name\":\"x10\",\"mean\":0,\"std\":1},{\"name\":\"x11\",\"mean\":0,\"std\":1},"
      "{\"name\":\"x12\",\"mean\":0,\"std\":1},{\"name\":\"x13\",\"mean\":0,\"std\":1},"
      "{\"name\":\"x14\",\"mean\":0,\"std\":1},{\"name\":\"x15\",\"mean\":0,\"std\":1}],"
      "\"categorical\":[{\"name\":\"c\",\"vocab\":[\"<unk>\",\"a\",\"b\",\"c\",\"d\"],\"dim\":8},"
      "{\"name\":\"c2\",\"vocab\":[\"<unk>\",\"a\",\"b\",\"c\",\"d\"],\"dim\":8}]},"
      "\"moe\":[{\"n_expert\":8,\"top_k\":2,\"n_shared\":1,\"d_ff\":128,\"score\":\"softmax\"},"
      "{\"n_expert\":8,\"top_k\":2,\"n_shared\":1,\"d_ff\":128,\"score\":\"sigmoid\"}],"
      "\"task\":{\"kind\":\"binary\",\"labels\":[\"n\",\"p\"]}}";
  moe_trainer_t *tr;
  ASSERT_OK(moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err));
  synth_t s;
  synth_make(&s, 256, 16, 0, 0.3, 1);
  /* Two categorical columns from one: duplicate the ids. */
  int32_t *cat = malloc(sizeof(int32_t) * 512);
  for (int r = 0; r < 256; r++) cat[2 * r] = cat[2 * r + 1] = s.cat[r];
  s.data.categorical = cat;
  const char *env = getenv("BENCH_STEPS");
  const int steps = env ? atoi(env) : 20;
  double loss;
  ASSERT_OK(moe_trainer_step(tr, &s.data, &loss)); /* warm-up: the arena grows once */
  const double t0 = test_now_s();
  for (int i = 0; i < steps; i++) ASSERT_OK(moe_trainer_step(tr, &s.data, &loss));
  const double dt = test_now_s() - t0;
  printf("  %lld parameters, batch 256: %.1f steps/s (%.1f ms/step, %.0f rows/s), loss %.4f\n",
         (long long)moe_trainer_n_params(tr), steps / dt, 1e3 * dt / steps, 256.0 * steps / dt, loss);
  free(cat);
  synth_free(&s);
  moe_trainer_free(tr);
}

static void bench(const char *what, const char *cfg, const moe_train_data_t *b) {
  char err[256];
  moe_trainer_t *tr;
  int rc = moe_trainer_new(cfg, 1, NULL, &tr, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "%s", err);
  const char *env = getenv("BENCH_STEPS");
  const int steps = env ? atoi(env) : 10;
  double loss;
  ASSERT_OK(moe_trainer_step(tr, b, &loss));
  const double t0 = test_now_s();
  for (int i = 0; i < steps; i++) ASSERT_OK(moe_trainer_step(tr, b, &loss));
  const double dt = test_now_s() - t0;
  printf("  %s: %lld parameters, batch %d: %.1f steps/s (%.1f ms/step, %.0f rows/s)\n", what,
         (long long)moe_trainer_n_params(tr), b->n_rows, steps / dt, 1e3 * dt / steps, b->n_rows * steps / dt);
  moe_trainer_free(tr);
}

TEST(sensor_and_text) {
  const char *sensor =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"b\",\"quant\":\"f32\",\"d_model\":64,"
      "\"encoder\":{\"kind\":\"sensor\",\"window\":64,\"channels\":[{\"name\":\"a\",\"mean\":0,\"std\":1},"
      "{\"name\":\"b\",\"mean\":0,\"std\":1},{\"name\":\"c\",\"mean\":0,\"std\":1},{\"name\":\"d\",\"mean\":0,\"std\":1}],"
      "\"conv\":[{\"out\":32,\"kernel\":5,\"stride\":1},{\"out\":64,\"kernel\":3,\"stride\":2}]},"
      "\"moe\":[{\"n_expert\":8,\"top_k\":2,\"n_shared\":1,\"d_ff\":128,\"score\":\"softmax\"}],"
      "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"a\",\"b\",\"c\"]}}";
  const char *text =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"b\",\"quant\":\"f32\",\"d_model\":64,"
      "\"encoder\":{\"kind\":\"text\",\"vocab_size\":8000,\"max_len\":64,\"n_layer\":2,\"n_head\":4,\"d_ff\":128,"
      "\"window\":[16,64],\"n_global\":1},"
      "\"moe\":[{\"n_expert\":8,\"top_k\":2,\"n_shared\":1,\"d_ff\":128,\"score\":\"softmax\"}],"
      "\"task\":{\"kind\":\"binary\",\"labels\":[\"a\",\"b\"]}}";
  uint64_t st = 1;
  float *win = malloc(sizeof(float) * 256 * 64 * 4);
  int32_t *lab = malloc(sizeof(int32_t) * 256), *tok = malloc(sizeof(int32_t) * 32 * 64), nt[32];
  for (int i = 0; i < 256 * 64 * 4; i++) win[i] = (float)synth_n(&st);
  for (int r = 0; r < 256; r++) lab[r] = r % 2;
  for (int i = 0; i < 32 * 64; i++) tok[i] = (int32_t)(synth_u(&st) * 8000);
  for (int r = 0; r < 32; r++) nt[r] = 64;
  moe_train_data_t bs = {.n_rows = 256, .label = lab, .window = win};
  moe_train_data_t bt = {.n_rows = 32, .label = lab, .tokens = tok, .n_tokens = nt};
  bench("sensor", sensor, &bs);
  bench("text", text, &bt);
  free(win);
  free(lab);
  free(tok);
}
