/* stamp.c -- sleep DELAY_US (default 0), then write CLOCK_MONOTONIC (ns, decimal) to
 * stdout and exit at once. The reap-latency benchmark compares that instant with the
 * moment the parent reaps the child; the delay makes sure the parent is already
 * blocked (in waitpid, or in the event loop's epoll_wait) when the child ends.
 * Build: cc -O2 -o stamp stamp.c */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long delay = argc > 1 ? atol(argv[1]) : 0;
  if (delay > 0) {
    struct timespec d = { delay / 1000000, (delay % 1000000) * 1000 };
    while (nanosleep(&d, &d) != 0) {}
  }
  char buf[32];
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int n = snprintf(buf, sizeof buf, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  if (write(1, buf, (size_t)n) != n) _exit(1);
  _exit(0);
}
