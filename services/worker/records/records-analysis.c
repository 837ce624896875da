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
  if (sc->ids == NULL || sc->rows == NULL || sc->starts == NULL || sc->scores == NULL ||
      sc->attr == NULL)
    goto fail;
  if (moe_session_new(model, (int)mc, &sc->sess) != MOE_OK) goto fail;
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

/* Word-level evidence from per-token weights w[n]. */
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
  size_t np = 0;
  for (size_t i = 0; i < nw; i++)
    if (words[i].weight > 0.0f) words[np++] = words[i];
  qsort(words, np, sizeof *words, records__word_cmp);
  size_t k = np < sc->cfg.top_evidence ? np : sc->cfg.top_evidence;
  if (k > 0) {
    an->evidence = malloc(k * sizeof *an->evidence);
    if (an->evidence == NULL) {
      free(words);
      return SVC_ENOMEM;
    }
    for (size_t i = 0; i < k; i++)
      an->evidence[i] = (wk_records_span_t){words[i].start, words[i].end, words[i].weight};
  }
  an->n_evidence = k;
  free(words);
  return SVC_OK;
}

svc_err_t wk_records_analyze(wk_records_scorer_t *sc, const char *text, size_t len,
                             wk_records_analysis_t *out, char *errstr, size_t errstr_size) {
  memset(out, 0, sizeof *out);
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

  if (sc->cfg.top_evidence > 0 && n > 0) {
    w = calloc(n, sizeof *w);
    if (w == NULL) goto fail;
    int output = sc->binary ? 0 : out->predicted;
    /* For a binary model predicting labels[0], evidence is what pushed P(labels[1]) down. */
    float sign = sc->binary && out->predicted == 0 ? -1.0f : 1.0f;
    for (size_t c = 0; c < nc; c++) {
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
