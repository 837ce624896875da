/* The error table: every code is negative, distinct, named and described. */
#include "test.h"
#include "moe/error.h"

TEST(codes_are_negative_and_named) {
  int codes[] = {
#define X(name, msg) MOE_##name,
    MOE_ERRNO_MAP(X)
#undef X
  };
  int n = (int)(sizeof codes / sizeof codes[0]);
  for (int i = 0; i < n; i++) {
    ASSERT_OP(codes[i], <, 0);
    ASSERT_STR_CONTAINS(moe_err_name(codes[i]), "MOE_E");
    ASSERT(strcmp(moe_strerror(codes[i]), "unknown error") != 0);
    for (int j = i + 1; j < n; j++) ASSERT_NE(codes[i], codes[j]);
  }
  ASSERT_STR_EQ(moe_err_name(MOE_EFORMAT), "MOE_EFORMAT");
  ASSERT_STR_EQ(moe_strerror(12345), "unknown error");
}
