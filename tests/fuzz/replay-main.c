/*
 * Runs the fuzz target over every file of the committed seed corpus (and any extra
 * directories given as arguments), without libFuzzer, so that the suite's compiler and
 * sanitizers check the same code paths as a unit test. Seeds are named for what they must do:
 * "valid-*" must open as safetensors files, "model-*" must also load as models, "invalid-*"
 * must be rejected by the safetensors reader.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "moe/moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) return NULL;
  unsigned char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      unsigned char *b = realloc(buf, cap);
      if (b == NULL) break;
      buf = b;
    }
    size_t r = fread(buf + n, 1, cap - n, fp);
    if (r == 0) break;
    n += r;
  }
  fclose(fp);
  *len = n;
  return buf;
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Returns the number of files run, or -1 on an expectation failure. */
static int run_dir(const char *dir, int check_names) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "cannot open corpus directory %s\n", dir);
    return -1;
  }
  int n = 0, bad = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len = 0;
    unsigned char *buf = read_file(path, &len);
    if (buf == NULL && len != 0) {
      fprintf(stderr, "cannot read %s\n", path);
      bad++;
      continue;
    }
    LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
    if (check_names) {
      char err[512] = "";
      moe_st_file_t *file = NULL;
      int st = moe_st_open_memory(buf ? buf : (const uint8_t *)"", len, &file, err, sizeof err);
      moe_st_close(file);
      if (has_prefix(e->d_name, "valid-") || has_prefix(e->d_name, "model-")) {
        if (st != MOE_OK) {
          fprintf(stderr, "%s: expected a valid safetensors file: %s\n", path, err);
          bad++;
        }
      } else if (has_prefix(e->d_name, "invalid-")) {
        if (st == MOE_OK) {
          fprintf(stderr, "%s: expected the safetensors reader to reject it\n", path);
          bad++;
        } else {
          printf("%-40s %s: %s\n", e->d_name, moe_err_name(st), err);
        }
      }
      if (has_prefix(e->d_name, "model-")) {
        moe_model_t *model = NULL;
        int rc = moe_model_load_memory(buf, len, &model, err, sizeof err);
        moe_model_free(model);
        if (rc != MOE_OK) {
          fprintf(stderr, "%s: expected a loadable model: %s\n", path, err);
          bad++;
        }
      }
    }
    free(buf);
    n++;
  }
  closedir(d);
  return bad ? -1 : n;
}

int main(int argc, char **argv) {
  const char *src = getenv("SLUICE_SOURCE_DIR");
  char corpus[4096];
  snprintf(corpus, sizeof corpus, "%s/tests/fuzz/corpus", src ? src : ".");
  int n = run_dir(corpus, 1);
  if (n < 0) return 1;
  if (n < 8) {
    fprintf(stderr, "%s holds only %d seeds; expected at least 8\n", corpus, n);
    return 1;
  }
  int total = n;
  /* The golden model fixtures are valid models of every kind: good inputs too, when present. */
  char golden[4096];
  snprintf(golden, sizeof golden, "%s/tests/golden/fixtures", src ? src : ".");
  DIR *g = opendir(golden);
  if (g != NULL) {
    closedir(g);
    int k = run_dir(golden, 0);
    if (k < 0) return 1;
    total += k;
  }
  for (int i = 1; i < argc; i++) {
    int k = run_dir(argv[i], 0);
    if (k < 0) return 1;
    total += k;
  }
  printf("replayed %d inputs\n", total);
  return 0;
}
