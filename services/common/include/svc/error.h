/*
 * The services' one error enum. Every svc_ / kq_ / db_ function that can fail returns a
 * svc_err_t: 0 is success, errors are negative. Codes from librdkafka, libpq and libuv are
 * mapped to these at the adapter boundary and their original text goes into the log line (or
 * into the caller's errstr), so that callers switch on one enum and operators still see the
 * library's own words. svc_strerror() gives a sentence, svc_err_name() the symbol.
 */
#ifndef SVC_ERROR_H
#define SVC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_ERRNO_MAP(XX)                                                     \
  XX(ENOMEM, "out of memory")                                                \
  XX(EINVAL, "invalid argument")                                             \
  XX(ECONFIG, "invalid configuration")                                       \
  XX(EIO, "input/output error")                                              \
  XX(ENOENT, "no such file or entry")                                        \
  XX(EAGAIN, "resource temporarily unavailable, try again later")            \
  XX(ETIMEDOUT, "timed out")                                                 \
  XX(ECANCELED, "operation canceled")                                        \
  XX(ECLOSED, "object is closing or closed")                                 \
  XX(ENOTCONN, "not connected; the request was not sent")                    \
  XX(ECONNLOST, "connection lost while the request was in flight; outcome unknown") \
  XX(EKAFKA, "Kafka client error")                                           \
  XX(EDB, "database error")                                                  \
  XX(EUV, "event loop error")                                                \
  XX(EDECODE, "malformed message")                                           \
  XX(ESTATE, "operation not allowed in the current state")                  \
  XX(ECONFLICT, "a concurrent change was detected; nothing was applied")

typedef enum {
  SVC_OK = 0,
#define SVC__ERR_ENUM(name, msg) SVC_##name,
  SVC__ERR_FIRST = -2000,
  SVC_ERRNO_MAP(SVC__ERR_ENUM)
#undef SVC__ERR_ENUM
  SVC__ERR_LAST
} svc_err_t;

/* A static sentence for the code; "unknown error" for anything else. Thread-safe. */
const char *svc_strerror(int err);
/* The symbol, e.g. "SVC_ECONFIG"; "SVC_UNKNOWN" for anything else. Thread-safe. */
const char *svc_err_name(int err);
/*
 * Maps a libuv error code (negative errno, e.g. UV_ENOMEM) to the closest svc_err_t. The
 * caller logs uv_strerror(uv_err) itself. Thread-safe.
 */
svc_err_t svc_err_from_uv(int uv_err);

#ifdef __cplusplus
}
#endif
#endif /* SVC_ERROR_H */
