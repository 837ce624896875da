/*
 * libFuzzer target for the model-file loader: every input is treated as an untrusted model
 * file and pushed through each layer that reads one: the safetensors reader
 * (moe_st_open_memory), the JSON parser on the config metadata, and the full model loader
 * (moe_model_load_memory). Whatever the bytes, these must return an error or a valid object and
 * never crash, leak or read out of bounds (ASan + UBSan catch it); and every file the reader
 * accepts must survive a round trip through the writer unchanged, and so must every JSON
 * document through the JSON writer; a lone JSON number must convert exactly as strtod does.
 *
 * Built twice: with clang -fsanitize=fuzzer for real fuzzing (tests/fuzz/clang/), and with the
 * suite's compiler plus replay-main.c, which runs every committed corpus file as a unit test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc-impl.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "moe/moe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every tensor byte, so that a wrong data pointer or size shows up under ASan. */
static unsigned touch_tensors(const moe_st_file_t *file) {
  unsigned sum = 0;
  for (size_t i = 0; i < moe_st_n_tensors(file); i++) {
    const moe_st_tensor_t *t = moe_st_tensor_at(file, i);
    const unsigned char *p = t->data;
    for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
    if (moe_st_tensor_find(file, t->name) != t) __builtin_trap(); /* lookup must agree */
  }
  return sum;
}

/*
 * Round-trip oracle: whatever the reader accepts, the writer must be able to write, and the
 * reader must read back the same tensors and metadata.
 */
static void round_trip(const moe_st_file_t *file) {
  size_t n = moe_st_n_tensors(file), n_meta = moe_st_n_metadata(file);
  moe_st_tensor_t *ts = calloc(n ? n : 1, sizeof *ts);
  moe_st_kv_t *kv = calloc(n_meta ? n_meta : 1, sizeof *kv);
  if (ts == NULL || kv == NULL) __builtin_trap();
  for (size_t i = 0; i < n; i++) ts[i] = *moe_st_tensor_at(file, i);
  for (size_t i = 0; i < n_meta; i++) kv[i] = *moe_st_metadata_at(file, i);
  void *bytes = NULL;
  size_t len = 0;
  char err[512];
  if (moe_st_write_memory(ts, n, kv, n_meta, &bytes, &len, err, sizeof err) != MOE_OK)
    __builtin_trap();
  moe_st_file_t *again = NULL;
  if (moe_st_open_memory(bytes, len, &again, err, sizeof err) != MOE_OK) __builtin_trap();
  if (moe_st_n_tensors(again) != n || moe_st_n_metadata(again) != n_meta) __builtin_trap();
  for (size_t i = 0; i < n; i++) {
    const moe_st_tensor_t *a = &ts[i], *b = moe_st_tensor_find(again, a->name);
    if (b == NULL || b->dtype != a->dtype || b->ndim != a->ndim || b->nbytes != a->nbytes ||
        memcmp(b->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim) != 0 ||
        (a->nbytes && memcmp(a->data, b->data, a->nbytes) != 0))
      __builtin_trap();
  }
  for (size_t i = 0; i < n_meta; i++) {
    const char *v = moe_st_metadata_find(again, kv[i].key);
    if (v == NULL || strcmp(v, kv[i].value) != 0) __builtin_trap();
  }
  moe_st_close(again);
  moe__free(bytes);
  free(kv);
  free(ts);
}

static int json_equal(const moe_json_t *a, const moe_json_t *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case MOE_JSON_NULL: return 1;
  case MOE_JSON_BOOL: return a->u.b == b->u.b;
  case MOE_JSON_NUMBER:
    return a->u.num.d == b->u.num.d && a->u.num.is_int == b->u.num.is_int &&
           (!a->u.num.is_int || a->u.num.i == b->u.num.i);
  case MOE_JSON_STRING:
    return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
  case MOE_JSON_ARRAY:
    if (a->u.arr.n != b->u.arr.n) return 0;
    for (size_t i = 0; i < a->u.arr.n; i++)
      if (!json_equal(a->u.arr.items[i], b->u.arr.items[i])) return 0;
    return 1;
  case MOE_JSON_OBJECT:
    if (a->u.obj.n != b->u.obj.n) return 0;
    for (size_t i = 0; i < a->u.obj.n; i++) {
      const moe_json_member_t *x = a->u.obj.members[i], *y = b->u.obj.members[i];
      if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0) return 0;
      if (!json_equal(x->value, y->value)) return 0;
      if (moe_json_getn(b, x->key, x->key_len) != y->value) return 0; /* lookup agrees */
    }
    return 1;
  }
  return 0;
}

/* JSON oracle: what the parser accepts, the writer re-serialises to text that parses back to an
 * equal document (unless it is nested deeper than the writer allows). */
static void json_round_trip(const moe_json_doc_t *doc) {
  moe_jw_t jw;
  moe_jw_init(&jw);
  moe_jw_value(&jw, moe_json_root(doc));
  char *text = NULL;
  size_t len = 0;
  moe_err_t rc = moe_jw_finish(&jw, &text, &len);
  moe_jw_close(&jw);
  if (rc == MOE_EINVAL) return; /* deeper than MOE_JW_MAX_DEPTH */
  if (rc != MOE_OK) __builtin_trap();
  moe_json_doc_t *again = NULL;
  char err[256];
  if (moe_json_parse(text, len, NULL, &again, err, sizeof err) != MOE_OK) __builtin_trap();
  if (!json_equal(moe_json_root(doc), moe_json_root(again))) __builtin_trap();
  moe_json_free(again);
  moe__free(text);
}

/* Number oracle: the parser's own conversion (mostly without strtod) must give exactly the
 * double that the C library's strtod gives for the same text. */
static void check_number(const uint8_t *data, size_t size, const moe_json_t *v) {
  char *text = malloc(size + 1);
  if (text == NULL) __builtin_trap();
  memcpy(text, data, size);
  text[size] = '\0';
  double want = strtod(text, NULL);
  if (memcmp(&want, &v->u.num.d, sizeof want) != 0) __builtin_trap();
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  moe_st_file_t *file = NULL;
  if (moe_st_open_memory(data, size, &file, err, sizeof err) == MOE_OK) {
    volatile unsigned sink = touch_tensors(file);
    (void)sink;
    round_trip(file);
    const char *config = moe_st_metadata_find(file, "config");
    if (config != NULL) {
      moe_json_doc_t *doc = NULL;
      if (moe_json_parse(config, strlen(config), NULL, &doc, err, sizeof err) == MOE_OK)
        moe_json_free(doc);
    }
    moe_st_close(file);
  } else if (err[0] == '\0') {
    __builtin_trap(); /* every failure must say why */
  }
  /* The raw input as JSON too: the parser sees far more shapes of text this way. */
  moe_json_doc_t *doc = NULL;
  if (moe_json_parse((const char *)data, size, NULL, &doc, err, sizeof err) == MOE_OK) {
    json_round_trip(doc);
    if (moe_json_root(doc)->type == MOE_JSON_NUMBER) check_number(data, size, moe_json_root(doc));
    moe_json_free(doc);
  } else if (err[0] == '\0') {
    __builtin_trap();
  }

  moe_model_t *model = NULL;
  if (moe_model_load_memory(data, size, &model, err, sizeof err) == MOE_OK) moe_model_free(model);
  return 0;
}
