/*
 * The RFC 4180 CSV reader (csv.h): whole-file read, then an in-place unescaping scanner that
 * turns each record into NUL-terminated fields.
 */
#include "csv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int csv_init_common(cli_csv_t *csv, const char *name, char sep, char *errstr,
                           size_t errstr_size) {
  csv->path = strdup(name);
  if (csv->path == NULL) return cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
  csv->sep = sep;
  csv->line = 1;
  if (csv->len >= 3 && (unsigned char)csv->buf[0] == 0xEF &&
      (unsigned char)csv->buf[1] == 0xBB && (unsigned char)csv->buf[2] == 0xBF) {
    csv->pos = 3;
    csv->had_bom = 1;
  }
  return CLI_OK;
}

int cli_csv_open(cli_csv_t *csv, const char *path, char sep, char *errstr, size_t errstr_size) {
  memset(csv, 0, sizeof(*csv));
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = errno;
    return cli__fail(e == ENOENT ? CLI_ENOENT : CLI_EIO, errstr, errstr_size, "%s: %s", path,
                     strerror(e));
  }
  int err = CLI_OK;
  if (fseek(f, 0, SEEK_END) != 0) goto io_fail;
  long size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) goto io_fail;
  csv->buf = malloc((size_t)size + 1);
  if (csv->buf == NULL) {
    err = cli__fail(CLI_ENOMEM, errstr, errstr_size, "%s: out of memory for %ld bytes", path,
                    size);
    goto fail;
  }
  if (size > 0 && fread(csv->buf, 1, (size_t)size, f) != (size_t)size) goto io_fail;
  csv->buf[size] = '\0';
  csv->len = (size_t)size;
  fclose(f);
  f = NULL;
  err = csv_init_common(csv, path, sep, errstr, errstr_size);
  if (err != CLI_OK) goto fail;
  return CLI_OK;

io_fail:
  err = cli__fail(CLI_EIO, errstr, errstr_size, "%s: read failed: %s", path, strerror(errno));
fail:
  if (f != NULL) fclose(f);
  free(csv->buf);
  memset(csv, 0, sizeof(*csv));
  return err;
}

int cli_csv_init_mem(cli_csv_t *csv, const char *name, const char *data, size_t len, char sep,
                     char *errstr, size_t errstr_size) {
  memset(csv, 0, sizeof(*csv));
  csv->buf = malloc(len + 1);
  if (csv->buf == NULL) return cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
  memcpy(csv->buf, data, len);
  csv->buf[len] = '\0';
  csv->len = len;
  int err = csv_init_common(csv, name, sep, errstr, errstr_size);
  if (err != CLI_OK) {
    free(csv->buf);
    memset(csv, 0, sizeof(*csv));
  }
  return err;
}

void cli_csv_close(cli_csv_t *csv) {
  free(csv->path);
  free(csv->buf);
  free(csv->field);
  free(csv->field_len);
  memset(csv, 0, sizeof(*csv));
}

static int csv_push(cli_csv_t *csv, char *start, size_t len) {
  if (csv->n_field == csv->cap_field) {
    size_t cap = csv->cap_field ? csv->cap_field * 2 : 32;
    char **f = realloc(csv->field, cap * sizeof(*f));
    if (f == NULL) return CLI_ENOMEM;
    csv->field = f;
    size_t *l = realloc(csv->field_len, cap * sizeof(*l));
    if (l == NULL) return CLI_ENOMEM;
    csv->field_len = l;
    csv->cap_field = cap;
  }
  csv->field[csv->n_field] = start;
  csv->field_len[csv->n_field] = len;
  csv->n_field++;
  return CLI_OK;
}

int cli_csv_next(cli_csv_t *csv, int *eof, char *errstr, size_t errstr_size) {
  char *b = csv->buf;
  size_t p = csv->pos, n = csv->len;
  csv->n_field = 0;
  *eof = 0;
  /* Blank lines between records carry no data. */
  for (;;) {
    if (p < n && b[p] == '\n') {
      p++;
      csv->line++;
    } else if (p + 1 < n && b[p] == '\r' && b[p + 1] == '\n') {
      p += 2;
      csv->line++;
    } else {
      break;
    }
  }
  if (p >= n) {
    csv->pos = p;
    *eof = 1;
    return CLI_OK;
  }
  csv->record_line = csv->line;
  for (;;) {
    char *start = b + p;
    size_t len;
    size_t field_no = csv->n_field + 1, field_line = csv->line;
    if (p < n && b[p] == '"') {
      /* Quoted: copy down over the escapes; the write cursor never passes the read one. */
      size_t w = p;
      p++;
      for (;;) {
        if (p >= n)
          return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                           "%s:%zu: field %zu: quoted field not closed before end of file",
                           csv->path, field_line, field_no);
        char c = b[p];
        if (c == '"') {
          if (p + 1 < n && b[p + 1] == '"') {
            b[w++] = '"';
            p += 2;
            continue;
          }
          p++;
          break;
        }
        if (c == '\n') csv->line++;
        b[w++] = c;
        p++;
      }
      len = w - (size_t)(start - b);
      if (p < n && b[p] != csv->sep && b[p] != '\n' && !(b[p] == '\r' && p + 1 < n &&
                                                          b[p + 1] == '\n'))
        return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                         "%s:%zu: field %zu: expected '%c' or end of line after closing quote, "
                         "found '%c'",
                         csv->path, csv->line, field_no, csv->sep, b[p]);
    } else {
      size_t q = p;
      while (q < n && b[q] != csv->sep && b[q] != '\n' &&
             !(b[q] == '\r' && q + 1 < n && b[q + 1] == '\n')) {
        if (b[q] == '"')
          return cli__fail(CLI_EFORMAT, errstr, errstr_size,
                           "%s:%zu: field %zu: quote inside an unquoted field (RFC 4180 wants "
                           "the whole field quoted)",
                           csv->path, csv->line, field_no);
        q++;
      }
      len = q - p;
      p = q;
    }
    /* b[p] is now the separator or line end (or the final NUL): end the field there. */
    int end_record;
    size_t adv;
    if (p >= n) {
      end_record = 1;
      adv = 0;
    } else if (b[p] == csv->sep) {
      end_record = 0;
      adv = 1;
    } else if (b[p] == '\n') {
      end_record = 1;
      adv = 1;
    } else {
      end_record = 1;
      adv = 2; /* CRLF */
    }
    start[len] = '\0';
    if (csv_push(csv, start, len) != CLI_OK)
      return cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
    p += adv;
    if (end_record) {
      if (adv > 0) csv->line++;
      break;
    }
    if (p >= n) {
      /* A separator right before end of file: one more, empty, field. */
      if (csv_push(csv, b + p, 0) != CLI_OK)
        return cli__fail(CLI_ENOMEM, errstr, errstr_size, "out of memory");
      break;
    }
  }
  csv->pos = p;
  csv->n_record++;
  return CLI_OK;
}

int cli_csv_find(const cli_csv_t *csv, const char *name) {
  for (size_t i = 0; i < csv->n_field; i++)
    if (strcmp(csv->field[i], name) == 0) return (int)i;
  return -1;
}
