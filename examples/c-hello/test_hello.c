/* Unit tests for greet() and count_words(), printed as TAP: "ok N - what". */
#include <stdio.h>
#include <string.h>

#include "hello.h"

static int tests, failures;

static void check(int ok, const char *what)
{
  tests++;
  if (!ok)
    failures++;
  printf("%sok %d - %s\n", ok ? "" : "not ", tests, what);
}

int main(void)
{
  char buf[32];

  greet(buf, sizeof buf, "Ada");
  check(strcmp(buf, "Hello, Ada!") == 0, "greet uses the name");
  greet(buf, sizeof buf, NULL);
  check(strcmp(buf, "Hello, world!") == 0, "greet falls back to the world");
  greet(buf, sizeof buf, "");
  check(strcmp(buf, "Hello, world!") == 0, "an empty name is the world too");
  size_t need = greet(buf, 8, "Grace Hopper");
  check(need == strlen("Hello, Grace Hopper!") && strlen(buf) == 7,
        "greet truncates and returns the length it needed");

  check(count_words("") == 0, "no words in an empty string");
  check(count_words("  \t\n") == 0, "no words in blanks");
  check(count_words("one") == 1, "one word");
  check(count_words(" the quick\tbrown\nfox ") == 4, "words split on any blank");

  printf("1..%d\n", tests);
  if (failures)
    fprintf(stderr, "%d of %d tests failed\n", failures, tests);
  return failures ? 1 : 0;
}
