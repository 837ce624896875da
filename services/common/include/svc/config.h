/*
 * Service configuration from one table per service. Each row names a setting, its type, its
 * default, its environment variable, whether it may change while running, and how it is
 * validated; the same table drives parsing, `--help` and the effective-config dump, so that
 * documentation and behaviour cannot drift apart.
 *
 * Sources, highest precedence first: command-line flags > environment > config file > default.
 *   flags   --kafka-brokers=host:9092 or --kafka-brokers host:9092 (the setting name with '.'
 *           and '_' written as '-', though the file spelling is accepted too); a bool flag alone
 *           means true (--keep-tables); two flags are built in: --config FILE and --help.
 *   env     the row's `env` name, e.g. SLUICE_KAFKA_BROKERS.
 *   file    `name = value` lines; '#' starts a comment; blank lines are ignored; a value may
 *           be double-quoted to keep leading/trailing spaces or a '#'. The file is named by
 *           --config FILE or by the environment variable given to svc_cfg_new (if any).
 * Types and their text: string; int (decimal, optional sign); double; bool (true/false,
 * yes/no, on/off, 1/0); enum (one of the row's values, stored as its index); duration
 * ("250ms", "5s", "1.5m", "2h", "0"; stored in milliseconds); size ("512", "64KiB", "10MB",
 * "1GiB"; KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024; stored in bytes).
 *
 * Every bad value is an error naming the source and place (file:line, environment variable,
 * or --flag), the setting, the bad value and what was expected. Unknown file keys and unknown
 * flags are errors with a "did you mean" suggestion. Values land in the caller's struct at
 * each row's offset: string -> char * (owned by the svc_cfg_t; valid until svc_cfg_free or
 * until a reload changes that setting), int/duration/size -> int64_t, double -> double,
 * bool -> bool, enum -> int.
 *
 * Thread-safety: a svc_cfg_t and its target struct belong to one thread (the loop thread of
 * the service); svc_cfg_reload must run there too.
 */
#ifndef SVC_CONFIG_H
#define SVC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SVC_CFG_STRING = 0,
  SVC_CFG_INT,
  SVC_CFG_DOUBLE,
  SVC_CFG_BOOL,
  SVC_CFG_ENUM,
  SVC_CFG_DURATION,
  SVC_CFG_SIZE
} svc_cfg_type_t;

/* Row flags. */
#define SVC_CFG_IMMUTABLE 0u     /* read once at start; a reload that changes it is an error */
#define SVC_CFG_RELOADABLE 1u    /* svc_cfg_reload may change it while running */
#define SVC_CFG_REQUIRED 2u      /* no default: some source must set it */
#define SVC_CFG_SECRET 4u        /* never printed by svc_cfg_dump (passwords, DSNs) */
#define SVC_CFG_NONEMPTY 8u      /* strings: the empty string is rejected */

/* A parsed value, as handed to custom validators. */
typedef union {
  const char *s; /* SVC_CFG_STRING */
  int64_t i;     /* SVC_CFG_INT, SVC_CFG_DURATION (ms), SVC_CFG_SIZE (bytes), SVC_CFG_ENUM */
  double d;      /* SVC_CFG_DOUBLE */
  bool b;        /* SVC_CFG_BOOL */
} svc_cfg_val_t;

typedef struct svc_cfg_def_s svc_cfg_def_t;

/*
 * A custom check: return true to accept. On rejection write what was expected into
 * `expected` (e.g. "a comma-separated host:port list"), which ends up in the error message.
 */
typedef bool (*svc_cfg_check_fn)(const svc_cfg_def_t *def, const svc_cfg_val_t *val,
                                 char *expected, size_t expected_size);

struct svc_cfg_def_s {
  const char *name;          /* "kafka.brokers": file key; flag --kafka-brokers */
  svc_cfg_type_t type;
  const char *def;           /* default as text (parsed like any source); NULL: unset/required */
  const char *env;           /* environment variable, or NULL */
  unsigned flags;            /* SVC_CFG_* above */
  size_t offset;             /* offsetof(your_struct, field) */
  const char *help;          /* one line for --help */
  double min, max;           /* int/double/duration(ms)/size(bytes) range when min < max */
  const char *const *values; /* SVC_CFG_ENUM: NULL-terminated list of accepted words */
  svc_cfg_check_fn check;    /* optional, runs after type and range checks */
};

typedef struct svc_cfg_s svc_cfg_t;

/*
 * Creates a configuration for the table `defs` (terminated by a row whose name is NULL; the
 * table must outlive the svc_cfg_t) writing into `target`. `prog` and `summary` head the help
 * text; `config_env` (may be NULL) names an environment variable that can name the config file.
 * Validates the table itself: a bad default is a programming error reported as SVC_ECONFIG
 * in errstr. Nothing is written to `target` until svc_cfg_load succeeds.
 */
svc_err_t svc_cfg_new(svc_cfg_t **out, const char *prog, const char *summary,
                      const svc_cfg_def_t *defs, void *target, const char *config_env,
                      char *errstr, size_t errstr_size);
/* Frees the configuration and every string it stored in the target. NULL is a no-op. */
void svc_cfg_free(svc_cfg_t *cfg);

/*
 * Reads all sources in precedence order and, only if every value is valid, writes them all to
 * the target. Returns SVC_OK, or SVC_ECONFIG with the first problem in errstr (target
 * untouched), or SVC_ENOENT/SVC_EIO when the named config file cannot be read. After --help
 * it returns SVC_OK without validating required settings; check svc_cfg_help_requested().
 * argv[0] is the program name and is skipped; arguments that are not flags are errors.
 */
svc_err_t svc_cfg_load(svc_cfg_t *cfg, int argc, char *const *argv, char *errstr,
                       size_t errstr_size);

/* True when the last svc_cfg_load saw --help or -h. */
bool svc_cfg_help_requested(const svc_cfg_t *cfg);

/*
 * Re-reads the config file and the environment (flags keep their values from svc_cfg_load)
 * and applies changed RELOADABLE settings. A changed IMMUTABLE setting or any bad value makes
 * the whole reload fail with SVC_ECONFIG and nothing applied. *n_changed (may be NULL)
 * receives the number of settings that changed. Loop thread only.
 */
svc_err_t svc_cfg_reload(svc_cfg_t *cfg, int *n_changed, char *errstr, size_t errstr_size);

/* Writes the generated --help text. */
void svc_cfg_print_help(const svc_cfg_t *cfg, FILE *out);

/*
 * The start of a service's main(): svc_cfg_new, svc_cfg_load from argv, then --help. Returns
 * -1 when the service goes on (*out holds the loaded configuration, for the caller to free);
 * otherwise the exit status main() should return, with nothing left to free: 0 after --help
 * was printed on stdout, 2 after an error printed on stderr as "<prog>: <message>".
 */
int svc_cfg_main(svc_cfg_t **out, const char *prog, const char *summary,
                 const svc_cfg_def_t *defs, void *target, const char *config_env, int argc,
                 char *const *argv);

/*
 * Writes the effective configuration, one `name = value  # source` line per setting, with
 * SECRET values shown as "(secret)". For startup logs and INFO-style dumps.
 */
void svc_cfg_dump(const svc_cfg_t *cfg, FILE *out);

/*
 * Parsers shared with other code that reads these formats (e.g. librdkafka-style strings).
 * Return SVC_OK or SVC_EINVAL; they do not allocate.
 */
svc_err_t svc_parse_duration_ms(const char *text, int64_t *out_ms);
svc_err_t svc_parse_size(const char *text, int64_t *out_bytes);
svc_err_t svc_parse_bool(const char *text, bool *out);

#ifdef __cplusplus
}
#endif
#endif /* SVC_CONFIG_H */
