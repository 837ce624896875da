/*
 * `sluice`: the command line of Sluice. main() only hands argv to cli_main() (dispatch.c),
 * which finds the command in the table of commands.c; each command lives in its own file.
 */
#include <cblas.h>

#include "cli.h"

int main(int argc, char **argv) {
  /* Training must be deterministic for a seed, and OpenBLAS's results depend on how many
   * threads split a GEMM (the same seed gave different model files at different thread
   * counts). Every command here runs its BLAS on one thread; a single core is also what the
   * engine's figures are stated for. */
  openblas_set_num_threads(1);
  return cli_main(argc, argv);
}
