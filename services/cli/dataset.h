/*
 * Dataset readers for the five tasks of Sluice's domain models, and the uniform table they
 * yield. Each loader reads the shared public files (../shared/data, see its README) in exactly
 * their formats: creditcard and AI4I CSV (optional UTF-8 BOM), MTSamples CSV with quoted
 * multi-line fields, the medical abstracts CSV, and the C-MAPSS space-separated text files
 * with no header and trailing spaces. Loaders validate every field and fail with
 * "file:line: column N ('name'): what was expected" rather than guess.
 *
 * The table is column-oriented: per row the index of the data row in its file (0-based, file
 * order, header not counted), numeric features, categorical features as level indices, text,
 * the label, a group key for splits and an ordering key for time splits. Which columns are
 * features is decided here, once, for every consumer (CLI, training, evaluation):
 *   fraud            V1..V28, Amount (Time orders the rows, never a feature); label Class.
 *   fault-ai4i       the five physical readings + Type (L/M/H); label Machine failure; UDI
 *                    orders the rows; Product ID and the five failure-mode flags (TWF, HDF,
 *                    PWF, OSF, RNF) are never features.
 *   fault-cmapss     3 operational settings + 21 sensors per cycle; group = engine unit,
 *                    order = cycle; label = remaining useful life (last cycle - cycle).
 *   records-mtsamples  transcription text; label medical_specialty exactly as written, after
 *                    the de-duplication and rare-label rule in bench/quality/SPLITS.md.
 *   records-abstracts  medical_abstract text; label condition_label ("1".."5").
 */
#ifndef CLI_DATASET_H
#define CLI_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "cli-error.h"

typedef enum {
  CLI_TASK_FRAUD = 0,
  CLI_TASK_AI4I,
  CLI_TASK_CMAPSS,
  CLI_TASK_MTSAMPLES,
  CLI_TASK_ABSTRACTS,
  CLI_TASK__COUNT
} cli_task_t;

typedef enum {
  CLI_LABEL_BINARY = 0, /* label[i] is 0 or 1 */
  CLI_LABEL_CLASS,      /* label[i] is an index into class_name */
  CLI_LABEL_VALUE       /* label[i] is a real value (remaining useful life) */
} cli_label_kind_t;

/* MTSamples: a label needs at least this many de-duplicated notes to be a class. */
#define CLI_MTSAMPLES_MIN_NOTES 50
#define CLI_MAX_DROP 8

/*
 * The age channel of a C-MAPSS window: the engine's cycle count (the file's second column,
 * cli_table_t.order), read by a model trained with `sluice train --age` under this name. It is
 * not one of the table's numeric columns; in an event it is SensorReading.sequence, which the
 * worker reads under the same name (WK_FAULT_AGE_CHANNEL, services/worker/fault/fault-input.h).
 */
#define CLI_AGE_CHANNEL "cycle"

typedef struct cli_drop_s {
  char reason[112];
  size_t count;
} cli_drop_t;

typedef struct cli_table_s {
  cli_task_t task;
  size_t n_rows;
  char **file;          /* (n_file) the --data paths, in order */
  size_t n_file;
  uint32_t *file_index; /* (n_rows) which file the row came from */
  int64_t *row;         /* (n_rows) 0-based data row in its file, header not counted */
  size_t n_num;
  char **num_name;      /* (n_num) */
  double *num;          /* (n_rows, n_num) row-major */
  size_t n_cat;
  char **cat_name;      /* (n_cat) */
  char ***cat_level;    /* (n_cat)(n_cat_level[c]) level strings */
  size_t *n_cat_level;  /* (n_cat) */
  int32_t *cat;         /* (n_rows, n_cat) level index */
  char **text;          /* (n_rows) NUL-terminated, or NULL when the task has no text */
  cli_label_kind_t label_kind;
  char *label_name;     /* the label column's name */
  double *label;        /* (n_rows) */
  char **class_name;    /* (n_class) for CLI_LABEL_CLASS, sorted bytewise */
  size_t n_class;
  uint64_t *group;      /* (n_rows) unit, text hash, or the row itself */
  double *order;        /* (n_rows) Time, UDI or cycle */
  cli_drop_t drop[CLI_MAX_DROP]; /* rows read but not in the table, and why */
  size_t n_drop;
} cli_table_t;

/* "fraud", "fault-ai4i", "fault-cmapss", "records-mtsamples", "records-abstracts". */
const char *cli_task_name(cli_task_t task);
/* CLI_OK and *out for a known name; CLI_EUNSUPPORTED otherwise. */
int cli_task_parse(const char *name, cli_task_t *out);

/*
 * Loads `n_file` files of one task into `t` (caller-allocated; close with cli_table_close).
 * Several files are concatenated in the order given; rows keep their per-file index. On
 * failure `t` needs no close and errstr says which file, line and column, and what was
 * expected. Not thread-safe with respect to `t`; distinct tables may load concurrently.
 */
int cli_table_load(cli_table_t *t, cli_task_t task, const char *const *files, size_t n_file,
                   char *errstr, size_t errstr_size);
void cli_table_close(cli_table_t *t);

/*
 * C-MAPSS test files end before failure; the true remaining useful life at each unit's last
 * row is in a separate RUL file (RUL_FD001.txt: one non-negative integer per line, one line
 * per unit in the order the units appear). Reads it and sets every row's label to
 * RUL + (last cycle - cycle). `t` must be a fault-cmapss table of one file. CLI_EFORMAT with
 * "file:line: ..." when a line is not a non-negative integer or the count of values is not the
 * number of units; `t` is unchanged on error.
 */
int cli_table_apply_rul(cli_table_t *t, const char *rul_path, char *errstr, size_t errstr_size);

/* 64-bit FNV-1a of n bytes (the hash every split uses; bench/quality does the same). */
uint64_t cli_fnv1a64(const void *data, size_t n);
/*
 * The grouping hash of a text: FNV-1a over the text with ASCII letters lowercased, every run
 * of ASCII whitespace (space, \t, \n, \v, \f, \r) replaced by one space, and no leading or
 * trailing space. *empty is set to 1 when nothing is left (the note is empty).
 */
uint64_t cli_text_group_hash(const char *text, int *empty);

#endif /* CLI_DATASET_H */
