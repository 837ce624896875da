/*
 * The task loaders behind dataset.h: one function per file format, all appending to the same
 * growable column-oriented table, plus the MTSamples de-duplication and label rules.
 */
#include "dataset.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

static const char *const task_names[CLI_TASK__COUNT] = {
    "fraud", "fault-ai4i", "fault-cmapss", "records-mtsamples", "records-abstracts"};

const char *cli_task_name(cli_task_t task) {
  return (unsigned)task < CLI_TASK__COUNT ? task_names[task] : "?";
}

int cli_task_parse(const char *name, cli_task_t *out) {
  for (int i = 0; i < CLI_TASK__COUNT; i++)
    if (strcmp(name, task_names[i]) == 0) {
      *out = (cli_task_t)i;
      return CLI_OK;
    }
  return CLI_EUNSUPPORTED;
}

uint64_t cli_fnv1a64(const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static int is_ascii_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

uint64_t cli_text_group_hash(const char *text, int *empty) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const unsigned char *p = (const unsigned char *)text;
  int pending_space = 0, any = 0;
  for (; *p; p++) {
    unsigned char c = *p;
    if (is_ascii_space(c)) {
      pending_space = any;
      continue;
    }
    if (pending_space) {
      h ^= ' ';
      h *= 0x100000001b3ULL;
      pending_space = 0;
    }
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    h ^= c;
    h *= 0x100000001b3ULL;
    any = 1;
  }
  *empty = !any;
  return h;
}

/* ---- table building ------------------------------------------------------ */

typedef struct builder_s {
  cli_table_t *t;
  size_t cap;
} builder_t;

static int grow(void **p, size_t n_elem, size_t elem) {
  void *q = realloc(*p, n_elem * elem);
  if (q == NULL) return CLI_ENOMEM;
  *p = q;
  return CLI_OK;
}

/* Makes room for one more row in every column the table has. */
static int builder_reserve(builder_t *b) {
  cli_table_t *t = b->t;
  if (t->n_rows < b->cap) return CLI_OK;
  size_t cap = b->cap ? b->cap * 2 : 1024;
  if (grow((void **)&t->file_index, cap, sizeof(uint32_t)) ||
      grow((void **)&t->row, cap, sizeof(int64_t)) ||
      grow((void **)&t->label, cap, sizeof(double)) ||
      grow((void **)&t->group, cap, sizeof(uint64_t)) ||
      grow((void **)&t->order, cap, sizeof(double)))
    return CLI_ENOMEM;
  if (t->n_num && grow((void **)&t->num, cap * t->n_num, sizeof(double))) return CLI_ENOMEM;
  if (t->n_cat && grow((void **)&t->cat, cap * t->n_cat, sizeof(int32_t))) return CLI_ENOMEM;
  if (t->text != NULL || t->task == CLI_TASK_MTSAMPLES || t->task == CLI_TASK_ABSTRACTS)
    if (grow((void **)&t->text, cap, sizeof(char *))) return CLI_ENOMEM;
  b->cap = cap;
  return CLI_OK;
}

static void table_add_drop(cli_table_t *t, const char *reason, size_t count) {
  if (count == 0) return;
  for (size_t i = 0; i < t->n_drop; i++)
    if (strcmp(t->drop[i].reason, reason) == 0) {
      t->drop[i].count += count;
      return;
    }
  if (t->n_drop == CLI_MAX_DROP) return;
  snprintf(t->drop[t->n_drop].reason, sizeof(t->drop[0].reason), "%s", reason);
  t->drop[t->n_drop].count = count;
  t->n_drop++;
}

static int set_names(char ***dst, size_t *n_dst, const char *const *names, size_t n) {
  *dst = calloc(n ? n : 1, sizeof(char *));
  if (*dst == NULL) return CLI_ENOMEM;
  *n_dst = n;
  for (size_t i = 0; i < n; i++)
    if (((*dst)[i] = strdup(names[i])) == NULL) return CLI_ENOMEM;
  return CLI_OK;
}

static int parse_number(const cli_csv_t *csv, size_t col, const char *colname, double *out,
                        char *errstr, size_t errstr_size) {
  const char *s = csv->field[col];
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
    return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                     "%s:%zu: column %zu ('%s'): expected a finite number, found '%.40s'",
                     csv->path, csv->record_line, col + 1, colname, s);
  *out = v;
  return CLI_OK;
}

static int parse_binary(const cli_csv_t *csv, size_t col, const char *colname, double *out,
                        char *errstr, size_t errstr_size) {
  const char *s = csv->field[col];
  if (strcmp(s, "0") == 0 || strcmp(s, "1") == 0) {
    *out = s[0] - '0';
    return CLI_OK;
  }
  return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                   "%s:%zu: column %zu ('%s'): expected 0 or 1, found '%.40s'", csv->path,
                   csv->record_line, col + 1, colname, s);
}

/* Reads the header record and finds every name of `want` in it; the error names an empty
 * file or the first column missing. */
static int map_header(cli_csv_t *csv, const char *const *want, size_t n, int *col,
                      char *errstr, size_t errstr_size) {
  int eof, err = cli_csv_next(csv, &eof, errstr, errstr_size);
  if (err) return err;
  if (eof)
    return cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s: empty file, expected a header",
                     csv->path);
  for (size_t i = 0; i < n; i++) {
    col[i] = cli_csv_find(csv, want[i]);
    if (col[i] < 0)
      return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                       "%s:%zu: header: expected a column named '%s' (found %zu columns, "
                       "first '%.40s')",
                       csv->path, csv->record_line, want[i], csv->n_field,
                       csv->n_field ? csv->field[0] : "");
  }
  return CLI_OK;
}

static int check_width(const cli_csv_t *csv, size_t width, char *errstr, size_t errstr_size) {
  if (csv->n_field == width) return CLI_OK;
  return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                   "%s:%zu: expected %zu fields as in the header, found %zu", csv->path,
                   csv->record_line, width, csv->n_field);
}

/* ---- fraud and AI4I -------------------------------------------------------- */

static int load_fraud_file(builder_t *b, uint32_t fi, char *errstr, size_t errstr_size) {
  cli_table_t *t = b->t;
  cli_csv_t csv;
  int eof, err = cli_csv_open(&csv, t->file[fi], ',', errstr, errstr_size);
  if (err) return err;
  int col[31] = {0};
  const char *want[31];
  char vnames[28][4];
  want[0] = "Time";
  for (int i = 0; i < 28; i++) {
    snprintf(vnames[i], sizeof(vnames[i]), "V%d", i + 1);
    want[1 + i] = vnames[i];
  }
  want[29] = "Amount";
  want[30] = "Class";
  if ((err = map_header(&csv, want, 31, col, errstr, errstr_size))) goto fail;
  size_t width = csv.n_field;
  for (int64_t r = 0;; r++) {
    if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size))) goto fail;
    if (eof) break;
    if ((err = check_width(&csv, width, errstr, errstr_size))) goto fail;
    if ((err = builder_reserve(b))) goto oom;
    size_t i = t->n_rows;
    double *x = t->num + i * t->n_num;
    if ((err = parse_number(&csv, (size_t)col[0], "Time", &t->order[i], errstr, errstr_size)))
      goto fail;
    for (int k = 1; k <= 29; k++)
      if ((err = parse_number(&csv, (size_t)col[k], want[k], &x[k - 1], errstr, errstr_size)))
        goto fail;
    if ((err = parse_binary(&csv, (size_t)col[30], "Class", &t->label[i], errstr, errstr_size)))
      goto fail;
    t->file_index[i] = fi;
    t->row[i] = r;
    t->group[i] = (uint64_t)i;
    t->n_rows++;
  }
  cli_csv_close(&csv);
  return CLI_OK;
oom:
  err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
fail:
  cli_csv_close(&csv);
  return err;
}

static const char *const ai4i_num[5] = {"Air temperature [K]", "Process temperature [K]",
                                        "Rotational speed [rpm]", "Torque [Nm]",
                                        "Tool wear [min]"};
static const char *const ai4i_types[3] = {"L", "M", "H"};

static int load_ai4i_file(builder_t *b, uint32_t fi, char *errstr, size_t errstr_size) {
  cli_table_t *t = b->t;
  cli_csv_t csv;
  int eof, err = cli_csv_open(&csv, t->file[fi], ',', errstr, errstr_size);
  if (err) return err;
  const char *want[8] = {"UDI", "Type", ai4i_num[0], ai4i_num[1], ai4i_num[2], ai4i_num[3],
                         ai4i_num[4], "Machine failure"};
  int col[8] = {0};
  if ((err = map_header(&csv, want, 8, col, errstr, errstr_size))) goto fail;
  size_t width = csv.n_field;
  for (int64_t r = 0;; r++) {
    if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size))) goto fail;
    if (eof) break;
    if ((err = check_width(&csv, width, errstr, errstr_size))) goto fail;
    if ((err = builder_reserve(b))) goto oom;
    size_t i = t->n_rows;
    if ((err = parse_number(&csv, (size_t)col[0], "UDI", &t->order[i], errstr, errstr_size)))
      goto fail;
    const char *ty = csv.field[col[1]];
    int level = -1;
    for (int k = 0; k < 3; k++)
      if (strcmp(ty, ai4i_types[k]) == 0) level = k;
    if (level < 0) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: column %d ('Type'): expected L, M or H, found '%.40s'", csv.path,
                      csv.record_line, col[1] + 1, ty);
      goto fail;
    }
    t->cat[i] = level;
    for (int k = 0; k < 5; k++)
      if ((err = parse_number(&csv, (size_t)col[2 + k], want[2 + k], &t->num[i * 5 + (size_t)k],
                              errstr, errstr_size)))
        goto fail;
    if ((err = parse_binary(&csv, (size_t)col[7], "Machine failure", &t->label[i], errstr,
                            errstr_size)))
      goto fail;
    t->file_index[i] = fi;
    t->row[i] = r;
    t->group[i] = (uint64_t)i;
    t->n_rows++;
  }
  cli_csv_close(&csv);
  return CLI_OK;
oom:
  err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
fail:
  cli_csv_close(&csv);
  return err;
}

/* ---- C-MAPSS ----------------------------------------------------------------- */

#define CMAPSS_COLS 26

/*
 * Whitespace-separated numbers, no header, trailing spaces allowed. Each unit's rows must be
 * contiguous with cycles 1, 2, 3, ...: RUL is derived from that order, so a gap is an error.
 */
static int load_cmapss_file(builder_t *b, uint32_t fi, char *errstr, size_t errstr_size) {
  cli_table_t *t = b->t;
  cli_csv_t csv; /* only for its whole-file read and BOM skip; lines are split here */
  int err = cli_csv_open(&csv, t->file[fi], ' ', errstr, errstr_size);
  if (err) return err;
  char *p = csv.buf + csv.pos, *end = csv.buf + csv.len;
  size_t line = 1, unit_start = t->n_rows;
  long prev_unit = -1, prev_cycle = 0;
  int64_t r = 0;
  while (p < end) {
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    *eol = '\0';
    double v[CMAPSS_COLS];
    int n = 0;
    char *q = p;
    for (;;) {
      while (*q == ' ' || *q == '\t' || *q == '\r') q++;
      if (*q == '\0') break;
      char *tok = q;
      while (*q && *q != ' ' && *q != '\t' && *q != '\r') q++;
      char save = *q;
      *q = '\0';
      char *e;
      errno = 0;
      double x = strtod(tok, &e);
      if (*e != '\0' || errno == ERANGE || !isfinite(x)) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                        "%s:%zu: column %d: expected a number, found '%.40s'", csv.path, line,
                        n + 1, tok);
        goto fail;
      }
      *q = save;
      if (n == CMAPSS_COLS) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                        "%s:%zu: expected %d space-separated columns (unit, cycle, 3 settings, "
                        "21 sensors), found more",
                        csv.path, line, CMAPSS_COLS);
        goto fail;
      }
      v[n++] = x;
    }
    if (n == 0) { /* a blank line, e.g. at the end of the file */
      p = eol + 1;
      line++;
      continue;
    }
    if (n != CMAPSS_COLS) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: expected %d space-separated columns (unit, cycle, 3 settings, "
                      "21 sensors), found %d",
                      csv.path, line, CMAPSS_COLS, n);
      goto fail;
    }
    long unit = (long)v[0], cycle = (long)v[1];
    if ((double)unit != v[0] || (double)cycle != v[1] || unit < 1 || cycle < 1) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: columns 1-2: expected positive integer unit and cycle, found "
                      "%g %g",
                      csv.path, line, v[0], v[1]);
      goto fail;
    }
    if (unit != prev_unit) {
      if (cycle != 1) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                        "%s:%zu: column 2: unit %ld starts at cycle %ld, expected 1", csv.path,
                        line, unit, cycle);
        goto fail;
      }
      for (size_t k = unit_start; k < t->n_rows; k++)
        t->label[k] = (double)(prev_cycle - (long)t->order[k]);
      unit_start = t->n_rows;
      for (size_t k = 0; k < unit_start; k++)
        if (t->file_index[k] == fi && t->group[k] == (uint64_t)unit) {
          err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                          "%s:%zu: column 1: unit %ld appears again after other units; rows of "
                          "one unit must be contiguous",
                          csv.path, line, unit);
          goto fail;
        }
    } else if (cycle != prev_cycle + 1) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: column 2: unit %ld cycle %ld follows cycle %ld, expected %ld",
                      csv.path, line, unit, cycle, prev_cycle, prev_cycle + 1);
      goto fail;
    }
    if ((err = builder_reserve(b))) {
      err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
      goto fail;
    }
    size_t i = t->n_rows;
    memcpy(t->num + i * t->n_num, v + 2, (CMAPSS_COLS - 2) * sizeof(double));
    t->order[i] = (double)cycle;
    t->group[i] = (uint64_t)unit;
    t->file_index[i] = fi;
    t->row[i] = r++;
    t->n_rows++;
    prev_unit = unit;
    prev_cycle = cycle;
    p = eol + 1;
    line++;
  }
  for (size_t k = unit_start; k < t->n_rows; k++)
    t->label[k] = (double)(prev_cycle - (long)t->order[k]);
  cli_csv_close(&csv);
  return CLI_OK;
fail:
  cli_csv_close(&csv);
  return err;
}

int cli_table_apply_rul(cli_table_t *t, const char *rul_path, char *errstr,
                        size_t errstr_size) {
  if (t->task != CLI_TASK_CMAPSS || t->n_file != 1)
    return cli__fail(CLI_EINVAL, errstr, errstr_size,
                     "a RUL file applies to one fault-cmapss test file");
  size_t n_unit = 0;
  for (size_t i = 0; i < t->n_rows; i++) n_unit += i == 0 || t->group[i] != t->group[i - 1];
  cli_csv_t csv; /* whole-file read only */
  int err = cli_csv_open(&csv, rul_path, ' ', errstr, errstr_size);
  if (err) return err;
  double *rul = malloc((n_unit ? n_unit : 1) * sizeof(double));
  size_t n = 0, line = 1;
  if (rul == NULL) {
    err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
    goto done;
  }
  for (char *p = csv.buf + csv.pos, *end = csv.buf + csv.len; p < end; line++) {
    char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    *eol = '\0';
    char *q = p;
    while (*q == ' ' || *q == '\t' || *q == '\r') q++;
    p = eol + 1;
    if (*q == '\0') continue; /* blank line */
    char *e;
    errno = 0;
    long v = strtol(q, &e, 10);
    while (*e == ' ' || *e == '\t' || *e == '\r') e++;
    if (e == q || *e != '\0' || errno == ERANGE || v < 0) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: expected one non-negative integer (the RUL of unit %zu), found "
                      "'%.40s'",
                      rul_path, line, n + 1, q);
      goto done;
    }
    if (n == n_unit) {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: more RUL values than the %zu units of %s", rul_path, line,
                      n_unit, t->file[0]);
      goto done;
    }
    rul[n++] = (double)v;
  }
  if (n != n_unit) {
    err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                    "%s: %zu RUL values for the %zu units of %s", rul_path, n, n_unit,
                    t->file[0]);
    goto done;
  }
  /* label already holds last cycle - cycle; the RUL file adds what lies beyond the end. */
  for (size_t i = 0, u = 0; i < t->n_rows; i++) {
    if (i > 0 && t->group[i] != t->group[i - 1]) u++;
    t->label[i] += rul[u];
  }
  err = CLI_OK;
done:
  free(rul);
  cli_csv_close(&csv);
  return err;
}

/* ---- text tasks ----------------------------------------------------------------- */

typedef struct text_row_s {
  uint64_t hash;
  size_t idx; /* position in the raw arrays */
} text_row_t;

static int cmp_text_row(const void *a, const void *b) {
  const text_row_t *x = a, *y = b;
  if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

typedef struct label_count_s {
  char *name;
  size_t rows;  /* non-empty rows with this label */
  size_t notes; /* de-duplicated notes resolved to this label */
} label_count_t;

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The raw rows of a text task before de-duplication. */
typedef struct raw_text_s {
  char **text;
  char **label;
  uint32_t *fi;
  int64_t *row;
  size_t n, cap;
} raw_text_t;

static void raw_text_free(raw_text_t *raw) {
  for (size_t i = 0; i < raw->n; i++) {
    free(raw->text[i]);
    free(raw->label[i]);
  }
  free(raw->text);
  free(raw->label);
  free(raw->fi);
  free(raw->row);
}

static int load_text_file(cli_table_t *t, uint32_t fi, raw_text_t *raw, const char *text_col,
                          const char *label_col, char *errstr, size_t errstr_size) {
  cli_csv_t csv;
  int eof, err = cli_csv_open(&csv, t->file[fi], ',', errstr, errstr_size);
  if (err) return err;
  const char *want[2] = {text_col, label_col};
  int col[2] = {0, 0};
  if ((err = map_header(&csv, want, 2, col, errstr, errstr_size))) goto fail;
  size_t width = csv.n_field;
  for (int64_t r = 0;; r++) {
    if ((err = cli_csv_next(&csv, &eof, errstr, errstr_size))) goto fail;
    if (eof) break;
    if ((err = check_width(&csv, width, errstr, errstr_size))) goto fail;
    if (csv.field[col[1]][0] == '\0') {
      err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                      "%s:%zu: column %d ('%s'): expected a label, found an empty field",
                      csv.path, csv.record_line, col[1] + 1, label_col);
      goto fail;
    }
    if (t->task == CLI_TASK_ABSTRACTS) {
      const char *l = csv.field[col[1]];
      if (!(l[0] >= '1' && l[0] <= '5' && l[1] == '\0')) {
        err = cli__fail(CLI_EFORMAT, errstr, errstr_size,
                        "%s:%zu: column %d ('%s'): expected a condition label 1 to 5, found "
                        "'%.40s'",
                        csv.path, csv.record_line, col[1] + 1, label_col, l);
        goto fail;
      }
    }
    if (raw->n == raw->cap) {
      size_t cap = raw->cap ? raw->cap * 2 : 1024;
      if (grow((void **)&raw->text, cap, sizeof(char *)) ||
          grow((void **)&raw->label, cap, sizeof(char *)) ||
          grow((void **)&raw->fi, cap, sizeof(uint32_t)) ||
          grow((void **)&raw->row, cap, sizeof(int64_t)))
        goto oom;
      raw->cap = cap;
    }
    char *tx = strdup(csv.field[col[0]]), *lb = strdup(csv.field[col[1]]);
    if (tx == NULL || lb == NULL) {
      free(tx);
      free(lb);
      goto oom;
    }
    raw->text[raw->n] = tx;
    raw->label[raw->n] = lb;
    raw->fi[raw->n] = fi;
    raw->row[raw->n] = r;
    raw->n++;
  }
  cli_csv_close(&csv);
  return CLI_OK;
oom:
  err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
fail:
  cli_csv_close(&csv);
  return err;
}

static label_count_t *label_find(label_count_t *lc, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(lc[i].name, name) == 0) return &lc[i];
  return NULL;
}

/*
 * Turns raw text rows into table rows. With `dedup` (MTSamples) one row per distinct text is
 * kept (the first in file order), labelled with the least frequent of its labels (counted
 * over all non-empty rows; ties broken bytewise), and labels with fewer than
 * CLI_MTSAMPLES_MIN_NOTES de-duplicated notes are dropped. Without it (abstracts) every
 * non-empty row stays and identical texts only share a group.
 */
static int finish_text(builder_t *b, raw_text_t *raw, int dedup, char *errstr,
                       size_t errstr_size) {
  cli_table_t *t = b->t;
  int err = CLI_ENOMEM;
  text_row_t *tr = malloc((raw->n ? raw->n : 1) * sizeof(*tr));
  label_count_t *lc = calloc(raw->n ? raw->n : 1, sizeof(*lc));
  char **keep_label = calloc(raw->n ? raw->n : 1, sizeof(char *)); /* borrowed */
  uint64_t *hash = malloc((raw->n ? raw->n : 1) * sizeof(uint64_t));
  size_t n_lc = 0, n_tr = 0, n_empty = 0, n_dup = 0, n_rare = 0;
  if (tr == NULL || lc == NULL || keep_label == NULL || hash == NULL) goto fail;
  for (size_t i = 0; i < raw->n; i++) {
    int empty;
    hash[i] = cli_text_group_hash(raw->text[i], &empty);
    if (empty) {
      n_empty++;
      continue;
    }
    tr[n_tr++] = (text_row_t){hash[i], i};
    label_count_t *l = label_find(lc, n_lc, raw->label[i]);
    if (l == NULL) {
      l = &lc[n_lc++];
      l->name = raw->label[i];
    }
    l->rows++;
  }
  if (dedup) {
    qsort(tr, n_tr, sizeof(*tr), cmp_text_row);
    for (size_t g = 0; g < n_tr;) {
      size_t e = g;
      const char *best = NULL;
      size_t best_rows = 0;
      for (; e < n_tr && tr[e].hash == tr[g].hash; e++) {
        label_count_t *l = label_find(lc, n_lc, raw->label[tr[e].idx]);
        if (best == NULL || l->rows < best_rows ||
            (l->rows == best_rows && strcmp(l->name, best) < 0)) {
          best = l->name;
          best_rows = l->rows;
        }
      }
      keep_label[tr[g].idx] = (char *)best; /* the first row in file order represents it */
      label_find(lc, n_lc, best)->notes++;
      n_dup += e - g - 1;
      g = e;
    }
  } else {
    for (size_t k = 0; k < n_tr; k++) {
      keep_label[tr[k].idx] = raw->label[tr[k].idx];
      label_find(lc, n_lc, raw->label[tr[k].idx])->notes++;
    }
  }
  /* The classes: labels with enough notes, sorted bytewise. */
  size_t n_class = 0;
  t->class_name = calloc(n_lc ? n_lc : 1, sizeof(char *));
  if (t->class_name == NULL) goto fail;
  for (size_t k = 0; k < n_lc; k++) {
    if (lc[k].notes == 0) continue;
    if (dedup && lc[k].notes < CLI_MTSAMPLES_MIN_NOTES) continue;
    if ((t->class_name[n_class] = strdup(lc[k].name)) == NULL) goto fail;
    n_class++;
  }
  t->n_class = n_class;
  qsort(t->class_name, n_class, sizeof(char *), cmp_str_ptr);
  for (size_t i = 0; i < raw->n; i++) {
    if (keep_label[i] == NULL) continue;
    char **cls = bsearch(&keep_label[i], t->class_name, n_class, sizeof(char *), cmp_str_ptr);
    if (cls == NULL) {
      n_rare++;
      continue;
    }
    if (builder_reserve(b)) goto fail;
    size_t r = t->n_rows;
    t->text[r] = raw->text[i];
    raw->text[i] = NULL; /* ownership moves to the table */
    t->label[r] = (double)(cls - t->class_name);
    t->group[r] = hash[i];
    t->order[r] = (double)r;
    t->file_index[r] = raw->fi[i];
    t->row[r] = raw->row[i];
    t->n_rows++;
  }
  table_add_drop(t, "empty text", n_empty);
  table_add_drop(t, "duplicate text (kept once, first in file order)", n_dup);
  if (dedup) {
    char reason[112];
    snprintf(reason, sizeof(reason), "label with fewer than %d de-duplicated notes",
             CLI_MTSAMPLES_MIN_NOTES);
    table_add_drop(t, reason, n_rare);
  }
  err = CLI_OK;
fail:
  if (err != CLI_OK) err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
  free(tr);
  free(lc);
  free(keep_label);
  free(hash);
  return err;
}

/* ---- entry points ------------------------------------------------------------ */

void cli_table_close(cli_table_t *t) {
  for (size_t i = 0; i < t->n_file; i++) free(t->file[i]);
  free(t->file);
  free(t->file_index);
  free(t->row);
  for (size_t i = 0; t->num_name && i < t->n_num; i++) free(t->num_name[i]);
  free(t->num_name);
  free(t->num);
  for (size_t c = 0; t->cat_name && c < t->n_cat; c++) {
    free(t->cat_name[c]);
    for (size_t l = 0; t->cat_level && t->cat_level[c] && l < t->n_cat_level[c]; l++)
      free(t->cat_level[c][l]);
    if (t->cat_level) free(t->cat_level[c]);
  }
  free(t->cat_name);
  free(t->cat_level);
  free(t->n_cat_level);
  free(t->cat);
  if (t->text != NULL)
    for (size_t i = 0; i < t->n_rows; i++) free(t->text[i]);
  free(t->text);
  free(t->label_name);
  free(t->label);
  for (size_t i = 0; t->class_name && i < t->n_class; i++) free(t->class_name[i]);
  free(t->class_name);
  free(t->group);
  free(t->order);
  memset(t, 0, sizeof(*t));
}

static int table_schema(cli_table_t *t) {
  char buf[32];
  switch (t->task) {
  case CLI_TASK_FRAUD: {
    const char *names[29];
    char v[28][4];
    for (int i = 0; i < 28; i++) {
      snprintf(v[i], sizeof(v[i]), "V%d", i + 1);
      names[i] = v[i];
    }
    names[28] = "Amount";
    t->label_kind = CLI_LABEL_BINARY;
    t->label_name = strdup("Class");
    return set_names(&t->num_name, &t->n_num, names, 29);
  }
  case CLI_TASK_AI4I:
    t->label_kind = CLI_LABEL_BINARY;
    t->label_name = strdup("Machine failure");
    if (set_names(&t->num_name, &t->n_num, ai4i_num, 5)) return CLI_ENOMEM;
    {
      const char *cn[1] = {"Type"};
      if (set_names(&t->cat_name, &t->n_cat, cn, 1)) return CLI_ENOMEM;
    }
    t->cat_level = calloc(1, sizeof(char **));
    t->n_cat_level = calloc(1, sizeof(size_t));
    if (t->cat_level == NULL || t->n_cat_level == NULL) return CLI_ENOMEM;
    return set_names(&t->cat_level[0], &t->n_cat_level[0], ai4i_types, 3);
  case CLI_TASK_CMAPSS: {
    char n[24][16];
    const char *names[24];
    for (int i = 0; i < 3; i++) snprintf(n[i], sizeof(n[i]), "setting_%d", i + 1);
    for (int i = 0; i < 21; i++) snprintf(n[3 + i], sizeof(n[3 + i]), "sensor_%d", i + 1);
    for (int i = 0; i < 24; i++) names[i] = n[i];
    t->label_kind = CLI_LABEL_VALUE;
    t->label_name = strdup("RUL");
    return set_names(&t->num_name, &t->n_num, names, 24);
  }
  case CLI_TASK_MTSAMPLES:
  case CLI_TASK_ABSTRACTS:
    t->label_kind = CLI_LABEL_CLASS;
    snprintf(buf, sizeof(buf), "%s",
             t->task == CLI_TASK_MTSAMPLES ? "medical_specialty" : "condition_label");
    t->label_name = strdup(buf);
    return CLI_OK;
  default: return CLI_EUNSUPPORTED;
  }
}

int cli_table_load(cli_table_t *t, cli_task_t task, const char *const *files, size_t n_file,
                   char *errstr, size_t errstr_size) {
  memset(t, 0, sizeof(*t));
  builder_t b = {t, 0};
  raw_text_t raw = {0};
  int err;
  if ((unsigned)task >= CLI_TASK__COUNT)
    return cli__fail(CLI_EUNSUPPORTED, errstr, errstr_size, "unknown task %d", (int)task);
  if (n_file == 0)
    return cli__fail(CLI_EUSAGE, errstr, errstr_size, "%s: at least one data file is needed",
                     cli_task_name(task));
  t->task = task;
  t->file = calloc(n_file, sizeof(char *));
  if (t->file == NULL) goto oom;
  for (size_t i = 0; i < n_file; i++) {
    if ((t->file[i] = strdup(files[i])) == NULL) goto oom;
    t->n_file++;
  }
  if ((err = table_schema(t)) != CLI_OK || t->label_name == NULL) goto oom;
  for (uint32_t fi = 0; fi < n_file; fi++) {
    switch (task) {
    case CLI_TASK_FRAUD: err = load_fraud_file(&b, fi, errstr, errstr_size); break;
    case CLI_TASK_AI4I: err = load_ai4i_file(&b, fi, errstr, errstr_size); break;
    case CLI_TASK_CMAPSS: err = load_cmapss_file(&b, fi, errstr, errstr_size); break;
    case CLI_TASK_MTSAMPLES:
      err = load_text_file(t, fi, &raw, "transcription", "medical_specialty", errstr,
                           errstr_size);
      break;
    default:
      err = load_text_file(t, fi, &raw, "medical_abstract", "condition_label", errstr,
                           errstr_size);
      break;
    }
    if (err) goto fail;
  }
  if (task == CLI_TASK_MTSAMPLES || task == CLI_TASK_ABSTRACTS) {
    if ((err = finish_text(&b, &raw, task == CLI_TASK_MTSAMPLES, errstr, errstr_size)))
      goto fail;
  }
  raw_text_free(&raw);
  if (t->n_rows == 0) {
    err = cli__fail(CLI_EFORMAT, errstr, errstr_size, "%s: no usable data rows in %s%s",
                    cli_task_name(task), files[0], n_file > 1 ? " and the other files" : "");
    cli_table_close(t);
    return err;
  }
  return CLI_OK;
oom:
  err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
fail:
  raw_text_free(&raw);
  cli_table_close(t);
  return err;
}
