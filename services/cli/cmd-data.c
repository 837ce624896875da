/*
 * `sluice data describe`: loads one task's files the way training will, splits them, and
 * prints what is there: rows used and dropped (with the reason), features, label balance,
 * groups and the split, as a table or as one JSON object.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "split.h"

typedef struct part_stats_s {
  size_t rows;
  size_t groups;
  double label_sum;  /* positives for binary, sum for values */
  double label_min, label_max;
  size_t *class_count; /* (n_class) */
} part_stats_t;

typedef struct grp_s {
  uint64_t key;
  uint8_t part;
} grp_t;

static int cmp_grp(const void *a, const void *b) {
  const grp_t *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->part - y->part;
}

static const char *usage_of(const char *name) {
  for (const cli_cmd_t *c = cli_commands; c->name; c++)
    if (strcmp(c->name, name) == 0) return c->usage;
  return "";
}

/* The distinct (group, part) pairs: groups per part, and in total. */
static int count_groups(const cli_table_t *t, const uint8_t *part, part_stats_t *ps,
                        size_t *n_groups) {
  grp_t *g = malloc(t->n_rows * sizeof(*g));
  if (g == NULL) return CLI_ENOMEM;
  for (size_t i = 0; i < t->n_rows; i++)
    g[i] = (grp_t){t->group[i] | ((uint64_t)t->file_index[i] << 56), part[i]};
  qsort(g, t->n_rows, sizeof(*g), cmp_grp);
  *n_groups = 0;
  for (size_t i = 0; i < t->n_rows; i++) {
    if (i == 0 || g[i].key != g[i - 1].key) (*n_groups)++;
    if (i == 0 || g[i].key != g[i - 1].key || g[i].part != g[i - 1].part) ps[g[i].part].groups++;
  }
  free(g);
  return CLI_OK;
}

static void print_table(const cli_table_t *t, const part_stats_t *ps, size_t n_groups,
                        int fold) {
  size_t dropped = 0;
  for (size_t k = 0; k < t->n_drop; k++) dropped += t->drop[k].count;
  printf("task       %s\n", cli_task_name(t->task));
  for (size_t f = 0; f < t->n_file; f++) printf("file       %s\n", t->file[f]);
  printf("rows       %zu used, %zu dropped\n", t->n_rows, dropped);
  for (size_t k = 0; k < t->n_drop; k++)
    printf("  dropped  %zu: %s\n", t->drop[k].count, t->drop[k].reason);
  printf("features   %zu numeric", t->n_num);
  for (size_t j = 0; j < t->n_num; j++) printf("%s%s", j ? ", " : ": ", t->num_name[j]);
  printf("\n           %zu categorical", t->n_cat);
  for (size_t c = 0; c < t->n_cat; c++) {
    printf("%s%s {", c ? ", " : ": ", t->cat_name[c]);
    for (size_t l = 0; l < t->n_cat_level[c]; l++)
      printf("%s%s", l ? ", " : "", t->cat_level[c][l]);
    printf("}");
  }
  printf("\n           text: %s\n", t->text ? "yes" : "no");
  const part_stats_t *all = &ps[4];
  switch (t->label_kind) {
  case CLI_LABEL_BINARY:
    printf("label      %s (binary): %.0f positive (%.2f %%), %.0f negative\n", t->label_name,
           all->label_sum, 100.0 * all->label_sum / (double)all->rows,
           (double)all->rows - all->label_sum);
    break;
  case CLI_LABEL_VALUE:
    printf("label      %s (value): min %g, mean %.2f, max %g\n", t->label_name, all->label_min,
           all->label_sum / (double)all->rows, all->label_max);
    break;
  case CLI_LABEL_CLASS:
    printf("label      %s (%zu classes):\n", t->label_name, t->n_class);
    for (size_t c = 0; c < t->n_class; c++)
      printf("  %6zu  %-32s  train %zu, validation %zu, test %zu\n", all->class_count[c],
             t->class_name[c], ps[0].class_count[c], ps[1].class_count[c], ps[2].class_count[c]);
    break;
  }
  printf("groups     %zu", n_groups);
  if (t->task == CLI_TASK_CMAPSS) printf(" engine units");
  else if (t->text) printf(" distinct texts");
  else printf(" (one per row)");
  printf("\nsplit      %s\n", t->task == CLI_TASK_CMAPSS   ? "by engine unit, held-out units cut"
                            : t->text != NULL             ? "by text hash"
                            : t->task == CLI_TASK_FRAUD   ? "by Time (70/15/15)"
                                                          : "by UDI (70/15/15)");
  if (fold != 0) printf("fold       %d (groups rotated by %d %%)\n", fold, 15 * fold);
  for (int p = 0; p < 4; p++) {
    if (p == CLI_PART_NONE && ps[p].rows == 0) continue;
    printf("  %-10s %6zu rows, %5zu groups", cli_part_name((cli_part_t)p), ps[p].rows,
           ps[p].groups);
    if (t->label_kind == CLI_LABEL_BINARY && ps[p].rows)
      printf(", %.0f positive (%.2f %%)", ps[p].label_sum,
             100.0 * ps[p].label_sum / (double)ps[p].rows);
    printf("\n");
  }
}

static void print_json(const cli_table_t *t, const part_stats_t *ps, size_t n_groups,
                       int fold) {
  cli_json_t js;
  cli_json_init(&js, stdout);
  cli_json_obj_begin(&js);
  cli_json_key(&js, "task");
  cli_json_str(&js, cli_task_name(t->task));
  cli_json_key(&js, "files");
  cli_json_arr_begin(&js);
  for (size_t f = 0; f < t->n_file; f++) cli_json_str(&js, t->file[f]);
  cli_json_arr_end(&js);
  cli_json_key(&js, "rows");
  cli_json_int(&js, (long long)t->n_rows);
  cli_json_key(&js, "dropped");
  cli_json_arr_begin(&js);
  for (size_t k = 0; k < t->n_drop; k++) {
    cli_json_obj_begin(&js);
    cli_json_key(&js, "reason");
    cli_json_str(&js, t->drop[k].reason);
    cli_json_key(&js, "rows");
    cli_json_int(&js, (long long)t->drop[k].count);
    cli_json_obj_end(&js);
  }
  cli_json_arr_end(&js);
  cli_json_key(&js, "numeric_features");
  cli_json_arr_begin(&js);
  for (size_t j = 0; j < t->n_num; j++) cli_json_str(&js, t->num_name[j]);
  cli_json_arr_end(&js);
  cli_json_key(&js, "categorical_features");
  cli_json_obj_begin(&js);
  for (size_t c = 0; c < t->n_cat; c++) {
    cli_json_key(&js, t->cat_name[c]);
    cli_json_arr_begin(&js);
    for (size_t l = 0; l < t->n_cat_level[c]; l++) cli_json_str(&js, t->cat_level[c][l]);
    cli_json_arr_end(&js);
  }
  cli_json_obj_end(&js);
  cli_json_key(&js, "text");
  cli_json_bool(&js, t->text != NULL);
  cli_json_key(&js, "label");
  cli_json_obj_begin(&js);
  cli_json_key(&js, "name");
  cli_json_str(&js, t->label_name);
  cli_json_key(&js, "kind");
  cli_json_str(&js, t->label_kind == CLI_LABEL_BINARY  ? "binary"
                    : t->label_kind == CLI_LABEL_CLASS ? "class"
                                                       : "value");
  if (t->label_kind == CLI_LABEL_CLASS) {
    cli_json_key(&js, "classes");
    cli_json_obj_begin(&js);
    for (size_t c = 0; c < t->n_class; c++) {
      cli_json_key(&js, t->class_name[c]);
      cli_json_int(&js, (long long)ps[4].class_count[c]);
    }
    cli_json_obj_end(&js);
  }
  cli_json_obj_end(&js);
  cli_json_key(&js, "groups");
  cli_json_int(&js, (long long)n_groups);
  cli_json_key(&js, "fold");
  cli_json_int(&js, fold);
  cli_json_key(&js, "split");
  cli_json_obj_begin(&js);
  for (int p = 0; p < 4; p++) {
    cli_json_key(&js, cli_part_name((cli_part_t)p));
    cli_json_obj_begin(&js);
    cli_json_key(&js, "rows");
    cli_json_int(&js, (long long)ps[p].rows);
    cli_json_key(&js, "groups");
    cli_json_int(&js, (long long)ps[p].groups);
    if (t->label_kind == CLI_LABEL_BINARY) {
      cli_json_key(&js, "positive");
      cli_json_int(&js, (long long)ps[p].label_sum);
    } else if (t->label_kind == CLI_LABEL_VALUE && ps[p].rows) {
      cli_json_key(&js, "label_mean");
      cli_json_num(&js, ps[p].label_sum / (double)ps[p].rows);
    } else if (t->label_kind == CLI_LABEL_CLASS) {
      cli_json_key(&js, "classes");
      cli_json_arr_begin(&js);
      for (size_t c = 0; c < t->n_class; c++) cli_json_int(&js, (long long)ps[p].class_count[c]);
      cli_json_arr_end(&js);
    }
    cli_json_obj_end(&js);
  }
  cli_json_obj_end(&js);
  cli_json_obj_end(&js);
}

int cli_cmd_data_describe(int argc, char **argv) {
  static const struct option opts[] = {{"task", required_argument, NULL, 't'},
                                       {"data", required_argument, NULL, 'd'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"fold", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  const char *task_name = NULL, *fold_text = "0";
  int fold = 0;
  const char **files = calloc((size_t)argc + 1, sizeof(char *));
  size_t n_file = 0;
  int json = 0, c, status = CLI_EXIT_FAIL, loaded = 0;
  cli_table_t t;
  uint8_t *part = NULL;
  part_stats_t ps[5];
  memset(ps, 0, sizeof(ps));
  if (files == NULL) return CLI_EXIT_FAIL;
  optind = 1;
  opterr = 0;
  /* A leading ':' makes getopt return ':' for a missing value and '?' for an unknown option. */
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case 't': task_name = optarg; break;
    case 'd': files[n_file++] = optarg; break;
    case 'j': json = 1; break;
    case 'f': fold_text = optarg; break;
    default:
      fprintf(stderr, "sluice data describe: %s option '%s'\n\n",
              c == ':' ? "missing value for" : "unknown", argv[optind - 1]);
      fputs(usage_of("data describe"), stderr);
      status = CLI_EXIT_USAGE;
      goto done;
    }
  }
  /* `--data a.csv b.csv`: getopt moved the extra files to the end. */
  for (int i = optind; i < argc; i++) files[n_file++] = argv[i];
  cli_task_t task;
  if (task_name == NULL || n_file == 0) {
    fprintf(stderr, "sluice data describe: --task and --data are required\n\n");
    fputs(usage_of("data describe"), stderr);
    status = CLI_EXIT_USAGE;
    goto done;
  }
  if (cli_task_parse(task_name, &task) != CLI_OK) {
    fprintf(stderr,
            "sluice data describe: unknown task '%s' (fraud, fault-ai4i, fault-cmapss, "
            "records-mtsamples, records-abstracts)\n",
            task_name);
    status = CLI_EXIT_USAGE;
    goto done;
  }
  char err[512];
  if (cli_split_fold_parse(task, fold_text, &fold, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice data describe: %s\n\n", err);
    fputs(usage_of("data describe"), stderr);
    status = CLI_EXIT_USAGE;
    goto done;
  }
  if (cli_table_load(&t, task, files, n_file, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice data describe: %s\n", err);
    goto done;
  }
  loaded = 1;
  part = malloc(t.n_rows);
  if (part == NULL || cli_split_assign(&t, fold, part, NULL) != CLI_OK) {
    fprintf(stderr, "sluice data describe: out of memory\n");
    goto done;
  }
  for (int p = 0; p < 5; p++) {
    ps[p].label_min = INFINITY;
    ps[p].label_max = -INFINITY;
    if (t.n_class && (ps[p].class_count = calloc(t.n_class, sizeof(size_t))) == NULL) goto done;
  }
  for (size_t i = 0; i < t.n_rows; i++) {
    int idx[2] = {part[i], 4};
    for (int k = 0; k < 2; k++) {
      part_stats_t *s = &ps[idx[k]];
      double y = t.label[i];
      s->rows++;
      if (t.label_kind == CLI_LABEL_CLASS)
        s->class_count[(size_t)y]++;
      else
        s->label_sum += y;
      if (y < s->label_min) s->label_min = y;
      if (y > s->label_max) s->label_max = y;
    }
  }
  size_t n_groups;
  if (count_groups(&t, part, ps, &n_groups) != CLI_OK) goto done;
  if (json)
    print_json(&t, ps, n_groups, fold);
  else
    print_table(&t, ps, n_groups, fold);
  status = CLI_EXIT_OK;
done:
  for (int p = 0; p < 5; p++) free(ps[p].class_count);
  free(part);
  if (loaded) cli_table_close(&t);
  free(files);
  return status;
}
