/* The --json writer of cli.h: just enough JSON to print one object, correctly escaped. */
#include <math.h>
#include <stdio.h>

#include "cli.h"

void cli_json_init(cli_json_t *js, FILE *out) {
  js->out = out;
  js->depth = 0;
  js->need_comma[0] = 0;
  js->after_key = 0;
}

/* Before any value or key: the comma that separates it from the previous one. */
static void json_sep(cli_json_t *js) {
  if (js->after_key) {
    js->after_key = 0;
    return;
  }
  if (js->need_comma[js->depth]) fputc(',', js->out);
  js->need_comma[js->depth] = 1;
}

static void json_open(cli_json_t *js, char c) {
  json_sep(js);
  fputc(c, js->out);
  if (js->depth < 31) js->depth++;
  js->need_comma[js->depth] = 0;
}

static void json_close(cli_json_t *js, char c) {
  if (js->depth > 0) js->depth--;
  fputc(c, js->out);
  if (js->depth == 0) fputc('\n', js->out);
}

void cli_json_obj_begin(cli_json_t *js) { json_open(js, '{'); }
void cli_json_obj_end(cli_json_t *js) { json_close(js, '}'); }
void cli_json_arr_begin(cli_json_t *js) { json_open(js, '['); }
void cli_json_arr_end(cli_json_t *js) { json_close(js, ']'); }

void cli_json_write_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\n': fputs("\\n", out); break;
    case '\r': fputs("\\r", out); break;
    case '\t': fputs("\\t", out); break;
    default:
      if (*p < 0x20)
        fprintf(out, "\\u%04x", *p);
      else
        fputc(*p, out);
    }
  }
  fputc('"', out);
}

void cli_json_key(cli_json_t *js, const char *key) {
  json_sep(js);
  cli_json_write_string(js->out, key);
  fputc(':', js->out);
  js->after_key = 1;
}

void cli_json_str(cli_json_t *js, const char *s) {
  json_sep(js);
  cli_json_write_string(js->out, s);
}

void cli_json_num(cli_json_t *js, double v) {
  json_sep(js);
  if (isfinite(v))
    fprintf(js->out, "%.17g", v);
  else
    fputs("null", js->out);
}

void cli_json_int(cli_json_t *js, long long v) {
  json_sep(js);
  fprintf(js->out, "%lld", v);
}

void cli_json_bool(cli_json_t *js, int v) {
  json_sep(js);
  fputs(v ? "true" : "false", js->out);
}
