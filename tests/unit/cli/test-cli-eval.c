/*
 * Tests of `sluice eval` with models written here, tiny enough that their scores are a known
 * closed-form function of one input, so that every score, prediction and metric the command
 * prints can be checked against a value computed independently in this file:
 *   fraud (binary, tabular): score = sigmoid(w z / rms([z, 1]) + c) with z = V14;
 *   fault-cmapss (regression, sensor): value = w p / rms([p, 1]) + c with p the mean of
 *     silu(sensor_2) over the window's last cycles;
 *   records-abstracts (multiclass, text): the class follows from which word the note is.
 * The data files are small files in the exact formats of ../shared/data, written here too.
 */
#include "test.h"
#include "test-tmpdir.h"

#include <math.h>
#include <sys/wait.h>

#include "cli.h"
#include "cli-test-run.h"
#include "json-value.h"

#define EPS 1e-5 /* the config's norm_eps default */

TEST_TMPDIR(tmpdir, "test-cli-eval")

static void path_in_tmp(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", tmpdir, name);
}

static int run(char *out, size_t size, char *err, size_t err_size, const char *args) {
  return cli_test_sluice(out, size, err, err_size, args);
}

/* ---- a safetensors writer ---------------------------------------------------------------- */

typedef struct tensor_s {
  const char *name;
  int ndim;
  int shape[3];
  const float *data;
} tensor_t;

static void write_model(const char *path, const char *config, const tensor_t *ts, int n) {
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  ASSERT_NOT_NULL(h);
  fputs("{\"__metadata__\":{\"config\":", h);
  cli_json_write_string(h, config);
  fputs("}", h);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    size_t count = 1;
    fprintf(h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", ts[i].name);
    for (int d = 0; d < ts[i].ndim; d++) {
      fprintf(h, "%s%d", d ? "," : "", ts[i].shape[d]);
      count *= (size_t)ts[i].shape[d];
    }
    fprintf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + count * 4);
    off += count * 4;
  }
  fputs("}", h);
  while ((ftell(h) % 8) != 0) fputc(' ', h);
  fclose(h);
  FILE *f = fopen(path, "wb");
  ASSERT_NOT_NULL(f);
  uint64_t len = hlen;
  unsigned char b[8];
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
  fwrite(b, 1, 8, f);
  fwrite(hdr, 1, hlen, f);
  for (int i = 0; i < n; i++) {
    size_t count = 1;
    for (int d = 0; d < ts[i].ndim; d++) count *= (size_t)ts[i].shape[d];
    fwrite(ts[i].data, 4, count, f);
  }
  fclose(f);
  free(hdr);
}

/* Reads a whole text file (caller frees). */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  ASSERT_NOT_NULL(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  ASSERT_EQ(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

static double metric(const char *json_out, const char *name) {
  cli_jv_t v;
  ASSERT_OK(cli_jv_parse(json_out, strlen(json_out), &v, NULL, 0));
  const cli_jv_t *m = cli_jv_get(cli_jv_get(&v, "metrics"), name);
  ASSERT_NOT_NULL(m);
  double x = m->kind == CLI_JV_NUM ? m->num : NAN;
  cli_jv_free(&v);
  return x;
}

/* ---- fraud: a binary tabular model ---------------------------------------------------------- */

#define FRAUD_W 2.5f
#define FRAUD_C (-0.5f)
#define FRAUD_N 40

static double fraud_score(double z) {
  double rms = sqrt((z * z + 1.0) / 2.0 + EPS);
  return 1.0 / (1.0 + exp(-(FRAUD_W * z / rms + FRAUD_C)));
}

static void fraud_model(const char *path, const char *feature) {
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"test-fraud-1\","
           "\"provenance\":{\"metrics\":{\"pr_auc\":0.5}},\"quant\":\"f32\",\"d_model\":2,"
           "\"encoder\":{\"kind\":\"tabular\",\"numeric\":[{\"name\":\"%s\",\"mean\":0,"
           "\"std\":1}],\"categorical\":[]},\"moe\":[],"
           "\"task\":{\"kind\":\"binary\",\"labels\":[\"legit\",\"fraud\"],\"threshold\":0.5}}",
           feature);
  static const float in_w[] = {1, 0}, in_b[] = {0, 1}, norm_w[] = {1, 1},
                     head_w[] = {FRAUD_W, 0}, head_b[] = {FRAUD_C};
  tensor_t ts[] = {{"enc.in.weight", 2, {2, 1}, in_w},   {"enc.in.bias", 1, {2}, in_b},
                   {"head.norm.weight", 1, {2}, norm_w}, {"head.weight", 2, {1, 2}, head_w},
                   {"head.bias", 1, {1}, head_b}};
  write_model(path, cfg, ts, 5);
}

/* V14 of row i, and its label: a noisy relation, so that the AUC is neither 0.5 nor 1. */
static double fraud_v14(int i) { return sin(i * 1.7) * 3.0; }
static int fraud_label(int i) { return (fraud_v14(i) + cos(i * 0.9) * 2.0) > 1.0; }

static void fraud_data(const char *path) {
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs("\xEF\xBB\xBFTime", f); /* a BOM, as the shared files may have */
  for (int j = 1; j <= 28; j++) fprintf(f, ",V%d", j);
  fputs(",Amount,Class\r\n", f);
  for (int i = 0; i < FRAUD_N; i++) {
    /* Time decreases with the row, so that time order is not file order. */
    fprintf(f, "%d", (FRAUD_N - i) * 10);
    for (int j = 1; j <= 28; j++) fprintf(f, ",%.17g", j == 14 ? fraud_v14(i) : 0.1 * j);
    fprintf(f, ",%d.5,%d\r\n", i, fraud_label(i));
  }
  fclose(f);
}

TEST(eval_fraud_binary) {
  char model[256], data[256], preds[256], args[1024];
  static char out[65536], err[8192];
  path_in_tmp(model, sizeof(model), "fraud.safetensors");
  path_in_tmp(data, sizeof(data), "fraud.csv");
  path_in_tmp(preds, sizeof(preds), "fraud-pred.csv");
  fraud_model(model, "V14");
  fraud_data(data);
  snprintf(args, sizeof(args), "eval --task fraud --model %s --data %s --json --predictions %s",
           model, data, preds);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 0);

  /* Independent figures: scores by the closed form, ROC AUC by counting pairs. */
  double s[FRAUD_N];
  int y[FRAUD_N], tp = 0, fp = 0, fn = 0;
  for (int i = 0; i < FRAUD_N; i++) {
    s[i] = fraud_score(fraud_v14(i));
    y[i] = fraud_label(i);
    int p = s[i] >= 0.5;
    tp += p && y[i];
    fp += p && !y[i];
    fn += !p && y[i];
  }
  double pairs = 0, wins = 0;
  for (int i = 0; i < FRAUD_N; i++)
    for (int j = 0; j < FRAUD_N; j++)
      if (y[i] && !y[j]) {
        pairs++;
        wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
      }
  ASSERT(pairs > 0);
  ASSERT(wins < pairs);
  ASSERT_NEAR(metric(out, "roc_auc"), wins / pairs, 1e-9);
  ASSERT_NEAR(metric(out, "precision"), tp ? (double)tp / (tp + fp) : 0, 1e-9);
  ASSERT_NEAR(metric(out, "recall"), (double)tp / (tp + fn), 1e-9);
  ASSERT_NEAR(metric(out, "f1"), 2.0 * tp / (2.0 * tp + fp + fn), 1e-9);
  ASSERT_NEAR(metric(out, "threshold"), 0.5, 0);

  /* Predictions: header, one line per row in file order, score and 0/1 at the threshold. */
  char *csv = slurp(preds);
  ASSERT(strncmp(csv, "row,score,prediction\n", 21) == 0);
  char *line = csv + 21;
  for (int i = 0; i < FRAUD_N; i++) {
    long row;
    double score;
    int pred, used;
    ASSERT_EQ(sscanf(line, "%ld,%lf,%d\n%n", &row, &score, &pred, &used), 3);
    ASSERT_EQ(row, i);
    ASSERT_NEAR(score, s[i], 1e-5);
    ASSERT_EQ(pred, s[i] >= 0.5);
    line += used;
  }
  ASSERT_STR_EQ(line, "");
  free(csv);

  /* --split test: the last 15 % in Time order, which here are the first rows of the file. */
  snprintf(args, sizeof(args),
           "eval --task fraud --model %s --data %s --split test --predictions %s", model, data,
           preds);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 0);
  ASSERT_STR_CONTAINS(out, "roc_auc");
  ASSERT_STR_CONTAINS(out, "scored     6 rows");
  csv = slurp(preds);
  ASSERT_STR_CONTAINS(csv, "\n0,");
  ASSERT_STR_CONTAINS(csv, "\n5,");
  ASSERT(strstr(csv, "\n6,") == NULL);
  free(csv);
}

TEST(eval_errors) {
  char model[256], data[256], args[1024];
  static char out[65536], err[8192];
  path_in_tmp(model, sizeof(model), "fraud-v99.safetensors");
  path_in_tmp(data, sizeof(data), "fraud.csv");
  fraud_model(model, "V99");
  fraud_data(data);
  snprintf(args, sizeof(args), "eval --task fraud --model %s --data %s", model, data);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 1);
  ASSERT_STR_CONTAINS(err, "'V99'");
  ASSERT_STR_CONTAINS(err, "Amount");
  /* A model of another kind than the task. */
  snprintf(args, sizeof(args),
           "eval --task fault-ai4i --model tests/golden/fixtures/sensor-f32.safetensors --data %s",
           data);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 1);
  snprintf(args, sizeof(args), "eval --task fraud --model %s --data %s --split nope", model, data);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 2);
  ASSERT_STR_CONTAINS(err, "'nope'");
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), "eval --task fraud --data x.csv"), 2);
  snprintf(args, sizeof(args), "eval --task fraud --model /nonexistent.st --data %s", data);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 1);
  ASSERT_STR_CONTAINS(err, "/nonexistent.st");
}

/* ---- fault-cmapss: a regression sensor model ------------------------------------------------ */

#define CM_T 5
#define CM_W 40.0f
#define CM_C 60.0f
#define CM_MEAN 640.0
#define CM_STD 2.0

static double silu(double x) { return x / (1.0 + exp(-x)); }

static double cm_sensor2(int unit, int cycle) { return 640.0 + 0.3 * cycle - 0.7 * unit; }

static void cmapss_model(const char *path) {
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"test-cmapss-1\","
           "\"quant\":\"f32\",\"d_model\":2,\"encoder\":{\"kind\":\"sensor\",\"window\":%d,"
           "\"channels\":[{\"name\":\"sensor_2\",\"mean\":%g,\"std\":%g}],"
           "\"conv\":[{\"out\":1,\"kernel\":1,\"stride\":1}],\"activation\":\"silu\"},"
           "\"moe\":[],\"task\":{\"kind\":\"regression\",\"labels\":[\"rul\"]}}",
           CM_T, CM_MEAN, CM_STD);
  static const float conv_w[] = {1}, conv_b[] = {0}, in_w[] = {1, 0}, in_b[] = {0, 1},
                     norm_w[] = {1, 1}, head_w[] = {CM_W, 0}, head_b[] = {CM_C};
  tensor_t ts[] = {{"enc.conv.0.weight", 3, {1, 1, 1}, conv_w},
                   {"enc.conv.0.bias", 1, {1}, conv_b},
                   {"enc.in.weight", 2, {2, 1}, in_w},
                   {"enc.in.bias", 1, {2}, in_b},
                   {"head.norm.weight", 1, {2}, norm_w},
                   {"head.weight", 2, {1, 2}, head_w},
                   {"head.bias", 1, {1}, head_b}};
  write_model(path, cfg, ts, 7);
}

/* The value for the unit whose sensor_2 readings end at cycle `last`, the window padded. */
static double cm_expected(int unit, int last) {
  double p = 0;
  for (int s = 0; s < CM_T; s++) {
    int cyc = last - (CM_T - 1 - s);
    if (cyc < 1) cyc = 1;
    p += silu((cm_sensor2(unit, cyc) - CM_MEAN) / CM_STD);
  }
  p /= CM_T;
  double rms = sqrt((p * p + 1.0) / 2.0 + EPS);
  return CM_W * p / rms + CM_C;
}

TEST(eval_cmapss_rul) {
  static const int cycles[] = {8, 3, 6}; /* unit 2 is shorter than the window */
  static const int rul[] = {30, 112, 7};
  char model[256], data[256], rulp[256], preds[256], args[2048];
  static char out[65536], err[8192];
  path_in_tmp(model, sizeof(model), "cmapss.safetensors");
  path_in_tmp(data, sizeof(data), "test_FD001.txt");
  path_in_tmp(rulp, sizeof(rulp), "RUL_FD001.txt");
  path_in_tmp(preds, sizeof(preds), "cmapss-pred.csv");
  cmapss_model(model);
  FILE *f = fopen(data, "w");
  ASSERT_NOT_NULL(f);
  for (int u = 1; u <= 3; u++)
    for (int c = 1; c <= cycles[u - 1]; c++) {
      fprintf(f, "%d %d -0.0007 -0.0004 100.0 518.67 %.4f", u, c, cm_sensor2(u, c));
      for (int s = 3; s <= 21; s++) fprintf(f, " %.2f", 10.0 + s);
      fputs("  \n", f); /* the trailing spaces of the official files */
    }
  fclose(f);
  f = fopen(rulp, "w");
  ASSERT_NOT_NULL(f);
  for (int u = 0; u < 3; u++) fprintf(f, "%d\n", rul[u]);
  fclose(f);
  snprintf(args, sizeof(args),
           "eval --task fault-cmapss --model %s --data %s --rul %s --json --predictions %s", model,
           data, rulp, preds);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 0);
  double se = 0, ae = 0, phm = 0, pred[3];
  for (int u = 0; u < 3; u++) {
    pred[u] = cm_expected(u + 1, cycles[u]);
    double d = pred[u] - rul[u];
    se += d * d;
    ae += fabs(d);
    phm += d < 0 ? exp(-d / 13.0) - 1.0 : exp(d / 10.0) - 1.0;
  }
  ASSERT_NEAR(metric(out, "rmse"), sqrt(se / 3), 1e-4);
  ASSERT_NEAR(metric(out, "mae"), ae / 3, 1e-4);
  ASSERT_NEAR(metric(out, "phm_score"), phm, 1e-3);
  char *csv = slurp(preds);
  char *line = csv + strlen("row,score,prediction\n");
  ASSERT(strncmp(csv, "row,score,prediction\n", 21) == 0);
  for (int u = 0; u < 3; u++) {
    long unit;
    double score, value;
    int used;
    ASSERT_EQ(sscanf(line, "%ld,%lf,%lf\n%n", &unit, &score, &value, &used), 3);
    ASSERT_EQ(unit, u + 1);
    ASSERT_NEAR(score, pred[u], 1e-5);
    ASSERT_NEAR(value, pred[u], 1e-5);
    line += used;
  }
  free(csv);
  /* --rul with a split is refused. */
  snprintf(args, sizeof(args),
           "eval --task fault-cmapss --model %s --data %s --rul %s --split test", model, data,
           rulp);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 2);
}

/* ---- records-abstracts: a multiclass text model --------------------------------------------- */

/* Tokens: the five specials, then the words. heart -> class "1", bone -> "2", else [UNK] -> "3". */
static void abstracts_model(const char *path) {
  const char *cfg =
      "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"test-abstracts-1\","
      "\"quant\":\"f32\",\"d_model\":2,\"encoder\":{\"kind\":\"text\",\"vocab_size\":7,"
      "\"max_len\":8,\"n_layer\":0,\"n_head\":1,\"d_ff\":2,\"window\":[],\"n_global\":1,"
      "\"tokenizer\":{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
      "\"max_word_bytes\":100,\"vocab\":[\"[PAD]\",\"[UNK]\",\"[CLS]\",\"[SEP]\",\"[MASK]\","
      "\"heart\",\"bone\"]}},\"moe\":[],"
      "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}}";
  /* [CLS] -> (0, 1), heart -> (1, 0), bone -> (-1, 0), anything else 0. */
  static const float tok[] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, -1, 0};
  static const float pos[16] = {0};
  static const float norm_w[] = {1, 1}, head_w[] = {10, 0, -10, 0, 0, 3, 0, -3, 0, 0},
                     head_b[] = {0, 0, 0, 0, 0};
  tensor_t ts[] = {{"enc.tok.weight", 2, {7, 2}, tok},      {"enc.pos.weight", 2, {8, 2}, pos},
                   {"enc.norm.weight", 1, {2}, norm_w},     {"head.norm.weight", 1, {2}, norm_w},
                   {"head.weight", 2, {5, 2}, head_w},      {"head.bias", 1, {5}, head_b}};
  write_model(path, cfg, ts, 6);
}

TEST(eval_abstracts_multiclass) {
  static const char *text[] = {"heart", "Heart", "bone", "liver", "bone", "heart", "skin, dry",
                               "bone", "heart", "kidney"};
  static const int label[] = {1, 1, 2, 3, 1, 2, 5, 2, 4, 3};
  static const int word_class[] = {1, 1, 2, 3, 2, 1, 3, 2, 1, 3}; /* from the weights above */
  enum { N = 10 };
  char model[256], data[256], preds[256], args[1024];
  static char out[65536], err[8192];
  path_in_tmp(model, sizeof(model), "abstracts.safetensors");
  path_in_tmp(data, sizeof(data), "abstracts.csv");
  path_in_tmp(preds, sizeof(preds), "abstracts-pred.csv");
  abstracts_model(model);
  FILE *f = fopen(data, "w");
  ASSERT_NOT_NULL(f);
  fputs("condition_label,medical_abstract\n", f);
  for (int i = 0; i < N; i++) fprintf(f, "%d,\"%s\"\n", label[i], text[i]);
  fclose(f);
  snprintf(args, sizeof(args),
           "eval --task records-abstracts --model %s --data %s --json --predictions %s", model,
           data, preds);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 0);
  int correct = 0;
  for (int i = 0; i < N; i++) correct += word_class[i] == label[i];
  ASSERT_NEAR(metric(out, "accuracy"), (double)correct / N, 1e-9);
  /* Macro F1 over the classes present in truth or prediction (1..5 here). */
  double f1sum = 0;
  int n_cls = 0;
  for (int c = 1; c <= 5; c++) {
    int tp = 0, fp = 0, fn = 0, seen = 0;
    for (int i = 0; i < N; i++) {
      tp += word_class[i] == c && label[i] == c;
      fp += word_class[i] == c && label[i] != c;
      fn += word_class[i] != c && label[i] == c;
      seen |= word_class[i] == c || label[i] == c;
    }
    if (!seen) continue;
    n_cls++;
    f1sum += tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
  }
  ASSERT_NEAR(metric(out, "macro_f1"), f1sum / n_cls, 1e-9);
  char *csv = slurp(preds);
  char *line = csv + 21;
  for (int i = 0; i < N; i++) {
    long row;
    double score;
    char cls[8];
    int used;
    ASSERT_EQ(sscanf(line, "%ld,%lf,%7[^\n]\n%n", &row, &score, cls, &used), 3);
    ASSERT_EQ(row, i);
    ASSERT_EQ(atoi(cls), word_class[i]);
    ASSERT(score > 0.2 && score <= 1.0);
    line += used;
  }
  free(csv);
}

