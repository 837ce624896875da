/*
 * Tests of the RFC 4180 reader (services/cli/csv.h): quoting, escapes, line ends, BOM, the
 * ';' separator, precise errors, and the real MTSamples and SKAB files.
 */
#include "test.h"

#include "cli-test-data.h"
#include "csv.h"

static void parse_all(const char *data, char sep, size_t expect_records, size_t expect_width) {
  cli_csv_t csv;
  char err[256];
  int eof;
  ASSERT_OK(cli_csv_init_mem(&csv, "mem.csv", data, strlen(data), sep, err, sizeof(err)));
  size_t n = 0;
  for (;;) {
    ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
    if (eof) break;
    ASSERT_EQ(csv.n_field, expect_width);
    n++;
  }
  ASSERT_EQ(n, expect_records);
  cli_csv_close(&csv);
}

TEST(quoted_fields) {
  const char *data = "a,b,c\n1,\"x, y\",\"line1\nline2\"\n\"he said \"\"hi\"\"\",,\"\"\n";
  cli_csv_t csv;
  char err[256];
  int eof;
  ASSERT_OK(cli_csv_init_mem(&csv, "mem.csv", data, strlen(data), ',', err, sizeof(err)));
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(csv.n_field, 3);
  ASSERT_STR_EQ(csv.field[2], "c");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(eof, 0);
  ASSERT_EQ(csv.record_line, 2);
  ASSERT_STR_EQ(csv.field[0], "1");
  ASSERT_STR_EQ(csv.field[1], "x, y");
  ASSERT_STR_EQ(csv.field[2], "line1\nline2");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(csv.record_line, 4); /* the embedded newline counted as a physical line */
  ASSERT_STR_EQ(csv.field[0], "he said \"hi\"");
  ASSERT_EQ(csv.field_len[0], 12);
  ASSERT_STR_EQ(csv.field[1], "");
  ASSERT_STR_EQ(csv.field[2], "");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(eof, 1);
  cli_csv_close(&csv);
}

TEST(line_ends_bom_and_separators) {
  /* CRLF, a BOM, no final newline, a blank line, a trailing empty field. */
  const char *data = "\xEF\xBB\xBFh1;h2\r\n1;2\r\n\r\n3;\r\n4;\"5\"";
  cli_csv_t csv;
  char err[256];
  int eof;
  ASSERT_OK(cli_csv_init_mem(&csv, "mem.csv", data, strlen(data), ';', err, sizeof(err)));
  ASSERT_EQ(csv.had_bom, 1);
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_STR_EQ(csv.field[0], "h1");
  ASSERT_STR_EQ(csv.field[1], "h2");
  ASSERT_EQ(cli_csv_find(&csv, "h2"), 1);
  ASSERT_EQ(cli_csv_find(&csv, "nope"), -1);
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_STR_EQ(csv.field[1], "2");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(csv.record_line, 4);
  ASSERT_EQ(csv.n_field, 2);
  ASSERT_STR_EQ(csv.field[0], "3");
  ASSERT_STR_EQ(csv.field[1], "");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_STR_EQ(csv.field[0], "4");
  ASSERT_STR_EQ(csv.field[1], "5");
  ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
  ASSERT_EQ(eof, 1);
  cli_csv_close(&csv);
  parse_all("a,b\n1,2\n3,\n", ',', 3, 2);
  parse_all("a,b\n1,2\n3,", ',', 3, 2);
  parse_all("\"a\",\"b\"\r\n\"1\r\n\",2\r\n", ',', 2, 2);
}

static void expect_error(const char *data, const char *needle) {
  cli_csv_t csv;
  char err[256] = "";
  int eof, rc = 0;
  ASSERT_OK(cli_csv_init_mem(&csv, "bad.csv", data, strlen(data), ',', err, sizeof(err)));
  for (int i = 0; i < 10; i++) {
    rc = cli_csv_next(&csv, &eof, err, sizeof(err));
    if (rc != 0 || eof) break;
  }
  ASSERT_EQ(rc, CLI_EFORMAT);
  ASSERT_STR_CONTAINS(err, needle);
  cli_csv_close(&csv);
}

TEST(errors_name_file_line_and_field) {
  expect_error("a,b\n1,\"open\n\n", "bad.csv:2: field 2: quoted field not closed");
  expect_error("a,b\n1,2\n3,x\"y\n", "bad.csv:3: field 2: quote inside an unquoted field");
  expect_error("a,b\n\"q\"x,2\n", "bad.csv:2: field 1: expected ',' or end of line after closing");
}

TEST(missing_file) {
  cli_csv_t csv;
  char err[256];
  ASSERT_EQ(cli_csv_open(&csv, "/nonexistent/x.csv", ',', err, sizeof(err)), CLI_ENOENT);
  ASSERT_STR_CONTAINS(err, "/nonexistent/x.csv");
}

TEST(mtsamples_whole_file) {
  char path[4096], err[256];
  cli_test_data(path, sizeof(path), "clinical/mtsamples_train.csv");
  cli_csv_t csv;
  int eof;
  double t0 = test_now_s();
  ASSERT_OK(cli_csv_open(&csv, path, ',', err, sizeof(err)));
  size_t n = 0, multiline = 0;
  for (;;) {
    ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
    if (eof) break;
    ASSERT_EQ(csv.n_field, 6);
    if (n == 0) ASSERT_STR_EQ(csv.field[4], "transcription");
    if (n > 0 && strchr(csv.field[4], '\n') != NULL) multiline++;
    n++;
  }
  printf("mtsamples: %zu records (%zu with line breaks inside) parsed in %.3f s\n", n, multiline,
         test_now_s() - t0);
  ASSERT_EQ(n, 4024); /* the header and the 4,023 notes of ../shared/data/README.md */
  cli_csv_close(&csv);
}

TEST(skab_semicolons) {
  const char *rel[2] = {"fault/skab/valve1/0.csv", "fault/skab/anomaly-free/anomaly-free.csv"};
  for (int k = 0; k < 2; k++) {
    char path[4096], err[256];
    cli_test_data(path, sizeof(path), rel[k]);
    cli_csv_t csv;
    int eof;
    ASSERT_OK(cli_csv_open(&csv, path, ';', err, sizeof(err)));
    size_t n = 0, width = 0;
    for (;;) {
      ASSERT_OK(cli_csv_next(&csv, &eof, err, sizeof(err)));
      if (eof) break;
      if (n == 0) {
        width = csv.n_field;
        ASSERT_STR_EQ(csv.field[0], "datetime");
      }
      ASSERT_EQ(csv.n_field, width);
      /* CRLF files must not leave a '\r' in the last field. */
      ASSERT(strchr(csv.field[csv.n_field - 1], '\r') == NULL);
      n++;
    }
    ASSERT_OP(width, >=, 9);
    ASSERT_OP(n, >, 1000);
    cli_csv_close(&csv);
  }
}
