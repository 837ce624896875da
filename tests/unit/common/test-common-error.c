/*
 * The services' error table: every code is negative and distinct, has a sentence and a
 * symbol, unknown codes are named as such, and libuv codes map onto the closest svc code.
 */
#include "test.h"

#include <uv.h>

#include "svc/error.h"

TEST(codes_are_negative_distinct_and_named) {
  int codes[] = {
#define X(name, msg) SVC_##name,
      SVC_ERRNO_MAP(X)
#undef X
  };
  const char *names[] = {
#define X(name, msg) "SVC_" #name,
      SVC_ERRNO_MAP(X)
#undef X
  };
  size_t n = sizeof codes / sizeof codes[0];
  ASSERT_OP(n, >=, 10);
  for (size_t i = 0; i < n; i++) {
    ASSERT_OP(codes[i], <, 0);
    ASSERT_STR_EQ(svc_err_name(codes[i]), names[i]);
    ASSERT(strcmp(svc_strerror(codes[i]), "unknown error") != 0);
    ASSERT(strlen(svc_strerror(codes[i])) > 5);
    for (size_t j = 0; j < i; j++) ASSERT_NE(codes[i], codes[j]);
  }
}

TEST(ok_and_unknown) {
  ASSERT_EQ(SVC_OK, 0);
  ASSERT_STR_EQ(svc_err_name(SVC_OK), "SVC_OK");
  ASSERT_STR_EQ(svc_strerror(0), "success");
  ASSERT_STR_EQ(svc_strerror(12345), "unknown error");
  ASSERT_STR_EQ(svc_err_name(-1), "SVC_UNKNOWN");
  ASSERT_STR_EQ(svc_strerror(SVC_ECONNLOST),
                "connection lost while the request was in flight; outcome unknown");
}

TEST(uv_codes_map) {
  ASSERT_EQ(svc_err_from_uv(0), SVC_OK);
  ASSERT_EQ(svc_err_from_uv(UV_ENOMEM), SVC_ENOMEM);
  ASSERT_EQ(svc_err_from_uv(UV_EAGAIN), SVC_EAGAIN);
  ASSERT_EQ(svc_err_from_uv(UV_ETIMEDOUT), SVC_ETIMEDOUT);
  ASSERT_EQ(svc_err_from_uv(UV_ECONNRESET), SVC_ECONNLOST);
  ASSERT_EQ(svc_err_from_uv(UV_EBADF), SVC_EUV);
}
