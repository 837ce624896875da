/*
 * Tests of the task loaders and splits (services/cli/dataset.h, split.h) on the real shared
 * files, with expectations taken from ../shared/data/README.md and from the files' own
 * structure; errors on small broken files; and the split compared with the one
 * bench/quality/baselines.py makes (split-fixture.txt, written by that script).
 */
#include "test.h"

#include "cli-test-data.h"
#include "dataset.h"
#include "split.h"

static void load(cli_table_t *t, cli_task_t task, const char *rel) {
  char path[4096], err[512];
  cli_test_data(path, sizeof(path), rel);
  const char *files[1] = {path};
  int rc = cli_table_load(t, task, files, 1, err, sizeof(err));
  ASSERT_MSG(rc == 0, "load %s: %s", rel, err);
}

static size_t positives(const cli_table_t *t) {
  size_t p = 0;
  for (size_t i = 0; i < t->n_rows; i++) p += t->label[i] != 0;
  return p;
}

static int has_feature(const cli_table_t *t, const char *name) {
  for (size_t j = 0; j < t->n_num; j++)
    if (strcmp(t->num_name[j], name) == 0) return 1;
  for (size_t j = 0; j < t->n_cat; j++)
    if (strcmp(t->cat_name[j], name) == 0) return 1;
  return 0;
}

TEST(fraud) {
  cli_table_t t;
  load(&t, CLI_TASK_FRAUD, "fraud/creditcard_train.csv");
  ASSERT_EQ(t.n_rows, 13799);
  ASSERT_EQ(positives(&t), 369);
  ASSERT_EQ(t.n_num, 29);
  ASSERT(!has_feature(&t, "Time"));
  ASSERT(has_feature(&t, "Amount"));
  uint8_t *part = malloc(t.n_rows);
  ASSERT_OK(cli_split_assign(&t, 0, part, NULL));
  /* Time order: every validation row is no earlier than every training row, and so on. */
  double max_t[3] = {-1, -1, -1}, min_t[3] = {1e300, 1e300, 1e300};
  size_t cnt[4] = {0};
  for (size_t i = 0; i < t.n_rows; i++) {
    cnt[part[i]]++;
    if (t.order[i] > max_t[part[i]]) max_t[part[i]] = t.order[i];
    if (t.order[i] < min_t[part[i]]) min_t[part[i]] = t.order[i];
  }
  ASSERT_EQ(cnt[0], 13799 * 70 / 100);
  ASSERT_EQ(cnt[0] + cnt[1], 13799 * 85 / 100);
  ASSERT_OP(max_t[0], <=, min_t[1]);
  ASSERT_OP(max_t[1], <=, min_t[2]);
  free(part);
  cli_table_close(&t);
}

TEST(ai4i) {
  cli_table_t t;
  load(&t, CLI_TASK_AI4I, "fault/ai4i2020_train.csv");
  ASSERT_EQ(t.n_rows, 8000);
  ASSERT_EQ(positives(&t), 271);
  const char *never[8] = {"UDI", "Product ID", "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF"};
  for (int k = 0; k < 8; k++) ASSERT_MSG(!has_feature(&t, never[k]), "%s is a feature", never[k]);
  ASSERT(has_feature(&t, "Torque [Nm]"));
  ASSERT(has_feature(&t, "Type"));
  /* First data row of the file: 2,L47181,L,298.2,308.7,1408,46.3,3,0,... */
  ASSERT_EQ(t.row[0], 0);
  ASSERT_NEAR(t.order[0], 2, 0);
  ASSERT_STR_EQ(t.cat_level[0][t.cat[0]], "L");
  ASSERT_NEAR(t.num[3], 46.3, 1e-12);
  cli_table_close(&t);
}

TEST(cmapss) {
  cli_table_t t;
  load(&t, CLI_TASK_CMAPSS, "fault/cmapss/train_FD001.txt");
  ASSERT_EQ(t.n_rows, 20631);
  ASSERT_EQ(t.n_num, 24);
  /* Unit 1 runs 192 cycles: its first row has RUL 191, its last 0 (computed from the file). */
  size_t last1 = 0;
  while (t.group[last1 + 1] == 1) last1++;
  ASSERT_EQ(last1 + 1, (size_t)t.order[last1]);
  ASSERT_NEAR(t.label[0], t.order[last1] - 1, 0);
  ASSERT_NEAR(t.label[last1], 0, 0);
  ASSERT_NEAR(t.num[0 * 24 + 3], 518.67, 1e-9); /* sensor_1 of the first row */
  uint8_t *part = malloc(t.n_rows);
  double *cut = malloc(t.n_rows * sizeof(double));
  ASSERT_OK(cli_split_assign(&t, 0, part, cut));
  size_t units[3] = {0};
  for (size_t i = 0; i < t.n_rows; i++) {
    int first = i == 0 || t.group[i] != t.group[i - 1];
    int last = i + 1 == t.n_rows || t.group[i + 1] != t.group[i];
    if (first) {
      ASSERT(part[i] != CLI_PART_NONE);
      units[part[i]]++;
    } else if (part[i] != CLI_PART_NONE) {
      ASSERT_EQ(part[i], part[i - 1]); /* a unit never straddles parts */
    }
    if (last) {
      double rul_at_cut = t.order[i] - cut[i];
      if (part[i - (size_t)(t.order[i] - 1)] == CLI_PART_TRAIN) {
        ASSERT_NEAR(rul_at_cut, 0, 0);
      } else {
        ASSERT_OP(rul_at_cut, >=, 5);
        ASSERT_OP(rul_at_cut, <=, 145);
        ASSERT_OP(cut[i], >=, 31);
      }
    }
  }
  ASSERT_EQ(units[0], 70);
  ASSERT_EQ(units[1], 15);
  ASSERT_EQ(units[2], 15);
  free(cut);
  free(part);
  cli_table_close(&t);
}

static void check_text_groups(const cli_table_t *t, const uint8_t *part) {
  for (size_t i = 0; i < t->n_rows; i++) {
    int empty;
    ASSERT_EQ(cli_text_group_hash(t->text[i], &empty), t->group[i]);
    ASSERT(!empty);
  }
  /* Identical groups must share a part (quadratic, but only a few thousand rows). */
  for (size_t i = 0; i < t->n_rows; i++)
    for (size_t j = i + 1; j < t->n_rows; j++)
      if (t->group[i] == t->group[j]) ASSERT_EQ(part[i], part[j]);
}

TEST(mtsamples) {
  cli_table_t t;
  load(&t, CLI_TASK_MTSAMPLES, "clinical/mtsamples_train.csv");
  size_t dropped = 0, empty = 0;
  for (size_t k = 0; k < t.n_drop; k++) {
    dropped += t.drop[k].count;
    if (strcmp(t.drop[k].reason, "empty text") == 0) empty = t.drop[k].count;
  }
  ASSERT_EQ(t.n_rows + dropped, 4023);
  ASSERT_EQ(empty, 33); /* ../shared/data/README.md: 33 notes are empty */
  /* De-duplicated: no two rows share a text. */
  for (size_t i = 0; i < t.n_rows; i++)
    for (size_t j = i + 1; j < t.n_rows; j++) ASSERT_NE(t.group[i], t.group[j]);
  /* Exact label strings, and the frequent specialties are classes. */
  int found = 0;
  for (size_t c = 0; c < t.n_class; c++) {
    found += strcmp(t.class_name[c], "Cardiovascular / Pulmonary") == 0;
    found += strcmp(t.class_name[c], "Obstetrics / Gynecology") == 0;
    if (c > 0) ASSERT_OP(strcmp(t.class_name[c - 1], t.class_name[c]), <, 0);
  }
  ASSERT_EQ(found, 2);
  /* Rows stay in file order. */
  for (size_t i = 1; i < t.n_rows; i++) ASSERT_OP(t.row[i - 1], <, t.row[i]);
  uint8_t *part = malloc(t.n_rows);
  ASSERT_OK(cli_split_assign(&t, 0, part, NULL));
  check_text_groups(&t, part);
  free(part);
  cli_table_close(&t);
}

TEST(abstracts) {
  cli_table_t t;
  load(&t, CLI_TASK_ABSTRACTS, "clinical/medical_abstracts/abstracts_train.csv");
  ASSERT_EQ(t.n_rows, 2167);
  ASSERT_EQ(t.n_class, 5);
  ASSERT_STR_EQ(t.class_name[0], "1");
  ASSERT_STR_EQ(t.class_name[4], "5");
  ASSERT_STR_CONTAINS(t.text[0], "Intralesional interferon therapy");
  uint8_t *part = malloc(t.n_rows);
  ASSERT_OK(cli_split_assign(&t, 0, part, NULL));
  check_text_groups(&t, part);
  free(part);
  cli_table_close(&t);
}

TEST(text_group_hash_normalises) {
  int e1, e2, e3;
  uint64_t a = cli_text_group_hash("  Hello,\r\n\tWORLD  ", &e1);
  uint64_t b = cli_text_group_hash("hello, world", &e2);
  ASSERT_EQ(a, b);
  ASSERT_EQ(e1, 0);
  ASSERT_EQ(a, cli_fnv1a64("hello, world", 12));
  /* FNV-1a test vector: "a" -> af63dc4c8601ec8c. */
  ASSERT_EQ(cli_fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  cli_text_group_hash(" \n\t ", &e3);
  ASSERT_EQ(e3, 1);
}

static void expect_load_error(cli_task_t task, const char *content, const char *needle) {
  char path[] = "/tmp/sluice-cli-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, content, strlen(content)), (long long)strlen(content));
  close(fd);
  cli_table_t t;
  char err[512] = "";
  const char *files[1] = {path};
  int rc = cli_table_load(&t, task, files, 1, err, sizeof(err));
  unlink(path);
  ASSERT_EQ(rc, CLI_EFORMAT);
  ASSERT_STR_CONTAINS(err, path);
  ASSERT_STR_CONTAINS(err, needle);
}

TEST(bad_files_are_reported_precisely) {
  expect_load_error(CLI_TASK_AI4I,
                    "UDI,Product ID,Type,Air temperature [K],Process temperature [K],"
                    "Rotational speed [rpm],Torque [Nm],Tool wear [min],Machine failure\n"
                    "1,L1,L,298,308,1400,40,3,0\n2,X1,X,298,308,1400,40,3,0\n",
                    ":3: column 3 ('Type'): expected L, M or H, found 'X'");
  expect_load_error(CLI_TASK_AI4I,
                    "UDI,Type,Air temperature [K],Process temperature [K],"
                    "Rotational speed [rpm],Torque [Nm],Tool wear [min],Machine failure\n"
                    "1,L,298,308,fast,40,3,0\n",
                    ":2: column 5 ('Rotational speed [rpm]'): expected a finite number, found "
                    "'fast'");
  expect_load_error(CLI_TASK_AI4I, "UDI,Type\n1,L\n", "expected a column named 'Air temperature");
  expect_load_error(CLI_TASK_CMAPSS, "1 1 0 0 100 1 2 3\n", ":1: expected 26 space-separated");
  expect_load_error(CLI_TASK_CMAPSS,
                    "1 1 0 0 100 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21  \n"
                    "1 3 0 0 100 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\n",
                    ":2: column 2: unit 1 cycle 3 follows cycle 1, expected 2");
  expect_load_error(CLI_TASK_MTSAMPLES, "note_id,medical_specialty,transcription\n1,,\"x\"\n",
                    ":2: column 2 ('medical_specialty'): expected a label");
  expect_load_error(CLI_TASK_ABSTRACTS, "condition_label,medical_abstract\n1,a\n6,b\n",
                    ":3: column 1 ('condition_label'): expected a condition label 1 to 5, "
                    "found '6'");
  expect_load_error(CLI_TASK_ABSTRACTS, "condition_label,medical_abstract\n1,\"a\",b\n",
                    ":2: expected 2 fields as in the header, found 3");
}

/* ---- the split fixture from bench/quality/baselines.py ------------------------- */

TEST(split_matches_python) {
  static const struct {
    cli_task_t task;
    const char *rel;
  } tasks[] = {
      {CLI_TASK_FRAUD, "fraud/creditcard_train.csv"},
      {CLI_TASK_AI4I, "fault/ai4i2020_train.csv"},
      {CLI_TASK_CMAPSS, "fault/cmapss/train_FD001.txt"},
      {CLI_TASK_MTSAMPLES, "clinical/mtsamples_train.csv"},
      {CLI_TASK_ABSTRACTS, "clinical/medical_abstracts/abstracts_train.csv"},
  };
  char fixture[4096];
  const char *src = getenv("SLUICE_SOURCE_DIR");
  snprintf(fixture, sizeof(fixture), "%s/tests/unit/cli/split-fixture.txt", src ? src : ".");
  FILE *f = fopen(fixture, "r");
  ASSERT_MSG(f != NULL, "cannot open %s", fixture);
  size_t checked = 0;
  for (size_t k = 0; k < sizeof(tasks) / sizeof(tasks[0]); k++) {
    cli_table_t t;
    load(&t, tasks[k].task, tasks[k].rel);
    uint8_t *part = malloc(t.n_rows);
    for (int fold = 0; fold < CLI_SPLIT_FOLDS; fold++) {
      if (cli_split_fold_check(t.task, fold) != CLI_OK) continue;
      ASSERT_OK(cli_split_assign(&t, fold, part, NULL));
      /* The fixture names fold f > 0 "task/foldf". */
      char key[96];
      if (fold == 0)
        snprintf(key, sizeof(key), "%s", cli_task_name(t.task));
      else
        snprintf(key, sizeof(key), "%s/fold%d", cli_task_name(t.task), fold);
      for (int p = 0; p < 3; p++) {
        /* FNV-1a over "row,row,...," of the part's rows in file order (the fixture's format). */
        uint64_t h = 0xcbf29ce484222325ULL;
        size_t n = 0;
        for (size_t i = 0; i < t.n_rows; i++) {
          if (part[i] != p) continue;
          char num[32];
          int len = snprintf(num, sizeof(num), "%lld,", (long long)t.row[i]);
          for (int c = 0; c < len; c++) {
            h ^= (unsigned char)num[c];
            h *= 0x100000001b3ULL;
          }
          n++;
        }
        char line[256], want_key[96], want_part[32];
        unsigned long long want_h;
        size_t want_n;
        rewind(f);
        int found = 0;
        while (fgets(line, sizeof(line), f) != NULL) {
          if (sscanf(line, "%95s %31s %zu %llx", want_key, want_part, &want_n, &want_h) != 4)
            continue;
          if (strcmp(want_key, key) != 0 || strcmp(want_part, cli_part_name((cli_part_t)p)) != 0)
            continue;
          found = 1;
          ASSERT_MSG(want_n == n, "%s %s: python has %zu rows, C %zu", key, want_part, want_n, n);
          ASSERT_MSG(want_h == h, "%s %s: the row ids differ from python's", key, want_part);
          checked++;
        }
        ASSERT_MSG(found, "%s %s missing from %s", key, cli_part_name((cli_part_t)p), fixture);
      }
    }
    free(part);
    cli_table_close(&t);
  }
  /* 2 time-ordered tasks with fold 0, 3 grouped tasks with 6 folds, 3 parts each. */
  ASSERT_EQ(checked, 3 * (2 + 3 * CLI_SPLIT_FOLDS));
  fclose(f);
}

/* The six folds' test parts are disjoint and together hold 90 % of the groups; the time-ordered
 * tasks refuse any fold but 0. */
TEST(folds_partition_the_groups) {
  ASSERT_EQ(cli_split_fold_check(CLI_TASK_FRAUD, 1), CLI_EINVAL);
  ASSERT_EQ(cli_split_fold_check(CLI_TASK_AI4I, 5), CLI_EINVAL);
  ASSERT_EQ(cli_split_fold_check(CLI_TASK_ABSTRACTS, CLI_SPLIT_FOLDS), CLI_EINVAL);
  ASSERT_EQ(cli_split_fold_check(CLI_TASK_CMAPSS, -1), CLI_EINVAL);
  ASSERT_OK(cli_split_fold_check(CLI_TASK_FRAUD, 0));
  char err[256];
  int fold = -1;
  ASSERT_OK(cli_split_fold_parse(CLI_TASK_MTSAMPLES, "5", &fold, err, sizeof(err)));
  ASSERT_EQ(fold, 5);
  ASSERT_EQ(cli_split_fold_parse(CLI_TASK_MTSAMPLES, "2x", &fold, err, sizeof(err)), CLI_EINVAL);
  ASSERT_STR_CONTAINS(err, "--fold '2x': records-mtsamples has folds 0 to 5");
  ASSERT_EQ(cli_split_fold_parse(CLI_TASK_AI4I, "1", &fold, err, sizeof(err)), CLI_EINVAL);
  ASSERT_STR_CONTAINS(err, "fault-ai4i is split by time and has fold 0 only");
  ASSERT_EQ(cli_split_fold_parse(CLI_TASK_CMAPSS, "99999999999", &fold, err, sizeof(err)),
            CLI_EINVAL);
  ASSERT_EQ(fold, 5); /* untouched on error */
  static const struct {
    cli_task_t task;
    const char *rel;
  } tasks[] = {
      {CLI_TASK_CMAPSS, "fault/cmapss/train_FD001.txt"},
      {CLI_TASK_ABSTRACTS, "clinical/medical_abstracts/abstracts_train.csv"},
  };
  for (size_t k = 0; k < 2; k++) {
    cli_table_t t;
    load(&t, tasks[k].task, tasks[k].rel);
    uint8_t *part = malloc(t.n_rows), *tested = calloc(t.n_rows, 1);
    uint8_t *fold0 = malloc(t.n_rows);
    ASSERT_EQ(cli_split_assign(&t, CLI_SPLIT_FOLDS, part, NULL), CLI_EINVAL);
    ASSERT_OK(cli_split_assign(&t, 0, fold0, NULL));
    size_t first_rows = 0, tested_firsts = 0;
    for (int f = 0; f < CLI_SPLIT_FOLDS; f++) {
      ASSERT_OK(cli_split_assign(&t, f, part, NULL));
      size_t differs = 0;
      for (size_t i = 0; i < t.n_rows; i++) {
        differs += part[i] != fold0[i];
        if (part[i] != CLI_PART_TEST) continue;
        ASSERT_MSG(!tested[i], "%s row %zu is in the test part of two folds",
                   cli_task_name(t.task), i);
        tested[i] = 1;
      }
      if (f > 0)
        ASSERT_MSG(differs > 0, "%s fold %d: the split of fold 0", cli_task_name(t.task), f);
    }
    /* Count by group: a C-MAPSS unit's first cycle, a text row. */
    for (size_t i = 0; i < t.n_rows; i++) {
      if (t.task == CLI_TASK_CMAPSS && i > 0 && t.group[i] == t.group[i - 1]) continue;
      first_rows++;
      tested_firsts += tested[i];
    }
    double share = (double)tested_firsts / (double)first_rows;
    ASSERT_MSG(share > 0.85 && share < 0.95, "%s: the folds test %.3f of the groups",
               cli_task_name(t.task), share);
    free(fold0);
    free(tested);
    free(part);
    cli_table_close(&t);
  }
}

/* ---- C-MAPSS test files with their RUL file ------------------------------------- */

static void write_file(char *path, const char *content) {
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, content, strlen(content)), (long long)strlen(content));
  close(fd);
}

TEST(cmapss_rul_file) {
  /* Unit 1 observed for 3 cycles, unit 2 for 2; the RUL file says 10 and 4 remain. */
  const char *row = " 0 0 100 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 \n";
  char test_txt[1024] = "";
  const char *ids[5] = {"1 1", "1 2", "1 3", "2 1", "2 2"};
  for (int i = 0; i < 5; i++) {
    strcat(test_txt, ids[i]);
    strcat(test_txt, row);
  }
  char tpath[] = "/tmp/sluice-cmapss-test-XXXXXX", rpath[] = "/tmp/sluice-cmapss-rul-XXXXXX";
  write_file(tpath, test_txt);
  write_file(rpath, "10\n4\n");
  cli_table_t t;
  char err[512];
  const char *files[1] = {tpath};
  ASSERT_OK(cli_table_load(&t, CLI_TASK_CMAPSS, files, 1, err, sizeof(err)));
  ASSERT_OK(cli_table_apply_rul(&t, rpath, err, sizeof(err)));
  const double want[5] = {12, 11, 10, 5, 4};
  for (int i = 0; i < 5; i++) ASSERT_NEAR(t.label[i], want[i], 0);
  /* Wrong count and bad values are reported with file and line; labels stay as they were. */
  char bad1[] = "/tmp/sluice-cmapss-rul-XXXXXX", bad2[] = "/tmp/sluice-cmapss-rul-XXXXXX";
  write_file(bad1, "10\n");
  write_file(bad2, "10\nsoon\n");
  ASSERT_EQ(cli_table_apply_rul(&t, bad1, err, sizeof(err)), CLI_EFORMAT);
  ASSERT_STR_CONTAINS(err, "1 RUL values for the 2 units");
  ASSERT_EQ(cli_table_apply_rul(&t, bad2, err, sizeof(err)), CLI_EFORMAT);
  ASSERT_STR_CONTAINS(err, ":2: expected one non-negative integer (the RUL of unit 2)");
  ASSERT_NEAR(t.label[0], 12, 0);
  cli_table_close(&t);
  unlink(tpath);
  unlink(rpath);
  unlink(bad1);
  unlink(bad2);
}
