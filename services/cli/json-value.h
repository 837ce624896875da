/*
 * A small JSON reader for the command line: parses a whole document into a tree of values
 * (cli_jv_t) that commands walk by key. `sluice inspect` uses it for the parts of the model
 * config that moe.h does not expose (provenance, norm, routing options; the tensor table comes
 * from moe_model_tensor), `sluice train` for the tokenizer and the safetensors header of the
 * file it wrote, and the CLI tests to check JSON output. The engine's own JSON reader lives in
 * engine/src/io and is private to libmoe, hence this one.
 *
 * Strict RFC 8259: no comments, no trailing commas, no leading zeros, \u escapes (surrogate
 * pairs joined) decoded to UTF-8, nesting limited to CLI_JV_MAX_DEPTH. Object members keep
 * their document order; a duplicate key is an error (safetensors and our config forbid them).
 */
#ifndef CLI_JSON_VALUE_H
#define CLI_JSON_VALUE_H

#include <stddef.h>

#include "cli.h"

#define CLI_JV_MAX_DEPTH 64

typedef enum {
  CLI_JV_NULL = 0,
  CLI_JV_BOOL,
  CLI_JV_NUM,
  CLI_JV_STR,
  CLI_JV_ARR,
  CLI_JV_OBJ
} cli_jv_kind_t;

typedef struct cli_jv_s {
  cli_jv_kind_t kind;
  int b;                  /* CLI_JV_BOOL */
  double num;             /* CLI_JV_NUM */
  char *str;              /* CLI_JV_STR: NUL-terminated UTF-8 (owned) */
  size_t n;               /* CLI_JV_STR: bytes; CLI_JV_ARR / CLI_JV_OBJ: members */
  struct cli_jv_s *items; /* (n) CLI_JV_ARR elements or CLI_JV_OBJ values (owned) */
  char **keys;            /* (n) CLI_JV_OBJ keys, NUL-terminated (owned) */
} cli_jv_t;

/*
 * Parses len bytes of `text` into *out (caller-allocated; free with cli_jv_free). CLI_EFORMAT
 * with "byte N: what was expected" in errstr for text that is not one JSON value, CLI_ENOMEM.
 * On failure *out needs no freeing.
 */
int cli_jv_parse(const char *text, size_t len, cli_jv_t *out, char *errstr, size_t errstr_size);
void cli_jv_free(cli_jv_t *v);

/* The member `key` of an object, or NULL (also when v is NULL or not an object). */
const cli_jv_t *cli_jv_get(const cli_jv_t *v, const char *key);
/* The string of a CLI_JV_STR, else `dflt`. */
const char *cli_jv_str(const cli_jv_t *v, const char *dflt);
/* The number of a CLI_JV_NUM, else `dflt`. */
double cli_jv_num(const cli_jv_t *v, double dflt);
/* The truth of a CLI_JV_BOOL, else `dflt`. */
int cli_jv_bool(const cli_jv_t *v, int dflt);

/* Writes v through the --json writer (as one value, after a key or inside an array). */
void cli_jv_emit(cli_json_t *js, const cli_jv_t *v);
/* Writes v as compact JSON to `out` (for the human-readable table). */
void cli_jv_print(FILE *out, const cli_jv_t *v);

#endif /* CLI_JSON_VALUE_H */
