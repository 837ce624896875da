/*
 * The frame of the `sluice` command line: the command table, the --json writer and the
 * progress bar that every command shares. A command is one function taking the arguments
 * after its name (argv[0] is the command's full name, e.g. "data describe") and returning the
 * process exit status. To add a command (train, eval, inspect, ...), write it in its own
 * cmd-<name>.c and add one row to the table in commands.c; --help and the command list come
 * from that row.
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli-error.h"

/* Exit statuses: 0 success, 1 failure while working, 2 bad command line (as getopt tools). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct cli_cmd_s {
  const char *name;     /* "version", "data describe": words after `sluice` */
  const char *summary;  /* one line for the command list */
  const char *usage;    /* the full --help text */
  cli_cmd_fn run;
} cli_cmd_t;

/* The command table (commands.c), ended by a row whose name is NULL. */
extern const cli_cmd_t cli_commands[];

/*
 * Dispatches argv (as main() got it) to the command whose name matches the longest run of
 * leading words; prints the list of commands for `sluice`, `sluice --help`, `sluice help`,
 * and a group's sub-commands for e.g. `sluice data`. Returns the exit status.
 */
int cli_main(int argc, char **argv);

/* The usage text of the command named `name` ("" when there is none). */
const char *cli_cmd_usage(const char *name);
/* A usage error of command `cmd` ("eval"): "sluice eval: <message>", a blank line and the
 * command's usage text on stderr. Returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a command's usage text to `out`. */
void cli_cmd_help(const cli_cmd_t *cmd, FILE *out);
/* Non-zero when argv[1..argc) contains -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/* ---- JSON output ------------------------------------------------------------
 *
 * A streaming writer for the one JSON object that --json prints on stdout. It inserts commas
 * and escapes strings; the caller keeps begin/end balanced. Non-finite numbers become null.
 */
typedef struct cli_json_s {
  FILE *out;
  int depth;
  uint8_t need_comma[32]; /* per depth: something was written at this level */
  int after_key;
} cli_json_t;

void cli_json_init(cli_json_t *js, FILE *out);
void cli_json_obj_begin(cli_json_t *js);
void cli_json_obj_end(cli_json_t *js);
void cli_json_arr_begin(cli_json_t *js);
void cli_json_arr_end(cli_json_t *js);
void cli_json_key(cli_json_t *js, const char *key);
void cli_json_str(cli_json_t *js, const char *s);
void cli_json_num(cli_json_t *js, double v);
void cli_json_int(cli_json_t *js, long long v);
void cli_json_bool(cli_json_t *js, int v);
/* Writes `s` as a JSON string literal (with quotes) to `out`. */
void cli_json_write_string(FILE *out, const char *s);

/* ---- progress bar -----------------------------------------------------------
 *
 * Draws "label [#####     ]  42 % 1234/5678" on stderr, at most ten times a second, only
 * when stderr is a terminal (and SLUICE_NO_PROGRESS is unset): logs and pipes stay clean.
 */
typedef struct cli_progress_s {
  const char *label; /* borrowed for the bar's lifetime */
  uint64_t total;
  double last_draw;
  int enabled;
  int drawn;
} cli_progress_t;

void cli_progress_init(cli_progress_t *pb, const char *label, uint64_t total);
void cli_progress_update(cli_progress_t *pb, uint64_t done);
/* Draws the final state and ends the line (nothing when disabled). */
void cli_progress_close(cli_progress_t *pb);
/* The bar text for `done` of `total`, for tests; returns buf. */
char *cli_progress_format(char *buf, size_t size, const char *label, uint64_t done,
                          uint64_t total, int width);

/* ---- task metrics -------------------------------------------------------------
 *
 * The metrics `sluice eval` prints and `sluice train` stores in the model card, computed with
 * libmoe (moe/metrics.h) as bench/quality/baselines.py does:
 *   binary      pr_auc, roc_auc, recall_at_1pct_fpr, threshold, precision, recall, f1 (at the
 *               threshold), best_f1_threshold, best_f1;
 *   multiclass  accuracy, macro_f1 (predicted class = arg max);
 *   regression  rmse, mae, phm_score (first output).
 * A metric that is undefined for the data (one class only, ...) is NaN.
 */
#define CLI_MAX_METRICS 12

typedef struct cli_metric_s {
  const char *name; /* static */
  double value;
} cli_metric_t;

/*
 * task_kind is a moe_task_t; scores (n, n_out) as moe_session_run gives them; truth (n) is 0/1,
 * a class index or a value. Fills mt (CLI_MAX_METRICS entries) and *n_mt. CLI_ENOMEM or CLI_OK.
 */
int cli_task_metrics(int task_kind, int n_out, const float *scores, const double *truth, size_t n,
                     double threshold, cli_metric_t *mt, int *n_mt);

/* ---- commands ------------------------------------------------------------------ */

int cli_cmd_version(int argc, char **argv);
int cli_cmd_data_describe(int argc, char **argv);
int cli_cmd_inspect(int argc, char **argv);
int cli_cmd_eval(int argc, char **argv);
int cli_cmd_replay(int argc, char **argv);
int cli_cmd_train(int argc, char **argv);
int cli_cmd_topic_create(int argc, char **argv);

#endif /* CLI_H */
