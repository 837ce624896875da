/*
 * `sluice inspect MODEL`: everything there is to know about a model file without scoring it.
 * The file is first loaded by libmoe (so a bad file gets the loader's own precise message and
 * nothing is shown of a model the service would refuse); the summary comes from the loaded
 * model (task, labels, threshold, inputs, MoE layout, weight format, parameter count), the
 * parts moe.h does not expose (norm, routing options, provenance and the model card metrics
 * kept in provenance.metrics) from the config JSON, and the tensor table (name, dtype, shape,
 * bytes as stored in the file) from the loaded model's listing (moe_model_tensor).
 */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json-value.h"
#include "moe/moe.h"

static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const moe_tensor_info_t *)a)->name, ((const moe_tensor_info_t *)b)->name);
}

static const char *quant_name(moe_quant_t q) {
  switch (q) {
  case MOE_QUANT_F32: return "f32";
  case MOE_QUANT_Q8_0: return "q8_0";
  case MOE_QUANT_Q4_0: return "q4_0";
  }
  return "?";
}

static const char *task_kind_name(moe_task_t t) {
  switch (t) {
  case MOE_TASK_BINARY: return "binary";
  case MOE_TASK_MULTICLASS: return "multiclass";
  case MOE_TASK_REGRESSION: return "regression";
  }
  return "?";
}

static const char *encoder_name(moe_encoder_kind_t e) {
  switch (e) {
  case MOE_ENCODER_TABULAR: return "tabular";
  case MOE_ENCODER_SENSOR: return "sensor";
  case MOE_ENCODER_TEXT: return "text";
  }
  return "?";
}

/* Everything the two output forms need, gathered once. */
typedef struct inspect_s {
  const char *path;
  moe_model_t *model;
  cli_jv_t config;
  moe_tensor_info_t *tensors; /* (n_tensor), by name; names borrowed from model */
  size_t n_tensor;
  uint64_t tensor_bytes;
  long long file_bytes;
} inspect_t;

/* The model's tensor listing, sorted by name (the file orders it by data offset). */
static int collect_tensors(inspect_t *in) {
  int n = moe_model_n_tensors(in->model);
  in->tensors = calloc(n > 0 ? (size_t)n : 1, sizeof(*in->tensors));
  if (in->tensors == NULL) return CLI_ENOMEM;
  for (int i = 0; i < n; i++) {
    if (moe_model_tensor(in->model, i, &in->tensors[in->n_tensor]) != MOE_OK) continue;
    in->tensor_bytes += in->tensors[in->n_tensor++].bytes;
  }
  qsort(in->tensors, in->n_tensor, sizeof(*in->tensors), cmp_tensor);
  return CLI_OK;
}

static void print_shape(FILE *out, const moe_tensor_info_t *t) {
  fputc('[', out);
  for (int d = 0; d < t->ndim; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  fputc(']', out);
}

/* ---- text ------------------------------------------------------------------------------ */

static void print_text(const inspect_t *in) {
  const moe_model_t *m = in->model;
  const cli_jv_t *cfg = &in->config;
  const cli_jv_t *enc = cli_jv_get(cfg, "encoder");
  printf("model        %s (%lld bytes)\n", in->path, in->file_bytes);
  printf("version      %s\n", moe_model_version(m));
  printf("format       %s v%.0f\n", cli_jv_str(cli_jv_get(cfg, "format"), "?"),
         cli_jv_num(cli_jv_get(cfg, "format_version"), 0));
  printf("weights      %s\n", quant_name(moe_model_quant(m)));
  printf("parameters   %lld\n", (long long)moe_model_n_params(m));
  printf("task         %s, %d output%s, labels:", task_kind_name(moe_model_task(m)),
         moe_model_n_outputs(m), moe_model_n_outputs(m) == 1 ? "" : "s");
  for (int i = 0; i < moe_model_n_labels(m); i++)
    printf("%s %s", i ? "," : "", moe_model_label(m, i));
  printf("\n");
  if (moe_model_task(m) == MOE_TASK_BINARY) printf("threshold    %g\n", moe_model_threshold(m));
  printf("d_model      %.0f, norm %s, eps %g\n", cli_jv_num(cli_jv_get(cfg, "d_model"), 0),
         cli_jv_str(cli_jv_get(cfg, "norm"), "rmsnorm"),
         cli_jv_num(cli_jv_get(cfg, "norm_eps"), 1e-5));
  printf("encoder      %s\n", encoder_name(moe_model_encoder(m)));
  switch (moe_model_encoder(m)) {
  case MOE_ENCODER_TABULAR:
    printf("  numeric      %d:", moe_model_n_numeric(m));
    for (int i = 0; i < moe_model_n_numeric(m); i++)
      printf("%s %s", i ? "," : "", moe_model_numeric_name(m, i));
    printf("\n  categorical  %d\n", moe_model_n_categorical(m));
    for (int i = 0; i < moe_model_n_categorical(m); i++)
      printf("    %-16s %d values\n", moe_model_categorical_name(m, i),
             moe_model_categorical_vocab_size(m, i));
    break;
  case MOE_ENCODER_SENSOR:
    printf("  window       %d\n  channels     %d:", moe_model_sensor_window(m),
           moe_model_sensor_channels(m));
    for (int c = 0; c < moe_model_sensor_channels(m); c++)
      printf("%s %s", c ? "," : "", moe_model_sensor_channel_name(m, c));
    printf("\n  conv         ");
    cli_jv_print(stdout, cli_jv_get(enc, "conv"));
    printf("\n");
    break;
  case MOE_ENCODER_TEXT: {
    const char *tok = moe_model_tokenizer_json(m);
    printf("  vocab_size   %d\n  max_len      %d\n  layers       %.0f, heads %.0f, d_ff %.0f\n",
           moe_model_text_vocab_size(m), moe_model_text_max_len(m),
           cli_jv_num(cli_jv_get(enc, "n_layer"), 0), cli_jv_num(cli_jv_get(enc, "n_head"), 0),
           cli_jv_num(cli_jv_get(enc, "d_ff"), 0));
    printf("  window       ");
    cli_jv_print(stdout, cli_jv_get(enc, "window"));
    printf(", %.0f global\n", cli_jv_num(cli_jv_get(enc, "n_global"), 0));
    const cli_jv_t *tj = cli_jv_get(enc, "tokenizer");
    const cli_jv_t *tv = cli_jv_get(tj, "vocab");
    if (tok != NULL)
      printf("  tokenizer    %s, %zu pieces\n", cli_jv_str(cli_jv_get(tj, "kind"), "?"),
             tv && tv->kind == CLI_JV_ARR ? tv->n : (size_t)0);
    else
      printf("  tokenizer    none\n");
    break;
  }
  }
  int nb = moe_model_n_moe_blocks(m);
  const cli_jv_t *moe = cli_jv_get(cfg, "moe");
  printf("moe          %d block%s (route slots %d, experts %d)\n", nb, nb == 1 ? "" : "s",
         moe_model_route_size(m), moe_model_load_size(m));
  for (int b = 0; b < nb; b++) {
    moe_block_info_t bi;
    if (moe_model_moe_block(m, b, &bi) != MOE_OK) continue;
    const cli_jv_t *bj = moe && moe->kind == CLI_JV_ARR && (size_t)b < moe->n ? &moe->items[b]
                                                                               : NULL;
    printf("  block %-3d    %d experts, top-%d, %d shared, d_ff %d, score %s, normalize %s, "
           "route_scale %g\n",
           b, bi.n_expert, bi.top_k, bi.n_shared, bi.d_ff,
           cli_jv_str(cli_jv_get(bj, "score"), "softmax"),
           cli_jv_bool(cli_jv_get(bj, "normalize"), 1) ? "yes" : "no",
           cli_jv_num(cli_jv_get(bj, "route_scale"), 1.0));
  }
  const cli_jv_t *prov = cli_jv_get(cfg, "provenance");
  printf("provenance   ");
  if (prov != NULL) cli_jv_print(stdout, prov);
  else printf("none");
  printf("\n");
  const cli_jv_t *metrics = cli_jv_get(prov, "metrics");
  if (metrics != NULL && metrics->kind == CLI_JV_OBJ) {
    printf("metrics\n");
    for (size_t i = 0; i < metrics->n; i++) {
      printf("  %-16s ", metrics->keys[i]);
      if (metrics->items[i].kind == CLI_JV_NUM) printf("%.6g", metrics->items[i].num);
      else cli_jv_print(stdout, &metrics->items[i]);
      printf("\n");
    }
  } else {
    printf("metrics      none stored (provenance.metrics)\n");
  }
  printf("tensors      %zu, %llu bytes\n", in->n_tensor, (unsigned long long)in->tensor_bytes);
  for (size_t i = 0; i < in->n_tensor; i++) {
    const moe_tensor_info_t *r = &in->tensors[i];
    printf("  %-40s %-4s ", r->name, r->dtype);
    char shape[96];
    FILE *s = fmemopen(shape, sizeof(shape), "w");
    if (s != NULL) {
      print_shape(s, r);
      fclose(s);
    } else {
      shape[0] = '\0';
    }
    printf("%-16s %10llu\n", shape, (unsigned long long)r->bytes);
  }
}

/* ---- JSON ------------------------------------------------------------------------------ */

static void print_json(const inspect_t *in) {
  const moe_model_t *m = in->model;
  const cli_jv_t *cfg = &in->config;
  cli_json_t js;
  cli_json_init(&js, stdout);
  cli_json_obj_begin(&js);
  cli_json_key(&js, "path");
  cli_json_str(&js, in->path);
  cli_json_key(&js, "file_bytes");
  cli_json_int(&js, in->file_bytes);
  cli_json_key(&js, "version");
  cli_json_str(&js, moe_model_version(m));
  cli_json_key(&js, "format_version");
  cli_json_num(&js, cli_jv_num(cli_jv_get(cfg, "format_version"), 0));
  cli_json_key(&js, "quant");
  cli_json_str(&js, quant_name(moe_model_quant(m)));
  cli_json_key(&js, "n_params");
  cli_json_int(&js, (long long)moe_model_n_params(m));
  cli_json_key(&js, "task");
  cli_json_obj_begin(&js);
  cli_json_key(&js, "kind");
  cli_json_str(&js, task_kind_name(moe_model_task(m)));
  cli_json_key(&js, "n_outputs");
  cli_json_int(&js, moe_model_n_outputs(m));
  cli_json_key(&js, "labels");
  cli_json_arr_begin(&js);
  for (int i = 0; i < moe_model_n_labels(m); i++) cli_json_str(&js, moe_model_label(m, i));
  cli_json_arr_end(&js);
  if (moe_model_task(m) == MOE_TASK_BINARY) {
    cli_json_key(&js, "threshold");
    cli_json_num(&js, moe_model_threshold(m));
  }
  cli_json_obj_end(&js);
  cli_json_key(&js, "encoder");
  cli_json_obj_begin(&js);
  cli_json_key(&js, "kind");
  cli_json_str(&js, encoder_name(moe_model_encoder(m)));
  switch (moe_model_encoder(m)) {
  case MOE_ENCODER_TABULAR:
    cli_json_key(&js, "numeric");
    cli_json_arr_begin(&js);
    for (int i = 0; i < moe_model_n_numeric(m); i++) cli_json_str(&js, moe_model_numeric_name(m, i));
    cli_json_arr_end(&js);
    cli_json_key(&js, "categorical");
    cli_json_obj_begin(&js);
    for (int i = 0; i < moe_model_n_categorical(m); i++) {
      cli_json_key(&js, moe_model_categorical_name(m, i));
      cli_json_int(&js, moe_model_categorical_vocab_size(m, i));
    }
    cli_json_obj_end(&js);
    break;
  case MOE_ENCODER_SENSOR:
    cli_json_key(&js, "window");
    cli_json_int(&js, moe_model_sensor_window(m));
    cli_json_key(&js, "channels");
    cli_json_arr_begin(&js);
    for (int c = 0; c < moe_model_sensor_channels(m); c++)
      cli_json_str(&js, moe_model_sensor_channel_name(m, c));
    cli_json_arr_end(&js);
    break;
  case MOE_ENCODER_TEXT:
    cli_json_key(&js, "vocab_size");
    cli_json_int(&js, moe_model_text_vocab_size(m));
    cli_json_key(&js, "max_len");
    cli_json_int(&js, moe_model_text_max_len(m));
    cli_json_key(&js, "tokenizer");
    cli_json_bool(&js, moe_model_tokenizer_json(m) != NULL);
    break;
  }
  cli_json_obj_end(&js);
  cli_json_key(&js, "moe");
  cli_json_arr_begin(&js);
  for (int b = 0; b < moe_model_n_moe_blocks(m); b++) {
    moe_block_info_t bi;
    if (moe_model_moe_block(m, b, &bi) != MOE_OK) continue;
    cli_json_obj_begin(&js);
    cli_json_key(&js, "n_expert");
    cli_json_int(&js, bi.n_expert);
    cli_json_key(&js, "top_k");
    cli_json_int(&js, bi.top_k);
    cli_json_key(&js, "n_shared");
    cli_json_int(&js, bi.n_shared);
    cli_json_key(&js, "d_ff");
    cli_json_int(&js, bi.d_ff);
    cli_json_obj_end(&js);
  }
  cli_json_arr_end(&js);
  /* The config as stored, minus the tokenizer's vocabulary (thousands of strings). */
  cli_json_key(&js, "config");
  cli_json_obj_begin(&js);
  for (size_t i = 0; i < cfg->n; i++) {
    cli_json_key(&js, cfg->keys[i]);
    const cli_jv_t *v = &cfg->items[i];
    if (strcmp(cfg->keys[i], "encoder") != 0 || cli_jv_get(v, "tokenizer") == NULL) {
      cli_jv_emit(&js, v);
      continue;
    }
    cli_json_obj_begin(&js);
    for (size_t k = 0; k < v->n; k++) {
      if (strcmp(v->keys[k], "tokenizer") == 0) continue;
      cli_json_key(&js, v->keys[k]);
      cli_jv_emit(&js, &v->items[k]);
    }
    cli_json_obj_end(&js);
  }
  cli_json_obj_end(&js);
  const cli_jv_t *prov = cli_jv_get(cfg, "provenance");
  const cli_jv_t *metrics = cli_jv_get(prov, "metrics");
  cli_json_key(&js, "metrics");
  if (metrics != NULL) cli_jv_emit(&js, metrics);
  else cli_json_num(&js, NAN);
  cli_json_key(&js, "tensor_bytes");
  cli_json_int(&js, (long long)in->tensor_bytes);
  cli_json_key(&js, "tensors");
  cli_json_arr_begin(&js);
  for (size_t i = 0; i < in->n_tensor; i++) {
    const moe_tensor_info_t *r = &in->tensors[i];
    cli_json_obj_begin(&js);
    cli_json_key(&js, "name");
    cli_json_str(&js, r->name);
    cli_json_key(&js, "dtype");
    cli_json_str(&js, r->dtype);
    cli_json_key(&js, "shape");
    cli_json_arr_begin(&js);
    for (int d = 0; d < r->ndim; d++) cli_json_int(&js, (long long)r->shape[d]);
    cli_json_arr_end(&js);
    cli_json_key(&js, "bytes");
    cli_json_int(&js, (long long)r->bytes);
    cli_json_obj_end(&js);
  }
  cli_json_arr_end(&js);
  cli_json_obj_end(&js);
}

int cli_cmd_inspect(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  int json = 0, c, status = CLI_EXIT_FAIL;
  inspect_t in;
  memset(&in, 0, sizeof(in));
  char err[1024];
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if (c == 'j') {
      json = 1;
      continue;
    }
    fprintf(stderr, "sluice inspect: unknown option '%s'\n\n", argv[optind - 1]);
    fputs(cli_cmd_usage("inspect"), stderr);
    return CLI_EXIT_USAGE;
  }
  if (argc - optind != 1) {
    fprintf(stderr, "sluice inspect: expected exactly one MODEL file\n\n");
    fputs(cli_cmd_usage("inspect"), stderr);
    return CLI_EXIT_USAGE;
  }
  in.path = argv[optind];
  if (moe_model_load(in.path, &in.model, err, sizeof(err)) != MOE_OK) {
    /* The loader's messages usually name the file already. */
    if (strstr(err, in.path) != NULL)
      fprintf(stderr, "sluice inspect: %s\n", err);
    else
      fprintf(stderr, "sluice inspect: %s: %s\n", in.path, err);
    goto done;
  }
  if (collect_tensors(&in) != CLI_OK) {
    fprintf(stderr, "sluice inspect: out of memory\n");
    goto done;
  }
  const char *cfg_text = moe_model_config_json(in.model);
  char perr[160];
  if (cli_jv_parse(cfg_text, strlen(cfg_text), &in.config, perr, sizeof(perr)) != CLI_OK) {
    fprintf(stderr, "sluice inspect: %s: config: %s\n", in.path, perr);
    goto done;
  }
  FILE *f = fopen(in.path, "rb");
  if (f != NULL) {
    if (fseek(f, 0, SEEK_END) == 0) in.file_bytes = ftell(f);
    fclose(f);
  }
  if (json)
    print_json(&in);
  else
    print_text(&in);
  status = CLI_EXIT_OK;
done:
  cli_jv_free(&in.config);
  free(in.tensors);
  moe_model_free(in.model);
  return status;
}
