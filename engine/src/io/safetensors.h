/*
 * Reading and writing safetensors files, the container of a libmoe model.
 *
 * Format (https://huggingface.co/docs/safetensors): 8 bytes little-endian u64 N, then N bytes
 * of UTF-8 JSON header, then the data buffer. The header is an object mapping each tensor name
 * to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets relative to the
 * start of the data buffer), plus an optional "__metadata__" object of string -> string. The
 * model's JSON config is the string __metadata__["config"].
 *
 * A model file is untrusted input. The reader validates everything and fails with MOE_EFORMAT
 * (MOE_EDTYPE for an unknown dtype) and a message naming the tensor or key and what is wrong.
 * Decisions where the format leaves a choice:
 *   - Coverage: like the reference implementation, the tensors must cover the data buffer
 *     exactly: no gaps, no overlaps, nothing after the last tensor. This keeps files
 *     interchangeable with the Python `safetensors` package and leaves no room for hidden
 *     bytes (polyglot files).
 *   - Header: at most MOE_ST_MAX_HEADER bytes; starts with '{' and may be padded with trailing
 *     spaces (the writer uses that to align the data buffer). Tensor entries may have only dtype, shape and
 *     data_offsets; names must be non-empty and NUL-free; at most MOE_ST_MAX_DIMS dimensions.
 *   - Alignment: every tensor's data pointer is aligned to its element size. When a tensor in
 *     the file (or the memory buffer) is not, the reader copies it once into an aligned heap
 *     block owned by the file (moe_st_tensor_t.copied says so) rather than rejecting the file.
 *     Files written by moe_st_write() start the data buffer at a 64-byte aligned file offset,
 *     so a tensor whose offset is a multiple of 64 is 64-byte aligned when mapped.
 *
 * Thread-safety: an open file is immutable; any number of threads may read it.
 */
#ifndef MOE_IO_SAFETENSORS_H
#define MOE_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"

#define MOE_ST_MAX_DIMS 8
#define MOE_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* The writer aligns the data buffer start to this many bytes (header padded with spaces). */
#define MOE_ST_ALIGN 64

/* Element types, named as in the format ("F32", ...). Sub-byte types are not supported. */
#define MOE_ST_DTYPE_MAP(XX)                                                  \
  XX(BOOL, "BOOL", 1)                                                        \
  XX(U8, "U8", 1)                                                            \
  XX(I8, "I8", 1)                                                            \
  XX(F8_E4M3, "F8_E4M3", 1)                                                  \
  XX(F8_E5M2, "F8_E5M2", 1)                                                  \
  XX(I16, "I16", 2)                                                          \
  XX(U16, "U16", 2)                                                          \
  XX(F16, "F16", 2)                                                          \
  XX(BF16, "BF16", 2)                                                        \
  XX(I32, "I32", 4)                                                          \
  XX(U32, "U32", 4)                                                          \
  XX(F32, "F32", 4)                                                          \
  XX(I64, "I64", 8)                                                          \
  XX(U64, "U64", 8)                                                          \
  XX(F64, "F64", 8)

typedef enum {
#define MOE_ST__DT_ENUM(name, str, size) MOE_ST_##name,
  MOE_ST_DTYPE_MAP(MOE_ST__DT_ENUM)
#undef MOE_ST__DT_ENUM
  MOE_ST_DTYPE_COUNT
} moe_st_dtype_t;

/* "F32" etc., or NULL for an invalid value. */
const char *moe_st_dtype_name(moe_st_dtype_t dtype);
/* Bytes per element, 0 for an invalid value. */
size_t moe_st_dtype_size(moe_st_dtype_t dtype);
/* Parses a dtype name (exact, case-sensitive). Returns MOE_OK or MOE_EDTYPE. */
moe_err_t moe_st_dtype_parse(const char *name, moe_st_dtype_t *out);

/*
 * One tensor. From the reader every field is set and borrowed from the file (valid until
 * moe_st_close). For the writer, fill name, dtype, ndim, shape, data and nbytes.
 */
typedef struct moe_st_tensor_s {
  const char *name;              /* NUL-terminated, non-empty */
  moe_st_dtype_t dtype;
  int ndim;                      /* 0 (scalar) .. MOE_ST_MAX_DIMS */
  int64_t shape[MOE_ST_MAX_DIMS]; /* (ndim), each >= 0 */
  const void *data;              /* (nbytes), aligned to moe_st_dtype_size(dtype) */
  size_t nbytes;                 /* product(shape) * dtype size */
  uint64_t offset;               /* reader: begin offset in the data buffer */
  bool copied;                   /* reader: data was copied to fix its alignment */
} moe_st_tensor_t;

/* One __metadata__ entry (both NUL-terminated UTF-8). */
typedef struct moe_st_kv_s {
  const char *key;
  const char *value;
} moe_st_kv_t;

typedef struct moe_st_file_s moe_st_file_t;

/* ---- reader ------------------------------------------------------------- */

/*
 * Maps the file at `path` read-only and validates it. On success *out owns the mapping (close
 * with moe_st_close); the descriptor is already closed. The file must not be truncated or
 * rewritten in place while open (a shrunk mapping raises SIGBUS on access): replace model files
 * by rename, as moe_st_write() does. On failure *out is NULL and errstr says what is wrong and
 * where, prefixed with the path.
 * Returns MOE_OK, MOE_ENOENT (no such file), MOE_EIO (cannot open/stat/map, not a regular
 * file), MOE_EFORMAT (invalid file), MOE_EDTYPE (unknown dtype) or MOE_ENOMEM.
 */
moe_err_t moe_st_open(const char *path, moe_st_file_t **out, char *errstr, size_t errstr_size);

/*
 * The same over `len` bytes at `buf`, which is borrowed: it must stay valid and unchanged
 * until moe_st_close(). Used by the fuzzer, tests and callers that already hold the bytes.
 */
moe_err_t moe_st_open_memory(const void *buf, size_t len, moe_st_file_t **out, char *errstr,
                             size_t errstr_size);

/* Unmaps / releases everything, including the tensors' copied data. NULL is a no-op. */
void moe_st_close(moe_st_file_t *file);

/* Tensors in data order: ascending offset (an empty tensor sorts before a non-empty one at the
 * same offset; remaining ties by name). */
size_t moe_st_n_tensors(const moe_st_file_t *file);
/* Tensor i (0 <= i < n), or NULL when i is out of range. */
const moe_st_tensor_t *moe_st_tensor_at(const moe_st_file_t *file, size_t i);
/* The tensor named `name`, or NULL. O(log n). */
const moe_st_tensor_t *moe_st_tensor_find(const moe_st_file_t *file, const char *name);

/* __metadata__ entries in header order. */
size_t moe_st_n_metadata(const moe_st_file_t *file);
/* Entry i, or NULL when out of range. */
const moe_st_kv_t *moe_st_metadata_at(const moe_st_file_t *file, size_t i);
/* The value under `key`, or NULL when absent. Valid until moe_st_close(). */
const char *moe_st_metadata_find(const moe_st_file_t *file, const char *key);

/* The whole file's size and the data buffer's file offset (8 + header length). */
size_t moe_st_file_size(const moe_st_file_t *file);
uint64_t moe_st_data_start(const moe_st_file_t *file);

/* ---- writer ------------------------------------------------------------- */

/*
 * Writes `n` tensors (in the given order, contiguous) and `n_meta` metadata entries to `path`
 * atomically: a temporary file in the same directory is written, fsync'ed and renamed over
 * `path`, then the directory is fsync'ed; on failure the temporary is removed and `path` is
 * unchanged. The header is padded with spaces so the data buffer starts at a multiple of
 * MOE_ST_ALIGN. Checks the same rules as the reader (names unique, non-empty, not
 * "__metadata__"; nbytes == product(shape) * dtype size; metadata keys unique).
 * Returns MOE_OK, MOE_EINVAL (bad tensor/metadata description, errstr names it), MOE_EIO or
 * MOE_ENOMEM.
 */
moe_err_t moe_st_write(const char *path, const moe_st_tensor_t *tensors, size_t n,
                       const moe_st_kv_t *metadata, size_t n_meta, char *errstr,
                       size_t errstr_size);

/*
 * The same into memory: *out (free with moe__free) receives the file bytes, *out_len their
 * count. For tests and for callers that ship models over the network.
 */
moe_err_t moe_st_write_memory(const moe_st_tensor_t *tensors, size_t n,
                              const moe_st_kv_t *metadata, size_t n_meta, void **out,
                              size_t *out_len, char *errstr, size_t errstr_size);

#endif /* MOE_IO_SAFETENSORS_H */
