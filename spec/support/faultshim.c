/*
 * faultshim.c -- LD_PRELOAD fault injection for spec/fault_spec.lua: makes chosen
 * calls of one libc function fail with a chosen errno, in the process that loaded it.
 *
 *   FAULT_CALL   clone | pipe2 | epoll_ctl | signalfd | write | stdio (fwrite, fflush)
 *                | stdout (fwrite, fflush on stdout only: stderr still says why)
 *                | epoll_pipe (epoll_ctl adding a pipe: a job's output, counted apart
 *                from the loop's other descriptors, whose number varies with setup)
 *                | mmap_shared (mmap of shared anonymous memory: lrun's table of
 *                groups, not the allocator's private mappings)
 *   FAULT_NTH    the first call to fail, counting from 1 (default 1)
 *   FAULT_COUNT  how many calls fail from there; 0: every one (default 1)
 *   FAULT_ERRNO  a name (EAGAIN, ENOMEM, EIO, ...) or a number (default EIO)
 *   FAULT_LOG    a file that gets a line "CALL N" for every failure injected
 *   FAULT_EXE    the program to act in: a part of its executable's name (default
 *                "lua"); in others (env, timeout, sh on the way) the shim does nothing
 *
 * In that program the shim removes LD_PRELOAD and FAULT_* from the environment, so
 * the programs it starts run unharmed, and it counts calls only in that process (not
 * in a forked child).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static char call[32];
static long nth = 1, count = 1, seen;
static int err = EIO;
static pid_t owner;
static char logpath[4096];

static const struct { const char *name; int num; } errs[] = {
  {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EIO", EIO}, {"EMFILE", EMFILE},
  {"ENFILE", ENFILE}, {"ENOSPC", ENOSPC}, {"EPERM", EPERM}, {"EINVAL", EINVAL},
  {"EPIPE", EPIPE}, {"ENOSYS", ENOSYS}, {NULL, 0}
};

/* Is this the program to act in? */
static int chosen(void) {
  const char *want = getenv("FAULT_EXE");
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 0;
  exe[n] = '\0';
  const char *base = strrchr(exe, '/');
  return strstr(base ? base + 1 : exe, want ? want : "lua") != NULL;
}

__attribute__((constructor)) static void init(void) {
  if (!chosen()) return;
  const char *c = getenv("FAULT_CALL"), *v;
  if (c) snprintf(call, sizeof call, "%s", c);
  if ((v = getenv("FAULT_NTH"))) nth = atol(v);
  if ((v = getenv("FAULT_COUNT"))) count = atol(v);
  if ((v = getenv("FAULT_ERRNO"))) {
    err = atoi(v);
    for (int i = 0; errs[i].name; i++)
      if (strcmp(v, errs[i].name) == 0) err = errs[i].num;
  }
  if ((v = getenv("FAULT_LOG"))) snprintf(logpath, sizeof logpath, "%s", v);
  owner = getpid();
  unsetenv("LD_PRELOAD");
  unsetenv("FAULT_CALL");
  unsetenv("FAULT_NTH");
  unsetenv("FAULT_COUNT");
  unsetenv("FAULT_ERRNO");
  unsetenv("FAULT_LOG");
}

/* Should this call of `name` fail? Logged with raw syscalls: write is ours. */
static int inject(const char *name) {
  if (strcmp(name, call) != 0 || getpid() != owner) return 0;
  long n = __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST);
  if (n < nth || (count > 0 && n >= nth + count)) return 0;
  if (logpath[0]) {
    int fd = (int)syscall(SYS_openat, AT_FDCWD, logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      char line[64];
      int len = snprintf(line, sizeof line, "%s %ld\n", name, n);
      syscall(SYS_write, fd, line, (size_t)len);
      syscall(SYS_close, fd);
    }
  }
  errno = err;
  return 1;
}

#define REAL(ret, fn, ...) \
  static ret (*real)(__VA_ARGS__); \
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, fn)

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) {
  va_list ap;
  va_start(ap, arg);
  void *ptid = va_arg(ap, void *), *tls = va_arg(ap, void *), *ctid = va_arg(ap, void *);
  va_end(ap);
  if (inject("clone")) return -1;
  REAL(int, "clone", int (*)(void *), void *, int, void *, ...);
  return real(fn, stack, flags, arg, ptid, tls, ctid);
}

int pipe2(int fds[2], int flags) {
  if (inject("pipe2")) return -1;
  REAL(int, "pipe2", int *, int);
  return real(fds, flags);
}

static int is_pipe(int fd) {
  struct stat st;
  return syscall(SYS_fstat, fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  if (inject("epoll_ctl")) return -1;
  if (op == EPOLL_CTL_ADD && is_pipe(fd) && inject("epoll_pipe")) return -1;
  REAL(int, "epoll_ctl", int, int, int, struct epoll_event *);
  return real(epfd, op, fd, ev);
}

int signalfd(int fd, const sigset_t *mask, int flags) {
  if (inject("signalfd")) return -1;
  REAL(int, "signalfd", int, const sigset_t *, int);
  return real(fd, mask, flags);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if ((flags & MAP_SHARED) && (flags & MAP_ANONYMOUS) && inject("mmap_shared")) return MAP_FAILED;
  REAL(void *, "mmap", void *, size_t, int, int, int, off_t);
  return real(addr, len, prot, flags, fd, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
  if (inject("write")) return -1;
  REAL(ssize_t, "write", int, const void *, size_t);
  return real(fd, buf, n);
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f) {
  if (inject("stdio") || (f == stdout && inject("stdout"))) return 0;
  REAL(size_t, "fwrite", const void *, size_t, size_t, FILE *);
  return real(p, size, n, f);
}

int fflush(FILE *f) {
  if (f && (inject("stdio") || (f == stdout && inject("stdout")))) return EOF;
  REAL(int, "fflush", FILE *);
  return real(f);
}
