/*
 * bench-pipeline-model: writes the small fraud model the pipeline benchmark scores with, as
 * models/ ships none yet. It is the worker tests' generator (tests/unit/worker/fraud-model.h:
 * libmoe's own safetensors writer, one MoE block of 4 experts top-2 plus a shared expert,
 * d_model 16, fixed-seed random weights) over all 46 features the worker builds, so that the
 * worker fills and the database stores full-width input vectors. Its scores mean nothing;
 * the threshold only sets how many events raise an alert.
 *
 * Usage: bench-pipeline-model OUT.safetensors [THRESHOLD (default 0.5)]
 */
#define TEST_NO_MAIN
#include <stdio.h>
#include <stdlib.h>

#include "fraud-input.h"
#include "fraud-model.h"

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: bench-pipeline-model OUT.safetensors [THRESHOLD]\n");
    return 2;
  }
  double threshold = argc == 3 ? strtod(argv[2], NULL) : 0.5;
  const char *names[WK_FRAUD_N_FEATURES];
  for (size_t i = 0; i < WK_FRAUD_N_FEATURES; i++) names[i] = wk_fraud_feature_name(i);
  fm_write(argv[1], names, WK_FRAUD_N_FEATURES, "bench-fraud-1", threshold, "binary");
  printf("wrote %s: %d inputs, threshold %g\n", argv[1], (int)WK_FRAUD_N_FEATURES, threshold);
  return 0;
}
