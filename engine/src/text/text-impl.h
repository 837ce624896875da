/*
 * Internals shared by the text module's files: the pre-tokenizer that cuts normalised text
 * into words, used identically by the WordPiece trainer and encoder.
 */
#ifndef MOE_TEXT_IMPL_H
#define MOE_TEXT_IMPL_H

#include <stddef.h>

/*
 * The next word of normalised text s[0..len) at or after *pos: sets [*ws, *we) and returns 1,
 * or returns 0 at the end. A word is a run of bytes that are neither a space nor ASCII
 * punctuation, or a single ASCII punctuation character.
 */
static inline int moe__text_next_word(const char *s, size_t len, size_t *pos, size_t *ws,
                                      size_t *we) {
  size_t p = *pos;
  while (p < len && s[p] == ' ') p++;
  if (p >= len) {
    *pos = p;
    return 0;
  }
  unsigned char c = (unsigned char)s[p];
  int punct = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
              (c >= 0x7B && c <= 0x7E);
  *ws = p;
  if (punct) {
    p++;
  } else {
    while (p < len) {
      c = (unsigned char)s[p];
      if (c == ' ' || (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
          (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E))
        break;
      p++;
    }
  }
  *we = p;
  *pos = p;
  return 1;
}

#endif /* MOE_TEXT_IMPL_H */
