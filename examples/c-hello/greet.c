#include <stdio.h>

#include "hello.h"

size_t greet(char *buf, size_t size, const char *name)
{
  if (name == NULL || name[0] == '\0')
    name = "world";
  int n = snprintf(buf, size, "Hello, %s!", name);
  return n < 0 ? 0 : (size_t)n;
}
