/*
 * A strict RFC 8259 JSON parser and a small JSON writer, for model configs (the safetensors
 * header and its __metadata__["config"]) and for config/metrics output.
 *
 * The parser builds a read-only DOM in one arena owned by a moe_json_doc_t: one
 * moe_json_free() releases everything. It enforces depth and size limits, rejects what RFC 8259
 * does not allow (trailing commas, comments, leading zeros, unescaped control characters,
 * invalid UTF-8, lone surrogates, duplicate object members, trailing garbage) and reports the
 * first error as "line L col C: what was expected" (1-based; columns count bytes). Strings are
 * unescaped to UTF-8 (\uXXXX surrogate pairs included) and NUL-terminated; they may contain
 * NUL bytes (from \u0000), so use the length when that matters. Numbers are kept as double and,
 * when the value is integral and exactly representable, also as int64.
 *
 * The typed getters (moe_json_get_*) produce config errors in the form
 * "config.moe.n_expert: expected integer, got string", naming the full path of the value.
 *
 * Thread-safety: a parsed document is immutable; any number of threads may read it.
 */
#ifndef MOE_IO_JSON_H
#define MOE_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"

typedef enum {
  MOE_JSON_NULL = 0,
  MOE_JSON_BOOL,
  MOE_JSON_NUMBER,
  MOE_JSON_STRING,
  MOE_JSON_ARRAY,
  MOE_JSON_OBJECT
} moe_json_type_t;

typedef struct moe_json_s moe_json_t;
typedef struct moe_json_member_s moe_json_member_t;

struct moe_json_s {
  moe_json_type_t type;
  uint32_t line, col; /* where the value starts in the text, 1-based, for messages */
  union {
    bool b;
    struct {
      double d;
      int64_t i;   /* valid when is_int */
      bool is_int; /* integral and exactly representable as int64 */
    } num;
    struct {
      const char *s; /* UTF-8, NUL-terminated, may contain NUL */
      size_t len;
    } str;
    struct {
      moe_json_t **items; /* (n) in document order */
      size_t n;
    } arr;
    struct {
      moe_json_member_t **members; /* (n) in document order */
      moe_json_member_t **sorted;  /* (n) by key bytes, for lookup */
      size_t n;
    } obj;
  } u;
};

struct moe_json_member_s {
  const char *key; /* UTF-8, NUL-terminated, may contain NUL */
  size_t key_len;
  uint32_t line, col; /* where the key starts */
  moe_json_t *value;
};

typedef struct moe_json_doc_s moe_json_doc_t;

/* Limits for untrusted text; zero fields take the defaults. */
typedef struct moe_json_limits_s {
  size_t max_depth; /* nesting of arrays/objects; default MOE_JSON_DEFAULT_MAX_DEPTH */
  size_t max_bytes; /* input length; default MOE_JSON_DEFAULT_MAX_BYTES */
} moe_json_limits_t;

#define MOE_JSON_DEFAULT_MAX_DEPTH 128
#define MOE_JSON_DEFAULT_MAX_BYTES ((size_t)256 << 20)

/* ---- parsing ------------------------------------------------------------ */

/*
 * Parses `len` bytes of `text` (need not be NUL-terminated; a NUL byte inside is an error).
 * `limits` may be NULL. On success *out owns the DOM (free with moe_json_free) and nothing
 * refers back to `text`. On failure *out is NULL and errstr holds "line L col C: reason".
 * Returns MOE_OK, MOE_EDATA (not valid JSON), MOE_ERANGE (a limit was exceeded: depth, size,
 * number out of double range) or MOE_ENOMEM.
 */
moe_err_t moe_json_parse(const char *text, size_t len, const moe_json_limits_t *limits,
                         moe_json_doc_t **out, char *errstr, size_t errstr_size);
/* The top-level value; valid until moe_json_free(doc). */
const moe_json_t *moe_json_root(const moe_json_doc_t *doc);
/* Frees the document and every value in it. NULL is a no-op. */
void moe_json_free(moe_json_doc_t *doc);

/* ---- plain accessors (no errors: NULL / 0 when the type does not match) --- */

/* "null", "boolean", "number", "string", "array", "object". */
const char *moe_json_type_name(moe_json_type_t type);
/* Like moe_json_type_name, but says "integer" for integral numbers. */
const char *moe_json_kind(const moe_json_t *v);
/* Number of items of an array or members of an object; 0 for anything else. */
size_t moe_json_len(const moe_json_t *v);
/* Item i of an array (document order), or NULL when v is not an array or i >= len. */
const moe_json_t *moe_json_at(const moe_json_t *v, size_t i);
/* Member i of an object (document order), or NULL. */
const moe_json_member_t *moe_json_member_at(const moe_json_t *v, size_t i);
/* The value of member `key` (NUL-terminated / `key_len` bytes) of an object, or NULL when v is
 * not an object or has no such member. O(log n). */
const moe_json_t *moe_json_get(const moe_json_t *v, const char *key);
const moe_json_t *moe_json_getn(const moe_json_t *v, const char *key, size_t key_len);
bool moe_json_is_int(const moe_json_t *v);
/*
 * Formats v in the C locale with the fewest significant digits (at least 15) that read back as
 * the same double ("0.1", "3", "1e+300"; "nan"/"inf"/"-inf" for non-finite values, which JSON
 * cannot hold). Returns the length snprintf would produce; 32 bytes always suffice.
 */
size_t moe_json_fmt_num(char *buf, size_t size, double v);

/* ---- typed checks with config errors -------------------------------------
 *
 * `path` names the value for the message, e.g. "config.moe"; member helpers append ".key",
 * callers format array items as "labels[3]". All return MOE_OK, or MOE_ECONFIG with errstr
 * set to "<path>: <reason>", e.g.
 *   "config.moe.n_expert: expected integer, got string"
 *   "config.moe.n_expert: missing"
 *   "config.moe.n_expert: 0 is out of range [1, 256]"
 * Outputs are written only on success. `v` may be NULL (reported as missing).
 */
moe_err_t moe_json_check_type(const moe_json_t *v, moe_json_type_t type, const char *path,
                              char *errstr, size_t errstr_size);
moe_err_t moe_json_to_int(const moe_json_t *v, const char *path, int64_t min, int64_t max,
                          int64_t *out, char *errstr, size_t errstr_size);
moe_err_t moe_json_to_num(const moe_json_t *v, const char *path, double min, double max,
                          double *out, char *errstr, size_t errstr_size);
moe_err_t moe_json_to_bool(const moe_json_t *v, const char *path, bool *out, char *errstr,
                           size_t errstr_size);
/* *out borrows from the document; *len may be NULL. Strings containing NUL are rejected. */
moe_err_t moe_json_to_str(const moe_json_t *v, const char *path, const char **out, size_t *len,
                          char *errstr, size_t errstr_size);

/* Member `key` of object `obj` (itself named `path`), required. If `obj` is not an object the
 * error names `path`. */
moe_err_t moe_json_get_member(const moe_json_t *obj, const char *key, moe_json_type_t type,
                              const char *path, const moe_json_t **out, char *errstr,
                              size_t errstr_size);
moe_err_t moe_json_get_int(const moe_json_t *obj, const char *key, const char *path, int64_t min,
                           int64_t max, int64_t *out, char *errstr, size_t errstr_size);
moe_err_t moe_json_get_num(const moe_json_t *obj, const char *key, const char *path, double min,
                           double max, double *out, char *errstr, size_t errstr_size);
moe_err_t moe_json_get_bool(const moe_json_t *obj, const char *key, const char *path, bool *out,
                            char *errstr, size_t errstr_size);
moe_err_t moe_json_get_str(const moe_json_t *obj, const char *key, const char *path,
                           const char **out, size_t *len, char *errstr, size_t errstr_size);
/* Optional members: when `key` is absent (or JSON null), *out = dflt and MOE_OK. */
moe_err_t moe_json_opt_int(const moe_json_t *obj, const char *key, const char *path, int64_t min,
                           int64_t max, int64_t dflt, int64_t *out, char *errstr,
                           size_t errstr_size);
moe_err_t moe_json_opt_num(const moe_json_t *obj, const char *key, const char *path, double min,
                           double max, double dflt, double *out, char *errstr,
                           size_t errstr_size);
moe_err_t moe_json_opt_bool(const moe_json_t *obj, const char *key, const char *path, bool dflt,
                            bool *out, char *errstr, size_t errstr_size);
moe_err_t moe_json_opt_str(const moe_json_t *obj, const char *key, const char *path,
                           const char *dflt, const char **out, char *errstr, size_t errstr_size);
/*
 * Rejects members of `obj` whose key is not in `allowed` (n_allowed NUL-terminated names):
 * "<path>: unknown member \"foo\"". Catches misspelt config keys that would otherwise be
 * silently ignored.
 */
moe_err_t moe_json_check_members(const moe_json_t *obj, const char *path,
                                 const char *const *allowed, size_t n_allowed, char *errstr,
                                 size_t errstr_size);

/* ---- writer --------------------------------------------------------------
 *
 * A string builder that emits compact JSON. Errors are sticky: calls after the first failure do
 * nothing, and moe_jw_finish() reports it (MOE_ENOMEM; MOE_EINVAL for misuse such as a value
 * where a key is expected, unbalanced end calls or nesting beyond MOE_JW_MAX_DEPTH; MOE_ERANGE
 * for a NaN or infinite number, which JSON cannot represent). Numbers are written in the C
 * locale with the fewest digits that read back to the same double; a double of magnitude 2^53 or
 * more that prints as a plain integer gets ".0", so that it does not read back as an exact int64.
 */
#define MOE_JW_MAX_DEPTH 64

typedef struct moe_jw_s {
  char *buf;
  size_t len, cap;
  moe_err_t err;
  int depth;
  unsigned char n_items[MOE_JW_MAX_DEPTH]; /* 0: nothing written yet at this level (saturating) */
  unsigned char is_obj[MOE_JW_MAX_DEPTH];
  bool after_key; /* a key was written, its value is expected */
} moe_jw_t;

void moe_jw_init(moe_jw_t *jw);
/* Frees the buffer unless moe_jw_finish() took it. Always safe after init. */
void moe_jw_close(moe_jw_t *jw);

void moe_jw_obj_begin(moe_jw_t *jw);
void moe_jw_obj_end(moe_jw_t *jw);
void moe_jw_arr_begin(moe_jw_t *jw);
void moe_jw_arr_end(moe_jw_t *jw);
/* The next member's key (inside an object); escaped. The n variant takes a length, for keys
 * that may contain NUL (from \u0000). */
void moe_jw_key(moe_jw_t *jw, const char *key);
void moe_jw_keyn(moe_jw_t *jw, const char *key, size_t len);
void moe_jw_str(moe_jw_t *jw, const char *s);
void moe_jw_strn(moe_jw_t *jw, const char *s, size_t len);
void moe_jw_int(moe_jw_t *jw, int64_t v);
void moe_jw_uint(moe_jw_t *jw, uint64_t v);
void moe_jw_num(moe_jw_t *jw, double v);
void moe_jw_bool(moe_jw_t *jw, bool v);
void moe_jw_null(moe_jw_t *jw);
/* Appends `len` bytes of already-valid JSON as one value (not checked). */
void moe_jw_raw(moe_jw_t *jw, const char *json, size_t len);
/*
 * Writes a parsed value and everything below it, in document order (re-serialising part of a
 * config). Integers are written exactly, other numbers with moe_json_fmt_num, so parsing the
 * output gives an equal DOM. Values nested deeper than MOE_JW_MAX_DEPTH fail with MOE_EINVAL.
 */
void moe_jw_value(moe_jw_t *jw, const moe_json_t *v);

/*
 * Checks that the document is complete and returns the sticky error. On MOE_OK, *out (may be
 * NULL to keep the buffer in jw->buf) receives the NUL-terminated text, which the caller then
 * owns and frees with moe__free(); *len (may be NULL) its length.
 */
moe_err_t moe_jw_finish(moe_jw_t *jw, char **out, size_t *len);

#endif /* MOE_IO_JSON_H */
