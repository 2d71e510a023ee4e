/* hello: a greeting and a word counter, built by examples/build-and-test.lua. */
#ifndef HELLO_H
#define HELLO_H

#include <stddef.h>

/* Writes "Hello, NAME!" into buf (at most size bytes, NUL included) and returns the
   length the whole greeting needs, as snprintf does. A NULL or empty name greets
   "world". */
size_t greet(char *buf, size_t size, const char *name);

/* Counts the words of s: runs of characters other than space, tab and newline. */
size_t count_words(const char *s);

#endif
