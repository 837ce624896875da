/*
 * Tests of `sluice inspect` on the golden fixtures (tests/golden/fixtures, written by
 * gen_golden.py): the --json object is parsed back and checked against facts independent of
 * the command (the file's own size, the fixture generator's names and config), a damaged file
 * gives the loader's message and exit 1; and the JSON reader (json-value.c) on its own.
 */
#include "test.h"

#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli.h"
#include "cli-test-run.h"
#include "json-value.h"

/* `sluice ARGS`: the exit status, stdout in out and stderr in err (may be NULL). */
static int run(char *out, size_t size, char *err, size_t err_size, const char *args) {
  return cli_test_sluice(out, size, err, err_size, args);
}

static long long file_size(const char *path) {
  struct stat st;
  ASSERT_EQ(stat(path, &st), 0);
  return (long long)st.st_size;
}

/* The safetensors header length, read from the file's first 8 bytes. */
static long long header_len(const char *path) {
  FILE *f = fopen(path, "rb");
  ASSERT_NOT_NULL(f);
  unsigned char b[8];
  ASSERT_EQ(fread(b, 1, 8, f), 8);
  fclose(f);
  long long n = 0;
  for (int i = 7; i >= 0; i--) n = n * 256 + b[i];
  return n;
}

TEST(inspect_json_all_fixtures) {
  static const char *kinds[] = {"tabular", "sensor", "text"};
  static const char *quants[] = {"f32", "q8_0", "q4_0"};
  static char out[1 << 20];
  for (int k = 0; k < 3; k++) {
    for (int q = 0; q < 3; q++) {
      char path[256], args[512], want[64];
      snprintf(path, sizeof(path), "tests/golden/fixtures/%s-%s.safetensors", kinds[k],
               quants[q]);
      snprintf(args, sizeof(args), "inspect --json %s", path);
      ASSERT_EQ(run(out, sizeof(out), NULL, 0, args), 0);
      cli_jv_t v;
      char perr[160];
      ASSERT_OK(cli_jv_parse(out, strlen(out), &v, perr, sizeof(perr)));
      snprintf(want, sizeof(want), "golden-%s-%s", kinds[k], quants[q]);
      ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&v, "version"), ""), want);
      ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&v, "quant"), ""), quants[q]);
      ASSERT_STR_EQ(cli_jv_str(cli_jv_get(cli_jv_get(&v, "encoder"), "kind"), ""), kinds[k]);
      /* The tensors account for every byte after the header: nothing listed twice or missed. */
      const cli_jv_t *ts = cli_jv_get(&v, "tensors");
      ASSERT_NOT_NULL(ts);
      ASSERT(ts->n > 10);
      double sum = 0;
      for (size_t i = 0; i < ts->n; i++) sum += cli_jv_num(cli_jv_get(&ts->items[i], "bytes"), -1);
      ASSERT_EQ((long long)sum, file_size(path) - 8 - header_len(path));
      ASSERT_EQ((long long)cli_jv_num(cli_jv_get(&v, "tensor_bytes"), -1), (long long)sum);
      /* fp32 files: every tensor is F32, so the parameter count is bytes / 4. */
      if (q == 0) {
        for (size_t i = 0; i < ts->n; i++)
          ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&ts->items[i], "dtype"), ""), "F32");
        ASSERT_EQ((long long)cli_jv_num(cli_jv_get(&v, "n_params"), -1), (long long)sum / 4);
      }
      /* The provenance gen_golden.py writes. */
      const cli_jv_t *prov = cli_jv_get(cli_jv_get(&v, "config"), "provenance");
      ASSERT_STR_EQ(cli_jv_str(cli_jv_get(prov, "generator"), ""), "tests/golden/gen_golden.py");
      cli_jv_free(&v);
    }
  }
}

TEST(inspect_json_tabular_details) {
  static char out[1 << 20];
  ASSERT_EQ(run(out, sizeof(out), NULL, 0,
                "inspect --json tests/golden/fixtures/tabular-q8_0.safetensors"),
            0);
  cli_jv_t v;
  ASSERT_OK(cli_jv_parse(out, strlen(out), &v, NULL, 0));
  const cli_jv_t *task = cli_jv_get(&v, "task");
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(task, "kind"), ""), "binary");
  ASSERT_NEAR(cli_jv_num(cli_jv_get(task, "threshold"), -1), 0.7, 1e-6);
  const cli_jv_t *labels = cli_jv_get(task, "labels");
  ASSERT_EQ(labels->n, 2);
  ASSERT_STR_EQ(labels->items[1].str, "fraud");
  const cli_jv_t *moe = cli_jv_get(&v, "moe");
  ASSERT_EQ(moe->n, 2);
  ASSERT_EQ((int)cli_jv_num(cli_jv_get(&moe->items[1], "top_k"), 0), 2);
  const cli_jv_t *num = cli_jv_get(cli_jv_get(&v, "encoder"), "numeric");
  ASSERT_EQ(num->n, 6);
  ASSERT_STR_EQ(num->items[5].str, "x5");
  /* A quantized expert weight: I8, (d_ff, d_model) = (32, 32), one byte each. */
  const cli_jv_t *ts = cli_jv_get(&v, "tensors");
  int found = 0;
  for (size_t i = 0; i < ts->n; i++) {
    if (strcmp(cli_jv_str(cli_jv_get(&ts->items[i], "name"), ""), "moe.1.expert.3.up.weight"))
      continue;
    found = 1;
    ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&ts->items[i], "dtype"), ""), "I8");
    const cli_jv_t *shape = cli_jv_get(&ts->items[i], "shape");
    ASSERT_EQ(shape->n, 2);
    ASSERT_EQ((int)shape->items[0].num, 32);
    ASSERT_EQ((long long)cli_jv_num(cli_jv_get(&ts->items[i], "bytes"), 0), 32 * 32);
  }
  ASSERT(found);
  cli_jv_free(&v);
  /* The table names the same things. */
  ASSERT_EQ(run(out, sizeof(out), NULL, 0, "inspect tests/golden/fixtures/tabular-q8_0.safetensors"),
            0);
  ASSERT_STR_CONTAINS(out, "golden-tabular-q8_0");
  ASSERT_STR_CONTAINS(out, "threshold    0.7");
  ASSERT_STR_CONTAINS(out, "moe.1.expert.3.up.weight");
}

TEST(inspect_bad_files) {
  static char out[65536], err[8192];
  /* A truncated copy: the loader's message, exit 1, nothing on stdout. */
  char trunc[64];
  snprintf(trunc, sizeof(trunc), "/tmp/test-cli-inspect-%ld.st", (long)getpid());
  FILE *in = fopen("tests/golden/fixtures/tabular-f32.safetensors", "rb");
  FILE *o = fopen(trunc, "wb");
  ASSERT_NOT_NULL(in);
  ASSERT_NOT_NULL(o);
  char buf[3000];
  size_t n = fread(buf, 1, sizeof(buf), in);
  ASSERT_EQ(n, sizeof(buf));
  fwrite(buf, 1, n, o);
  fclose(in);
  fclose(o);
  char args[256];
  snprintf(args, sizeof(args), "inspect %s", trunc);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), args), 1);
  ASSERT_STR_EQ(out, "");
  ASSERT_STR_CONTAINS(err, trunc);
  ASSERT_STR_CONTAINS(err, "header length");
  remove(trunc);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), "inspect /nonexistent/model.safetensors"), 1);
  ASSERT_STR_CONTAINS(err, "/nonexistent/model.safetensors");
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), "inspect"), 2);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), "inspect a b"), 2);
  ASSERT_EQ(run(out, sizeof(out), err, sizeof(err), "inspect --bogus x"), 2);
}

TEST(json_value_reader) {
  const char *doc = "{\"a\": [1, -2.5e2, true, false, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\","
                    " \"o\": {}}";
  cli_jv_t v;
  ASSERT_OK(cli_jv_parse(doc, strlen(doc), &v, NULL, 0));
  const cli_jv_t *a = cli_jv_get(&v, "a");
  ASSERT_EQ(a->n, 5);
  ASSERT_NEAR(a->items[1].num, -250.0, 0);
  ASSERT_EQ(a->items[2].kind, CLI_JV_BOOL);
  ASSERT_EQ(a->items[2].b, 1);
  ASSERT_EQ(a->items[4].kind, CLI_JV_NULL);
  ASSERT_STR_EQ(cli_jv_str(cli_jv_get(&v, "s"), ""), "x\xc3\xa9\xf0\x9f\x98\x80\n");
  ASSERT_EQ(cli_jv_get(&v, "o")->kind, CLI_JV_OBJ);
  ASSERT_NULL(cli_jv_get(&v, "missing"));
  /* Re-emitted compactly, it parses to the same text again. */
  char buf[256];
  FILE *f = fmemopen(buf, sizeof(buf), "w");
  cli_jv_print(f, &v);
  fclose(f);
  ASSERT_STR_EQ(buf, "{\"a\":[1,-250,true,false,null],\"s\":\"x\xc3\xa9\xf0\x9f\x98\x80\\n\",\"o\":{}}");
  cli_jv_free(&v);
  static const char *bad[] = {"", "{", "[1,]", "{\"a\":1,\"a\":2}", "01", "\"\\x\"", "[1] 2",
                              "{\"a\" 1}", "\"\\ud800\"", "nul", "[\"a\nb\"]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char err[160] = "";
    ASSERT_EQ(cli_jv_parse(bad[i], strlen(bad[i]), &v, err, sizeof(err)), CLI_EFORMAT);
    ASSERT_STR_CONTAINS(err, "byte ");
  }
  /* Nesting beyond the limit is refused, not a stack overflow. */
  char deep[200];
  memset(deep, '[', sizeof(deep));
  ASSERT_EQ(cli_jv_parse(deep, sizeof(deep), &v, NULL, 0), CLI_EFORMAT);
}
