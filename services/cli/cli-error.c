/* The text of the command line's error codes, generated from the X-macro table in cli-error.h. */
#include "cli-error.h"

#include <stdarg.h>
#include <stdio.h>

const char *cli_strerror(int err) {
  switch (err) {
  case CLI_OK: return "success";
#define CLI__ERR_STR(name, msg) case CLI_##name: return msg;
  CLI_ERRNO_MAP(CLI__ERR_STR)
#undef CLI__ERR_STR
  default: return "unknown error";
  }
}

const char *cli_err_name(int err) {
  switch (err) {
  case CLI_OK: return "CLI_OK";
#define CLI__ERR_NAME(name, msg) case CLI_##name: return "CLI_" #name;
  CLI_ERRNO_MAP(CLI__ERR_NAME)
#undef CLI__ERR_NAME
  default: return "CLI_UNKNOWN";
  }
}

int cli__fail(int err, char *errstr, size_t errstr_size, const char *fmt, ...) {
  if (errstr != NULL && errstr_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
  }
  return err;
}
