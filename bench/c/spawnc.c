/* spawnc.c -- the C baselines of the benchmark: how fast can a small C program
 * start and reap processes?
 *
 *   spawnc [-m posix_spawn|vfork|fork] [-j J] -n N -- PROG [ARG...]
 *       run PROG N times, at most J at once, reaping with waitpid(-1)
 *   spawnc [-m ...] [-j J] -d DAGFILE -- PROG [ARG...]
 *       run one PROG per line of DAGFILE ("name need need..."), each once all its
 *       needs have exited 0, at most J at once (what make -jJ does)
 *   spawnc -l N -- STAMP
 *       reap-latency floor: N times, start STAMP with its stdout on a pipe, block in
 *       waitpid(pid), then print (reap instant - instant STAMP wrote), in ns
 *
 * posix_spawn uses default attributes, as most programs do; vfork is vfork+execv,
 * the cheapest start there is. Exits 1 if any child fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

extern char **environ;

enum method { M_POSIX_SPAWN, M_VFORK, M_FORK };
static enum method method = M_POSIX_SPAWN;

static void die(const char *what) {
  perror(what);
  exit(2);
}

static pid_t start(char **argv) {
  pid_t pid = -1;
  switch (method) {
  case M_POSIX_SPAWN: {
    int e = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (e) { errno = e; die("posix_spawn"); }
    return pid;
  }
  case M_VFORK:
    pid = vfork();
    if (pid == 0) { execv(argv[0], argv); _exit(127); }
    break;
  case M_FORK:
    pid = fork();
    if (pid == 0) { execv(argv[0], argv); _exit(127); }
    break;
  }
  if (pid < 0) die("fork");
  return pid;
}

static pid_t reap(int *ok) {
  int st;
  pid_t pid;
  do pid = waitpid(-1, &st, 0); while (pid < 0 && errno == EINTR);
  if (pid < 0) die("waitpid");
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) *ok = 0;
  return pid;
}

static int run_n(long n, int jobs, char **argv) {
  int ok = 1, running = 0;
  for (long started = 0; started < n || running > 0;) {
    if (started < n && running < jobs) {
      start(argv);
      started++;
      running++;
    } else {
      reap(&ok);
      running--;
    }
  }
  return ok ? 0 : 1;
}

/* ---- DAG mode ---- */

struct node { char *name; int nneeds, *needs, left, nout, *out; pid_t pid; };
static struct node *nodes;
static int nnodes;

static int find(const char *name) {
  for (int i = nnodes - 1; i >= 0; i--)
    if (strcmp(nodes[i].name, name) == 0) return i;
  fprintf(stderr, "spawnc: unknown need %s\n", name);
  exit(2);
}

static void load_dag(const char *file) {
  FILE *f = fopen(file, "r");
  if (!f) die(file);
  char line[4096];
  int cap = 0;
  while (fgets(line, sizeof line, f)) {
    char *tok = strtok(line, " \t\n");
    if (!tok) continue;
    if (nnodes == cap) {
      cap = cap ? cap * 2 : 256;
      nodes = realloc(nodes, (size_t)cap * sizeof *nodes);
      if (!nodes) die("realloc");
    }
    struct node *nd = &nodes[nnodes];
    memset(nd, 0, sizeof *nd);
    nd->name = strdup(tok);
    nd->needs = malloc(64 * sizeof(int));
    while ((tok = strtok(NULL, " \t\n")) && nd->nneeds < 64) nd->needs[nd->nneeds++] = find(tok);
    nd->left = nd->nneeds;
    nnodes++;
  }
  fclose(f);
  for (int i = 0; i < nnodes; i++) nodes[i].out = malloc((size_t)nnodes * sizeof(int));
  for (int i = 0; i < nnodes; i++)
    for (int k = 0; k < nodes[i].nneeds; k++) {
      struct node *dep = &nodes[nodes[i].needs[k]];
      dep->out[dep->nout++] = i;
    }
}

static int run_dag(const char *file, int jobs, char **argv) {
  load_dag(file);
  int *ready = malloc((size_t)nnodes * sizeof(int)), head = 0, tail = 0;
  for (int i = 0; i < nnodes; i++) if (nodes[i].left == 0) ready[tail++] = i;
  int ok = 1, running = 0, done = 0;
  while (done < nnodes) {
    if (head < tail && running < jobs) {
      nodes[ready[head++]].pid = start(argv);
      running++;
      continue;
    }
    if (running == 0) { fprintf(stderr, "spawnc: DAG stuck\n"); return 1; }
    int one = 1;
    pid_t pid = reap(&one);
    running--;
    done++;
    if (!one) { ok = 0; continue; }
    for (int i = 0; i < nnodes; i++) {
      if (nodes[i].pid != pid) continue;
      nodes[i].pid = 0;
      for (int k = 0; k < nodes[i].nout; k++)
        if (--nodes[nodes[i].out[k]].left == 0) ready[tail++] = nodes[i].out[k];
      break;
    }
  }
  return ok ? 0 : 1;
}

/* ---- reap-latency floor (STAMP's own arguments, such as its delay, pass through) ---- */

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int run_latency(long n, char **argv) {
  for (long i = 0; i < n; i++) {
    int p[2];
    if (pipe(p) < 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      dup2(p[1], 1);
      close(p[0]);
      close(p[1]);
      execv(argv[0], argv);
      _exit(127);
    }
    close(p[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0) if (errno != EINTR) die("waitpid");
    long long reaped = now_ns();
    char buf[64];
    ssize_t got = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    if (got <= 0) { fprintf(stderr, "spawnc: no stamp\n"); return 1; }
    buf[got] = 0;
    printf("%lld\n", reaped - atoll(buf));
  }
  return 0;
}

int main(int argc, char **argv) {
  long n = -1, lat = -1;
  int jobs = 1, opt;
  const char *dag = NULL;
  while ((opt = getopt(argc, argv, "+m:j:n:d:l:")) != -1) {
    switch (opt) {
    case 'm':
      if (strcmp(optarg, "posix_spawn") == 0) method = M_POSIX_SPAWN;
      else if (strcmp(optarg, "vfork") == 0) method = M_VFORK;
      else if (strcmp(optarg, "fork") == 0) method = M_FORK;
      else { fprintf(stderr, "spawnc: unknown method %s\n", optarg); return 2; }
      break;
    case 'j': jobs = atoi(optarg); break;
    case 'n': n = atol(optarg); break;
    case 'd': dag = optarg; break;
    case 'l': lat = atol(optarg); break;
    default: return 2;
    }
  }
  if (optind >= argc || jobs < 1) {
    fprintf(stderr, "usage: spawnc [-m posix_spawn|vfork|fork] [-j J] (-n N | -d DAG | -l N) -- PROG [ARG...]\n");
    return 2;
  }
  char **cmd = argv + optind;
  if (lat >= 0) return run_latency(lat, cmd);
  if (dag) return run_dag(dag, jobs, cmd);
  return run_n(n < 0 ? 1 : n, jobs, cmd);
}
