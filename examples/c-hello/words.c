#include "hello.h"

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t count_words(const char *s)
{
  size_t n = 0;
  int in_word = 0;
  for (; *s != '\0'; s++) {
    if (is_space(*s)) {
      in_word = 0;
    } else if (!in_word) {
      in_word = 1;
      n++;
    }
  }
  return n;
}
