/* hello [NAME...]   greet each NAME (or the world)
   hello -c          count the words on standard input */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hello.h"

static int count_stdin(void)
{
  size_t len = 0, cap = 4096;
  char *text = malloc(cap);
  size_t n;
  while (text != NULL && (n = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
    len += n;
    if (len + 1 == cap) {   /* full: double it, keeping room for the NUL */
      char *bigger = realloc(text, cap * 2);
      if (bigger == NULL)
        free(text);
      text = bigger;
      cap *= 2;
    }
  }
  if (text == NULL || ferror(stdin)) {
    perror("hello: reading stdin");
    free(text);
    return 1;
  }
  text[len] = '\0';
  printf("%zu words\n", count_words(text));
  free(text);
  return 0;
}

int main(int argc, char **argv)
{
  char buf[256];
  if (argc == 2 && strcmp(argv[1], "-c") == 0)
    return count_stdin();
  if (argc == 1) {
    greet(buf, sizeof buf, NULL);
    puts(buf);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    if (greet(buf, sizeof buf, argv[i]) >= sizeof buf) {
      fprintf(stderr, "hello: name too long: %.20s...\n", argv[i]);
      return 1;
    }
    puts(buf);
  }
  return 0;
}
