/*
 * The error enum of the `sluice` command line (prefix cli_). Every cli_ function that can fail
 * returns a cli_err_t: 0 is success, errors are negative. Functions that fail on bad input (a
 * data file, an option) also fill a caller-provided errstr with the file, line, column and what
 * was expected; the enum only says which kind of failure it was.
 */
#ifndef CLI_ERROR_H
#define CLI_ERROR_H

#include <stddef.h>

#define CLI_ERRNO_MAP(XX)                                                     \
  XX(ENOMEM, "out of memory")                                                \
  XX(EINVAL, "invalid argument")                                             \
  XX(EIO, "input/output error")                                              \
  XX(ENOENT, "no such file")                                                 \
  XX(EFORMAT, "malformed data file")                                         \
  XX(EUSAGE, "bad command line")                                             \
  XX(EUNSUPPORTED, "unsupported task or option")

typedef enum {
  CLI_OK = 0,
#define CLI__ERR_ENUM(name, msg) CLI_##name,
  CLI__ERR_FIRST = -2000,
  CLI_ERRNO_MAP(CLI__ERR_ENUM)
#undef CLI__ERR_ENUM
  CLI__ERR_LAST
} cli_err_t;

/* A static sentence for the code; "unknown error" for anything else. */
const char *cli_strerror(int err);
/* The symbol, e.g. "CLI_EFORMAT". */
const char *cli_err_name(int err);

/* snprintf into errstr (when errstr_size > 0); returns err, for `return cli__fail(...)`. */
int cli__fail(int err, char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* CLI_ERROR_H */
