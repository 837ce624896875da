/*
 * bench-records: what the analysis of real notes costs with each evidence setting, for the
 * README's figures. Reads the first notes of an MTSamples-like CSV (text in column `col`),
 * analyses each with a text model, and prints notes/s, model rows per note, and how often the
 * cheap WORDS evidence finds the same top word as the exact TOKENS evidence.
 *
 *   bench-records MODEL CSV [NOTES [COL [MODES [EV_CHUNKS]]]]  (defaults: 100 notes, column 4, all 4 modes:
 *                                                 none, segments, words, tokens)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records-analysis.h"

static double bench__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Field `col` of the next CSV record (RFC 4180 quotes) at *p, malloc'd; NULL at the end. */
static char *bench__csv_field(const char **p, int col) {
  const char *s = *p;
  if (*s == '\0') return NULL;
  char *out = NULL;
  for (int c = 0;; c++) {
    const char *f0 = s;
    size_t cap = 16, n = 0;
    char *field = malloc(cap);
    if (field == NULL) abort();
    bool quoted = *s == '"';
    if (quoted) s++;
    for (; *s != '\0'; s++) {
      if (quoted && *s == '"') {
        if (s[1] == '"') {
          s++;
        } else {
          quoted = false;
          continue;
        }
      } else if (!quoted && (*s == ',' || *s == '\n')) {
        break;
      }
      if (n + 2 > cap) {
        field = realloc(field, cap *= 2);
        if (field == NULL) abort();
      }
      field[n++] = *s;
    }
    (void)f0;
    field[n] = '\0';
    if (c == col) out = field;
    else free(field);
    if (*s == ',') {
      s++;
      continue;
    }
    if (*s == '\n') s++;
    break;
  }
  *p = s;
  return out;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL CSV [NOTES [COL]]\n", argv[0]);
    return 2;
  }
  size_t want = argc > 3 ? (size_t)atol(argv[3]) : 100;
  int col = argc > 4 ? atoi(argv[4]) : 4;
  char err[256];
  moe_model_t *m = NULL;
  if (moe_model_load(argv[1], &m, err, sizeof err) != MOE_OK) {
    fprintf(stderr, "%s: %s\n", argv[1], err);
    return 1;
  }
  FILE *f = fopen(argv[2], "rb");
  if (f == NULL) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)size + 1);
  if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) return 1;
  data[size] = '\0';
  fclose(f);
  char **notes = calloc(want, sizeof *notes);
  size_t nn = 0;
  const char *p = data;
  free(bench__csv_field(&p, 0));
  for (char *t; nn < want && (t = bench__csv_field(&p, col)) != NULL;) {
    if (t[0] == '\0') free(t);
    else notes[nn++] = t;
  }
  struct {
    const char *name;
    size_t top;
    wk_records_evidence_t ev;
  } modes[] = {{"none", 0, WK_RECORDS_EVIDENCE_WORDS},
               {"segments", 5, WK_RECORDS_EVIDENCE_SEGMENTS},
               {"words", 5, WK_RECORDS_EVIDENCE_WORDS},
               {"tokens", 5, WK_RECORDS_EVIDENCE_TOKENS}};
  uint32_t *top_words = calloc(nn, sizeof *top_words);
  size_t same_top = 0, with_top = 0;
  size_t n_modes = argc > 5 ? (size_t)atoi(argv[5]) : sizeof modes / sizeof modes[0];
  for (size_t mi = 0; mi < n_modes; mi++) {
    wk_records_cfg_t cfg = {.max_chunks = WK_RECORDS_DEFAULT_MAX_CHUNKS,
                            .top_evidence = modes[mi].top, .evidence = modes[mi].ev,
                            .evidence_chunks = argc > 6 ? (size_t)atoi(argv[6]) : 1};
    wk_records_scorer_t *sc = NULL;
    if (wk_records_scorer_new(m, &cfg, &sc, err, sizeof err) != SVC_OK) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    size_t rows = 0, toks = 0, chunks = 0, ev_rows = 0;
    double t0 = bench__now();
    for (size_t i = 0; i < nn; i++) {
      wk_records_analysis_t an;
      if (wk_records_analyze(sc, notes[i], strlen(notes[i]), &an, err, sizeof err) != SVC_OK) {
        fprintf(stderr, "note %zu: %s\n", i, err);
        return 1;
      }
      toks += an.n_tokens;
      chunks += an.n_chunks;
      ev_rows += an.n_evidence_rows;
      rows += an.n_chunks + an.n_evidence_rows;
      if (mi == 2) top_words[i] = an.n_evidence ? an.evidence[0].start + 1 : 0;
      if (mi == 3 && an.n_evidence > 0) {
        with_top++;
        same_top += top_words[i] == an.evidence[0].start + 1;
      }
      wk_records_analysis_free(&an);
    }
    double dt = bench__now() - t0;
    printf("evidence %-8s %zu notes in %.2f s: %.1f notes/s, %.1f ms/note; per note %.0f tokens, "
           "%.2f chunks, %.0f evidence rows\n",
           modes[mi].name, nn, dt, (double)nn / dt, 1e3 * dt / (double)nn,
           (double)toks / (double)nn, (double)chunks / (double)nn, (double)ev_rows / (double)nn);
    (void)rows;
    wk_records_scorer_free(sc);
  }
  printf("top word of words == top word of tokens: %zu of %zu notes\n", same_top, with_top);
  for (size_t i = 0; i < nn; i++) free(notes[i]);
  free(notes);
  free(top_words);
  free(data);
  moe_model_free(m);
  return 0;
}
