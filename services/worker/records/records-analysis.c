/*
 * The analysis of one clinical note: sections, tokens, chunked scoring, evidence spans, and
 * the message and row values it becomes. The contract (and the long-note rule) is in
 * records-analysis.h.
 */
#include "records-analysis.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wk_records_scorer_s {
  const moe_model_t *model;
  moe_wordpiece_t *wp;
  moe_session_t *sess;
  wk_records_cfg_t cfg;
  int max_len;        /* tokens per model row, [CLS] included */
  int n_outputs;      /* 1 for binary */
  int n_classes;
  bool binary;
  int32_t *ids;       /* (max_chunks, max_len) */
  moe_input_t *rows;  /* (max_chunks) */
  size_t *starts;     /* (max_chunks) first note token of each chunk */
  float *scores;      /* (max_chunks, n_outputs) */
  float *attr;        /* (max_len) */
  /* Occlusion rows of WK_RECORDS_EVIDENCE_WORDS, run occ_batch at a time. */
  int occ_batch;
  int32_t *occ_ids;   /* (occ_batch, max_len) */
  moe_input_t *occ_rows; /* (occ_batch) */
  float *occ_scores;  /* (occ_batch, n_outputs) */
  float *base;        /* (max_chunks) each chunk's score of the explained output */
  bool *sel;          /* (max_chunks) chunks that evidence looks at */
};

void wk_records_scorer_free(wk_records_scorer_t *sc) {
  if (sc == NULL) return;
  moe_session_free(sc->sess);
  moe_wordpiece_free(sc->wp);
  free(sc->ids);
  free(sc->rows);
  free(sc->starts);
  free(sc->scores);
  free(sc->attr);
  free(sc->occ_ids);
  free(sc->occ_rows);
  free(sc->occ_scores);
  free(sc->base);
  free(sc->sel);
  free(sc);
}

svc_err_t wk_records_scorer_new(const moe_model_t *model, const wk_records_cfg_t *cfg,
                                wk_records_scorer_t **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  if (moe_model_encoder(model) != MOE_ENCODER_TEXT) {
    snprintf(errstr, errstr_size, "model %s is not a text model", moe_model_version(model));
    return SVC_ECONFIG;
  }
  if (moe_model_task(model) == MOE_TASK_REGRESSION) {
    snprintf(errstr, errstr_size, "model %s is a regression model; the records pipeline needs "
             "class probabilities", moe_model_version(model));
    return SVC_ECONFIG;
  }
  if ((unsigned)cfg->evidence >= WK_RECORDS_EVIDENCE__COUNT) {
    snprintf(errstr, errstr_size, "records evidence %d is not a known way", (int)cfg->evidence);
    return SVC_ECONFIG;
  }
  if (!(cfg->evidence_min_prob >= 0.0f && cfg->evidence_min_prob <= 1.0f)) {
    snprintf(errstr, errstr_size, "records evidence_min_prob %g is outside 0..1",
             (double)cfg->evidence_min_prob);
    return SVC_ECONFIG;
  }
  if (cfg->max_chunks < 1 || cfg->max_chunks > 4096) {
    snprintf(errstr, errstr_size, "records max_chunks %zu is outside 1..4096", cfg->max_chunks);
    return SVC_ECONFIG;
  }
  int max_len = moe_model_text_max_len(model);
  if (max_len < 2) {
    snprintf(errstr, errstr_size, "model %s has max_len %d; [CLS] and one token need 2",
             moe_model_version(model), max_len);
    return SVC_ECONFIG;
  }
  const char *tok_json = moe_model_tokenizer_json(model);
  if (tok_json == NULL) {
    snprintf(errstr, errstr_size, "model %s has no encoder.tokenizer", moe_model_version(model));
    return SVC_ECONFIG;
  }
  wk_records_scorer_t *sc = calloc(1, sizeof *sc);
  if (sc == NULL) return SVC_ENOMEM;
  svc_err_t err = SVC_ENOMEM;
  char why[200] = "";
  int rc = moe_wordpiece_from_json(tok_json, strlen(tok_json), &sc->wp, why, sizeof why);
  if (rc != MOE_OK) {
    if (rc != MOE_ENOMEM) {
      snprintf(errstr, errstr_size, "model %s: tokenizer: %s", moe_model_version(model), why);
      err = SVC_ECONFIG;
    }
    goto fail;
  }
  if (moe_wordpiece_vocab_size(sc->wp) > (size_t)moe_model_text_vocab_size(model)) {
    snprintf(errstr, errstr_size, "model %s: tokenizer has %zu pieces, the embedding only %d",
             moe_model_version(model), moe_wordpiece_vocab_size(sc->wp),
             moe_model_text_vocab_size(model));
    err = SVC_ECONFIG;
    goto fail;
  }
  sc->model = model;
  sc->cfg = *cfg;
  sc->max_len = max_len;
  sc->n_outputs = moe_model_n_outputs(model);
  sc->binary = moe_model_task(model) == MOE_TASK_BINARY;
  sc->n_classes = sc->binary ? 2 : moe_model_n_labels(model);
  size_t mc = cfg->max_chunks;
  sc->ids = malloc(mc * (size_t)max_len * sizeof *sc->ids);
  sc->rows = calloc(mc, sizeof *sc->rows);
  sc->starts = calloc(mc, sizeof *sc->starts);
  sc->scores = calloc(mc * (size_t)sc->n_outputs, sizeof *sc->scores);
  sc->attr = calloc((size_t)max_len, sizeof *sc->attr);
  /* Occlusion rows go through the session in batches of at least 64 (one GEMM per expert
   * over many rows is what makes them cheap). */
  sc->occ_batch = mc > 64 ? (int)mc : 64;
  sc->occ_ids = malloc((size_t)sc->occ_batch * (size_t)max_len * sizeof *sc->occ_ids);
  sc->occ_rows = calloc((size_t)sc->occ_batch, sizeof *sc->occ_rows);
  sc->occ_scores = calloc((size_t)sc->occ_batch * (size_t)sc->n_outputs, sizeof *sc->occ_scores);
  sc->base = calloc(mc, sizeof *sc->base);
  sc->sel = calloc(mc, sizeof *sc->sel);
  if (sc->ids == NULL || sc->rows == NULL || sc->starts == NULL || sc->scores == NULL ||
      sc->attr == NULL || sc->occ_ids == NULL || sc->occ_rows == NULL ||
      sc->occ_scores == NULL || sc->base == NULL || sc->sel == NULL)
    goto fail;
  if (moe_session_new(model, sc->occ_batch, &sc->sess) != MOE_OK) goto fail;
  *out = sc;
  return SVC_OK;
fail:
  wk_records_scorer_free(sc);
  return err;
}

const char *wk_records_label(const wk_records_scorer_t *sc, int i) {
  return moe_model_label(sc->model, i);
}

const char *wk_records_model_version(const wk_records_scorer_t *sc) {
  return moe_model_version(sc->model);
}

void wk_records_analysis_free(wk_records_analysis_t *an) {
  free(an->probs);
  free(an->evidence);
  moe_text_free(an->sections);
  memset(an, 0, sizeof *an);
}

static uint64_t records__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- analysis -------------------------------------------------------------------------- */

typedef struct {
  uint32_t start, end;
  float weight;
} records__word_t;

static int records__word_cmp(const void *a, const void *b) {
  const records__word_t *x = a, *y = b;
  if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* The top_evidence words of positive weight, as spans, into an->evidence. */
static svc_err_t records__top_words(wk_records_scorer_t *sc, records__word_t *words, size_t nw,
                                    wk_records_analysis_t *an) {
  size_t np = 0;
  for (size_t i = 0; i < nw; i++)
    if (words[i].weight > 0.0f) words[np++] = words[i];
  qsort(words, np, sizeof *words, records__word_cmp);
  size_t k = np < sc->cfg.top_evidence ? np : sc->cfg.top_evidence;
  if (k > 0) {
    an->evidence = malloc(k * sizeof *an->evidence);
    if (an->evidence == NULL) return SVC_ENOMEM;
    for (size_t i = 0; i < k; i++)
      an->evidence[i] = (wk_records_span_t){words[i].start, words[i].end, words[i].weight};
  }
  an->n_evidence = k;
  return SVC_OK;
}

/* Word-level evidence from per-token weights w[n] (TOKENS). */
static svc_err_t records__evidence(wk_records_scorer_t *sc, const moe_token_t *toks, size_t n,
                                   const float *w, wk_records_analysis_t *an) {
  records__word_t *words = malloc((n ? n : 1) * sizeof *words);
  if (words == NULL) return SVC_ENOMEM;
  size_t nw = 0;
  for (size_t i = 0; i < n; i++) {
    const char *piece = moe_wordpiece_token(sc->wp, toks[i].id);
    bool cont = nw > 0 && piece != NULL && strncmp(piece, "##", 2) == 0;
    if (cont) {
      words[nw - 1].end = toks[i].end > words[nw - 1].end ? toks[i].end : words[nw - 1].end;
      words[nw - 1].weight += w[i];
    } else {
      words[nw++] = (records__word_t){toks[i].start, toks[i].end, w[i]};
    }
  }
  svc_err_t err = records__top_words(sc, words, nw, an);
  free(words);
  return err;
}

/* One occlusion: note tokens [a, b) occluded in chunk c; its effect lands in *weight. */
typedef struct {
  size_t c, a, b;
  float *weight;
} records__occ_t;

/*
 * Runs occlusions (in batches of occ_batch rows) and adds sign * (base - occluded) / nc to each
 * job's weight. SVC_OK, SVC_EINVAL (errstr) or SVC_ENOMEM.
 */
static svc_err_t records__occlude(wk_records_scorer_t *sc, const records__occ_t *jobs,
                                  size_t n_jobs, int output, float sign, size_t nc,
                                  char *errstr, size_t errstr_size) {
  size_t body = (size_t)sc->max_len - 1;
  for (size_t j0 = 0; j0 < n_jobs; j0 += (size_t)sc->occ_batch) {
    size_t nb = n_jobs - j0 < (size_t)sc->occ_batch ? n_jobs - j0 : (size_t)sc->occ_batch;
    for (size_t r = 0; r < nb; r++) {
      const records__occ_t *jb = &jobs[j0 + r];
      const moe_input_t *src = &sc->rows[jb->c];
      int32_t *ids = sc->occ_ids + r * (size_t)sc->max_len;
      memcpy(ids, src->tokens, (size_t)src->n_tokens * sizeof *ids);
      size_t s0 = sc->starts[jb->c], s1 = s0 + body;
      for (size_t t = jb->a > s0 ? jb->a : s0; t < jb->b && t < s1; t++) ids[1 + t - s0] = 0;
      sc->occ_rows[r] = (moe_input_t){.tokens = ids, .n_tokens = src->n_tokens};
    }
    moe_output_t mo = {.scores = sc->occ_scores};
    int rc = moe_session_run(sc->sess, sc->occ_rows, (int)nb, &mo);
    if (rc != MOE_OK) {
      if (rc == MOE_ENOMEM) return SVC_ENOMEM;
      snprintf(errstr, errstr_size, "occluding the note: %s", moe_session_error(sc->sess));
      return SVC_EINVAL;
    }
    for (size_t r = 0; r < nb; r++) {
      const records__occ_t *jb = &jobs[j0 + r];
      float v = sc->occ_scores[r * (size_t)sc->n_outputs + (size_t)output];
      *jb->weight += sign * (sc->base[jb->c] - v) / (float)nc;
    }
  }
  return SVC_OK;
}

/* The chunks c that hold note token range [a, b): first..last (inclusive), by starts. */
static void records__chunks_of(const wk_records_scorer_t *sc, size_t nc, size_t a, size_t b,
                               size_t *first, size_t *last) {
  size_t body = (size_t)sc->max_len - 1;
  *first = nc;
  *last = 0;
  for (size_t c = 0; c < nc; c++) {
    if (sc->starts[c] < b && a < sc->starts[c] + body) {
      if (*first == nc) *first = c;
      *last = c;
    }
  }
}

/*
 * SEGMENTS and WORDS evidence: occlude segments (sentences or lines, whole words), the best
 * become spans (SEGMENTS), or each word of the top_evidence best segments is occluded in turn
 * (WORDS).
 */
static svc_err_t records__evidence_words(wk_records_scorer_t *sc, const char *text,
                                         const moe_token_t *toks, size_t n, size_t nc,
                                         int output, float sign,
                                         wk_records_analysis_t *an, char *errstr,
                                         size_t errstr_size) {
  svc_err_t err = SVC_ENOMEM;
  size_t *wstart = malloc((n + 1) * sizeof *wstart); /* first token of each word; [nw] = n */
  size_t *sstart = malloc((n + 1) * sizeof *sstart); /* first word of each segment; [ns] = nw */
  float *sw = calloc(n ? n : 1, sizeof *sw);
  size_t *order = malloc((n ? n : 1) * sizeof *order);
  records__word_t *words = malloc((n ? n : 1) * sizeof *words);
  records__occ_t *jobs = NULL;
  size_t nw = 0, ns = 0, n_jobs = 0, cap = 0;
  if (!wstart || !sstart || !sw || !order || !words) goto out;
  for (size_t i = 0; i < n; i++) {
    const char *piece = moe_wordpiece_token(sc->wp, toks[i].id);
    if (nw == 0 || piece == NULL || strncmp(piece, "##", 2) != 0) wstart[nw++] = i;
  }
  wstart[nw] = n;
  bool pending = false; /* a sentence or line ended since the segment began */
  for (size_t k = 0; k < nw; k++) {
    /* A segment is a sentence or line of at least WK_RECORDS_SEGMENT_MIN tokens, cut at a word
     * end before it grows past WK_RECORDS_SEGMENT_TOKENS. A new segment starts at a word that
     * begins with a letter or digit, so that punctuation (".,", ":") stays with the words
     * before it (unless the segment would grow past twice the size). */
    size_t held = ns ? wstart[k] - wstart[sstart[ns - 1]] : 0;
    if (k > 0) {
      const char *prev = moe_wordpiece_token(sc->wp, toks[wstart[k] - 1].id);
      pending = pending || (prev != NULL && (strcmp(prev, ".") == 0 || strcmp(prev, "?") == 0 ||
                                             strcmp(prev, "!") == 0 || strcmp(prev, ";") == 0));
      for (uint32_t b = toks[wstart[k] - 1].end; !pending && b < toks[wstart[k]].start; b++)
        pending = text[b] == '\n';
    }
    bool alnum = isalnum((unsigned char)text[toks[wstart[k]].start]) != 0;
    size_t with = ns ? wstart[k + 1] - wstart[sstart[ns - 1]] : 0;
    if (ns == 0 || (pending && alnum && held >= WK_RECORDS_SEGMENT_MIN) ||
        (alnum && with > WK_RECORDS_SEGMENT_TOKENS) || with > 2 * WK_RECORDS_SEGMENT_TOKENS) {
      sstart[ns++] = k;
      pending = false;
    }
  }
  sstart[ns] = nw;
  /* Pass 1: every segment in every chunk that holds part of it. */
  cap = ns * 2 + nc + 16;
  jobs = malloc(cap * sizeof *jobs);
  if (jobs == NULL) goto out;
  for (size_t g = 0; g < ns; g++) {
    size_t a = wstart[sstart[g]], b = wstart[sstart[g + 1]], c0, c1;
    records__chunks_of(sc, nc, a, b, &c0, &c1);
    for (size_t c = c0; c <= c1 && c0 < nc; c++) {
      if (n_jobs == cap) {
        records__occ_t *nj = realloc(jobs, (cap *= 2) * sizeof *jobs);
        if (nj == NULL) goto out;
        jobs = nj;
      }
      if (sc->sel[c]) jobs[n_jobs++] = (records__occ_t){c, a, b, &sw[g]};
    }
  }
  an->n_evidence_rows += n_jobs;
  if ((err = records__occlude(sc, jobs, n_jobs, output, sign, nc, errstr, errstr_size)) != SVC_OK)
    goto out;
  if (sc->cfg.evidence == WK_RECORDS_EVIDENCE_SEGMENTS) {
    for (size_t g = 0; g < ns; g++)
      words[g] = (records__word_t){toks[wstart[sstart[g]]].start,
                                   toks[wstart[sstart[g + 1]] - 1].end, sw[g]};
    err = records__top_words(sc, words, ns, an);
    goto out;
  }
  /* Pass 2: the words of the best segments (of positive weight). */
  size_t no = 0;
  for (size_t g = 0; g < ns; g++)
    if (sw[g] > 0.0f) order[no++] = g;
  size_t keep = no < sc->cfg.top_evidence ? no : sc->cfg.top_evidence;
  for (size_t i = 0; i < keep; i++) { /* partial selection sort: keep is small */
    size_t best = i;
    for (size_t j = i + 1; j < no; j++)
      if (sw[order[j]] > sw[order[best]]) best = j;
    size_t t = order[i];
    order[i] = order[best];
    order[best] = t;
  }
  size_t nwords = 0;
  n_jobs = 0;
  for (size_t i = 0; i < keep; i++) {
    size_t g = order[i];
    for (size_t k = sstart[g]; k < sstart[g + 1]; k++) {
      size_t a = wstart[k], b = wstart[k + 1], c0, c1;
      words[nwords] = (records__word_t){toks[a].start, toks[b - 1].end, 0.0f};
      records__chunks_of(sc, nc, a, b, &c0, &c1);
      for (size_t c = c0; c <= c1 && c0 < nc; c++) {
        if (n_jobs == cap) {
          records__occ_t *nj = realloc(jobs, (cap *= 2) * sizeof *jobs);
          if (nj == NULL) {
            err = SVC_ENOMEM;
            goto out;
          }
          jobs = nj;
        }
        if (sc->sel[c]) jobs[n_jobs++] = (records__occ_t){c, a, b, &words[nwords].weight};
      }
      nwords++;
    }
  }
  an->n_evidence_rows += n_jobs;
  if ((err = records__occlude(sc, jobs, n_jobs, output, sign, nc, errstr, errstr_size)) != SVC_OK)
    goto out;
  err = records__top_words(sc, words, nwords, an);
out:
  free(wstart);
  free(sstart);
  free(sw);
  free(order);
  free(words);
  free(jobs);
  return err;
}

svc_err_t wk_records_analyze(wk_records_scorer_t *sc, const char *text, size_t len,
                             wk_records_analysis_t *out, char *errstr, size_t errstr_size) {
  memset(out, 0, sizeof *out);
  uint64_t t0 = records__now_ns();
  moe_token_t *toks = NULL;
  float *w = NULL;
  size_t n = 0;
  svc_err_t err = SVC_ENOMEM;
  int rc = moe_text_sections(text, len, &out->sections, &out->n_sections);
  if (rc == MOE_OK) rc = moe_wordpiece_encode(sc->wp, text, len, &toks, &n);
  if (rc != MOE_OK) {
    if (rc != MOE_ENOMEM) {
      snprintf(errstr, errstr_size, "note text: %s", moe_strerror(rc));
      err = SVC_EINVAL;
    }
    goto fail;
  }
  out->n_tokens = n;
  out->n_classes = sc->n_classes;
  out->probs = calloc((size_t)sc->n_classes, sizeof *out->probs);
  if (out->probs == NULL) goto fail;

  /* Chunk starts: every half chunk, the last one flush with the note's end. */
  size_t body = (size_t)sc->max_len - 1, step = body / 2 ? body / 2 : 1, nc = 0, s = 0;
  for (;;) {
    if (nc == sc->cfg.max_chunks) {
      size_t seen = sc->starts[nc - 1] + body;
      out->truncated = true;
      out->n_dropped = n - seen;
      break;
    }
    sc->starts[nc++] = s;
    if (s + body >= n) break;
    s += step;
    if (s + body > n) s = n - body;
  }
  out->n_chunks = nc;
  for (size_t c = 0; c < nc; c++) {
    int32_t *ids = sc->ids + c * (size_t)sc->max_len;
    size_t m = n - sc->starts[c] < body ? n - sc->starts[c] : body;
    ids[0] = MOE_TOKEN_CLS;
    for (size_t j = 0; j < m; j++) ids[1 + j] = toks[sc->starts[c] + j].id;
    sc->rows[c] = (moe_input_t){.tokens = ids, .n_tokens = (int32_t)(1 + m)};
  }
  moe_output_t mo = {.scores = sc->scores};
  rc = moe_session_run(sc->sess, sc->rows, (int)nc, &mo);
  if (rc != MOE_OK) {
    if (rc != MOE_ENOMEM) {
      snprintf(errstr, errstr_size, "scoring the note: %s", moe_session_error(sc->sess));
      err = SVC_EINVAL;
    }
    goto fail;
  }
  for (size_t c = 0; c < nc; c++) {
    const float *sr = sc->scores + c * (size_t)sc->n_outputs;
    if (sc->binary) {
      out->probs[1] += sr[0] / (float)nc;
    } else {
      for (int k = 0; k < sc->n_classes; k++) out->probs[k] += sr[k] / (float)nc;
    }
  }
  if (sc->binary) out->probs[0] = 1.0f - out->probs[1];
  for (int k = 1; k < sc->n_classes; k++)
    if (out->probs[k] > out->probs[out->predicted]) out->predicted = k;

  uint64_t t1 = records__now_ns();
  out->score_ns = t1 - t0;
  if (sc->cfg.top_evidence > 0 && n > 0 &&
      out->probs[out->predicted] >= sc->cfg.evidence_min_prob) {
    int output = sc->binary ? 0 : out->predicted;
    /* For a binary model predicting labels[0], evidence is what pushed P(labels[1]) down. */
    float sign = sc->binary && out->predicted == 0 ? -1.0f : 1.0f;
    if (sc->cfg.evidence != WK_RECORDS_EVIDENCE_TOKENS) {
      /* The evidence_chunks chunks that speak most for the prediction (all when 0). */
      size_t want = sc->cfg.evidence_chunks == 0 || sc->cfg.evidence_chunks > nc
                        ? nc
                        : sc->cfg.evidence_chunks;
      for (size_t c = 0; c < nc; c++) {
        sc->base[c] = sc->scores[c * (size_t)sc->n_outputs + (size_t)output];
        sc->sel[c] = want == nc;
      }
      for (size_t k = 0; k < want && want < nc; k++) {
        size_t best = nc;
        for (size_t c = 0; c < nc; c++)
          if (!sc->sel[c] && (best == nc || sign * sc->base[c] > sign * sc->base[best])) best = c;
        sc->sel[best] = true;
      }
      err = records__evidence_words(sc, text, toks, n, nc, output, sign, out, errstr,
                                    errstr_size);
      if (err != SVC_OK) goto fail;
      out->evidence_ns = records__now_ns() - t1;
      moe_text_free(toks);
      return SVC_OK;
    }
    w = calloc(n, sizeof *w);
    if (w == NULL) goto fail;
    for (size_t c = 0; c < nc; c++) {
      out->n_evidence_rows += (size_t)sc->rows[c].n_tokens + 1;
      rc = moe_session_attribute(sc->sess, &sc->rows[c], output, sc->attr, sc->max_len);
      if (rc != MOE_OK) {
        if (rc != MOE_ENOMEM) {
          snprintf(errstr, errstr_size, "attributing the note: %s", moe_session_error(sc->sess));
          err = SVC_EINVAL;
        }
        goto fail;
      }
      for (int32_t j = 1; j < sc->rows[c].n_tokens; j++)
        w[sc->starts[c] + (size_t)j - 1] += sign * sc->attr[j] / (float)nc;
    }
    if ((err = records__evidence(sc, toks, n, w, out)) != SVC_OK) goto fail;
    out->evidence_ns = records__now_ns() - t1;
  }
  free(w);
  moe_text_free(toks);
  return SVC_OK;
fail:
  free(w);
  moe_text_free(toks);
  return err;
}

const char *wk_records_section_name(const wk_records_analysis_t *an, size_t i, const char *text,
                                    char *buf, size_t size) {
  const moe_text_section_t *s = &an->sections[i];
  if (s->kind != MOE_SECTION_OTHER) {
    snprintf(buf, size, "%s", moe_section_kind_name(s->kind));
    return buf;
  }
  size_t n = s->head_end - s->head_start, k = 0;
  if (n > 60) n = 60;
  for (; k < n && k + 1 < size; k++) buf[k] = (char)tolower((unsigned char)text[s->head_start + k]);
  if (size > 0) buf[k < size ? k : size - 1] = '\0';
  return buf;
}

/* ---- the message and the row --------------------------------------------------------------- */

static char *records__substr(const char *text, uint32_t start, uint32_t end) {
  char *s = malloc((size_t)(end - start) + 1);
  if (s == NULL) return NULL;
  memcpy(s, text + start, end - start);
  s[end - start] = '\0';
  return s;
}

svc_err_t wk_records_pack(const wk_records_scorer_t *sc, const wk_records_analysis_t *an,
                          const char *note_id, const char *patient_id, const char *text,
                          uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  svc_err_t err = SVC_ENOMEM;
  size_t nk = (size_t)an->n_classes, ne = an->n_evidence, ns = an->n_sections;
  Sluice__V1__ClassProbability *cls = calloc(nk ? nk : 1, sizeof *cls);
  Sluice__V1__ClassProbability **clsp = calloc(nk ? nk : 1, sizeof *clsp);
  Sluice__V1__Span *sp = calloc(ne ? ne : 1, sizeof *sp);
  Sluice__V1__Span **spp = calloc(ne ? ne : 1, sizeof *spp);
  Sluice__V1__Section *sec = calloc(ns ? ns : 1, sizeof *sec);
  Sluice__V1__Section **secp = calloc(ns ? ns : 1, sizeof *secp);
  char (*names)[64] = calloc(ns ? ns : 1, sizeof *names);
  size_t n_text = 0;
  if (!cls || !clsp || !sp || !spp || !sec || !secp || !names) goto out;
  for (size_t k = 0; k < nk; k++) {
    Sluice__V1__ClassProbability init = SLUICE__V1__CLASS_PROBABILITY__INIT;
    cls[k] = init;
    cls[k].label = (char *)wk_records_label(sc, (int)k);
    cls[k].has_probability = 1;
    cls[k].probability = an->probs[k];
    clsp[k] = &cls[k];
  }
  for (size_t i = 0; i < ne; i++, n_text++) {
    Sluice__V1__Span init = SLUICE__V1__SPAN__INIT;
    sp[i] = init;
    sp[i].text = records__substr(text, an->evidence[i].start, an->evidence[i].end);
    if (sp[i].text == NULL) goto out;
    sp[i].has_start = sp[i].has_end = sp[i].has_weight = 1;
    sp[i].start = an->evidence[i].start;
    sp[i].end = an->evidence[i].end;
    sp[i].weight = an->evidence[i].weight;
    spp[i] = &sp[i];
  }
  for (size_t i = 0; i < ns; i++) {
    Sluice__V1__Section init = SLUICE__V1__SECTION__INIT;
    sec[i] = init;
    sec[i].name = (char *)wk_records_section_name(an, i, text, names[i], sizeof names[i]);
    sec[i].has_start = sec[i].has_end = 1;
    sec[i].start = an->sections[i].head_start;
    sec[i].end = an->sections[i].body_end;
    secp[i] = &sec[i];
  }
  Sluice__V1__RecordAnalysis ra = SLUICE__V1__RECORD_ANALYSIS__INIT;
  ra.note_id = (char *)note_id;
  ra.patient_id = (char *)patient_id;
  ra.model_version = (char *)wk_records_model_version(sc);
  ra.predicted_label = (char *)wk_records_label(sc, an->predicted);
  ra.n_classes = nk;
  ra.classes = clsp;
  ra.n_evidence = ne;
  ra.evidence = spp;
  ra.n_sections = ns;
  ra.sections = secp;
  ra.has_n_tokens = ra.has_truncated = 1;
  ra.n_tokens = (uint32_t)an->n_tokens;
  ra.truncated = an->truncated;
  size_t n = sluice__v1__record_analysis__get_packed_size(&ra);
  uint8_t *b = malloc(n ? n : 1);
  if (b == NULL) goto out;
  sluice__v1__record_analysis__pack(&ra, b);
  *buf = b;
  *len = n;
  err = SVC_OK;
out:
  for (size_t i = 0; sp != NULL && i < n_text; i++) free(sp[i].text);
  free(cls);
  free(clsp);
  free(sp);
  free(spp);
  free(sec);
  free(secp);
  free(names);
  return err;
}

static void records__json_str(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c < 0x20) {
      fprintf(f, "\\u%04x", c);
    } else {
      fputc(c, f);
    }
  }
  fputc('"', f);
}

svc_err_t wk_records_row_json(const wk_records_scorer_t *sc, const wk_records_analysis_t *an,
                              const char *text, char **classes, char **evidence, char **sections) {
  char *out[3] = {NULL, NULL, NULL};
  size_t sizes[3];
  for (int which = 0; which < 3; which++) {
    FILE *f = open_memstream(&out[which], &sizes[which]);
    if (f == NULL) goto fail;
    fputc('[', f);
    if (which == 0) {
      for (int k = 0; k < an->n_classes; k++) {
        const char *label = wk_records_label(sc, k);
        fputs(k ? ",{\"label\":" : "{\"label\":", f);
        records__json_str(f, label, strlen(label));
        fprintf(f, ",\"probability\":%.9g}", (double)an->probs[k]);
      }
    } else if (which == 1) {
      for (size_t i = 0; i < an->n_evidence; i++) {
        const wk_records_span_t *e = &an->evidence[i];
        fputs(i ? ",{\"text\":" : "{\"text\":", f);
        records__json_str(f, text + e->start, e->end - e->start);
        fprintf(f, ",\"start\":%u,\"end\":%u,\"weight\":%.9g}", e->start, e->end, (double)e->weight);
      }
    } else {
      for (size_t i = 0; i < an->n_sections; i++) {
        char name[64];
        wk_records_section_name(an, i, text, name, sizeof name);
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        records__json_str(f, name, strlen(name));
        fprintf(f, ",\"start\":%u,\"end\":%u}", an->sections[i].head_start, an->sections[i].body_end);
      }
    }
    fputc(']', f);
    if (fclose(f) != 0) goto fail;
  }
  *classes = out[0];
  *evidence = out[1];
  *sections = out[2];
  return SVC_OK;
fail:
  for (int i = 0; i < 3; i++) free(out[i]);
  *classes = *evidence = *sections = NULL;
  return SVC_ENOMEM;
}
