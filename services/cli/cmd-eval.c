/*
 * `sluice eval`: scores a task's data files with a model file and prints the task's metrics.
 *
 * The data table (dataset.h) is mapped to the model's inputs BY NAME: the model config lists
 * its numeric and categorical features (tabular) or channels (sensor); each must be a column of
 * the task's table, else the command fails naming it. Categorical values are looked up in the
 * model's vocabulary (a value it has never seen becomes id 0, "<unk>" by convention, and is
 * counted on stderr). Text is tokenized with the model's own tokenizer (config
 * encoder.tokenizer): "[CLS]" then the WordPiece ids, cut to the model's max_len.
 *
 * C-MAPSS is scored once per engine unit, at its last observed cycle (the cut of a held-out unit
 * of the split, bench/quality/SPLITS.md, or the last row of an official test file with --rul),
 * from the window of the model's length that ends there; an engine with fewer cycles than the
 * window has its first cycle repeated in front (the usual padding of C-MAPSS windows).
 *
 * Rows are scored in batches through one session; the metrics are those of
 * bench/quality/baselines.py computed by libmoe (moe/metrics.h) on the whole selection.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "moe/metrics.h"
#include "moe/moe.h"
#include "moe/text.h"
#include "split.h"

#define EVAL_BATCH 256
/* The operating point reported beside the AUCs, as the baselines do. */
#define EVAL_MAX_FPR 0.01

typedef struct eval_s {
  const char *model_path;
  moe_model_t *model;
  moe_session_t *sess;
  moe_wordpiece_t *wp;
  cli_table_t t;
  int loaded;
  int fold;       /* the split's cross-validation fold (split.h) */
  uint8_t *part;  /* (t.n_rows) */
  double *cut;    /* (t.n_rows) C-MAPSS: last observed cycle of the row's unit */
  /* The scored items: one per selected row, or one per engine unit for C-MAPSS. */
  size_t n;
  size_t *src;    /* (n) the table row scored (C-MAPSS: the unit's last observed row) */
  double *truth;  /* (n) binary 0/1, model label index, or the true value */
  float *scores;  /* (n, n_outputs) */
  /* Input mapping, model order -> table column. */
  int *num_map;   /* (n_numeric or n_channels) */
  int *cat_map;   /* (n_categorical) */
  int32_t **level_id; /* (n_categorical)(table levels) model vocab id of each table level */
  size_t n_unseen;    /* categorical values not in the model's vocabulary */
  size_t *unit_start; /* C-MAPSS (n): first table row of the item's window source, see below */
} eval_t;

/* ---- selection ---------------------------------------------------------------------------- */

static int parse_part(const char *s, int *part) {
  if (strcmp(s, "all") == 0) *part = -1;
  else if (strcmp(s, "train") == 0) *part = CLI_PART_TRAIN;
  else if (strcmp(s, "validation") == 0) *part = CLI_PART_VAL;
  else if (strcmp(s, "test") == 0) *part = CLI_PART_TEST;
  else return CLI_EUSAGE;
  return CLI_OK;
}

/*
 * C-MAPSS items: the rows of each unit are contiguous and in cycle order in the table (the
 * loader checks it); the item is the row whose cycle is the unit's cut, and unit_start[k] the
 * unit's first row, from which the window is taken.
 */
static int select_cmapss(eval_t *ev, int want_part, int whole_units) {
  const cli_table_t *t = &ev->t;
  size_t n_unit = 0;
  for (size_t i = 0; i < t->n_rows; i++)
    n_unit += i == 0 || t->group[i] != t->group[i - 1] || t->file_index[i] != t->file_index[i - 1];
  ev->src = malloc((n_unit ? n_unit : 1) * sizeof(size_t));
  ev->unit_start = malloc((n_unit ? n_unit : 1) * sizeof(size_t));
  if (ev->src == NULL || ev->unit_start == NULL) return CLI_ENOMEM;
  size_t i = 0;
  while (i < t->n_rows) {
    size_t j = i;
    while (j < t->n_rows && t->group[j] == t->group[i] && t->file_index[j] == t->file_index[i])
      j++;
    /* With an official RUL file every unit ends at its last row; otherwise at the split's cut. */
    size_t last = j - 1;
    if (!whole_units)
      for (size_t k = i; k < j; k++)
        if (t->order[k] == ev->cut[i]) last = k;
    if (whole_units || want_part < 0 || ev->part[last] == (uint8_t)want_part) {
      ev->unit_start[ev->n] = i;
      ev->src[ev->n++] = last;
    }
    i = j;
  }
  return CLI_OK;
}

static int select_rows(eval_t *ev, int want_part, int whole_units) {
  const cli_table_t *t = &ev->t;
  if (t->task == CLI_TASK_CMAPSS) return select_cmapss(ev, want_part, whole_units);
  ev->src = malloc((t->n_rows ? t->n_rows : 1) * sizeof(size_t));
  if (ev->src == NULL) return CLI_ENOMEM;
  for (size_t i = 0; i < t->n_rows; i++)
    if (want_part < 0 || ev->part[i] == (uint8_t)want_part) ev->src[ev->n++] = i;
  return CLI_OK;
}

/* ---- mapping the table to the model --------------------------------------------------------- */

static int find_name(char *const *names, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return (int)i;
  return -1;
}

static void list_columns(const cli_table_t *t, char *buf, size_t size) {
  size_t off = 0;
  buf[0] = '\0';
  for (size_t j = 0; j < t->n_num + t->n_cat && off < size; j++) {
    const char *nm = j < t->n_num ? t->num_name[j] : t->cat_name[j - t->n_num];
    int w = snprintf(buf + off, size - off, "%s%s", j ? ", " : "", nm);
    if (w < 0) break;
    off += (size_t)w;
  }
}

static int map_inputs(eval_t *ev, char *err, size_t err_size) {
  const moe_model_t *m = ev->model;
  const cli_table_t *t = &ev->t;
  const char *task = cli_task_name(t->task);
  char cols[1024];
  list_columns(t, cols, sizeof(cols));
  moe_encoder_kind_t enc = moe_model_encoder(m);
  int want = t->text != NULL ? MOE_ENCODER_TEXT
             : t->task == CLI_TASK_CMAPSS ? MOE_ENCODER_SENSOR
                                          : MOE_ENCODER_TABULAR;
  static const char *enc_name[] = {"tabular", "sensor", "text"};
  if ((int)enc != want)
    return cli__fail(CLI_EINVAL, err, err_size,
                     "%s: the model has a %s encoder, task %s needs a %s one", ev->model_path,
                     enc_name[enc], task, enc_name[want]);
  if (enc == MOE_ENCODER_TABULAR) {
    int nn = moe_model_n_numeric(m), nc = moe_model_n_categorical(m);
    ev->num_map = calloc((size_t)nn + 1, sizeof(int));
    ev->cat_map = calloc((size_t)nc + 1, sizeof(int));
    ev->level_id = calloc((size_t)nc + 1, sizeof(int32_t *));
    if (ev->num_map == NULL || ev->cat_map == NULL || ev->level_id == NULL)
      return cli__fail(CLI_ENOMEM, err, err_size, "out of memory");
    for (int j = 0; j < nn; j++) {
      const char *nm = moe_model_numeric_name(m, j);
      if ((ev->num_map[j] = find_name(t->num_name, t->n_num, nm)) < 0)
        return cli__fail(CLI_EINVAL, err, err_size,
                         "%s: numeric feature '%s' of the model is not a numeric column of the %s "
                         "data (columns: %s)",
                         ev->model_path, nm, task, cols);
    }
    for (int c = 0; c < nc; c++) {
      const char *nm = moe_model_categorical_name(m, c);
      int tc = find_name(t->cat_name, t->n_cat, nm);
      if ((ev->cat_map[c] = tc) < 0)
        return cli__fail(CLI_EINVAL, err, err_size,
                         "%s: categorical feature '%s' of the model is not a categorical column "
                         "of the %s data (columns: %s)",
                         ev->model_path, nm, task, cols);
      size_t nl = t->n_cat_level[tc];
      if ((ev->level_id[c] = calloc(nl + 1, sizeof(int32_t))) == NULL)
        return cli__fail(CLI_ENOMEM, err, err_size, "out of memory");
      int vs = moe_model_categorical_vocab_size(m, c);
      for (size_t l = 0; l < nl; l++) {
        ev->level_id[c][l] = -1;
        for (int id = 0; id < vs; id++)
          if (strcmp(moe_model_categorical_value(m, c, id), t->cat_level[tc][l]) == 0) {
            ev->level_id[c][l] = id;
            break;
          }
      }
    }
  } else if (enc == MOE_ENCODER_SENSOR) {
    int nch = moe_model_sensor_channels(m);
    if ((ev->num_map = calloc((size_t)nch + 1, sizeof(int))) == NULL)
      return cli__fail(CLI_ENOMEM, err, err_size, "out of memory");
    for (int c = 0; c < nch; c++) {
      const char *nm = moe_model_sensor_channel_name(m, c);
      /* The age channel (sluice train --age) is the cycle column, index n_num here. */
      if (strcmp(nm, CLI_AGE_CHANNEL) == 0 && find_name(t->num_name, t->n_num, nm) < 0) {
        ev->num_map[c] = (int)t->n_num;
        continue;
      }
      if ((ev->num_map[c] = find_name(t->num_name, t->n_num, nm)) < 0)
        return cli__fail(CLI_EINVAL, err, err_size,
                         "%s: channel '%s' of the model is not a column of the %s data "
                         "(columns: %s)",
                         ev->model_path, nm, task, cols);
    }
  } else {
    const char *tj = moe_model_tokenizer_json(m);
    if (tj == NULL)
      return cli__fail(CLI_EINVAL, err, err_size,
                       "%s: the text model has no tokenizer (config encoder.tokenizer)",
                       ev->model_path);
    char terr[256];
    if (moe_wordpiece_from_json(tj, strlen(tj), &ev->wp, terr, sizeof(terr)) != MOE_OK)
      return cli__fail(CLI_EINVAL, err, err_size, "%s: encoder.tokenizer: %s", ev->model_path,
                       terr);
  }
  return CLI_OK;
}

/* The truth of every item in the model's terms; the label kinds must agree. */
static int map_labels(eval_t *ev, char *err, size_t err_size) {
  const moe_model_t *m = ev->model;
  const cli_table_t *t = &ev->t;
  moe_task_t mt = moe_model_task(m);
  static const char *kind_name[] = {"binary", "multiclass", "regression"};
  moe_task_t want = t->label_kind == CLI_LABEL_BINARY ? MOE_TASK_BINARY
                    : t->label_kind == CLI_LABEL_CLASS ? MOE_TASK_MULTICLASS
                                                       : MOE_TASK_REGRESSION;
  if (mt != want)
    return cli__fail(CLI_EINVAL, err, err_size, "%s: the model is %s, task %s is %s",
                     ev->model_path, kind_name[mt], cli_task_name(t->task), kind_name[want]);
  if ((ev->truth = malloc((ev->n ? ev->n : 1) * sizeof(double))) == NULL)
    return cli__fail(CLI_ENOMEM, err, err_size, "out of memory");
  int *cls = NULL;
  if (mt == MOE_TASK_MULTICLASS) {
    if ((cls = malloc((t->n_class ? t->n_class : 1) * sizeof(int))) == NULL)
      return cli__fail(CLI_ENOMEM, err, err_size, "out of memory");
    for (size_t c = 0; c < t->n_class; c++) {
      cls[c] = -1;
      for (int l = 0; l < moe_model_n_labels(m); l++)
        if (strcmp(moe_model_label(m, l), t->class_name[c]) == 0) cls[c] = l;
    }
  }
  for (size_t k = 0; k < ev->n; k++) {
    double y = t->label[ev->src[k]];
    if (cls != NULL) {
      int l = cls[(size_t)y];
      if (l < 0) {
        int rc = cli__fail(CLI_EINVAL, err, err_size,
                           "%s: row %lld: label '%s' of the data is not a label of the model",
                           t->file[t->file_index[ev->src[k]]], (long long)t->row[ev->src[k]],
                           t->class_name[(size_t)y]);
        free(cls);
        return rc;
      }
      y = l;
    }
    ev->truth[k] = y;
  }
  free(cls);
  return CLI_OK;
}

/* ---- scoring ------------------------------------------------------------------------------- */

typedef struct batch_buf_s {
  moe_input_t *rows;  /* (EVAL_BATCH) */
  float *f;           /* (EVAL_BATCH, floats per row) */
  int32_t *ids;       /* (EVAL_BATCH, ids per row) */
} batch_buf_t;

/* Fills the input of item k into slot b of the batch. */
static int fill_row(eval_t *ev, batch_buf_t *bb, int b, size_t k, size_t f_per, size_t id_per,
                    char *err, size_t err_size) {
  const moe_model_t *m = ev->model;
  const cli_table_t *t = &ev->t;
  size_t r = ev->src[k];
  moe_input_t *in = &bb->rows[b];
  memset(in, 0, sizeof(*in));
  float *f = bb->f + (size_t)b * f_per;
  int32_t *ids = bb->ids + (size_t)b * id_per;
  switch (moe_model_encoder(m)) {
  case MOE_ENCODER_TABULAR:
    for (int j = 0; j < moe_model_n_numeric(m); j++)
      f[j] = (float)t->num[r * t->n_num + (size_t)ev->num_map[j]];
    for (int c = 0; c < moe_model_n_categorical(m); c++) {
      int32_t id = ev->level_id[c][t->cat[r * t->n_cat + (size_t)ev->cat_map[c]]];
      if (id < 0) {
        id = 0;
        ev->n_unseen++;
      }
      ids[c] = id;
    }
    in->numeric = f;
    in->categorical = ids;
    break;
  case MOE_ENCODER_SENSOR: {
    int T = moe_model_sensor_window(m), C = moe_model_sensor_channels(m);
    size_t first = ev->unit_start[k];
    for (int s = 0; s < T; s++) {
      /* Cycle r - (T - 1 - s), or the unit's first cycle when the unit is shorter. */
      size_t back = (size_t)(T - 1 - s);
      size_t row = r - first >= back ? r - back : first;
      for (int c = 0; c < C; c++) {
        size_t j = (size_t)ev->num_map[c];
        f[(size_t)s * (size_t)C + (size_t)c] =
            (float)(j < t->n_num ? t->num[row * t->n_num + j] : t->order[row]);
      }
    }
    in->window = f;
    in->n_steps = r - first + 1 < (size_t)T ? (int32_t)(r - first + 1) : T;
    break;
  }
  case MOE_ENCODER_TEXT: {
    moe_token_t *toks = NULL;
    size_t nt = 0;
    const char *text = t->text[r];
    if (moe_wordpiece_encode(ev->wp, text, strlen(text), &toks, &nt) != MOE_OK)
      return cli__fail(CLI_ENOMEM, err, err_size, "out of memory while tokenizing");
    size_t cap = id_per;
    ids[0] = MOE_TOKEN_CLS;
    size_t n = 1;
    for (size_t i = 0; i < nt && n < cap; i++) ids[n++] = toks[i].id;
    moe_text_free(toks);
    in->tokens = ids;
    in->n_tokens = (int32_t)n;
    break;
  }
  }
  return CLI_OK;
}

static int score_all(eval_t *ev, char *err, size_t err_size) {
  const moe_model_t *m = ev->model;
  int n_out = moe_model_n_outputs(m);
  size_t f_per = 1, id_per = 1;
  switch (moe_model_encoder(m)) {
  case MOE_ENCODER_TABULAR:
    f_per += (size_t)moe_model_n_numeric(m);
    id_per += (size_t)moe_model_n_categorical(m);
    break;
  case MOE_ENCODER_SENSOR:
    f_per = (size_t)moe_model_sensor_window(m) * (size_t)moe_model_sensor_channels(m);
    break;
  case MOE_ENCODER_TEXT: id_per = (size_t)moe_model_text_max_len(m); break;
  }
  batch_buf_t bb = {0};
  int rc = CLI_ENOMEM;
  ev->scores = malloc((ev->n ? ev->n : 1) * (size_t)n_out * sizeof(float));
  bb.rows = malloc(EVAL_BATCH * sizeof(*bb.rows));
  bb.f = malloc(EVAL_BATCH * f_per * sizeof(float));
  bb.ids = malloc(EVAL_BATCH * id_per * sizeof(int32_t));
  if (ev->scores == NULL || bb.rows == NULL || bb.f == NULL || bb.ids == NULL) {
    cli__fail(rc, err, err_size, "out of memory");
    goto fail;
  }
  if (moe_session_new(m, EVAL_BATCH, &ev->sess) != MOE_OK) {
    cli__fail(rc, err, err_size, "cannot create a scoring session (out of memory)");
    goto fail;
  }
  cli_progress_t pb;
  cli_progress_init(&pb, "scoring", ev->n);
  for (size_t k0 = 0; k0 < ev->n; k0 += EVAL_BATCH) {
    int nb = (int)(ev->n - k0 < EVAL_BATCH ? ev->n - k0 : EVAL_BATCH);
    for (int b = 0; b < nb; b++)
      if ((rc = fill_row(ev, &bb, b, k0 + (size_t)b, f_per, id_per, err, err_size)) != CLI_OK)
        goto fail;
    moe_output_t out = {ev->scores + k0 * (size_t)n_out, NULL, NULL, NULL};
    int mrc = moe_session_run(ev->sess, bb.rows, nb, &out);
    if (mrc != MOE_OK) {
      /* The session names the batch row; say which data row that is. */
      size_t bad = ev->src[k0];
      rc = cli__fail(mrc == MOE_ENOMEM ? CLI_ENOMEM : CLI_EINVAL, err, err_size,
                     "scoring the batch that starts at %s row %lld: %s",
                     ev->t.file[ev->t.file_index[bad]], (long long)ev->t.row[bad],
                     moe_session_error(ev->sess));
      goto fail;
    }
    cli_progress_update(&pb, k0 + (size_t)nb);
  }
  cli_progress_close(&pb);
  rc = CLI_OK;
fail:
  free(bb.ids);
  free(bb.f);
  free(bb.rows);
  return rc;
}

/* ---- metrics ------------------------------------------------------------------------------ */

int cli_task_metrics(int task_kind, int n_out, const float *scores, const double *truth, size_t n,
                     double threshold, cli_metric_t *mt, int *n_mt) {
  int k = 0;
  double *s = malloc((n ? n : 1) * sizeof(double));
  uint8_t *y8 = malloc(n ? n : 1);
  int32_t *pred = malloc((n ? n : 1) * sizeof(int32_t));
  int32_t *tru = malloc((n ? n : 1) * sizeof(int32_t));
  int rc = CLI_ENOMEM;
  if (s == NULL || y8 == NULL || pred == NULL || tru == NULL) goto done;
  double v, v2;
#define PUT(nm, expr)                                                                   \
  do {                                                                                  \
    mt[k].name = (nm);                                                                  \
    mt[k].value = (expr) == MOE_OK ? v : NAN;                                          \
    k++;                                                                                \
  } while (0)
  switch ((moe_task_t)task_kind) {
  case MOE_TASK_BINARY: {
    for (size_t i = 0; i < n; i++) {
      s[i] = scores[i];
      y8[i] = truth[i] != 0;
    }
    PUT("pr_auc", moe_metric_pr_auc(s, y8, n, &v));
    PUT("roc_auc", moe_metric_roc_auc(s, y8, n, &v));
    PUT("recall_at_1pct_fpr", moe_metric_recall_at_fpr(s, y8, n, EVAL_MAX_FPR, &v, NULL));
    moe_binary_counts_t c;
    double p, r, f1;
    if (moe_metric_binary_counts(s, y8, n, threshold, &c) == MOE_OK) {
      moe_metric_prf(&c, &p, &r, &f1);
    } else {
      p = r = f1 = NAN;
    }
    mt[k++] = (cli_metric_t){"threshold", threshold};
    mt[k++] = (cli_metric_t){"precision", p};
    mt[k++] = (cli_metric_t){"recall", r};
    mt[k++] = (cli_metric_t){"f1", f1};
    int ok = moe_metric_best_f1_threshold(s, y8, n, &v, &v2) == MOE_OK;
    mt[k++] = (cli_metric_t){"best_f1_threshold", ok ? v : NAN};
    mt[k++] = (cli_metric_t){"best_f1", ok ? v2 : NAN};
    break;
  }
  case MOE_TASK_MULTICLASS:
    for (size_t i = 0; i < n; i++) {
      const float *row = scores + i * (size_t)n_out;
      int best = 0;
      for (int j = 1; j < n_out; j++)
        if (row[j] > row[best]) best = j;
      pred[i] = best;
      tru[i] = (int32_t)truth[i];
    }
    PUT("accuracy", moe_metric_accuracy(pred, tru, n, &v));
    PUT("macro_f1", moe_metric_macro_f1(pred, tru, n, (size_t)n_out, &v));
    break;
  case MOE_TASK_REGRESSION:
    for (size_t i = 0; i < n; i++) s[i] = scores[i * (size_t)n_out];
    PUT("rmse", moe_metric_rmse(s, truth, n, &v));
    PUT("mae", moe_metric_mae(s, truth, n, &v));
    PUT("phm_score", moe_metric_phm_score(s, truth, n, &v));
    break;
  }
#undef PUT
  *n_mt = k;
  rc = CLI_OK;
done:
  free(tru);
  free(pred);
  free(y8);
  free(s);
  return rc;
}

static int compute_metrics(const eval_t *ev, cli_metric_t *mt, int *n_mt) {
  const moe_model_t *m = ev->model;
  return cli_task_metrics((int)moe_model_task(m), moe_model_n_outputs(m), ev->scores, ev->truth,
                          ev->n, moe_model_threshold(m), mt, n_mt);
}

/* ---- output ------------------------------------------------------------------------------- */

static void csv_field(FILE *f, const char *s) {
  if (strpbrk(s, ",\"\r\n") == NULL) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static int write_predictions(const eval_t *ev, const char *path, char *err, size_t err_size) {
  const moe_model_t *m = ev->model;
  const cli_table_t *t = &ev->t;
  FILE *f = fopen(path, "w");
  if (f == NULL) return cli__fail(CLI_EIO, err, err_size, "%s: cannot create the file", path);
  int n_out = moe_model_n_outputs(m), many = t->n_file > 1;
  fputs(many ? "file,row,score,prediction\n" : "row,score,prediction\n", f);
  for (size_t k = 0; k < ev->n; k++) {
    size_t r = ev->src[k];
    if (many) {
      csv_field(f, t->file[t->file_index[r]]);
      fputc(',', f);
    }
    /* C-MAPSS predictions are per engine: the row column holds the unit. */
    long long row = t->task == CLI_TASK_CMAPSS ? (long long)t->group[r] : (long long)t->row[r];
    const float *sc = ev->scores + k * (size_t)n_out;
    switch (moe_model_task(m)) {
    case MOE_TASK_BINARY:
      fprintf(f, "%lld,%.9g,%d\n", row, sc[0], sc[0] >= moe_model_threshold(m));
      break;
    case MOE_TASK_MULTICLASS: {
      int best = 0;
      for (int j = 1; j < n_out; j++)
        if (sc[j] > sc[best]) best = j;
      fprintf(f, "%lld,%.9g,", row, sc[best]);
      csv_field(f, moe_model_label(m, best));
      fputc('\n', f);
      break;
    }
    case MOE_TASK_REGRESSION: fprintf(f, "%lld,%.9g,%.9g\n", row, sc[0], sc[0]); break;
    }
  }
  if (fclose(f) != 0) return cli__fail(CLI_EIO, err, err_size, "%s: write failed", path);
  return CLI_OK;
}

static void print_metrics(const eval_t *ev, const char *split, const cli_metric_t *mt, int n_mt,
                          int json) {
  const cli_table_t *t = &ev->t;
  if (!json) {
    printf("task       %s\n", cli_task_name(t->task));
    printf("model      %s (%s)\n", ev->model_path, moe_model_version(ev->model));
    for (size_t f = 0; f < t->n_file; f++) printf("data       %s\n", t->file[f]);
    if (ev->fold != 0)
      printf("split      %s, fold %d\n", split, ev->fold);
    else
      printf("split      %s\n", split);
    printf("scored     %zu %s\n", ev->n, t->task == CLI_TASK_CMAPSS ? "engines" : "rows");
    for (int i = 0; i < n_mt; i++) {
      if (isfinite(mt[i].value))
        printf("%-20s %.6f\n", mt[i].name, mt[i].value);
      else
        printf("%-20s undefined for this data\n", mt[i].name);
    }
    return;
  }
  cli_json_t js;
  cli_json_init(&js, stdout);
  cli_json_obj_begin(&js);
  cli_json_key(&js, "task");
  cli_json_str(&js, cli_task_name(t->task));
  cli_json_key(&js, "model");
  cli_json_str(&js, ev->model_path);
  cli_json_key(&js, "version");
  cli_json_str(&js, moe_model_version(ev->model));
  cli_json_key(&js, "files");
  cli_json_arr_begin(&js);
  for (size_t f = 0; f < t->n_file; f++) cli_json_str(&js, t->file[f]);
  cli_json_arr_end(&js);
  cli_json_key(&js, "split");
  cli_json_str(&js, split);
  cli_json_key(&js, "fold");
  cli_json_int(&js, ev->fold);
  cli_json_key(&js, "scored");
  cli_json_int(&js, (long long)ev->n);
  cli_json_key(&js, "unseen_categorical");
  cli_json_int(&js, (long long)ev->n_unseen);
  cli_json_key(&js, "metrics");
  cli_json_obj_begin(&js);
  for (int i = 0; i < n_mt; i++) {
    cli_json_key(&js, mt[i].name);
    cli_json_num(&js, mt[i].value);
  }
  cli_json_obj_end(&js);
  cli_json_obj_end(&js);
}

static void eval_close(eval_t *ev) {
  free(ev->unit_start);
  if (ev->level_id != NULL && ev->model != NULL)
    for (int c = 0; c < moe_model_n_categorical(ev->model); c++) free(ev->level_id[c]);
  free(ev->level_id);
  free(ev->cat_map);
  free(ev->num_map);
  free(ev->scores);
  free(ev->truth);
  free(ev->src);
  free(ev->cut);
  free(ev->part);
  if (ev->loaded) cli_table_close(&ev->t);
  moe_wordpiece_free(ev->wp);
  moe_session_free(ev->sess);
  moe_model_free(ev->model);
}

/* "sluice eval: <message>" and the usage text: cli_usage_error (cli.h). */
#define usage_error(...) cli_usage_error("eval", __VA_ARGS__)

int cli_cmd_eval(int argc, char **argv) {
  static const struct option opts[] = {{"task", required_argument, NULL, 't'},
                                       {"model", required_argument, NULL, 'm'},
                                       {"data", required_argument, NULL, 'd'},
                                       {"split", required_argument, NULL, 's'},
                                       {"rul", required_argument, NULL, 'r'},
                                       {"predictions", required_argument, NULL, 'p'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"fold", required_argument, NULL, 'f'},
                                       {NULL, 0, NULL, 0}};
  const char *task_name = NULL, *split = "all", *rul = NULL, *pred_path = NULL,
             *fold_text = "0";
  int json = 0, c, status = CLI_EXIT_FAIL, want_part = -1, fold = 0;
  eval_t ev;
  memset(&ev, 0, sizeof(ev));
  const char **files = calloc((size_t)argc + 1, sizeof(char *));
  size_t n_file = 0;
  char err[1024];
  cli_task_t task;
  if (files == NULL) return CLI_EXIT_FAIL;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case 't': task_name = optarg; break;
    case 'm': ev.model_path = optarg; break;
    case 'd': files[n_file++] = optarg; break;
    case 's': split = optarg; break;
    case 'r': rul = optarg; break;
    case 'p': pred_path = optarg; break;
    case 'j': json = 1; break;
    case 'f': fold_text = optarg; break;
    default:
      status = usage_error(c == ':' ? "missing value for option '%s'" : "unknown option '%s'",
                           argv[optind - 1]);
      goto done;
    }
  }
  for (int i = optind; i < argc; i++) files[n_file++] = argv[i];
  if (task_name == NULL || ev.model_path == NULL || n_file == 0) {
    status = usage_error("--task, --model and --data are required");
    goto done;
  }
  if (cli_task_parse(task_name, &task) != CLI_OK) {
    status = usage_error("unknown task '%s' (fraud, fault-ai4i, fault-cmapss, records-mtsamples, "
                         "records-abstracts)",
                         task_name);
    goto done;
  }
  if (cli_split_fold_parse(task, fold_text, &fold, err, sizeof(err)) != CLI_OK) {
    status = usage_error("%s", err);
    goto done;
  }
  ev.fold = fold;
  if (parse_part(split, &want_part) != CLI_OK) {
    status = usage_error("--split is all, train, validation or test, not '%s'", split);
    goto done;
  }
  if (rul != NULL && (task != CLI_TASK_CMAPSS || n_file != 1 || want_part >= 0 || fold != 0)) {
    status = usage_error("--rul goes with --task fault-cmapss, one --data test file and "
                         "--split all (no --fold)");
    goto done;
  }
  if (moe_model_load(ev.model_path, &ev.model, err, sizeof(err)) != MOE_OK) {
    fprintf(stderr, "sluice eval: %s%s%s\n", strstr(err, ev.model_path) ? "" : ev.model_path,
            strstr(err, ev.model_path) ? "" : ": ", err);
    goto done;
  }
  if (cli_table_load(&ev.t, task, files, n_file, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice eval: %s\n", err);
    goto done;
  }
  ev.loaded = 1;
  if (rul != NULL && cli_table_apply_rul(&ev.t, rul, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice eval: %s\n", err);
    goto done;
  }
  ev.part = malloc(ev.t.n_rows ? ev.t.n_rows : 1);
  ev.cut = malloc((ev.t.n_rows ? ev.t.n_rows : 1) * sizeof(double));
  if (ev.part == NULL || ev.cut == NULL || cli_split_assign(&ev.t, ev.fold, ev.part, ev.cut) != CLI_OK ||
      select_rows(&ev, want_part, rul != NULL) != CLI_OK) {
    fprintf(stderr, "sluice eval: out of memory\n");
    goto done;
  }
  if (ev.n == 0) {
    fprintf(stderr, "sluice eval: no rows in the %s part of the data\n", split);
    goto done;
  }
  if (map_inputs(&ev, err, sizeof(err)) != CLI_OK || map_labels(&ev, err, sizeof(err)) != CLI_OK ||
      score_all(&ev, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice eval: %s\n", err);
    goto done;
  }
  if (ev.n_unseen > 0)
    fprintf(stderr,
            "sluice eval: %zu categorical values are not in the model's vocabulary and were "
            "scored as id 0\n",
            ev.n_unseen);
  cli_metric_t mt[CLI_MAX_METRICS];
  int n_mt = 0;
  if (compute_metrics(&ev, mt, &n_mt) != CLI_OK) {
    fprintf(stderr, "sluice eval: out of memory\n");
    goto done;
  }
  if (pred_path != NULL && write_predictions(&ev, pred_path, err, sizeof(err)) != CLI_OK) {
    fprintf(stderr, "sluice eval: %s\n", err);
    goto done;
  }
  print_metrics(&ev, rul != NULL ? "all (RUL file)" : split, mt, n_mt, json);
  status = CLI_EXIT_OK;
done:
  eval_close(&ev);
  free(files);
  return status;
}
