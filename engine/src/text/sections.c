/*
 * Section-header detection for clinical notes (moe/text.h): finds "HEADER:" at the starts of
 * lines and sentences, classifies it by its words, and cuts the note into header + body spans
 * in the caller's byte offsets. Written against MTSamples, whose transcriptions lost their
 * line breaks and read "...stairs.,PAST SURGICAL HISTORY:, Includes ...".
 */
#include <string.h>

#include "core/alloc-impl.h"
#include "moe/text.h"

const char *moe_section_kind_name(moe_section_kind_t kind) {
  switch (kind) {
#define MOE__SECTION_NAME(name, str) case MOE_SECTION_##name: return str;
    MOE_SECTION_MAP(MOE__SECTION_NAME)
#undef MOE__SECTION_NAME
  default: return "?";
  }
}

typedef struct header_word_s {
  const char *head; /* lowercase, single spaces */
  moe_section_kind_t kind;
} header_word_t;

/* Known headers, exact after normalising case and spaces; also the mixed-case ones found. */
static const header_word_t known[] = {
    {"chief complaint", MOE_SECTION_CHIEF_COMPLAINT},
    {"reason for visit", MOE_SECTION_CHIEF_COMPLAINT},
    {"reason for consultation", MOE_SECTION_CHIEF_COMPLAINT},
    {"reason for consult", MOE_SECTION_CHIEF_COMPLAINT},
    {"history of present illness", MOE_SECTION_HPI},
    {"present illness", MOE_SECTION_HPI},
    {"hpi", MOE_SECTION_HPI},
    {"subjective", MOE_SECTION_HPI},
    {"past medical history", MOE_SECTION_PAST_HISTORY},
    {"past surgical history", MOE_SECTION_PAST_HISTORY},
    {"past history", MOE_SECTION_PAST_HISTORY},
    {"pmh", MOE_SECTION_PAST_HISTORY},
    {"medications", MOE_SECTION_MEDICATIONS},
    {"current medications", MOE_SECTION_MEDICATIONS},
    {"admission medications", MOE_SECTION_MEDICATIONS},
    {"discharge medications", MOE_SECTION_MEDICATIONS},
    {"medications on admission", MOE_SECTION_MEDICATIONS},
    {"allergies", MOE_SECTION_ALLERGIES},
    {"drug allergies", MOE_SECTION_ALLERGIES},
    {"social history", MOE_SECTION_SOCIAL_HISTORY},
    {"family history", MOE_SECTION_FAMILY_HISTORY},
    {"review of systems", MOE_SECTION_REVIEW_OF_SYSTEMS},
    {"ros", MOE_SECTION_REVIEW_OF_SYSTEMS},
    {"physical examination", MOE_SECTION_EXAM},
    {"physical exam", MOE_SECTION_EXAM},
    {"examination", MOE_SECTION_EXAM},
    {"exam", MOE_SECTION_EXAM},
    {"objective", MOE_SECTION_EXAM},
    {"vital signs", MOE_SECTION_VITALS},
    {"vitals", MOE_SECTION_VITALS},
    {"laboratory data", MOE_SECTION_RESULTS},
    {"laboratory", MOE_SECTION_RESULTS},
    {"labs", MOE_SECTION_RESULTS},
    {"diagnostic studies", MOE_SECTION_RESULTS},
    {"diagnosis", MOE_SECTION_DIAGNOSIS},
    {"diagnoses", MOE_SECTION_DIAGNOSIS},
    {"preoperative diagnosis", MOE_SECTION_DIAGNOSIS},
    {"postoperative diagnosis", MOE_SECTION_DIAGNOSIS},
    {"preoperative diagnoses", MOE_SECTION_DIAGNOSIS},
    {"postoperative diagnoses", MOE_SECTION_DIAGNOSIS},
    {"final diagnosis", MOE_SECTION_DIAGNOSIS},
    {"admitting diagnosis", MOE_SECTION_DIAGNOSIS},
    {"discharge diagnosis", MOE_SECTION_DIAGNOSIS},
    {"procedure", MOE_SECTION_PROCEDURE},
    {"procedures", MOE_SECTION_PROCEDURE},
    {"procedure performed", MOE_SECTION_PROCEDURE},
    {"procedures performed", MOE_SECTION_PROCEDURE},
    {"name of procedure", MOE_SECTION_PROCEDURE},
    {"operation", MOE_SECTION_PROCEDURE},
    {"operation performed", MOE_SECTION_PROCEDURE},
    {"description of procedure", MOE_SECTION_PROCEDURE},
    {"procedure in detail", MOE_SECTION_PROCEDURE},
    {"findings", MOE_SECTION_FINDINGS},
    {"impression", MOE_SECTION_ASSESSMENT},
    {"assessment", MOE_SECTION_ASSESSMENT},
    {"assessment and plan", MOE_SECTION_ASSESSMENT},
    {"clinical impression", MOE_SECTION_ASSESSMENT},
    {"plan", MOE_SECTION_PLAN},
    {"recommendations", MOE_SECTION_PLAN},
    {"recommendation", MOE_SECTION_PLAN},
    {"disposition", MOE_SECTION_PLAN},
};

static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }

moe_section_kind_t moe_section_kind_of(const char *head, size_t len) {
  char buf[64];
  size_t n = 0;
  int space = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)head[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = n > 0;
      continue;
    }
    if (space) {
      if (n + 1 >= sizeof(buf)) return MOE_SECTION_OTHER;
      buf[n++] = ' ';
      space = 0;
    }
    if (n + 1 >= sizeof(buf)) return MOE_SECTION_OTHER;
    buf[n++] = (char)(is_upper(c) ? c + 32 : c);
  }
  /* "&" reads as "and" ("ASSESSMENT & PLAN"). */
  buf[n] = '\0';
  char *amp = strstr(buf, " & ");
  if (amp != NULL && n + 2 < sizeof(buf)) {
    memmove(amp + 5, amp + 3, strlen(amp + 3) + 1);
    memcpy(amp, " and ", 5);
  }
  for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
    if (strcmp(buf, known[k].head) == 0) return known[k].kind;
  return MOE_SECTION_OTHER;
}

/*
 * A header candidate starting at s (a line or sentence start): sets *he to the colon and
 * returns 1 when [s, colon) is an upper-case header or a known one in any case.
 */
static int header_at(const unsigned char *t, size_t len, size_t s, size_t *he) {
  size_t i = s, letters = 0, lower = 0;
  while (i < len && i - s <= 60) {
    unsigned char c = t[i];
    if (c == ':') break;
    if (is_upper(c)) letters++;
    else if (is_lower(c)) {
      letters++;
      lower++;
    } else if (!(c == ' ' || c == '/' || c == '&' || c == '-' || c == '(' || c == ')'))
      return 0;
    i++;
  }
  if (i >= len || t[i] != ':' || i - s < 2 || letters < 2 || t[i - 1] == ' ') return 0;
  if (lower == 0 && letters >= 3 && i - s >= 3) {
    *he = i;
    return 1;
  }
  /* Mixed case, or short upper case ("HPI", "ROS" pass above; "CT" does not): known only. */
  if (moe_section_kind_of((const char *)t + s, i - s) != MOE_SECTION_OTHER) {
    *he = i;
    return 1;
  }
  return 0;
}

moe_err_t moe_text_sections(const char *text, size_t len, moe_text_section_t **out,
                            size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  if (len >= (size_t)1 << 31) return MOE_EINVAL;
  const unsigned char *t = (const unsigned char *)text;
  moe_text_section_t *sec = NULL;
  size_t n = 0, cap = 0;
  size_t i = 0;
  int line_start = 1;
  while (i < len) {
    unsigned char c = t[i];
    if (line_start && c != ' ' && c != '\t') {
      size_t he;
      if (header_at(t, len, i, &he)) {
        if (n == cap) {
          cap = cap ? cap * 2 : 16;
          moe_text_section_t *s = moe__reallocarray(sec, cap, sizeof(*s));
          if (s == NULL) {
            moe__free(sec);
            return MOE_ENOMEM;
          }
          sec = s;
        }
        size_t b = he + 1;
        while (b < len && (t[b] == ' ' || t[b] == ',' || t[b] == '\t' || t[b] == '\r' ||
                           t[b] == '\n'))
          b++;
        sec[n] = (moe_text_section_t){moe_section_kind_of(text + i, he - i), (uint32_t)i,
                                      (uint32_t)he, (uint32_t)b, (uint32_t)len};
        if (n > 0) sec[n - 1].body_end = (uint32_t)i;
        n++;
        i = b;
        line_start = 0;
        continue;
      }
      line_start = 0;
    }
    /* A header may follow a line break or a sentence / list separator. */
    if (c == '\n' || c == '.' || c == ',' || c == ';') line_start = 1;
    i++;
  }
  for (size_t k = 0; k < n; k++) {
    uint32_t e = sec[k].body_end;
    while (e > sec[k].body_start && (t[e - 1] == ' ' || t[e - 1] == ',' || t[e - 1] == '\n' ||
                                     t[e - 1] == '\r' || t[e - 1] == '\t'))
      e--;
    sec[k].body_end = e;
  }
  *out = sec;
  *n_out = n;
  return MOE_OK;
}
