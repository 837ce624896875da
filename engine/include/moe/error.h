/*
 * libmoe's one error enum. Every engine function that can fail returns a moe_err_t: 0 is
 * success, errors are negative. moe_strerror() gives a sentence, moe_err_name() the symbol.
 * Functions that fail on bad input (a model file, a config) also fill a caller-provided
 * errstr with the precise place and reason; the enum says only which kind of failure it was.
 */
#ifndef MOE_ERROR_H
#define MOE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_ERRNO_MAP(XX)                                                     \
  XX(ENOMEM, "out of memory")                                                \
  XX(EINVAL, "invalid argument")                                             \
  XX(EIO, "input/output error")                                              \
  XX(ENOENT, "no such file")                                                 \
  XX(EFORMAT, "malformed model file")                                        \
  XX(ECONFIG, "invalid model configuration")                                 \
  XX(ESHAPE, "tensor shape mismatch")                                        \
  XX(EDTYPE, "unsupported or wrong tensor dtype")                            \
  XX(EMISSING, "required tensor missing")                                    \
  XX(EUNSUPPORTED, "unsupported feature")                                    \
  XX(ERANGE, "value out of range")                                           \
  XX(EDATA, "malformed input data")                                          \
  XX(ENOTTRAINABLE, "model cannot be trained in this form")                  \
  XX(EDIVERGED, "training diverged")

typedef enum {
  MOE_OK = 0,
#define MOE__ERR_ENUM(name, msg) MOE_##name,
  MOE__ERR_FIRST = -1000,
  MOE_ERRNO_MAP(MOE__ERR_ENUM)
#undef MOE__ERR_ENUM
  MOE__ERR_LAST
} moe_err_t;

/* A static sentence for the code; "unknown error" for anything else. Thread-safe. */
const char *moe_strerror(int err);
/* The symbol, e.g. "MOE_EFORMAT". Thread-safe. */
const char *moe_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* MOE_ERROR_H */
