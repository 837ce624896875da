/*
 * The safetensors reader (mmap or borrowed memory, full validation with one precise message per
 * kind of defect) and the atomic writer. See safetensors.h for the format and the decisions
 * taken where the format leaves a choice (coverage, padding, alignment).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc-impl.h"
#include "io/json.h"
#include "io/safetensors.h"

#define ERRBUF 512

struct moe_st_file_s {
  const unsigned char *base; /* (size) the whole file */
  size_t size;
  bool mapped; /* base is our mmap, to munmap on close */
  uint64_t data_start;
  moe_json_doc_t *doc; /* names and metadata point into it */
  moe_st_tensor_t *tensors; /* (n) in data order */
  const moe_st_tensor_t **by_name; /* (n) sorted by name */
  size_t n;
  moe_st_kv_t *meta; /* (n_meta) in header order */
  size_t n_meta;
};

/* ---- dtypes --------------------------------------------------------------- */

static const struct {
  const char *name;
  size_t size;
} g_dtypes[MOE_ST_DTYPE_COUNT] = {
#define MOE_ST__DT_ROW(name, str, size) {str, size},
    MOE_ST_DTYPE_MAP(MOE_ST__DT_ROW)
#undef MOE_ST__DT_ROW
};

const char *moe_st_dtype_name(moe_st_dtype_t dtype) {
  if ((unsigned)dtype >= MOE_ST_DTYPE_COUNT) return NULL;
  return g_dtypes[dtype].name;
}

size_t moe_st_dtype_size(moe_st_dtype_t dtype) {
  if ((unsigned)dtype >= MOE_ST_DTYPE_COUNT) return 0;
  return g_dtypes[dtype].size;
}

static moe_err_t dtype_parse_n(const char *name, size_t len, moe_st_dtype_t *out) {
  for (int i = 0; i < MOE_ST_DTYPE_COUNT; i++) {
    if (strlen(g_dtypes[i].name) == len && memcmp(g_dtypes[i].name, name, len) == 0) {
      *out = (moe_st_dtype_t)i;
      return MOE_OK;
    }
  }
  return MOE_EDTYPE;
}

moe_err_t moe_st_dtype_parse(const char *name, moe_st_dtype_t *out) {
  return dtype_parse_n(name, strlen(name), out);
}

/* ---- messages ------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static moe_err_t fail(char *errstr, size_t errstr_size,
                                                            moe_err_t err, const char *fmt, ...) {
  if (errstr != NULL && errstr_size > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
  }
  return err;
}

/* A name for messages: printable ASCII kept, other bytes as \xNN, long names cut with "...". */
static const char *quoted(char *buf, size_t size, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (o + 8 >= size || i >= 80) {
      memcpy(buf + o, "...", 4);
      return buf;
    }
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'')
      buf[o++] = (char)c;
    else
      o += (size_t)snprintf(buf + o, size - o, "\\x%02X", c);
  }
  buf[o] = '\0';
  return buf;
}

/* "[2, 3]" */
static const char *shape_str(char *buf, size_t size, const int64_t *shape, int ndim) {
  size_t o = 0;
  o += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (o < size) snprintf(buf + o, size - o, "]");
  return buf;
}

/* product(shape) * elem_size without overflow; false on overflow. */
static bool nbytes_of(const int64_t *shape, int ndim, size_t elem, uint64_t *out) {
  uint64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && n > UINT64_MAX / d) {
      /* A zero dimension later makes the product 0; check for it before calling it overflow. */
      for (int j = i + 1; j < ndim; j++)
        if (shape[j] == 0) {
          *out = 0;
          return true;
        }
      return false;
    }
    n *= d;
  }
  if (elem != 0 && n > UINT64_MAX / elem) return false;
  *out = n * elem;
  return true;
}

/* ---- reader -------------------------------------------------------------- */

static int tensor_data_cmp(const void *a, const void *b) {
  const moe_st_tensor_t *x = a, *y = b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int tensor_name_cmp(const void *a, const void *b) {
  const moe_st_tensor_t *x = *(const moe_st_tensor_t *const *)a;
  const moe_st_tensor_t *y = *(const moe_st_tensor_t *const *)b;
  return strcmp(x->name, y->name);
}

void moe_st_close(moe_st_file_t *file) {
  if (file == NULL) return;
  if (file->tensors != NULL) {
    for (size_t i = 0; i < file->n; i++)
      if (file->tensors[i].copied) moe__free_aligned((void *)file->tensors[i].data);
  }
  moe__free(file->tensors);
  moe__free(file->by_name);
  moe__free(file->meta);
  moe_json_free(file->doc);
  if (file->mapped) munmap((void *)file->base, file->size);
  moe__free(file);
}

static const char *const g_tensor_members[] = {"dtype", "shape", "data_offsets"};

/* Reads one tensor entry into *t (name already set); data_len is the data buffer's size. */
static moe_err_t parse_tensor(const moe_json_t *v, moe_st_tensor_t *t, uint64_t data_len,
                              char *errstr, size_t errstr_size) {
  char nb[128], sb[256];
  const char *name = quoted(nb, sizeof nb, t->name, strlen(t->name));
  if (v->type != MOE_JSON_OBJECT)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': expected an object {dtype, shape, data_offsets}, got %s", name,
                moe_json_kind(v));
  for (size_t i = 0; i < moe_json_len(v); i++) {
    const moe_json_member_t *m = moe_json_member_at(v, i);
    bool known = false;
    for (size_t j = 0; j < 3 && !known; j++)
      known = strlen(g_tensor_members[j]) == m->key_len &&
              memcmp(g_tensor_members[j], m->key, m->key_len) == 0;
    if (!known)
      return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': unknown member \"%s\"", name,
                  quoted(sb, sizeof sb, m->key, m->key_len));
  }
  const moe_json_t *dt = moe_json_get(v, "dtype");
  const moe_json_t *shape = moe_json_get(v, "shape");
  const moe_json_t *offs = moe_json_get(v, "data_offsets");
  if (dt == NULL)
    return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': missing \"dtype\"", name);
  if (shape == NULL)
    return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': missing \"shape\"", name);
  if (offs == NULL)
    return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': missing \"data_offsets\"", name);

  if (dt->type != MOE_JSON_STRING)
    return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': dtype must be a string, got %s",
                name, moe_json_kind(dt));
  if (dtype_parse_n(dt->u.str.s, dt->u.str.len, &t->dtype) != MOE_OK)
    return fail(errstr, errstr_size, MOE_EDTYPE, "tensor '%s': unknown dtype \"%s\"", name,
                quoted(sb, sizeof sb, dt->u.str.s, dt->u.str.len));

  if (shape->type != MOE_JSON_ARRAY)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': shape must be an array of non-negative integers, got %s", name,
                moe_json_kind(shape));
  if (moe_json_len(shape) > MOE_ST_MAX_DIMS)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': shape has %zu dimensions, at most %d are supported", name,
                moe_json_len(shape), MOE_ST_MAX_DIMS);
  t->ndim = (int)moe_json_len(shape);
  for (int i = 0; i < t->ndim; i++) {
    const moe_json_t *d = moe_json_at(shape, (size_t)i);
    if (!moe_json_is_int(d) || d->u.num.i < 0) {
      if (d->type == MOE_JSON_NUMBER) {
        char num[40];
        moe_json_fmt_num(num, sizeof num, d->u.num.d);
        return fail(errstr, errstr_size, MOE_EFORMAT,
                    "tensor '%s': shape[%d] must be a non-negative integer, got %s", name, i, num);
      }
      return fail(errstr, errstr_size, MOE_EFORMAT,
                  "tensor '%s': shape[%d] must be a non-negative integer, got %s", name, i,
                  moe_json_kind(d));
    }
    t->shape[i] = d->u.num.i;
  }
  uint64_t need;
  if (!nbytes_of(t->shape, t->ndim, moe_st_dtype_size(t->dtype), &need) || need > SIZE_MAX)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': shape %s of %s overflows the element count", name,
                shape_str(sb, sizeof sb, t->shape, t->ndim), moe_st_dtype_name(t->dtype));

  if (offs->type != MOE_JSON_ARRAY || moe_json_len(offs) != 2 ||
      !moe_json_is_int(moe_json_at(offs, 0)) || !moe_json_is_int(moe_json_at(offs, 1)) ||
      moe_json_at(offs, 0)->u.num.i < 0 || moe_json_at(offs, 1)->u.num.i < 0)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': data_offsets must be [begin, end] with two non-negative integers",
                name);
  uint64_t begin = (uint64_t)moe_json_at(offs, 0)->u.num.i;
  uint64_t end = (uint64_t)moe_json_at(offs, 1)->u.num.i;
  if (begin > end)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': data_offsets begin %" PRIu64 " is after end %" PRIu64, name, begin,
                end);
  if (end > data_len)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': data_offsets end %" PRIu64
                " is beyond the data buffer (%" PRIu64 " bytes)",
                name, end, data_len);
  if (end - begin != need)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "tensor '%s': data_offsets span %" PRIu64 " bytes but shape %s of %s needs %" PRIu64,
                name, end - begin, shape_str(sb, sizeof sb, t->shape, t->ndim),
                moe_st_dtype_name(t->dtype), need);
  t->offset = begin;
  t->nbytes = (size_t)need;
  return MOE_OK;
}

static moe_err_t parse_metadata(moe_st_file_t *f, const moe_json_t *v, char *errstr,
                                size_t errstr_size) {
  char kb[128];
  if (v->type != MOE_JSON_OBJECT)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "__metadata__: expected an object of string values, got %s", moe_json_kind(v));
  f->n_meta = moe_json_len(v);
  f->meta = moe__calloc(f->n_meta ? f->n_meta : 1, sizeof *f->meta);
  if (f->meta == NULL) return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
  for (size_t i = 0; i < f->n_meta; i++) {
    const moe_json_member_t *m = moe_json_member_at(v, i);
    const char *key = quoted(kb, sizeof kb, m->key, m->key_len);
    if (memchr(m->key, '\0', m->key_len) != NULL)
      return fail(errstr, errstr_size, MOE_EFORMAT, "__metadata__ key '%s' contains a NUL character",
                  key);
    if (m->value->type != MOE_JSON_STRING)
      return fail(errstr, errstr_size, MOE_EFORMAT,
                  "__metadata__['%s']: value must be a string, got %s", key,
                  moe_json_kind(m->value));
    if (memchr(m->value->u.str.s, '\0', m->value->u.str.len) != NULL)
      return fail(errstr, errstr_size, MOE_EFORMAT,
                  "__metadata__['%s']: value contains a NUL character", key);
    f->meta[i].key = m->key;
    f->meta[i].value = m->value->u.str.s;
  }
  return MOE_OK;
}

/* Checks that the tensors (sorted by data order) tile the data buffer exactly. */
static moe_err_t check_coverage(const moe_st_file_t *f, uint64_t data_len, char *errstr,
                                size_t errstr_size) {
  uint64_t covered = 0;
  char nb[128], pb[128];
  const moe_st_tensor_t *prev = NULL;
  for (size_t i = 0; i < f->n; i++) {
    const moe_st_tensor_t *t = &f->tensors[i];
    if (t->offset < covered)
      return fail(errstr, errstr_size, MOE_EFORMAT,
                  "tensor '%s' (bytes %" PRIu64 "..%" PRIu64 ") overlaps tensor '%s' (bytes %" PRIu64
                  "..%" PRIu64 ")",
                  quoted(nb, sizeof nb, t->name, strlen(t->name)), t->offset,
                  t->offset + t->nbytes, quoted(pb, sizeof pb, prev->name, strlen(prev->name)),
                  prev->offset, prev->offset + prev->nbytes);
    if (t->offset > covered)
      return fail(errstr, errstr_size, MOE_EFORMAT,
                  "data bytes %" PRIu64 "..%" PRIu64
                  " before tensor '%s' belong to no tensor (the format forbids gaps)",
                  covered, t->offset, quoted(nb, sizeof nb, t->name, strlen(t->name)));
    if (t->nbytes > 0 || prev == NULL) prev = t;
    covered = t->offset + t->nbytes;
  }
  if (covered != data_len)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "data bytes %" PRIu64 "..%" PRIu64
                " after the last tensor belong to no tensor (the format forbids trailing data)",
                covered, data_len);
  return MOE_OK;
}

/* Validates the bytes at f->base and fills f; errors carry no path prefix. */
static moe_err_t st_parse(moe_st_file_t *f, char *errstr, size_t errstr_size) {
  if (f->size < 8)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "file is %zu bytes, too small for the 8-byte header length", f->size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
  if (hlen > MOE_ST_MAX_HEADER)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "header length %" PRIu64 " is larger than the limit of %" PRIu64 " bytes", hlen,
                MOE_ST_MAX_HEADER);
  if (hlen > f->size - 8)
    return fail(errstr, errstr_size, MOE_EFORMAT,
                "header length %" PRIu64 " is larger than the %zu bytes that follow it", hlen,
                f->size - 8);
  f->data_start = 8 + hlen;
  uint64_t data_len = f->size - f->data_start;
  /* As in the reference implementation: only trailing padding, so the header cannot hide
   * another format's magic bytes in front (polyglot files). */
  if (hlen == 0 || f->base[8] != '{')
    return fail(errstr, errstr_size, MOE_EFORMAT,
                hlen == 0 ? "header is empty (expected a JSON object)"
                          : "header must start with '{' (got byte 0x%02X)",
                hlen == 0 ? 0 : f->base[8]);

  char jerr[ERRBUF - 16];
  moe_json_limits_t lim = {.max_depth = 16, .max_bytes = (size_t)MOE_ST_MAX_HEADER};
  moe_err_t err = moe_json_parse((const char *)f->base + 8, (size_t)hlen, &lim, &f->doc, jerr,
                                 sizeof jerr);
  if (err == MOE_ENOMEM) return fail(errstr, errstr_size, err, "%s", jerr);
  if (err != MOE_OK) return fail(errstr, errstr_size, MOE_EFORMAT, "header: %s", jerr);
  const moe_json_t *root = moe_json_root(f->doc);
  if (root->type != MOE_JSON_OBJECT)
    return fail(errstr, errstr_size, MOE_EFORMAT, "header: expected a JSON object, got %s",
                moe_json_kind(root));

  size_t n_members = moe_json_len(root);
  f->tensors = moe__calloc(n_members ? n_members : 1, sizeof *f->tensors);
  if (f->tensors == NULL) return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
  for (size_t i = 0; i < n_members; i++) {
    const moe_json_member_t *m = moe_json_member_at(root, i);
    if (m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0) {
      err = parse_metadata(f, m->value, errstr, errstr_size);
      if (err != MOE_OK) return err;
      continue;
    }
    if (m->key_len == 0)
      return fail(errstr, errstr_size, MOE_EFORMAT, "header: tensor name is empty");
    if (memchr(m->key, '\0', m->key_len) != NULL) {
      char nb[128];
      return fail(errstr, errstr_size, MOE_EFORMAT, "tensor '%s': name contains a NUL character",
                  quoted(nb, sizeof nb, m->key, m->key_len));
    }
    moe_st_tensor_t *t = &f->tensors[f->n];
    t->name = m->key;
    err = parse_tensor(m->value, t, data_len, errstr, errstr_size);
    if (err != MOE_OK) return err;
    f->n++;
  }
  qsort(f->tensors, f->n, sizeof *f->tensors, tensor_data_cmp);
  err = check_coverage(f, data_len, errstr, errstr_size);
  if (err != MOE_OK) return err;

  /* Data pointers, copying the tensors whose address does not suit their element type. */
  static const max_align_t empty;
  for (size_t i = 0; i < f->n; i++) {
    moe_st_tensor_t *t = &f->tensors[i];
    const unsigned char *p = f->base + f->data_start + t->offset;
    size_t elem = moe_st_dtype_size(t->dtype);
    if (t->nbytes == 0) {
      t->data = &empty;
    } else if ((uintptr_t)p % elem != 0) {
      void *copy = moe__malloc_aligned(t->nbytes, MOE_ST_ALIGN);
      if (copy == NULL) return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
      memcpy(copy, p, t->nbytes);
      t->data = copy;
      t->copied = true;
    } else {
      t->data = p;
    }
  }
  f->by_name = moe__calloc(f->n ? f->n : 1, sizeof *f->by_name);
  if (f->by_name == NULL) return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
  for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
  qsort(f->by_name, f->n, sizeof *f->by_name, tensor_name_cmp);
  return MOE_OK;
}

moe_err_t moe_st_open_memory(const void *buf, size_t len, moe_st_file_t **out, char *errstr,
                             size_t errstr_size) {
  *out = NULL;
  if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
  moe_st_file_t *f = moe__calloc(1, sizeof *f);
  if (f == NULL) return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
  f->base = buf;
  f->size = len;
  moe_err_t err = st_parse(f, errstr, errstr_size);
  if (err != MOE_OK) {
    moe_st_close(f);
    return err;
  }
  *out = f;
  return MOE_OK;
}

moe_err_t moe_st_open(const char *path, moe_st_file_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
  char why[ERRBUF];
  moe_err_t err;
  moe_st_file_t *f = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(errstr, errstr_size, e == ENOENT ? MOE_ENOENT : MOE_EIO, "%s: cannot open: %s",
                path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    err = fail(errstr, errstr_size, MOE_EIO, "%s: cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    err = fail(errstr, errstr_size, MOE_EIO, "%s: not a regular file", path);
    goto fail;
  }
  f = moe__calloc(1, sizeof *f);
  if (f == NULL) {
    err = fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  f->size = (size_t)st.st_size;
  if (f->size >= 8) {
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      err = fail(errstr, errstr_size, MOE_EIO, "%s: cannot map %zu bytes: %s", path, f->size,
                 strerror(errno));
      goto fail;
    }
    f->base = p;
    f->mapped = true;
  } else {
    f->base = (const unsigned char *)"";
  }
  close(fd);
  fd = -1;
  err = st_parse(f, why, sizeof why);
  if (err != MOE_OK) {
    fail(errstr, errstr_size, err, "%s: %s", path, why);
    goto fail;
  }
  *out = f;
  return MOE_OK;

fail:
  moe_st_close(f);
  if (fd >= 0) close(fd);
  return err;
}

size_t moe_st_n_tensors(const moe_st_file_t *file) { return file->n; }

const moe_st_tensor_t *moe_st_tensor_at(const moe_st_file_t *file, size_t i) {
  return i < file->n ? &file->tensors[i] : NULL;
}

const moe_st_tensor_t *moe_st_tensor_find(const moe_st_file_t *file, const char *name) {
  moe_st_tensor_t probe = {.name = name};
  const moe_st_tensor_t *pp = &probe;
  const moe_st_tensor_t **hit =
      bsearch(&pp, file->by_name, file->n, sizeof *file->by_name, tensor_name_cmp);
  return hit ? *hit : NULL;
}

size_t moe_st_n_metadata(const moe_st_file_t *file) { return file->n_meta; }

const moe_st_kv_t *moe_st_metadata_at(const moe_st_file_t *file, size_t i) {
  return i < file->n_meta ? &file->meta[i] : NULL;
}

const char *moe_st_metadata_find(const moe_st_file_t *file, const char *key) {
  for (size_t i = 0; i < file->n_meta; i++)
    if (strcmp(file->meta[i].key, key) == 0) return file->meta[i].value;
  return NULL;
}

size_t moe_st_file_size(const moe_st_file_t *file) { return file->size; }

uint64_t moe_st_data_start(const moe_st_file_t *file) { return file->data_start; }

/* ---- writer -------------------------------------------------------------- */

static int cstr_ptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reports the first name that occurs twice among n names, or NULL. */
static moe_err_t find_duplicate(const char *const *names, size_t n, const char **dup) {
  *dup = NULL;
  if (n < 2) return MOE_OK;
  const char **sorted = moe__calloc(n, sizeof *sorted);
  if (sorted == NULL) return MOE_ENOMEM;
  memcpy(sorted, names, n * sizeof *sorted);
  qsort(sorted, n, sizeof *sorted, cstr_ptr_cmp);
  for (size_t i = 1; i < n && *dup == NULL; i++)
    if (strcmp(sorted[i - 1], sorted[i]) == 0) *dup = sorted[i];
  moe__free(sorted);
  return MOE_OK;
}

/*
 * Validates the description and builds the padded header. *hdr (moe__free) receives the
 * header text without its length prefix, *data_len the data buffer size.
 */
static moe_err_t build_header(const moe_st_tensor_t *tensors, size_t n,
                              const moe_st_kv_t *metadata, size_t n_meta, char **hdr,
                              size_t *hdr_len, uint64_t *data_len, char *errstr,
                              size_t errstr_size) {
  char nb[128], sb[256];
  moe_err_t err;
  const char **names = NULL;
  moe_jw_t jw;
  moe_jw_init(&jw);
  *hdr = NULL;

  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *t = &tensors[i];
    if (t->name == NULL || t->name[0] == '\0')
      return fail(errstr, errstr_size, MOE_EINVAL, "tensors[%zu]: name is empty", i);
    const char *name = quoted(nb, sizeof nb, t->name, strlen(t->name));
    if (strcmp(t->name, "__metadata__") == 0)
      return fail(errstr, errstr_size, MOE_EINVAL,
                  "tensors[%zu]: the name '__metadata__' is reserved", i);
    if (moe_st_dtype_name(t->dtype) == NULL)
      return fail(errstr, errstr_size, MOE_EINVAL, "tensor '%s': invalid dtype %d", name,
                  (int)t->dtype);
    if (t->ndim < 0 || t->ndim > MOE_ST_MAX_DIMS)
      return fail(errstr, errstr_size, MOE_EINVAL, "tensor '%s': ndim %d is not in [0, %d]",
                  name, t->ndim, MOE_ST_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++)
      if (t->shape[d] < 0)
        return fail(errstr, errstr_size, MOE_EINVAL, "tensor '%s': shape[%d] is negative (%" PRId64 ")",
                    name, d, t->shape[d]);
    uint64_t need;
    if (!nbytes_of(t->shape, t->ndim, moe_st_dtype_size(t->dtype), &need) || need != t->nbytes)
      return fail(errstr, errstr_size, MOE_EINVAL,
                  "tensor '%s': nbytes %zu does not match shape %s of %s", name, t->nbytes,
                  shape_str(sb, sizeof sb, t->shape, t->ndim), moe_st_dtype_name(t->dtype));
    if (t->nbytes > 0 && t->data == NULL)
      return fail(errstr, errstr_size, MOE_EINVAL, "tensor '%s': data is NULL", name);
  }
  for (size_t i = 0; i < n_meta; i++)
    if (metadata[i].key == NULL || metadata[i].value == NULL)
      return fail(errstr, errstr_size, MOE_EINVAL, "metadata[%zu]: key or value is NULL", i);

  const char *dup;
  names = moe__calloc(n + n_meta + 1, sizeof *names);
  if (names == NULL) {
    err = fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
  if (find_duplicate(names, n, &dup) != MOE_OK) {
    err = fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  if (dup != NULL) {
    err = fail(errstr, errstr_size, MOE_EINVAL, "tensor '%s': duplicate name",
               quoted(nb, sizeof nb, dup, strlen(dup)));
    goto fail;
  }
  for (size_t i = 0; i < n_meta; i++) names[i] = metadata[i].key;
  if (find_duplicate(names, n_meta, &dup) != MOE_OK) {
    err = fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  if (dup != NULL) {
    err = fail(errstr, errstr_size, MOE_EINVAL, "metadata key '%s': duplicate",
               quoted(nb, sizeof nb, dup, strlen(dup)));
    goto fail;
  }
  moe__free(names);
  names = NULL;

  moe_jw_obj_begin(&jw);
  if (n_meta > 0) {
    moe_jw_key(&jw, "__metadata__");
    moe_jw_obj_begin(&jw);
    for (size_t i = 0; i < n_meta; i++) {
      moe_jw_key(&jw, metadata[i].key);
      moe_jw_str(&jw, metadata[i].value);
    }
    moe_jw_obj_end(&jw);
  }
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *t = &tensors[i];
    moe_jw_key(&jw, t->name);
    moe_jw_obj_begin(&jw);
    moe_jw_key(&jw, "dtype");
    moe_jw_str(&jw, moe_st_dtype_name(t->dtype));
    moe_jw_key(&jw, "shape");
    moe_jw_arr_begin(&jw);
    for (int d = 0; d < t->ndim; d++) moe_jw_int(&jw, t->shape[d]);
    moe_jw_arr_end(&jw);
    moe_jw_key(&jw, "data_offsets");
    moe_jw_arr_begin(&jw);
    moe_jw_uint(&jw, off);
    moe_jw_uint(&jw, off + t->nbytes);
    moe_jw_arr_end(&jw);
    moe_jw_obj_end(&jw);
    off += t->nbytes;
  }
  moe_jw_obj_end(&jw);
  /* Trailing spaces so that the data buffer starts at a multiple of MOE_ST_ALIGN. */
  size_t pad = (MOE_ST_ALIGN - (8 + jw.len) % MOE_ST_ALIGN) % MOE_ST_ALIGN;
  if (jw.err == MOE_OK) {
    char spaces[MOE_ST_ALIGN];
    memset(spaces, ' ', sizeof spaces);
    /* Raw bytes after the complete value: append directly, the writer has no slot for them. */
    size_t len = jw.len;
    char *b = moe__realloc(jw.buf, len + pad + 1);
    if (b == NULL) {
      jw.err = MOE_ENOMEM;
    } else {
      memcpy(b + len, spaces, pad);
      b[len + pad] = '\0';
      jw.buf = b;
      jw.len = len + pad;
      jw.cap = len + pad + 1;
    }
  }
  err = jw.err;
  if (err == MOE_EINVAL) {
    err = fail(errstr, errstr_size, MOE_EINVAL, "a tensor name or metadata string is not valid UTF-8");
    goto fail;
  }
  if (err != MOE_OK) {
    err = fail(errstr, errstr_size, err, "out of memory");
    goto fail;
  }
  if (jw.len > MOE_ST_MAX_HEADER) {
    err = fail(errstr, errstr_size, MOE_EINVAL, "header of %zu bytes exceeds the %" PRIu64 "-byte limit",
               jw.len, MOE_ST_MAX_HEADER);
    goto fail;
  }
  *hdr = jw.buf;
  *hdr_len = jw.len;
  *data_len = off;
  return MOE_OK;

fail:
  moe__free(names);
  moe_jw_close(&jw);
  return err;
}

static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

moe_err_t moe_st_write_memory(const moe_st_tensor_t *tensors, size_t n,
                              const moe_st_kv_t *metadata, size_t n_meta, void **out,
                              size_t *out_len, char *errstr, size_t errstr_size) {
  *out = NULL;
  *out_len = 0;
  char *hdr;
  size_t hdr_len;
  uint64_t data_len;
  moe_err_t err =
      build_header(tensors, n, metadata, n_meta, &hdr, &hdr_len, &data_len, errstr, errstr_size);
  if (err != MOE_OK) return err;
  if (data_len > SIZE_MAX - 8 - hdr_len) {
    moe__free(hdr);
    return fail(errstr, errstr_size, MOE_ENOMEM, "file too large for memory");
  }
  size_t total = 8 + hdr_len + (size_t)data_len;
  unsigned char *buf = moe__malloc(total);
  if (buf == NULL) {
    moe__free(hdr);
    return fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
  }
  put_le64(buf, hdr_len);
  memcpy(buf + 8, hdr, hdr_len);
  moe__free(hdr);
  size_t o = 8 + hdr_len;
  for (size_t i = 0; i < n; i++) {
    if (tensors[i].nbytes) memcpy(buf + o, tensors[i].data, tensors[i].nbytes);
    o += tensors[i].nbytes;
  }
  *out = buf;
  *out_len = total;
  return MOE_OK;
}

static int write_all(int fd, const void *p, size_t n) {
  const unsigned char *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The directory holding path ("." when none), to fsync after the rename; NULL when OOM. */
static char *parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return moe__strdup(".");
  return moe__strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

moe_err_t moe_st_write(const char *path, const moe_st_tensor_t *tensors, size_t n,
                       const moe_st_kv_t *metadata, size_t n_meta, char *errstr,
                       size_t errstr_size) {
  if (errstr != NULL && errstr_size > 0) errstr[0] = '\0';
  char *hdr = NULL, *tmp = NULL, *dir = NULL;
  size_t hdr_len;
  uint64_t data_len;
  int fd = -1;
  moe_err_t err =
      build_header(tensors, n, metadata, n_meta, &hdr, &hdr_len, &data_len, errstr, errstr_size);
  if (err != MOE_OK) return err;
  size_t plen = strlen(path);
  dir = parent_dir(path);
  tmp = moe__malloc(plen + sizeof ".tmp.XXXXXX");
  if (dir == NULL || tmp == NULL) {
    err = fail(errstr, errstr_size, MOE_ENOMEM, "out of memory");
    goto fail;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    err = fail(errstr, errstr_size, MOE_EIO, "%s: cannot create a temporary file: %s", path,
               strerror(errno));
    moe__free(tmp);
    tmp = NULL; /* nothing to unlink */
    goto fail;
  }
  unsigned char len8[8];
  put_le64(len8, hdr_len);
  if (fchmod(fd, 0644) != 0 || write_all(fd, len8, 8) != 0 || write_all(fd, hdr, hdr_len) != 0)
    goto io_fail;
  for (size_t i = 0; i < n; i++)
    if (tensors[i].nbytes && write_all(fd, tensors[i].data, tensors[i].nbytes) != 0) goto io_fail;
  if (fsync(fd) != 0) goto io_fail;
  if (close(fd) != 0) {
    fd = -1;
    goto io_fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto io_fail;
  moe__free(tmp);
  tmp = NULL;
  if (fsync_dir(dir) != 0) {
    /* The file is in place; only its durability across a crash is in doubt. */
    err = fail(errstr, errstr_size, MOE_EIO, "%s: written, but syncing its directory failed: %s",
               path, strerror(errno));
    goto fail;
  }
  moe__free(dir);
  moe__free(hdr);
  return MOE_OK;

io_fail:
  err = fail(errstr, errstr_size, MOE_EIO, "%s: write failed: %s", path, strerror(errno));
fail:
  if (fd >= 0) close(fd);
  if (tmp != NULL) {
    unlink(tmp);
    moe__free(tmp);
  }
  moe__free(dir);
  moe__free(hdr);
  return err;
}
