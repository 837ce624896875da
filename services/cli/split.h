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
 * Cross-validation folds of the grouped tasks (C-MAPSS and text). Fold 0 is the standard
 * split; fold f rotates the groups' places by 15 * f percent before the same 70 / 15 / 15 cut,
 * so the six folds' test parts are disjoint and cover 90 % of the groups (SPLITS.md). The
 * time-ordered tasks (fraud, fault-ai4i) have fold 0 only: rotating time would train on the
 * future.
 */
#define CLI_SPLIT_FOLDS 6

/* CLI_OK when fold is a valid fold of task (0 for every task, 1 .. 5 for the grouped ones). */
int cli_split_fold_check(cli_task_t task, int fold);

/*
 * Parses the value of a --fold option for task into *fold. On a bad value returns CLI_EINVAL
 * with a sentence in err saying which values the task takes.
 */
int cli_split_fold_parse(cli_task_t task, const char *text, int *fold, char *err,
                         size_t err_size);

/*
 * Fills part[0..t->n_rows) (caller-allocated) for the given fold (cli_split_fold_check must
 * pass). For C-MAPSS also fills, when cut is not NULL, cut[i] = the last observed cycle of row
 * i's unit (its full length for training units). Returns CLI_ENOMEM, CLI_EINVAL (a bad fold)
 * or CLI_OK.
 */
int cli_split_assign(const cli_table_t *t, int fold, uint8_t *part, double *cut);

/* The C-MAPSS truncation rule for a held-out unit of n_cycles: the RUL left after the cut. */
long cli_split_cmapss_rul(long unit, long n_cycles);

#endif /* CLI_SPLIT_H */
