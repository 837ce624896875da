/*
 * The train / validation / test split of every task, deterministic and identical to the one
 * bench/quality/baselines.py makes (the rules are written out in bench/quality/SPLITS.md and a
 * test compares both). Nothing random is drawn: order-based tasks cut at 70 % and 85 % of the
 * rows in time order, grouped tasks place whole groups by a 64-bit FNV-1a hash.
 */
#ifndef CLI_SPLIT_H
#define CLI_SPLIT_H

#include <stdint.h>

#include "dataset.h"

typedef enum {
  CLI_PART_TRAIN = 0,
  CLI_PART_VAL = 1,
  CLI_PART_TEST = 2,
  CLI_PART_NONE = 3 /* not used: C-MAPSS cycles after a held-out unit's truncation point */
} cli_part_t;

/* "train", "validation", "test", "unused". */
const char *cli_part_name(cli_part_t part);

/*
 * Fills part[0..t->n_rows) (caller-allocated). For C-MAPSS also fills, when cut is not NULL,
 * cut[i] = the last observed cycle of row i's unit (its full length for training units).
 * Returns CLI_ENOMEM or CLI_OK.
 */
int cli_split_assign(const cli_table_t *t, uint8_t *part, double *cut);

/* The C-MAPSS truncation rule for a held-out unit of n_cycles: the RUL left after the cut. */
long cli_split_cmapss_rul(long unit, long n_cycles);

#endif /* CLI_SPLIT_H */
