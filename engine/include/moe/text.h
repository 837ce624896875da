/*
 * Text for the clinical-notes models: normalisation of clinical text, section-header
 * detection, and a WordPiece subword tokenizer (trainer, encoder, and its serialised form
 * stored in the model file's config).
 *
 * Why WordPiece: encoding is greedy longest-match-first over a fixed vocabulary, so it is
 * deterministic, needs no merge table or lattice at run time, is fast (a few hash lookups per
 * word) and maps every token to a contiguous byte span of the input, which is what evidence
 * spans need. The vocabulary is learned like BPE (frequent adjacent pairs merged until the
 * vocabulary is full, as the HuggingFace WordPiece trainer does), with continuation pieces
 * written "##piece". A word that cannot be covered becomes one [UNK].
 *
 * Offsets: every function that returns positions gives byte offsets into the caller's
 * original text (not the normalised one), half-open [start, end).
 *
 * Memory: what these functions return is allocated through the engine allocator
 * (moe/alloc.h); free it with the matching *_free function or moe_text_free(). Thread-safety:
 * a trained or loaded moe_wordpiece_t is immutable; any number of threads may encode with it.
 */
#ifndef MOE_TEXT_H
#define MOE_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "moe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- normalisation -------------------------------------------------------------
 *
 * moe_text_normalize() produces the text the tokenizer sees:
 *  - ASCII and Latin-1 letters lowercased; curly quotes, primes, dashes, the minus sign and
 *    the ellipsis mapped to ASCII; the micro sign to "u"; control characters, NBSP and the
 *    other Unicode spaces to a space; zero-width characters and the BOM removed; bytes that
 *    are not valid UTF-8 become a space;
 *  - runs of whitespace collapsed to one space, no leading or trailing space;
 *  - clinical abbreviations rewritten to one canonical form, as whole words only: dotted Latin
 *    dosing forms lose their dots so that the dots do not read as sentence ends ("b.i.d." ->
 *    "bid", "p.r.n." -> "prn", "p.o." -> "po", "q.d." -> "qd"), and slash or terse forms are
 *    expanded ("h/o" -> "history of", "s/p" -> "status post", "c/o" -> "complains of",
 *    "w/o" -> "without", "w/" -> "with", "r/o" -> "rule out", "pt" -> "patient",
 *    "y/o" and "y.o." -> "year old", "hx" -> "history", "dx" -> "diagnosis", ...);
 *  - a number glued to a unit or word is separated from it ("10mg" -> "10 mg",
 *    "5cm" -> "5 cm"), except ordinals ("2nd"); decimals ("2.5") and letter-digit codes
 *    ("l4", "t12") stay whole, so doses, sizes and vertebral levels keep their value.
 */
typedef struct moe_text_norm_s {
  char *text;          /* (len + 1) normalised UTF-8, NUL-terminated */
  size_t len;
  uint32_t *src_start; /* (len) offset in the input of the character that produced byte i */
  uint32_t *src_end;   /* (len) end of that input character or abbreviation (exclusive) */
} moe_text_norm_t;

/*
 * Normalises len bytes of `in` into *out (caller-allocated struct; free its contents with
 * moe_text_norm_free). MOE_EINVAL when len >= 2^31, MOE_ENOMEM; on error *out is zeroed.
 */
moe_err_t moe_text_normalize(const char *in, size_t len, moe_text_norm_t *out);
void moe_text_norm_free(moe_text_norm_t *norm);

/* ---- sections -------------------------------------------------------------------- */

#define MOE_SECTION_MAP(XX)                                                    \
  XX(OTHER, "other")                                                           \
  XX(CHIEF_COMPLAINT, "chief_complaint")                                       \
  XX(HPI, "history_of_present_illness")                                        \
  XX(PAST_HISTORY, "past_history")                                             \
  XX(MEDICATIONS, "medications")                                               \
  XX(ALLERGIES, "allergies")                                                   \
  XX(SOCIAL_HISTORY, "social_history")                                         \
  XX(FAMILY_HISTORY, "family_history")                                         \
  XX(REVIEW_OF_SYSTEMS, "review_of_systems")                                   \
  XX(EXAM, "physical_exam")                                                    \
  XX(VITALS, "vital_signs")                                                    \
  XX(RESULTS, "results")                                                       \
  XX(DIAGNOSIS, "diagnosis")                                                   \
  XX(PROCEDURE, "procedure")                                                   \
  XX(FINDINGS, "findings")                                                     \
  XX(ASSESSMENT, "assessment")                                                 \
  XX(PLAN, "plan")

typedef enum {
#define MOE__SECTION_ENUM(name, str) MOE_SECTION_##name,
  MOE_SECTION_MAP(MOE__SECTION_ENUM)
#undef MOE__SECTION_ENUM
  MOE_SECTION__COUNT
} moe_section_kind_t;

/* "history_of_present_illness", ...; "?" outside the enum. */
const char *moe_section_kind_name(moe_section_kind_t kind);

typedef struct moe_text_section_s {
  moe_section_kind_t kind; /* from the header's words; MOE_SECTION_OTHER if not known */
  uint32_t head_start;     /* the header without its colon, e.g. "PAST MEDICAL HISTORY" */
  uint32_t head_end;
  uint32_t body_start;     /* after the colon (and the ",", that MTSamples adds) */
  uint32_t body_end;       /* up to the next header or the end, trailing spaces and ',' cut */
} moe_text_section_t;

/*
 * Finds the section headers of a note: at the start of the text, of a line, or after a
 * sentence or list separator (". , ;"), either an upper-case run of 3 to 60 characters
 * (letters, spaces, "/&-()", at least 3 letters) ending in ':' (HISTORY OF PRESENT ILLNESS:),
 * or a known header in any case ("Assessment and plan:"). Text before the first header
 * belongs to no section. *out (free with moe_text_free) gets *n sections in text order;
 * none is success with *out NULL. MOE_EINVAL when len >= 2^31, MOE_ENOMEM.
 */
moe_err_t moe_text_sections(const char *text, size_t len, moe_text_section_t **out, size_t *n);

/* The kind of a header text (any case, spaces and "/&-" ignored at the ends). */
moe_section_kind_t moe_section_kind_of(const char *head, size_t len);

/* Frees memory returned by this module (NULL is a no-op). */
void moe_text_free(void *p);

/* ---- WordPiece --------------------------------------------------------------------- */

typedef struct moe_wordpiece_s moe_wordpiece_t;

/* The special tokens and their fixed ids. */
#define MOE_TOKEN_PAD 0
#define MOE_TOKEN_UNK 1
#define MOE_TOKEN_CLS 2
#define MOE_TOKEN_SEP 3
#define MOE_TOKEN_MASK 4
#define MOE_TOKEN_N_SPECIAL 5

/* A word longer than this (in normalised bytes) is one [UNK]. */
#define MOE_WORDPIECE_MAX_WORD_BYTES 100

typedef struct moe_wordpiece_train_opts_s {
  size_t vocab_size;      /* total, specials included; >= 5 + the alphabet (ASCII in both forms) */
  size_t min_frequency;   /* a pair seen fewer times is not merged; 0 means 2 */
  size_t max_token_bytes; /* longest piece, "##" not counted; 0 means 24, at most 64 */
} moe_wordpiece_train_opts_t;

/*
 * Learns a vocabulary from n_doc raw documents (normalised here). Words are runs between
 * spaces, each ASCII punctuation character being a word of its own. The alphabet is every
 * printable ASCII character (as itself and as "##c") plus every other character seen.
 * Training stops at vocab_size or when no pair reaches min_frequency; the result is
 * deterministic for given input and options. MOE_EINVAL for an impossible vocab_size,
 * MOE_ENOMEM.
 */
moe_err_t moe_wordpiece_train(const char *const *docs, const size_t *lens, size_t n_doc,
                              const moe_wordpiece_train_opts_t *opts, moe_wordpiece_t **out);
void moe_wordpiece_free(moe_wordpiece_t *wp);

size_t moe_wordpiece_vocab_size(const moe_wordpiece_t *wp);
/* The token string of an id ("##ing" for a continuation piece), or NULL when out of range. */
const char *moe_wordpiece_token(const moe_wordpiece_t *wp, int32_t id);
/* The id of a token string, or -1. */
int32_t moe_wordpiece_id(const moe_wordpiece_t *wp, const char *token, size_t len);

typedef struct moe_token_s {
  int32_t id;
  uint32_t start, end; /* byte span in the original text */
} moe_token_t;

/*
 * Normalises and encodes len bytes of text: greedy longest-match-first per word. *toks (free
 * with moe_text_free) gets *n tokens; no [CLS]/[SEP] is added. MOE_EINVAL when len >= 2^31,
 * MOE_ENOMEM.
 */
moe_err_t moe_wordpiece_encode(const moe_wordpiece_t *wp, const char *text, size_t len,
                               moe_token_t **toks, size_t *n);

/*
 * The serialised form, for the model config:
 *   {"kind":"wordpiece","version":1,"lowercase":true,"max_word_bytes":100,"vocab":[...]}
 * with the vocabulary in id order. *json (free with moe_text_free) is NUL-terminated. It is
 * what a text model's config holds as encoder.tokenizer, and what moe_model_tokenizer_json()
 * hands back for moe_wordpiece_from_json().
 */
moe_err_t moe_wordpiece_to_json(const moe_wordpiece_t *wp, char **json, size_t *len);
/*
 * Loads that form. MOE_ECONFIG with errstr naming the problem (not an object, wrong kind or
 * version, vocab not an array of unique non-empty strings, specials not at their ids),
 * MOE_EDATA for text that is not JSON, MOE_ENOMEM.
 */
moe_err_t moe_wordpiece_from_json(const char *json, size_t len, moe_wordpiece_t **out,
                                  char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* MOE_TEXT_H */
