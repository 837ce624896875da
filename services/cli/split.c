/* The split rules of split.h; bench/quality/SPLITS.md is their prose version. */
#include "split.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_part_name(cli_part_t part) {
  switch (part) {
  case CLI_PART_TRAIN: return "train";
  case CLI_PART_VAL: return "validation";
  case CLI_PART_TEST: return "test";
  default: return "unused";
  }
}

typedef struct ord_s {
  double key;
  size_t i;
} ord_t;

static int cmp_ord(const void *a, const void *b) {
  const ord_t *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* Rows sorted by (order, position in the table): first 70 % train, next 15 % validation. */
static int split_by_order(const cli_table_t *t, uint8_t *part) {
  size_t n = t->n_rows;
  ord_t *o = malloc(n * sizeof(*o));
  if (o == NULL) return CLI_ENOMEM;
  for (size_t i = 0; i < n; i++) o[i] = (ord_t){t->order[i], i};
  qsort(o, n, sizeof(*o), cmp_ord);
  size_t n_train = n * 70 / 100, n_trval = n * 85 / 100;
  for (size_t k = 0; k < n; k++)
    part[o[k].i] = k < n_train ? CLI_PART_TRAIN : k < n_trval ? CLI_PART_VAL : CLI_PART_TEST;
  free(o);
  return CLI_OK;
}

long cli_split_cmapss_rul(long unit, long n_cycles) {
  char key[48];
  int len = snprintf(key, sizeof(key), "cmapss-cut-%ld", unit);
  uint64_t h = cli_fnv1a64(key, (size_t)len);
  /* Like the official test files: RUL between 5 and 145, and at least 31 cycles observed. */
  long hi = n_cycles - 31 < 145 ? n_cycles - 31 : 145;
  if (hi < 1) hi = n_cycles - 1 > 0 ? n_cycles - 1 : 0;
  long lo = hi < 5 ? hi : 5;
  return lo + (long)(h % (uint64_t)(hi - lo + 1));
}

typedef struct unit_s {
  uint64_t hash;
  uint64_t unit;
  long n_cycles;
  int part;
} unit_t;

static int cmp_unit_hash(const void *a, const void *b) {
  const unit_t *x = a, *y = b;
  if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
  return x->unit < y->unit ? -1 : x->unit > y->unit;
}

/*
 * Units sorted by FNV-1a of their decimal id: first 70 % train, next 15 % validation, rest
 * test. Held-out units are cut at cli_split_cmapss_rul() cycles before their end; the cycles
 * after the cut are unused. With several files, units are keyed by (file, unit).
 */
static int split_cmapss(const cli_table_t *t, int fold, uint8_t *part, double *cut) {
  size_t n = t->n_rows, n_unit = 0;
  unit_t *u = malloc((n ? n : 1) * sizeof(*u));
  size_t *ui = malloc((n ? n : 1) * sizeof(size_t));
  if (u == NULL || ui == NULL) {
    free(u);
    free(ui);
    return CLI_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t key = t->group[i] | ((uint64_t)t->file_index[i] << 32);
    if (n_unit == 0 || u[n_unit - 1].unit != key) {
      char s[48];
      int len = t->file_index[i] == 0
                    ? snprintf(s, sizeof(s), "%llu", (unsigned long long)t->group[i])
                    : snprintf(s, sizeof(s), "%u:%llu", t->file_index[i],
                               (unsigned long long)t->group[i]);
      u[n_unit++] = (unit_t){cli_fnv1a64(s, (size_t)len), key, 0, 0};
    }
    u[n_unit - 1].n_cycles++;
    ui[i] = n_unit - 1;
  }
  /* Sort a copy so that ui[] keeps pointing at file-order units. */
  unit_t *s = malloc(n_unit * sizeof(*s));
  if (s == NULL) {
    free(u);
    free(ui);
    return CLI_ENOMEM;
  }
  memcpy(s, u, n_unit * sizeof(*s));
  qsort(s, n_unit, sizeof(*s), cmp_unit_hash);
  size_t n_train = n_unit * 70 / 100, n_trval = n_unit * 85 / 100;
  size_t shift = n_unit * 15 * (size_t)fold / 100;
  for (size_t k = 0; k < n_unit; k++) {
    size_t r = (k + shift) % n_unit;
    int p = r < n_train ? CLI_PART_TRAIN : r < n_trval ? CLI_PART_VAL : CLI_PART_TEST;
    for (size_t j = 0; j < n_unit; j++)
      if (u[j].unit == s[k].unit) u[j].part = p;
  }
  for (size_t i = 0; i < n; i++) {
    const unit_t *x = &u[ui[i]];
    long last = x->n_cycles;
    if (x->part != CLI_PART_TRAIN) last -= cli_split_cmapss_rul((long)t->group[i], x->n_cycles);
    part[i] = (uint8_t)((long)t->order[i] <= last ? x->part : CLI_PART_NONE);
    if (cut != NULL) cut[i] = (double)last;
  }
  free(s);
  free(u);
  free(ui);
  return CLI_OK;
}

int cli_split_fold_check(cli_task_t task, int fold) {
  if (fold == 0) return CLI_OK;
  if (fold < 0 || fold >= CLI_SPLIT_FOLDS) return CLI_EINVAL;
  return task == CLI_TASK_FRAUD || task == CLI_TASK_AI4I ? CLI_EINVAL : CLI_OK;
}

int cli_split_fold_parse(cli_task_t task, const char *text, int *fold, char *err,
                         size_t err_size) {
  char *end;
  long v = strtol(text, &end, 10);
  if (end == text || *end != '\0' || cli_split_fold_check(task, v >= INT_MIN && v <= INT_MAX
                                                                      ? (int)v
                                                                      : -1) != CLI_OK) {
    if (task == CLI_TASK_FRAUD || task == CLI_TASK_AI4I)
      return cli__fail(CLI_EINVAL, err, err_size,
                       "--fold '%s': %s is split by time and has fold 0 only", text,
                       cli_task_name(task));
    return cli__fail(CLI_EINVAL, err, err_size, "--fold '%s': %s has folds 0 to %d", text,
                     cli_task_name(task), CLI_SPLIT_FOLDS - 1);
  }
  *fold = (int)v;
  return CLI_OK;
}

int cli_split_assign(const cli_table_t *t, int fold, uint8_t *part, double *cut) {
  if (cli_split_fold_check(t->task, fold) != CLI_OK) return CLI_EINVAL;
  switch (t->task) {
  case CLI_TASK_FRAUD:
  case CLI_TASK_AI4I: return split_by_order(t, part);
  case CLI_TASK_CMAPSS: return split_cmapss(t, fold, part, cut);
  default:
    /* Text: the group hash decides, so identical texts always land together. */
    for (size_t i = 0; i < t->n_rows; i++) {
      uint64_t b = (t->group[i] % 100 + 15 * (uint64_t)fold) % 100;
      part[i] = b < 70 ? CLI_PART_TRAIN : b < 85 ? CLI_PART_VAL : CLI_PART_TEST;
    }
    return CLI_OK;
  }
}
