/*
 * An RFC 4180 CSV reader for the data sets the command line reads (creditcard, AI4I,
 * MTSamples, medical abstracts, SKAB). It reads the whole file into memory, skips a UTF-8 byte
 * order mark, and yields one record at a time: fields separated by `sep` (',' or ';'), records
 * ended by LF or CRLF, fields optionally enclosed in double quotes, inside which separators,
 * line breaks and doubled quotes ("") are data. Fields are unescaped in place, so a record's
 * fields are NUL-terminated strings that need no copying.
 *
 * Deliberate departures from RFC 4180: blank lines between records are skipped; a quote inside
 * an unquoted field, or anything but a separator or line end after a closing quote, is an error
 * (rather than guessed at), reported with the file, line and field.
 */
#ifndef CLI_CSV_H
#define CLI_CSV_H

#include <stddef.h>

#include "cli-error.h"

typedef struct cli_csv_s {
  char *path;    /* the name used in error messages (owned copy) */
  char *buf;     /* the whole file, NUL-terminated; fields point into it */
  size_t len;
  size_t pos;    /* next byte to read */
  size_t line;   /* 1-based physical line of buf[pos] */
  char sep;
  int had_bom;   /* 1 when the input started with a UTF-8 byte order mark */
  /* The current record: valid until the next cli_csv_next() or cli_csv_close(). */
  char **field;        /* (n_field) NUL-terminated, unescaped */
  size_t *field_len;   /* (n_field) bytes, embedded NULs impossible in our data */
  size_t n_field;
  size_t cap_field;
  size_t record_line;  /* physical line on which the current record starts */
  size_t n_record;     /* records read so far, the header included */
} cli_csv_t;

/*
 * Reads `path` whole and prepares to parse it. On failure nothing needs closing and errstr
 * names the file and the reason (CLI_ENOENT, CLI_EIO, CLI_ENOMEM).
 */
int cli_csv_open(cli_csv_t *csv, const char *path, char sep, char *errstr, size_t errstr_size);
/* Parses `len` bytes of `data` (copied) as if they were a file called `name`. */
int cli_csv_init_mem(cli_csv_t *csv, const char *name, const char *data, size_t len, char sep,
                     char *errstr, size_t errstr_size);
/*
 * Reads the next record into csv->field / csv->n_field. Sets *eof to 1 (and returns CLI_OK)
 * when the input is exhausted. CLI_EFORMAT with "path:line: field N: reason" in errstr on
 * malformed input; the reader must then be closed.
 */
int cli_csv_next(cli_csv_t *csv, int *eof, char *errstr, size_t errstr_size);
/* Frees everything; the fields of the last record die with it. */
void cli_csv_close(cli_csv_t *csv);

/* Index of the field equal to `name` in the current record (the header), or -1. */
int cli_csv_find(const cli_csv_t *csv, const char *name);

#endif /* CLI_CSV_H */
