/*
 * Tests of the safetensors reader and writer (engine/src/io/safetensors.c): a round trip
 * through the writer and the mmap reader, one test per kind of corrupt file asserting both the
 * error code and the message (which must name the tensor or key at fault), alignment copies,
 * the atomic file writer, and allocation fault injection over open and write.
 */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/alloc-impl.h"
#include "io/json.h"
#include "io/safetensors.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
  unsigned char *bytes;
  size_t len;
} blob_t;

/* A file assembled by hand (not by the writer under test): length, header, data. */
static blob_t make_file(const char *header, const void *data, size_t data_len) {
  size_t hl = strlen(header);
  blob_t b = {malloc(8 + hl + data_len + 1), 8 + hl + data_len};
  ASSERT_NOT_NULL(b.bytes);
  for (int i = 0; i < 8; i++) b.bytes[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(b.bytes + 8, header, hl);
  if (data_len) memcpy(b.bytes + 8 + hl, data, data_len);
  return b;
}

/* Opens `header` + `data_len` zero bytes from memory, expecting `code` and exactly `msg`. */
static void open_fails(const char *header, size_t data_len, moe_err_t code, const char *msg) {
  unsigned char zeros[256] = {0};
  ASSERT(data_len <= sizeof zeros);
  blob_t b = make_file(header, zeros, data_len);
  moe_st_file_t *f = (moe_st_file_t *)1;
  char err[512];
  moe_err_t rc = moe_st_open_memory(b.bytes, b.len, &f, err, sizeof err);
  ASSERT_MSG(rc == code, "header %s: got %s (%s), want %s", header, moe_err_name(rc), err,
             moe_err_name(code));
  ASSERT_NULL(f);
  ASSERT_STR_EQ(err, msg);
  free(b.bytes);
}

static moe_st_file_t *open_ok(const void *bytes, size_t len) {
  moe_st_file_t *f = NULL;
  char err[512];
  moe_err_t rc = moe_st_open_memory(bytes, len, &f, err, sizeof err);
  ASSERT_MSG(rc == MOE_OK, "open failed: %s", err);
  return f;
}

static void tmp_path(char *buf, size_t size, const char *name) {
  char dir[200];
  test_unique_name(dir, sizeof dir, "/tmp/sluice-io");
  ASSERT_OK(mkdir(dir, 0700));
  snprintf(buf, size, "%s/%s", dir, name);
}

/* Removes the file and its directory made by tmp_path; the directory must hold nothing else. */
static void tmp_cleanup(const char *path) {
  unlink(path);
  char dir[300];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = '\0';
  ASSERT_MSG(rmdir(dir) == 0, "rmdir %s: %s (temporary file left behind?)", dir, strerror(errno));
}

/* A small model-like set of tensors covering several dtypes, a scalar and an empty tensor. */
static float g_w1[2 * 3] = {1, 2, 3, 4, 5, 6};
static int8_t g_q[5] = {-128, -1, 0, 1, 127};
static uint16_t g_h[4] = {0x3c00, 0x4000, 0xbc00, 0x0001};
static double g_s = 3.25;
static int64_t g_idx[3] = {INT64_MIN, 0, INT64_MAX};

static size_t sample_tensors(moe_st_tensor_t *t) {
  memset(t, 0, 6 * sizeof *t);
  t[0] = (moe_st_tensor_t){.name = "enc.w1", .dtype = MOE_ST_F32, .ndim = 2, .shape = {2, 3},
                           .data = g_w1, .nbytes = sizeof g_w1};
  t[1] = (moe_st_tensor_t){.name = "q", .dtype = MOE_ST_I8, .ndim = 1, .shape = {5},
                           .data = g_q, .nbytes = sizeof g_q};
  t[2] = (moe_st_tensor_t){.name = "h", .dtype = MOE_ST_F16, .ndim = 2, .shape = {2, 2},
                           .data = g_h, .nbytes = sizeof g_h};
  t[3] = (moe_st_tensor_t){.name = "scalar", .dtype = MOE_ST_F64, .ndim = 0,
                           .data = &g_s, .nbytes = sizeof g_s};
  t[4] = (moe_st_tensor_t){.name = "empty", .dtype = MOE_ST_F32, .ndim = 2, .shape = {0, 7},
                           .data = NULL, .nbytes = 0};
  t[5] = (moe_st_tensor_t){.name = "idx", .dtype = MOE_ST_I64, .ndim = 1, .shape = {3},
                           .data = g_idx, .nbytes = sizeof g_idx};
  return 6;
}

static const moe_st_kv_t g_meta[] = {
    {"config", "{\"arch\": \"tabular\", \"labels\": [\"ok\", \"fraud\"], \"name\": \"caf\xc3\xa9\"}"},
    {"format", "pt"},
};

/* Checks that f holds exactly the sample tensors and metadata. */
static void check_sample(const moe_st_file_t *f) {
  moe_st_tensor_t want[6];
  size_t n = sample_tensors(want);
  ASSERT_EQ(moe_st_n_tensors(f), n);
  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *t = moe_st_tensor_find(f, want[i].name);
    ASSERT_MSG(t != NULL, "tensor %s not found", want[i].name);
    ASSERT_STR_EQ(t->name, want[i].name);
    ASSERT_EQ(t->dtype, want[i].dtype);
    ASSERT_EQ(t->ndim, want[i].ndim);
    for (int d = 0; d < t->ndim; d++) ASSERT_EQ(t->shape[d], want[i].shape[d]);
    ASSERT_EQ(t->nbytes, want[i].nbytes);
    ASSERT_NOT_NULL(t->data);
    ASSERT_EQ((uintptr_t)t->data % moe_st_dtype_size(t->dtype), 0);
    if (t->nbytes) ASSERT(memcmp(t->data, want[i].data, t->nbytes) == 0);
  }
  ASSERT_NULL(moe_st_tensor_find(f, "missing"));
  ASSERT_NULL(moe_st_tensor_find(f, "enc"));
  ASSERT_EQ(moe_st_n_metadata(f), 2);
  ASSERT_STR_EQ(moe_st_metadata_find(f, "config"), g_meta[0].value);
  ASSERT_STR_EQ(moe_st_metadata_find(f, "format"), "pt");
  ASSERT_NULL(moe_st_metadata_find(f, "nope"));
  ASSERT_STR_EQ(moe_st_metadata_at(f, 0)->key, "config");
  ASSERT_NULL(moe_st_metadata_at(f, 2));
  /* Data order: ascending offsets covering the buffer. */
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *t = moe_st_tensor_at(f, i);
    ASSERT_EQ(t->offset, off);
    off += t->nbytes;
  }
  ASSERT_NULL(moe_st_tensor_at(f, n));
  ASSERT_EQ(moe_st_data_start(f) + off, moe_st_file_size(f));
}

/* ---- round trips ----------------------------------------------------------- */

TEST(dtype_table) {
  moe_st_dtype_t dt;
  ASSERT_OK(moe_st_dtype_parse("BF16", &dt));
  ASSERT_EQ(dt, MOE_ST_BF16);
  ASSERT_EQ(moe_st_dtype_size(dt), 2);
  ASSERT_OK(moe_st_dtype_parse("F64", &dt));
  ASSERT_EQ(moe_st_dtype_size(dt), 8);
  ASSERT_EQ(moe_st_dtype_parse("f32", &dt), MOE_EDTYPE);
  ASSERT_EQ(moe_st_dtype_parse("F3", &dt), MOE_EDTYPE);
  ASSERT_STR_EQ(moe_st_dtype_name(MOE_ST_U8), "U8");
  ASSERT_NULL(moe_st_dtype_name(MOE_ST_DTYPE_COUNT));
  ASSERT_EQ(moe_st_dtype_size((moe_st_dtype_t)-1), 0);
}

TEST(round_trip_memory) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  void *bytes;
  size_t len;
  char err[512];
  ASSERT_OK(moe_st_write_memory(t, n, g_meta, 2, &bytes, &len, err, sizeof err));
  /* The header is padded with spaces so that the data starts 64-byte aligned. */
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((unsigned char *)bytes)[i];
  ASSERT_EQ((8 + hl) % 64, 0);
  ASSERT_EQ(((char *)bytes)[8], '{');
  moe_st_file_t *f = open_ok(bytes, len);
  check_sample(f);
  ASSERT_EQ(moe_st_data_start(f), 8 + hl);
  moe_st_close(f);
  moe__free(bytes);
}

TEST(round_trip_file) {
  char path[300];
  tmp_path(path, sizeof path, "model.safetensors");
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  char err[512];
  ASSERT_OK(moe_st_write(path, t, n, g_meta, 2, err, sizeof err));
  moe_st_file_t *f = NULL;
  ASSERT_OK(moe_st_open(path, &f, err, sizeof err));
  check_sample(f);
  /* Mapped from a page boundary and written 64-aligned: the first tensor is 64-byte aligned. */
  ASSERT_EQ((uintptr_t)moe_st_tensor_at(f, 0)->data % 64, 0);
  ASSERT_EQ(moe_st_tensor_at(f, 0)->copied, 0);
  moe_st_close(f);
  /* Overwriting replaces the file in place (atomically) and leaves no temporary behind. */
  ASSERT_OK(moe_st_write(path, t, 1, NULL, 0, err, sizeof err));
  ASSERT_OK(moe_st_open(path, &f, err, sizeof err));
  ASSERT_EQ(moe_st_n_tensors(f), 1);
  ASSERT_EQ(moe_st_n_metadata(f), 0);
  moe_st_close(f);
  tmp_cleanup(path);
}

TEST(empty_file_round_trip) {
  void *bytes;
  size_t len;
  char err[256];
  ASSERT_OK(moe_st_write_memory(NULL, 0, NULL, 0, &bytes, &len, err, sizeof err));
  ASSERT_EQ(len, 64);
  moe_st_file_t *f = open_ok(bytes, len);
  ASSERT_EQ(moe_st_n_tensors(f), 0);
  ASSERT_NULL(moe_st_tensor_find(f, "x"));
  moe_st_close(f);
  moe__free(bytes);
}

TEST(hand_built_file_and_data_order) {
  /* As the Python package writes: no padding requirement, any member order. */
  float data[3] = {1.5f, -2.0f, 0.25f};
  unsigned char raw[13];
  raw[0] = 7;
  memcpy(raw + 1, data, sizeof data);
  /* 108 header bytes (one trailing space of padding): "b" starts at file offset 117, which is
   * not a multiple of 4, so the reader must copy it to align its floats. */
  static const char header[] = "{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]},"
                               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} ";
  ASSERT_EQ(strlen(header), 108);
  blob_t b = make_file(header, raw, sizeof raw);
  moe_st_file_t *f = open_ok(b.bytes, b.len);
  ASSERT_STR_EQ(moe_st_tensor_at(f, 0)->name, "a");
  ASSERT_STR_EQ(moe_st_tensor_at(f, 1)->name, "b");
  const moe_st_tensor_t *t = moe_st_tensor_find(f, "b");
  ASSERT_EQ(moe_st_data_start(f), 116);
  ASSERT_EQ(t->copied, 1);
  ASSERT_EQ((uintptr_t)t->data % 4, 0);
  const float *v = t->data;
  ASSERT_NEAR(v[0], 1.5, 0);
  ASSERT_NEAR(v[1], -2.0, 0);
  ASSERT_NEAR(v[2], 0.25, 0);
  ASSERT_EQ(*(const uint8_t *)moe_st_tensor_find(f, "a")->data, 7);
  ASSERT_EQ(moe_st_tensor_find(f, "a")->copied, 0); /* bytes need no alignment */
  moe_st_close(f);
  free(b.bytes);
}

TEST(misaligned_buffer_is_copied) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  void *bytes;
  size_t len;
  char err[256];
  ASSERT_OK(moe_st_write_memory(t, n, g_meta, 2, &bytes, &len, err, sizeof err));
  unsigned char *shifted = malloc(len + 1);
  ASSERT_NOT_NULL(shifted);
  memcpy(shifted + 1, bytes, len);
  moe_st_file_t *f = open_ok(shifted + 1, len);
  check_sample(f); /* checks values and element alignment of every tensor */
  ASSERT_EQ(moe_st_tensor_find(f, "enc.w1")->copied, 1);
  ASSERT_EQ(moe_st_tensor_find(f, "q")->copied, 0);
  moe_st_close(f);
  free(shifted);
  moe__free(bytes);
}

/* Written by the Python `safetensors` package (0.8.0, save_file with numpy arrays): F64 scalar,
 * an empty F64 [0, 3] at the same offset as the next tensor, F32 [2], U8 [1], metadata. */
static const unsigned char g_python_file[] = {
    0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x63, 0x6f, 0x6e, 0x66, 0x69, 0x67,
    0x22, 0x3a, 0x22, 0x7b, 0x7d, 0x22, 0x2c, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x22, 0x3a,
    0x22, 0x6e, 0x70, 0x22, 0x7d, 0x2c, 0x22, 0x73, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70,
    0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
    0x3a, 0x5b, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74,
    0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x38, 0x5d, 0x7d, 0x2c, 0x22, 0x7a, 0x22, 0x3a, 0x7b, 0x22,
    0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61,
    0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x38, 0x2c, 0x38, 0x5d, 0x7d,
    0x2c, 0x22, 0x66, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46,
    0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c,
    0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b,
    0x38, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x62, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79,
    0x70, 0x65, 0x22, 0x3a, 0x22, 0x55, 0x38, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
    0x3a, 0x5b, 0x31, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65,
    0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c, 0x31, 0x37, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x20,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x40, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x20, 0x40,
    0x07,
};

TEST(file_from_python_package) {
  moe_st_file_t *f = open_ok(g_python_file, sizeof g_python_file);
  ASSERT_EQ(moe_st_n_tensors(f), 4);
  const moe_st_tensor_t *s = moe_st_tensor_find(f, "s");
  ASSERT_EQ(s->ndim, 0);
  ASSERT_EQ(s->dtype, MOE_ST_F64);
  ASSERT_NEAR(*(const double *)s->data, 3.0, 0);
  const moe_st_tensor_t *z = moe_st_tensor_find(f, "z");
  ASSERT_EQ(z->ndim, 2);
  ASSERT_EQ(z->shape[0], 0);
  ASSERT_EQ(z->shape[1], 3);
  ASSERT_EQ(z->nbytes, 0);
  const float *v = moe_st_tensor_find(f, "f")->data;
  ASSERT_NEAR(v[0], 1.5, 0);
  ASSERT_NEAR(v[1], 2.5, 0);
  ASSERT_EQ(*(const uint8_t *)moe_st_tensor_find(f, "b")->data, 7);
  ASSERT_STR_EQ(moe_st_metadata_find(f, "format"), "np");
  ASSERT_STR_EQ(moe_st_metadata_find(f, "config"), "{}");
  /* Data order puts the empty tensor before the one that shares its offset. */
  ASSERT_STR_EQ(moe_st_tensor_at(f, 1)->name, "z");
  ASSERT_STR_EQ(moe_st_tensor_at(f, 2)->name, "f");
  moe_st_close(f);
}

/* ---- corrupt files: one test per defect ------------------------------------ */

TEST(too_small) {
  moe_st_file_t *f;
  char err[256];
  unsigned char five[5] = {2, 0, 0, 0, 0};
  ASSERT_EQ(moe_st_open_memory(five, 5, &f, err, sizeof err), MOE_EFORMAT);
  ASSERT_STR_EQ(err, "file is 5 bytes, too small for the 8-byte header length");
  ASSERT_EQ(moe_st_open_memory(five, 0, &f, err, sizeof err), MOE_EFORMAT);
  ASSERT_STR_EQ(err, "file is 0 bytes, too small for the 8-byte header length");
}

TEST(header_length_beyond_file) {
  unsigned char b[10] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  moe_st_file_t *f;
  char err[256];
  ASSERT_EQ(moe_st_open_memory(b, sizeof b, &f, err, sizeof err), MOE_EFORMAT);
  ASSERT_STR_EQ(err, "header length 100 is larger than the 2 bytes that follow it");
}

TEST(header_length_absurd) {
  unsigned char b[10] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'}; /* 2^40 */
  moe_st_file_t *f;
  char err[256];
  ASSERT_EQ(moe_st_open_memory(b, sizeof b, &f, err, sizeof err), MOE_EFORMAT);
  ASSERT_STR_EQ(err, "header length 1099511627776 is larger than the limit of 100000000 bytes");
  unsigned char c[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
  ASSERT_EQ(moe_st_open_memory(c, sizeof c, &f, err, sizeof err), MOE_EFORMAT);
  ASSERT_STR_CONTAINS(err, "header length 18446744073709551615 is larger than the limit");
}

TEST(header_not_json) {
  open_fails("{\"w\":", 0, MOE_EFORMAT, "header: line 1 col 6: expected a value, got end of input");
  open_fails("{\"w\":{\"dtype\":\"F32\",}}", 0, MOE_EFORMAT,
             "header: line 1 col 21: expected a string (object member name), got '}' (trailing comma?)");
}

TEST(header_not_object) {
  open_fails("[1, 2]", 0, MOE_EFORMAT, "header must start with '{' (got byte 0x5B)");
  open_fails("\"x\"  ", 0, MOE_EFORMAT, "header must start with '{' (got byte 0x22)");
  open_fails(" {}", 0, MOE_EFORMAT, "header must start with '{' (got byte 0x20)");
  open_fails("", 0, MOE_EFORMAT, "header is empty (expected a JSON object)");
  /* Starts like an object but is something else. */
  open_fails("{} []", 0, MOE_EFORMAT,
             "header: line 1 col 4: unexpected '[' after the top-level value");
}

TEST(tensor_entry_not_object) {
  open_fails("{\"w\": [0, 4]}", 4, MOE_EFORMAT,
             "tensor 'w': expected an object {dtype, shape, data_offsets}, got array");
}

TEST(unknown_dtype) {
  open_fails("{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, MOE_EDTYPE,
             "tensor 'w': unknown dtype \"F4\"");
  open_fails("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MOE_EDTYPE,
             "tensor 'w': unknown dtype \"f32\"");
  open_fails("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MOE_EFORMAT,
             "tensor 'w': dtype must be a string, got integer");
}

TEST(missing_and_unknown_members) {
  open_fails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MOE_EFORMAT,
             "tensor 'w': missing \"dtype\"");
  open_fails("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, MOE_EFORMAT,
             "tensor 'w': missing \"shape\"");
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MOE_EFORMAT,
             "tensor 'w': missing \"data_offsets\"");
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"strides\":[1]}}", 4,
             MOE_EFORMAT, "tensor 'w': unknown member \"strides\"");
}

TEST(shape_not_array_of_non_negative_integers) {
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", 12, MOE_EFORMAT,
             "tensor 'w': shape must be an array of non-negative integers, got integer");
  open_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[1,1]}}",
             1, MOE_EFORMAT, "tensor 'w': shape[1] must be a non-negative integer, got -1");
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, MOE_EFORMAT,
             "tensor 'w': shape[0] must be a non-negative integer, got 1.5");
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT,
             "tensor 'w': shape[0] must be a non-negative integer, got string");
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
             MOE_EFORMAT, "tensor 'w': shape has 9 dimensions, at most 8 are supported");
}

TEST(element_count_overflow) {
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]}}",
             4, MOE_EFORMAT,
             "tensor 'w': shape [4294967296, 4294967296, 2] of F32 overflows the element count");
  /* The element count fits but the byte count does not. */
  open_fails("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
             MOE_EFORMAT,
             "tensor 'w': shape [4611686018427387904] of F64 overflows the element count");
}

TEST(zero_dimension_is_not_overflow) {
  /* A zero anywhere makes the product 0, however large the other dimensions. */
  blob_t b = make_file(
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
      NULL, 0);
  moe_st_file_t *f = open_ok(b.bytes, b.len);
  ASSERT_EQ(moe_st_tensor_find(f, "w")->nbytes, 0);
  moe_st_close(f);
  free(b.bytes);
}

TEST(data_offsets_not_a_pair) {
  const char *msg =
      "tensor 'w': data_offsets must be [begin, end] with two non-negative integers";
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4, MOE_EFORMAT, msg);
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}}", 4, MOE_EFORMAT, msg);
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,\"4\"]}}", 4, MOE_EFORMAT, msg);
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4, MOE_EFORMAT, msg);
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":{\"begin\":0}}}", 4, MOE_EFORMAT, msg);
}

TEST(data_offsets_begin_after_end) {
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8, MOE_EFORMAT,
             "tensor 'w': data_offsets begin 8 is after end 4");
}

TEST(data_offsets_beyond_buffer) {
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MOE_EFORMAT,
             "tensor 'w': data_offsets end 16 is beyond the data buffer (8 bytes)");
}

TEST(nbytes_mismatch) {
  open_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT,
             "tensor 'w': data_offsets span 8 bytes but shape [3] of F32 needs 12");
  open_fails("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4, MOE_EFORMAT,
             "tensor 'w': data_offsets span 4 bytes but shape [2, 2] of BF16 needs 8");
}

TEST(overlapping_tensors) {
  open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12, MOE_EFORMAT, "tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)");
  /* Two tensors sharing the same bytes. */
  open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             8, MOE_EFORMAT, "tensor 'b' (bytes 0..8) overlaps tensor 'a' (bytes 0..8)");
}

TEST(gap_between_tensors) {
  open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
             12, MOE_EFORMAT,
             "data bytes 4..8 before tensor 'b' belong to no tensor (the format forbids gaps)");
  open_fails("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, MOE_EFORMAT,
             "data bytes 0..4 before tensor 'b' belong to no tensor (the format forbids gaps)");
}

TEST(trailing_data) {
  open_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9, MOE_EFORMAT,
             "data bytes 4..9 after the last tensor belong to no tensor (the format forbids "
             "trailing data)");
  open_fails("{}", 3, MOE_EFORMAT,
             "data bytes 0..3 after the last tensor belong to no tensor (the format forbids "
             "trailing data)");
}

TEST(duplicate_names) {
  open_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
             2, MOE_EFORMAT, "header: line 1 col 54: duplicate object member \"w\"");
}

TEST(bad_names) {
  open_fails("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, MOE_EFORMAT,
             "header: tensor name is empty");
  open_fails("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
             MOE_EFORMAT, "tensor 'a\\x00b': name contains a NUL character");
}

TEST(metadata_not_strings) {
  open_fails("{\"__metadata__\":{\"format\":\"pt\",\"config\":{\"arch\":\"x\"}}}", 0, MOE_EFORMAT,
             "__metadata__['config']: value must be a string, got object");
  open_fails("{\"__metadata__\":{\"version\":3}}", 0, MOE_EFORMAT,
             "__metadata__['version']: value must be a string, got integer");
  open_fails("{\"__metadata__\":[\"config\"]}", 0, MOE_EFORMAT,
             "__metadata__: expected an object of string values, got array");
  open_fails("{\"__metadata__\":{\"config\":\"a\\u0000\"}}", 0, MOE_EFORMAT,
             "__metadata__['config']: value contains a NUL character");
}

TEST(open_path_errors) {
  moe_st_file_t *f = (moe_st_file_t *)1;
  char err[512];
  ASSERT_EQ(moe_st_open("/nonexistent/dir/m.safetensors", &f, err, sizeof err), MOE_ENOENT);
  ASSERT_NULL(f);
  ASSERT_STR_EQ(err, "/nonexistent/dir/m.safetensors: cannot open: No such file or directory");
  ASSERT_EQ(moe_st_open("/tmp", &f, err, sizeof err), MOE_EIO);
  ASSERT_STR_EQ(err, "/tmp: not a regular file");
  /* Format errors from a file name the file. */
  char path[300];
  tmp_path(path, sizeof path, "bad.safetensors");
  FILE *fp = fopen(path, "wb");
  ASSERT_NOT_NULL(fp);
  fwrite("\x02\0\0\0\0\0\0\0[]", 1, 10, fp);
  fclose(fp);
  ASSERT_EQ(moe_st_open(path, &f, err, sizeof err), MOE_EFORMAT);
  char want[400];
  snprintf(want, sizeof want, "%s: header must start with '{' (got byte 0x5B)", path);
  ASSERT_STR_EQ(err, want);
  /* And an empty file. */
  fp = fopen(path, "wb");
  ASSERT_NOT_NULL(fp);
  fclose(fp);
  ASSERT_EQ(moe_st_open(path, &f, err, sizeof err), MOE_EFORMAT);
  snprintf(want, sizeof want, "%s: file is 0 bytes, too small for the 8-byte header length", path);
  ASSERT_STR_EQ(err, want);
  tmp_cleanup(path);
}

/* ---- writer errors ----------------------------------------------------------- */

static void write_fails(const moe_st_tensor_t *t, size_t n, const moe_st_kv_t *m, size_t nm,
                        const char *msg) {
  void *bytes = (void *)1;
  size_t len = 1;
  char err[512];
  ASSERT_EQ(moe_st_write_memory(t, n, m, nm, &bytes, &len, err, sizeof err), MOE_EINVAL);
  ASSERT_NULL(bytes);
  ASSERT_STR_EQ(err, msg);
}

TEST(writer_rejects_bad_descriptions) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  t[1].name = "enc.w1";
  write_fails(t, n, NULL, 0, "tensor 'enc.w1': duplicate name");
  n = sample_tensors(t);
  t[2].nbytes = 6;
  write_fails(t, n, NULL, 0, "tensor 'h': nbytes 6 does not match shape [2, 2] of F16");
  n = sample_tensors(t);
  t[3].name = "__metadata__";
  write_fails(t, n, NULL, 0, "tensors[3]: the name '__metadata__' is reserved");
  n = sample_tensors(t);
  t[0].name = "";
  write_fails(t, n, NULL, 0, "tensors[0]: name is empty");
  n = sample_tensors(t);
  t[0].shape[1] = -3;
  write_fails(t, n, NULL, 0, "tensor 'enc.w1': shape[1] is negative (-3)");
  n = sample_tensors(t);
  t[0].ndim = 9;
  write_fails(t, n, NULL, 0, "tensor 'enc.w1': ndim 9 is not in [0, 8]");
  n = sample_tensors(t);
  t[0].dtype = MOE_ST_DTYPE_COUNT;
  write_fails(t, n, NULL, 0, "tensor 'enc.w1': invalid dtype 15");
  n = sample_tensors(t);
  t[1].data = NULL;
  write_fails(t, n, NULL, 0, "tensor 'q': data is NULL");
  n = sample_tensors(t);
  t[1].name = "bad\xff";
  write_fails(t, n, NULL, 0, "a tensor name or metadata string is not valid UTF-8");
  n = sample_tensors(t);
  moe_st_kv_t dup[2] = {{"config", "a"}, {"config", "b"}};
  write_fails(t, n, dup, 2, "metadata key 'config': duplicate");
  moe_st_kv_t null_value[1] = {{"config", NULL}};
  write_fails(t, n, null_value, 1, "metadata[0]: key or value is NULL");
}

TEST(writer_io_errors) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  char err[512];
  ASSERT_EQ(moe_st_write("/nonexistent/dir/m.safetensors", t, n, NULL, 0, err, sizeof err),
            MOE_EIO);
  ASSERT_STR_EQ(err, "/nonexistent/dir/m.safetensors: cannot create a temporary file: No such "
                     "file or directory");
  /* A failed rename (the target is a directory) leaves the old content and no temporary. */
  char path[300];
  tmp_path(path, sizeof path, "as-dir");
  ASSERT_OK(mkdir(path, 0700));
  ASSERT_EQ(moe_st_write(path, t, n, NULL, 0, err, sizeof err), MOE_EIO);
  ASSERT_STR_CONTAINS(err, "write failed: Is a directory");
  ASSERT_OK(rmdir(path));
  tmp_cleanup(path);
}

/* ---- allocation failures ------------------------------------------------------ */

TEST(fault_injection_open_memory) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  void *bytes;
  size_t len;
  char err[512];
  ASSERT_OK(moe_st_write_memory(t, n, g_meta, 2, &bytes, &len, err, sizeof err));
  /* Shifted by one so that the alignment copies are exercised too. */
  unsigned char *shifted = malloc(len + 1);
  ASSERT_NOT_NULL(shifted);
  memcpy(shifted + 1, bytes, len);
  int64_t live0 = moe_alloc_live();
  uint64_t k;
  for (k = 1;; k++) {
    moe_st_file_t *f = (moe_st_file_t *)1;
    moe_alloc_fault_arm(k);
    moe_err_t rc = moe_st_open_memory(shifted + 1, len, &f, err, sizeof err);
    int fired = moe_alloc_fault_fired();
    moe_alloc_fault_disarm();
    if (!fired) {
      ASSERT_OK(rc);
      check_sample(f);
      moe_st_close(f);
      break;
    }
    ASSERT_MSG(rc == MOE_ENOMEM, "allocation %" PRIu64 ": got %s (%s)", k, moe_err_name(rc), err);
    ASSERT_NULL(f);
    ASSERT_EQ(moe_alloc_live(), live0);
  }
  ASSERT_OP(k, >, 5);
  ASSERT_EQ(moe_alloc_live(), live0);
  free(shifted);
  moe__free(bytes);
}

TEST(fault_injection_write) {
  moe_st_tensor_t t[6];
  size_t n = sample_tensors(t);
  char path[300];
  tmp_path(path, sizeof path, "fault.safetensors");
  char err[512];
  int64_t live0 = moe_alloc_live();
  uint64_t k;
  for (k = 1;; k++) {
    moe_alloc_fault_arm(k);
    moe_err_t rc = moe_st_write(path, t, n, g_meta, 2, err, sizeof err);
    int fired = moe_alloc_fault_fired();
    moe_alloc_fault_disarm();
    if (!fired) {
      ASSERT_OK(rc);
      break;
    }
    ASSERT_MSG(rc == MOE_ENOMEM, "allocation %" PRIu64 ": got %s (%s)", k, moe_err_name(rc), err);
    ASSERT_EQ(access(path, F_OK), -1); /* nothing written on failure */
    ASSERT_EQ(moe_alloc_live(), live0);
  }
  ASSERT_OP(k, >, 3);
  moe_st_file_t *f;
  ASSERT_OK(moe_st_open(path, &f, err, sizeof err));
  check_sample(f);
  moe_st_close(f);
  tmp_cleanup(path);
  ASSERT_EQ(moe_alloc_live(), live0);
}
