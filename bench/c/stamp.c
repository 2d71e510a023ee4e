/* stamp.c -- write CLOCK_MONOTONIC (ns, decimal) to stdout, then exit at once.
 * The reap-latency benchmark compares that instant with the moment the parent
 * reaps the child. Build: cc -O2 -o stamp stamp.c */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  char buf[32];
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int n = snprintf(buf, sizeof buf, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  if (write(1, buf, (size_t)n) != n) _exit(1);
  _exit(0);
}
