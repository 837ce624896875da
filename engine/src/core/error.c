/* The text of libmoe's error codes, generated from the one X-macro table in moe/error.h. */
#include "moe/error.h"

const char *moe_strerror(int err) {
  switch (err) {
  case MOE_OK: return "success";
#define MOE__ERR_STR(name, msg) case MOE_##name: return msg;
  MOE_ERRNO_MAP(MOE__ERR_STR)
#undef MOE__ERR_STR
  default: return "unknown error";
  }
}

const char *moe_err_name(int err) {
  switch (err) {
  case MOE_OK: return "MOE_OK";
#define MOE__ERR_NAME(name, msg) case MOE_##name: return "MOE_" #name;
  MOE_ERRNO_MAP(MOE__ERR_NAME)
#undef MOE__ERR_NAME
  default: return "MOE_UNKNOWN";
  }
}
