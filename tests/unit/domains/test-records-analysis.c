/*
 * The analysis of clinical notes with a tiny text model written here, small enough that its
 * class probabilities are a closed-form function of which words a row holds (computed
 * independently below): chunking of long notes (mean over overlapping chunks, never a silent
 * cut; truncated only beyond max_chunks), evidence spans mapped back to the original bytes,
 * the RecordAnalysis message and the row JSON. Then real MTSamples notes from ../shared/data
 * for sections and long-note handling.
 */
#include "test.h"

#include "records-analysis.h"

#define EPS 1e-5
#define MAX_LEN 8 /* [CLS] + 7 note tokens per row */

/* ---- the model ----------------------------------------------------------------------- */

/* Vocabulary: the five specials, "heart", "bone", "##s". Embeddings: [CLS] (0, 1), heart (1, 0),
 * bone (-1, 0), everything else 0; no layers, no MoE; head logits (10 a, -10 a, 3 b) of the
 * normalised mean (a, b). Labels cardio, ortho, other. */
static const char *const model_cfg =
    "{\"format\":\"sluice-moe\",\"format_version\":1,\"version\":\"test-records-1\","
    "\"quant\":\"f32\",\"d_model\":2,\"encoder\":{\"kind\":\"text\",\"vocab_size\":8,"
    "\"max_len\":8,\"n_layer\":0,\"n_head\":1,\"d_ff\":2,\"window\":[],\"n_global\":1,"
    "\"tokenizer\":{\"kind\":\"wordpiece\",\"version\":1,\"lowercase\":true,"
    "\"max_word_bytes\":100,\"vocab\":[\"[PAD]\",\"[UNK]\",\"[CLS]\",\"[SEP]\",\"[MASK]\","
    "\"heart\",\"bone\",\"##s\"]}},\"moe\":[],"
    "\"task\":{\"kind\":\"multiclass\",\"labels\":[\"cardio\",\"ortho\",\"other\"]}}";

typedef struct {
  const char *name;
  int ndim, shape[2];
  const float *data;
} tensor_t;

static moe_model_t *load_model(void) {
  static const float tok[16] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, -1, 0, 0, 0};
  static const float pos[16] = {0};
  static const float norm_w[] = {1, 1}, head_w[] = {10, 0, -10, 0, 0, 3}, head_b[] = {0, 0, 0};
  const tensor_t ts[] = {{"enc.tok.weight", 2, {8, 2}, tok},  {"enc.pos.weight", 2, {8, 2}, pos},
                         {"enc.norm.weight", 1, {2}, norm_w}, {"head.norm.weight", 1, {2}, norm_w},
                         {"head.weight", 2, {3, 2}, head_w},  {"head.bias", 1, {3}, head_b}};
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  ASSERT_NOT_NULL(h);
  fputs("{\"__metadata__\":{\"config\":\"", h);
  for (const char *p = model_cfg; *p; p++) {
    if (*p == '"' || *p == '\\') fputc('\\', h);
    fputc(*p, h);
  }
  fputs("\"}", h);
  size_t off = 0;
  for (int i = 0; i < 6; i++) {
    size_t count = (size_t)ts[i].shape[0] * (ts[i].ndim == 2 ? (size_t)ts[i].shape[1] : 1);
    fprintf(h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d", ts[i].name, ts[i].shape[0]);
    if (ts[i].ndim == 2) fprintf(h, ",%d", ts[i].shape[1]);
    fprintf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * count);
    off += 4 * count;
  }
  fputs("}", h);
  while (ftell(h) % 8 != 0) fputc(' ', h);
  fclose(h);
  size_t total = 8 + hlen + off;
  unsigned char *file = malloc(total);
  ASSERT_NOT_NULL(file);
  for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  memcpy(file + 8, hdr, hlen);
  size_t at = 8 + hlen;
  for (int i = 0; i < 6; i++) {
    size_t count = (size_t)ts[i].shape[0] * (ts[i].ndim == 2 ? (size_t)ts[i].shape[1] : 1);
    memcpy(file + at, ts[i].data, 4 * count);
    at += 4 * count;
  }
  moe_model_t *m = NULL;
  char err[512];
  int rc = moe_model_load_memory(file, total, &m, err, sizeof err);
  ASSERT_MSG(rc == 0, "model: %s", err);
  free(hdr);
  free(file);
  return m;
}

/* Word kinds for the closed form: 'h' heart, 'b' bone, '.' anything else (no embedding). */
static void row_probs(const char *kinds, size_t n, double *p) {
  double tokens = (double)n + 1.0, a = 0, b = sqrt(2.0 / (1.0 + 2 * EPS)) / tokens;
  double unit = sqrt(2.0 / (1.0 + 2 * EPS));
  for (size_t i = 0; i < n; i++) a += (kinds[i] == 'h' ? unit : kinds[i] == 'b' ? -unit : 0) / tokens;
  double r = sqrt((a * a + b * b) / 2.0 + EPS);
  double z[3] = {10 * a / r, -10 * a / r, 3 * b / r}, mx = fmax(z[0], fmax(z[1], z[2])), s = 0;
  for (int k = 0; k < 3; k++) s += (p[k] = exp(z[k] - mx));
  for (int k = 0; k < 3; k++) p[k] /= s;
}

/* The mean over chunks of `kinds` (one kind per token), chunks as the header states. */
static size_t chunked_probs(const char *kinds, size_t n, size_t max_chunks, double *p) {
  const size_t body = MAX_LEN - 1, step = body / 2;
  size_t starts[4096], nc = 0;
  for (size_t s = 0; nc < max_chunks; s += step) {
    if (s + body > n && n > body) s = n - body;
    starts[nc++] = s;
    if (s + body >= n) break;
  }
  p[0] = p[1] = p[2] = 0;
  for (size_t c = 0; c < nc; c++) {
    double q[3];
    size_t m = n - starts[c] < body ? n - starts[c] : body;
    row_probs(kinds + starts[c], m, q);
    for (int k = 0; k < 3; k++) p[k] += q[k] / (double)nc;
  }
  return nc;
}

static wk_records_scorer_t *scorer(const moe_model_t *m, size_t max_chunks, size_t top) {
  wk_records_cfg_t cfg = {.max_chunks = max_chunks, .top_evidence = top};
  wk_records_scorer_t *sc = NULL;
  char err[256];
  ASSERT_OK(wk_records_scorer_new(m, &cfg, &sc, err, sizeof err));
  return sc;
}

/* ---- tests with the tiny model -------------------------------------------------------- */

TEST(short_note_scores_and_evidence) {
  moe_model_t *m = load_model();
  wk_records_scorer_t *sc = scorer(m, 16, 3);
  const char *text = "the HEARTS, liver";
  wk_records_analysis_t an;
  char err[256];
  ASSERT_OK(wk_records_analyze(sc, text, strlen(text), &an, err, sizeof err));
  /* Tokens: the [UNK], heart, ##s, ",", liver [UNK]. */
  ASSERT_EQ(an.n_tokens, 5);
  ASSERT_EQ(an.n_chunks, 1);
  ASSERT(!an.truncated);
  double p[3];
  row_probs(".h...", 5, p);
  for (int k = 0; k < 3; k++) ASSERT_NEAR(an.probs[k], p[k], 1e-4);
  ASSERT_EQ(an.predicted, 0);
  ASSERT_STR_EQ(wk_records_label(sc, an.predicted), "cardio");
  /* The one word with positive evidence is HEARTS, both pieces, at its original bytes. */
  ASSERT_EQ(an.n_evidence, 1);
  ASSERT_EQ(an.evidence[0].start, 4);
  ASSERT_EQ(an.evidence[0].end, 10);
  double q[3];
  row_probs(".....", 5, q); /* heart occluded (id 0, no embedding) */
  ASSERT_NEAR(an.evidence[0].weight, p[0] - q[0], 1e-4);
  wk_records_analysis_free(&an);
  wk_records_scorer_free(sc);
  moe_model_free(m);
}

TEST(long_note_is_chunked_not_cut) {
  moe_model_t *m = load_model();
  wk_records_scorer_t *sc = scorer(m, 16, 2);
  /* 14 x liver then 16 x Heart: 30 tokens, more than 4 rows hold. */
  char text[512] = "", kinds[31] = "";
  for (int i = 0; i < 30; i++) {
    strcat(text, i < 14 ? "liver " : "Heart ");
    kinds[i] = i < 14 ? '.' : 'h';
  }
  wk_records_analysis_t an;
  char err[256];
  ASSERT_OK(wk_records_analyze(sc, text, strlen(text), &an, err, sizeof err));
  ASSERT_EQ(an.n_tokens, 30);
  double p[3];
  size_t nc = chunked_probs(kinds, 30, 16, p);
  ASSERT_EQ(an.n_chunks, nc);
  ASSERT_EQ(nc, 9); /* starts 0, 3, ..., 21, then 23 flush with the end */
  ASSERT(!an.truncated);
  ASSERT_EQ(an.n_dropped, 0);
  for (int k = 0; k < 3; k++) ASSERT_NEAR(an.probs[k], p[k], 1e-4);
  /* The first row alone would have said "other" with certainty. */
  double first[3];
  row_probs(kinds, 7, first);
  ASSERT_OP(first[2], >, 0.9);
  ASSERT_OP(an.probs[0], >, 0.5);
  printf("30-token note, 9 chunks: cardio %.3f ortho %.3f other %.3f\n", an.probs[0], an.probs[1],
         an.probs[2]);
  int best = p[1] > p[0] ? 1 : 0;
  if (p[2] > p[best]) best = 2;
  ASSERT_EQ(an.predicted, best);
  if (best == 0) {
    /* Evidence for cardio: Heart words only (liver has no embedding: occluding it is free). */
    ASSERT_EQ(an.n_evidence, 2);
    for (size_t i = 0; i < an.n_evidence; i++) {
      ASSERT(strncmp(text + an.evidence[i].start, "Heart", 5) == 0);
      ASSERT_EQ(an.evidence[i].end - an.evidence[i].start, 5);
    }
  } else {
    ASSERT_EQ(an.n_evidence, 0);
  }
  wk_records_analysis_free(&an);
  wk_records_scorer_free(sc);

  /* Beyond max_chunks the rest is dropped, and said so. */
  sc = scorer(m, 3, 0);
  ASSERT_OK(wk_records_analyze(sc, text, strlen(text), &an, err, sizeof err));
  ASSERT_EQ(an.n_tokens, 30);
  ASSERT_EQ(an.n_chunks, 3);
  ASSERT(an.truncated);
  ASSERT_EQ(an.n_dropped, 30 - (6 + 7));
  chunked_probs(kinds, 30, 3, p);
  for (int k = 0; k < 3; k++) ASSERT_NEAR(an.probs[k], p[k], 1e-4);
  ASSERT_EQ(an.n_evidence, 0);
  wk_records_analysis_free(&an);
  wk_records_scorer_free(sc);
  moe_model_free(m);
}

TEST(message_and_row) {
  moe_model_t *m = load_model();
  wk_records_scorer_t *sc = scorer(m, 16, 3);
  const char *text = "MEDICATIONS: none.\nASSESSMENT: \"bone\" pain.\nPLAN: rest";
  wk_records_analysis_t an;
  char err[256];
  ASSERT_OK(wk_records_analyze(sc, text, strlen(text), &an, err, sizeof err));
  ASSERT_EQ(an.predicted, 1);
  ASSERT_EQ(an.n_sections, 3);
  uint8_t *buf;
  size_t len;
  ASSERT_OK(wk_records_pack(sc, &an, "n-1", "p-9", text, &buf, &len));
  Sluice__V1__RecordAnalysis *ra = sluice__v1__record_analysis__unpack(NULL, len, buf);
  ASSERT_NOT_NULL(ra);
  ASSERT_STR_EQ(ra->note_id, "n-1");
  ASSERT_STR_EQ(ra->patient_id, "p-9");
  ASSERT_STR_EQ(ra->model_version, "test-records-1");
  ASSERT_STR_EQ(ra->predicted_label, "ortho");
  ASSERT_EQ(ra->n_classes, 3);
  ASSERT_NEAR(ra->classes[0]->probability + ra->classes[1]->probability +
                  ra->classes[2]->probability, 1.0, 1e-5);
  ASSERT_EQ(ra->n_evidence, 1);
  ASSERT_STR_EQ(ra->evidence[0]->text, "bone");
  ASSERT_EQ(ra->n_sections, 3);
  ASSERT_STR_EQ(ra->sections[0]->name, "medications");
  ASSERT_STR_EQ(ra->sections[1]->name, "assessment");
  ASSERT_STR_EQ(ra->sections[2]->name, "plan");
  ASSERT_EQ(ra->sections[0]->start, 0);
  ASSERT_EQ(ra->n_tokens, an.n_tokens);
  ASSERT(ra->has_truncated && !ra->truncated);
  sluice__v1__record_analysis__free_unpacked(ra, NULL);
  free(buf);
  char *classes, *evidence, *sections;
  ASSERT_OK(wk_records_row_json(sc, &an, text, &classes, &evidence, &sections));
  ASSERT_STR_CONTAINS(classes, "{\"label\":\"cardio\",\"probability\":");
  ASSERT_STR_CONTAINS(evidence, "{\"text\":\"bone\",\"start\":");
  ASSERT_STR_CONTAINS(sections, "{\"name\":\"plan\",\"start\":");
  free(classes);
  free(evidence);
  free(sections);
  wk_records_analysis_free(&an);
  wk_records_scorer_free(sc);
  moe_model_free(m);
}

/* ---- real MTSamples notes ---------------------------------------------------------------- */

/* Reads field `col` of the next CSV record (RFC 4180 quoting) from *p into a malloc'd string;
 * NULL at the end. */
static char *csv_next(const char **p, int col) {
  const char *s = *p;
  if (*s == '\0') return NULL;
  char *out = NULL;
  for (int c = 0;; c++) {
    char *field = malloc(strlen(s) + 1);
    ASSERT_NOT_NULL(field);
    size_t n = 0;
    if (*s == '"') {
      s++;
      for (;;) {
        if (*s == '\0') break;
        if (*s == '"' && s[1] == '"') field[n++] = '"', s += 2;
        else if (*s == '"') { s++; break; }
        else field[n++] = *s++;
      }
    }
    while (*s != '\0' && *s != ',' && *s != '\n') field[n++] = *s++;
    field[n] = '\0';
    if (c == col) out = field;
    else free(field);
    if (*s == ',') { s++; continue; }
    if (*s == '\n') s++;
    break;
  }
  *p = s;
  return out;
}

TEST(mtsamples_sections_and_long_notes) {
  const char *dir = getenv("SLUICE_SOURCE_DIR");
  char path[512];
  snprintf(path, sizeof path, "%s/../shared/data/clinical/mtsamples_train.csv", dir ? dir : ".");
  FILE *f = fopen(path, "rb");
  ASSERT_MSG(f != NULL, "cannot open %s", path);
  /* The first 2 MB hold several hundred notes. */
  size_t cap = 2u << 20;
  char *data = malloc(cap + 1);
  ASSERT_NOT_NULL(data);
  size_t got = fread(data, 1, cap, f);
  data[got] = '\0';
  fclose(f);
  const char *p = data;
  free(csv_next(&p, 0)); /* header */
  moe_model_t *m = load_model();
  wk_records_scorer_t *sc = scorer(m, 4096, 0);
  size_t notes = 0, with_sections = 0, kinds[MOE_SECTION__COUNT] = {0}, longest = 0;
  for (char *text; notes < 300 && (text = csv_next(&p, 4)) != NULL; free(text)) {
    if (text[0] == '\0' || p >= data + got) continue;
    notes++;
    size_t len = strlen(text);
    wk_records_analysis_t an;
    char err[256];
    ASSERT_OK(wk_records_analyze(sc, text, len, &an, err, sizeof err));
    with_sections += an.n_sections > 0;
    uint32_t prev_end = 0;
    for (size_t i = 0; i < an.n_sections; i++) {
      const moe_text_section_t *s = &an.sections[i];
      ASSERT(s->head_start < s->head_end && s->head_end <= s->body_start);
      ASSERT(s->body_start <= s->body_end && s->body_end <= len);
      ASSERT(s->head_start >= prev_end);
      prev_end = s->body_end;
      kinds[s->kind]++;
    }
    /* A long note: every token seen (as many chunks as the rule asks), nothing dropped. */
    ASSERT(!an.truncated);
    /* Starts 0, 3, 6, ... while a chunk ends before the last token, then one flush with it. */
    size_t body = MAX_LEN - 1, want = an.n_tokens <= body ? 1 : (an.n_tokens - body + 2) / 3 + 1;
    ASSERT_EQ(an.n_chunks, want);
    ASSERT_NEAR(an.probs[0] + an.probs[1] + an.probs[2], 1.0, 1e-4);
    if (an.n_tokens > longest) longest = an.n_tokens;
    wk_records_analysis_free(&an);
  }
  printf("mtsamples: %zu notes, %zu with sections, longest %zu tokens; history %zu, medications "
         "%zu, assessment %zu, plan %zu\n",
         notes, with_sections, longest, kinds[MOE_SECTION_HPI], kinds[MOE_SECTION_MEDICATIONS],
         kinds[MOE_SECTION_ASSESSMENT], kinds[MOE_SECTION_PLAN]);
  ASSERT_OP(notes, >=, 100);
  ASSERT_OP(with_sections, >=, notes * 8 / 10);
  ASSERT_OP(kinds[MOE_SECTION_HPI], >, 0);
  ASSERT_OP(kinds[MOE_SECTION_MEDICATIONS], >, 0);
  ASSERT_OP(kinds[MOE_SECTION_ASSESSMENT] + kinds[MOE_SECTION_DIAGNOSIS], >, 0);
  ASSERT_OP(kinds[MOE_SECTION_PLAN], >, 0);
  ASSERT_OP(longest, >, 1000);
  wk_records_scorer_free(sc);
  /* With the default chunk budget the longest notes are cut, and say so. */
  sc = scorer(m, WK_RECORDS_DEFAULT_MAX_CHUNKS, 0);
  p = data;
  free(csv_next(&p, 0));
  size_t cut = 0;
  for (char *text; (text = csv_next(&p, 4)) != NULL && p < data + got; free(text)) {
    wk_records_analysis_t an;
    char err[256];
    if (text[0] == '\0') continue;
    ASSERT_OK(wk_records_analyze(sc, text, strlen(text), &an, err, sizeof err));
    if (an.n_tokens > 7 + 3 * (WK_RECORDS_DEFAULT_MAX_CHUNKS - 1)) {
      ASSERT(an.truncated);
      ASSERT_EQ(an.n_chunks, WK_RECORDS_DEFAULT_MAX_CHUNKS);
      ASSERT_EQ(an.n_dropped, an.n_tokens - (3 * (WK_RECORDS_DEFAULT_MAX_CHUNKS - 1) + 7));
      cut++;
    } else {
      ASSERT(!an.truncated);
    }
    wk_records_analysis_free(&an);
    if (cut >= 20) {
      free(text);
      break;
    }
  }
  ASSERT_OP(cut, >=, 20);
  wk_records_scorer_free(sc);
  moe_model_free(m);
  free(data);
}
