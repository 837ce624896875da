/*
 * The analysis of one clinical note with a text model: section detection on the original
 * text, normalisation and WordPiece tokenization with the model's own tokenizer, scoring, and
 * evidence spans mapped back to byte offsets of the original text. Also the RecordAnalysis
 * message and the SQL row values it becomes.
 *
 * Long notes are never truncated silently. A model row is "[CLS]" followed by at most
 * max_len - 1 WordPiece ids. A note with more tokens than that is scored as overlapping
 * chunks (each chunk starts half a chunk after the previous one, the last one ends at the
 * note's last token) and the class probabilities are the mean over the chunks; n_tokens is the
 * note's full token count and truncated is false. Only beyond max_chunks chunks (about
 * max_chunks * (max_len - 1) / 2 tokens) is the rest of the note dropped: then truncated is
 * true and n_dropped says how many tokens were not seen, for the caller's counter.
 *
 * Evidence: the words of the note that raised the predicted class's mean probability, by
 * occlusion (a piece replaced by id 0, the effect measured on the chunk's score and divided by
 * the number of chunks, so that weights are effects on the mean probability, summed over the
 * chunks that hold the word). The top_evidence words with a positive weight become spans
 * [start, end) of the original text. Three ways (cfg.evidence):
 *   TOKENS:   every token of every chunk occluded alone (moe_session_attribute), the pieces of
 *             one word summed: exact, max_len + 1 model rows per chunk.
 *   SEGMENTS: every segment (WK_RECORDS_SEGMENT_*: a sentence or line, whole words) occluded
 *             whole in every chunk that holds part of it; the spans are the best segments.
 *             About max_len / 20 rows per chunk.
 *   WORDS:    SEGMENTS first, then each word of the top_evidence best segments occluded whole
 *             (all its pieces at once); the spans are words. A word outside those segments is
 *             never evidence (an approximation); about 12 * top_evidence rows more per note.
 * SEGMENTS and WORDS look only at the cfg.evidence_chunks chunks (0: all) whose own score
 * speaks most for the prediction (a long note's cost is then bounded; a word's effect through
 * the other chunks that hold it is left out).
 * top_evidence 0 skips evidence, and so does a predicted probability below
 * cfg.evidence_min_prob (n_evidence_rows says how many model rows evidence took).
 *
 * Threads: a wk_records_scorer_t owns a moe session: one thread at a time. Several scorers may
 * share one model.
 */
#ifndef WK_RECORDS_ANALYSIS_H
#define WK_RECORDS_ANALYSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe/moe.h"
#include "moe/text.h"
#include "sluice/v1/results.pb-c.h"
#include "svc/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How evidence is computed (all by occlusion: a token occluded is replaced by id 0). */
#define WK_RECORDS_EVIDENCE_MAP(XX)                                                            \
  XX(TOKENS, "tokens")     /* every token of every chunk alone: max_len + 1 rows a chunk */     \
  XX(WORDS, "words")       /* segments, then each word of the best top_evidence segments */      \
  XX(SEGMENTS, "segments") /* segments (sentences or lines) whole: spans are segments */

typedef enum {
#define WK__RECORDS_EV_ENUM(id, name) WK_RECORDS_EVIDENCE_##id,
  WK_RECORDS_EVIDENCE_MAP(WK__RECORDS_EV_ENUM)
#undef WK__RECORDS_EV_ENUM
  WK_RECORDS_EVIDENCE__COUNT
} wk_records_evidence_t;

/* Segments of SEGMENTS and WORDS: a sentence (ends after ". ? ! ;") or a line of at least
 * WK_RECORDS_SEGMENT_MIN tokens, cut at a word end before it grows past
 * WK_RECORDS_SEGMENT_TOKENS tokens; a segment starts at a word beginning with a letter or
 * digit (punctuation stays with the words before it, up to twice the size). */
#define WK_RECORDS_SEGMENT_MIN 6
#define WK_RECORDS_SEGMENT_TOKENS 32

typedef struct wk_records_cfg_s {
  size_t max_chunks;   /* chunks scored per note, >= 1 (16 by default) */
  size_t top_evidence; /* evidence spans per note; 0 = no attribution */
  wk_records_evidence_t evidence; /* how (zero: TOKENS) */
  float evidence_min_prob; /* evidence only when the predicted probability is at least this */
  size_t evidence_chunks;  /* SEGMENTS/WORDS: look at this many chunks at most (0: all) */
} wk_records_cfg_t;

#define WK_RECORDS_DEFAULT_MAX_CHUNKS 16
#define WK_RECORDS_DEFAULT_TOP_EVIDENCE 5

typedef struct wk_records_scorer_s wk_records_scorer_t;

/*
 * A scorer for a multiclass or binary text model whose config carries a WordPiece tokenizer.
 * Borrows model (it must outlive the scorer). SVC_OK; SVC_ECONFIG with errstr when the model is
 * not a text model, has no or a bad tokenizer, or cfg is out of range; SVC_ENOMEM.
 */
svc_err_t wk_records_scorer_new(const moe_model_t *model, const wk_records_cfg_t *cfg,
                                wk_records_scorer_t **out, char *errstr, size_t errstr_size);
void wk_records_scorer_free(wk_records_scorer_t *sc);

typedef struct wk_records_span_s {
  uint32_t start, end; /* bytes of the original text */
  float weight;        /* effect on the predicted class's mean probability */
} wk_records_span_t;

typedef struct wk_records_analysis_s {
  int n_classes;             /* the model's labels (2 for a binary model) */
  float *probs;              /* (n_classes) mean over chunks */
  int predicted;             /* argmax (first on ties) */
  size_t n_tokens;           /* WordPiece tokens of the whole note, [CLS] not counted */
  size_t n_chunks;           /* model rows scored */
  bool truncated;            /* tokens beyond max_chunks were not seen */
  size_t n_dropped;          /* how many */
  wk_records_span_t *evidence; /* (n_evidence) by descending weight */
  size_t n_evidence;
  moe_text_section_t *sections; /* (n_sections) in text order */
  size_t n_sections;
  size_t n_evidence_rows;    /* model rows run for evidence (0: none computed) */
  uint64_t score_ns;         /* time tokenizing and scoring (monotonic clock) */
  uint64_t evidence_ns;      /* time computing evidence */
} wk_records_analysis_t;

/*
 * Analyses len bytes of valid UTF-8 text into *out (free with wk_records_analysis_free, also
 * after an error). A note with no token at all (only spaces or zero-width characters) is
 * scored as "[CLS]" alone. SVC_OK; SVC_EINVAL with errstr when the model refuses a row
 * (moe_session_error's text); SVC_ENOMEM.
 */
svc_err_t wk_records_analyze(wk_records_scorer_t *sc, const char *text, size_t len,
                             wk_records_analysis_t *out, char *errstr, size_t errstr_size);
void wk_records_analysis_free(wk_records_analysis_t *an);

/* The model's label i, and its version. Borrowed from the model. */
const char *wk_records_label(const wk_records_scorer_t *sc, int i);
const char *wk_records_model_version(const wk_records_scorer_t *sc);

/* The name of a section: its kind ("medications", ...), or for a header of no known kind the
 * header's own text lowercased, at most 60 bytes, into buf. Returns buf. */
const char *wk_records_section_name(const wk_records_analysis_t *an, size_t i, const char *text,
                                    char *buf, size_t size);

/*
 * The sluice.v1.RecordAnalysis of an analysis of `text`, packed into a malloc'd buffer (*buf,
 * free()). Evidence spans carry their text. SVC_OK or SVC_ENOMEM.
 */
svc_err_t wk_records_pack(const wk_records_scorer_t *sc, const wk_records_analysis_t *an,
                          const char *note_id, const char *patient_id, const char *text,
                          uint8_t **buf, size_t *len);

/*
 * The SQL row values of an analysis, as text parameters: classes
 * [{"label":"..","probability":0.1},...], evidence [{"text":"..","start":1,"end":5,
 * "weight":0.01},...] and sections [{"name":"..","start":0,"end":9},...] as JSON (for jsonb
 * columns); the other columns (note_id, patient_id, model_version, predicted_label, n_tokens,
 * truncated) are plain fields of the analysis and scorer. Each string is malloc'd (free()).
 * SVC_OK or SVC_ENOMEM (then all three are NULL).
 */
svc_err_t wk_records_row_json(const wk_records_scorer_t *sc, const wk_records_analysis_t *an,
                              const char *text, char **classes, char **evidence, char **sections);

#ifdef __cplusplus
}
#endif
#endif /* WK_RECORDS_ANALYSIS_H */
