/* The text of the services' error codes, generated from the one X-macro table in svc/error.h,
 * and the mapping of libuv codes onto it. */
#include "svc/error.h"

#include <uv.h>

const char *svc_strerror(int err) {
  switch (err) {
  case SVC_OK: return "success";
#define SVC__ERR_STR(name, msg) case SVC_##name: return msg;
  SVC_ERRNO_MAP(SVC__ERR_STR)
#undef SVC__ERR_STR
  default: return "unknown error";
  }
}

const char *svc_err_name(int err) {
  switch (err) {
  case SVC_OK: return "SVC_OK";
#define SVC__ERR_NAME(name, msg) case SVC_##name: return "SVC_" #name;
  SVC_ERRNO_MAP(SVC__ERR_NAME)
#undef SVC__ERR_NAME
  default: return "SVC_UNKNOWN";
  }
}

svc_err_t svc_err_from_uv(int uv_err) {
  switch (uv_err) {
  case 0: return SVC_OK;
  case UV_ENOMEM: return SVC_ENOMEM;
  case UV_EINVAL: return SVC_EINVAL;
  case UV_ENOENT: return SVC_ENOENT;
  case UV_EAGAIN: return SVC_EAGAIN;
  case UV_ETIMEDOUT: return SVC_ETIMEDOUT;
  case UV_ECANCELED: return SVC_ECANCELED;
  case UV_EIO: return SVC_EIO;
  case UV_ENOTCONN: return SVC_ENOTCONN;
  case UV_ECONNRESET:
  case UV_EPIPE: return SVC_ECONNLOST;
  default: return SVC_EUV;
  }
}
