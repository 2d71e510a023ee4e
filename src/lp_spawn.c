/*
 * lp_spawn.c -- starting processes: spawn, fork, exec, _exit.
 *
 * Caveats
 * - spawn's default method is clone(CLONE_VM|CLONE_VFORK), as glibc's posix_spawn
 *   does: the child borrows the parent's memory until it execs, so it costs the same
 *   from a 1 GB heap as from an empty one. The child runs only async-signal-safe code,
 *   on a stack in spawn's own frame (the calling thread is suspended meanwhile, so
 *   threads with their own lua_State can spawn at once), with every signal blocked
 *   until just before execve, and reports a failed step by writing into the request
 *   the suspended parent holds. method = "fork" uses fork() and a close-on-exec
 *   error pipe instead; so does spawn under valgrind, which runs such a clone as a
 *   fork.
 * - Between fork/clone and exec the child resets every caught or ignored signal to
 *   its default and clears its signal mask, whatever the parent had -- unless
 *   `sigignore` names signals to leave ignored and `sigmask` the mask to start with
 *   (core.sigstate() gives the caller's own, to hand on as nohup and tini do).
 * - foreground = fd: the child makes its process group (setsid or pgid is required)
 *   the terminal's foreground group, while every signal is still blocked, so SIGTTOU
 *   cannot stop it. With setsid it first makes fd its controlling terminal
 *   (TIOCSCTTY), which fails if the terminal belongs to another session. fd is the
 *   caller's descriptor, taken before the fds map is applied.
 * - close_fds (the default) marks every descriptor above 2 close-on-exec with
 *   close_range(CLOSE_RANGE_CLOEXEC) before the fds map is applied, so nothing but
 *   0, 1, 2 and what was asked for reaches the new program. Without close_range it
 *   walks /proc/self/fd (lp_fds_from), whatever the nofile limit is now.
 * - The fds map moves only a source that another mapping would overwrite; an
 *   identity mapping ({[5] = 5}) just clears close-on-exec.
 * - PATH is searched in the child with one execve per directory (as execvp does,
 *   but without its /bin/sh fallback on ENOEXEC): PATH comes from `env` when given
 *   (its first PATH=, the one the child's getenv sees), else from the parent's
 *   environment. An empty name is ENOENT, as for execvp.
 * - env keys are checked: none empty, none with '=' or NUL (values neither). Every
 *   argv and env string stays referenced on the Lua stack until exec, whatever
 *   metamethods or finalizers run meanwhile.
 * - Credentials are changed with raw syscalls (the 32-bit-id ones where both
 *   exist): glibc's setuid() would try to synchronise the parent's threads from a
 *   child that shares its memory. Ids are integers in [0, 2^32 - 2] (-1 would mean
 *   "no change"); the child checks with getresuid/getresgid that the change took
 *   (EPERM otherwise). Root dropping to a uid without `groups` sets the supplementary
 *   groups to the target gid alone, instead of keeping root's.
 */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "lprocess.h"

/* valgrind runs a CLONE_VM|CLONE_VFORK child as a fork: the child's report would
 * not reach the parent. Under valgrind, spawn therefore uses the fork method. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

enum stage {
  ST_NONE, ST_SETSID, ST_SETPGID, ST_TCSETPGRP, ST_FD_MOVE, ST_FD, ST_RLIMIT, ST_SETGROUPS,
  ST_SETGID, ST_SETUID, ST_PDEATHSIG, ST_CHDIR, ST_EXEC
};

/* child: the target; source: the caller's descriptor; parent: where the source is
 * now (the child may move it out of the way). */
struct fdmap { int child, source, parent; };
struct limit { int res; struct rlimit rl; };

/* What the child is to do, and (written by the child) what went wrong. */
struct req {
  const char *file;
  char *const *argv;
  char *const *envp;
  const char *path_env;
  const char *cwd;
  int setsid, pgid_set, pdeathsig, umask_set, close_fds;
  int foreground;         /* terminal to take the foreground of, or -1 */
  pid_t pgid, parent;
  sigset_t sigmask;       /* the new program's signal mask */
  sigset_t sigignore;     /* signals it starts with ignored */
  mode_t mask;
  int nfds;
  struct fdmap *fds;
  int nlimits;
  struct limit *limits;
  int gid_set, uid_set, groups_set, ngroups;
  gid_t gid;
  uid_t uid;
  gid_t *groups;
  int errpipe;            /* fork method: where the child reports */
  int err, stage, arg;    /* the child's report */
};

struct report { int err, stage, arg; };

/* ---- the child side: async-signal-safe only ---- */

/* The clone(CLONE_VM) child runs on a stack inside the parent's memory.
 * ASan's stack instrumentation would poison redzones for its frames in the shadow
 * memory it shares with the parent (never unpoisoned: the child execs or _exits), so
 * the next child trips over them, and __asan_handle_no_return does not know that
 * stack. The child-side code is therefore not instrumented (make sanitize). */
#define CHILD_SIDE LP_CHILD_SIDE

static void child_fail(struct req *r, int stage, int arg) __attribute__((noreturn));
CHILD_SIDE static void child_fail(struct req *r, int stage, int arg) {
  r->err = errno;
  r->stage = stage;
  r->arg = arg;
  if (r->errpipe >= 0) {
    struct report rep = { r->err, stage, arg };
    ssize_t n = LP_RETRY(write(r->errpipe, &rep, sizeof rep));
    (void)n;
  }
  _exit(127);
}

CHILD_SIDE static void child_cloexec_all(void) {
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  lp_fds_from(3, 0);
}

CHILD_SIDE static int is_target(const struct req *r, int fd) {
  for (int i = 0; i < r->nfds; i++)
    if (r->fds[i].child == fd) return 1;
  return 0;
}

/* Would a dup2 of another mapping overwrite fd before its own mapping reads it? */
CHILD_SIDE static int clobbered(const struct req *r, int fd) {
  for (int i = 0; i < r->nfds; i++)
    if (r->fds[i].child == fd && r->fds[i].source != fd) return 1;
  return 0;
}

/* A close-on-exec copy of fd on a number no mapping targets. A copy that lands on a
 * target on the way is left there: a later dup2 replaces it, or exec closes it. */
CHILD_SIDE static int move_clear(const struct req *r, int fd) {
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  while (nfd >= 0 && is_target(r, nfd)) nfd = fcntl(fd, F_DUPFD_CLOEXEC, nfd + 1);
  return nfd;
}

/* The fds map. Only a source that another mapping's target would overwrite is moved
 * first; an identity mapping just clears close-on-exec. */
CHILD_SIDE static void child_fds(struct req *r) {
  if (r->close_fds) child_cloexec_all();
  if (r->errpipe >= 0 && is_target(r, r->errpipe)) {
    int nfd = move_clear(r, r->errpipe);
    if (nfd < 0) child_fail(r, ST_FD_MOVE, -1);
    r->errpipe = nfd;
  }
  for (int i = 0; i < r->nfds; i++) {
    if (!clobbered(r, r->fds[i].parent)) continue;
    int nfd = move_clear(r, r->fds[i].parent);
    if (nfd < 0) child_fail(r, ST_FD_MOVE, i);
    r->fds[i].parent = nfd;
  }
  for (int i = 0; i < r->nfds; i++) {
    struct fdmap *m = &r->fds[i];
    if (m->parent == m->child ? fcntl(m->child, F_SETFD, 0) < 0 : dup2(m->parent, m->child) < 0)
      child_fail(r, ST_FD, i);
  }
}

/* Every signal to its default, except those asked to stay ignored; then the mask
 * the new program starts with. The C library refuses sigaction for the signals it
 * keeps for itself (32, 33); an inherited SIG_IGN there is reset through the raw
 * syscall, with an all-zero kernel sigaction: SIG_DFL whatever the arch's layout. */
CHILD_SIDE static void child_signals(const struct req *r) {
  struct sigaction sa;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    void (*want)(int) = sigismember(&r->sigignore, sig) == 1 ? SIG_IGN : SIG_DFL;
    if (sigaction(sig, NULL, &sa) != 0) {
      unsigned long ksa[8] = {0};
      syscall(SYS_rt_sigaction, sig, ksa, NULL, (NSIG - 1) / 8);
      continue;
    }
    if (sa.sa_handler == want) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = want;
    sigaction(sig, &sa, NULL);
  }
  sigprocmask(SIG_SETMASK, &r->sigmask, NULL);
}

/* execve, searching PATH when the name has no slash. Returns with errno set. */
CHILD_SIDE static void exec_search(const char *file, char *const argv[],
                                   char *const envp[], const char *path_env) {
  if (!*file) {   /* as execvp: no PATH search for an empty name */
    errno = ENOENT;
    return;
  }
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return;
  }
  char buf[PATH_MAX];
  size_t flen = strlen(file);
  int eacces = 0, last = ENOENT;
  const char *p = path_env;
  for (;;) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    if (dlen + flen + 2 <= sizeof buf) {
      if (dlen) {
        memcpy(buf, p, dlen);
        buf[dlen++] = '/';
      }
      memcpy(buf + dlen, file, flen + 1);
      execve(buf, argv, envp);
      switch (errno) {
      case EACCES: eacces = 1; break;
      case ENOENT: case ENOTDIR: case ENAMETOOLONG: case ELOOP: case ESTALE:
      case ENODEV: case ETIMEDOUT: last = ENOENT; break;
      default: return;  /* found but not runnable: ENOEXEC, E2BIG, ... */
      }
    }
    if (!*end) break;
    p = end + 1;
  }
  errno = eacces ? EACCES : last;
}

/* The 32-bit-id syscalls where the plain ones take 16-bit ids (i386, armhf). */
#ifdef SYS_setresuid32
#define LP_SYS_SETRESUID SYS_setresuid32
#define LP_SYS_SETRESGID SYS_setresgid32
#define LP_SYS_GETRESUID SYS_getresuid32
#define LP_SYS_GETRESGID SYS_getresgid32
#define LP_SYS_SETGROUPS SYS_setgroups32
#else
#define LP_SYS_SETRESUID SYS_setresuid
#define LP_SYS_SETRESGID SYS_setresgid
#define LP_SYS_GETRESUID SYS_getresuid
#define LP_SYS_GETRESGID SYS_getresgid
#define LP_SYS_SETGROUPS SYS_setgroups
#endif

/* Are all three ids (real, effective, saved) id now? */
CHILD_SIDE static int ids_are(long nr, unsigned id) {
  unsigned a = ~0U, b = ~0U, c = ~0U;
  if (syscall(nr, &a, &b, &c) < 0) return 0;
  return a == id && b == id && c == id;
}

/* groups, then gid, then uid, each checked after the change: a drop that did not
 * take (a seccomp filter returning 0, a 16-bit syscall) fails the spawn with EPERM. */
CHILD_SIDE static void child_credentials(struct req *r) {
  if (r->groups_set && syscall(LP_SYS_SETGROUPS, r->ngroups, r->groups) < 0)
    child_fail(r, ST_SETGROUPS, 0);
  if (r->gid_set) {
    if (syscall(LP_SYS_SETRESGID, r->gid, r->gid, r->gid) < 0) child_fail(r, ST_SETGID, (int)r->gid);
    if (!ids_are(LP_SYS_GETRESGID, r->gid)) {
      errno = EPERM;
      child_fail(r, ST_SETGID, (int)r->gid);
    }
  }
  if (r->uid_set) {
    if (syscall(LP_SYS_SETRESUID, r->uid, r->uid, r->uid) < 0) child_fail(r, ST_SETUID, (int)r->uid);
    if (!ids_are(LP_SYS_GETRESUID, r->uid)) {
      errno = EPERM;
      child_fail(r, ST_SETUID, (int)r->uid);
    }
  }
}

CHILD_SIDE static int child_main(void *arg) {
  struct req *r = arg;
  if (r->setsid) {
    if (setsid() < 0) child_fail(r, ST_SETSID, 0);
  } else if (r->pgid_set && setpgid(0, r->pgid) < 0) {
    child_fail(r, ST_SETPGID, (int)r->pgid);
  }
  /* Every signal is still blocked: SIGTTOU cannot stop a child of a background
   * group here. A new session has no terminal yet: it takes this one first. */
  if (r->foreground >= 0) {
    if (r->setsid && ioctl(r->foreground, TIOCSCTTY, 0) < 0)
      child_fail(r, ST_TCSETPGRP, r->foreground);
    if (tcsetpgrp(r->foreground, getpgrp()) < 0) child_fail(r, ST_TCSETPGRP, r->foreground);
  }
  child_fds(r);
  for (int i = 0; i < r->nlimits; i++)
    if (setrlimit(r->limits[i].res, &r->limits[i].rl) < 0)
      child_fail(r, ST_RLIMIT, i);
  if (r->umask_set) umask(r->mask);
  child_credentials(r);
  /* After the credential change, which clears the parent-death signal. */
  if (r->pdeathsig) {
    if (prctl(PR_SET_PDEATHSIG, r->pdeathsig) < 0) child_fail(r, ST_PDEATHSIG, 0);
    if (getppid() != r->parent) _exit(128 + r->pdeathsig);  /* parent already gone */
  }
  if (r->cwd && chdir(r->cwd) < 0) child_fail(r, ST_CHDIR, 0);
  child_signals(r);
  exec_search(r->file, r->argv, r->envp, r->path_env);
  child_fail(r, ST_EXEC, 0);
}

/* ---- the parent side ---- */

/* The child runs on a stack in this frame: the calling thread is suspended until the
 * child execs or exits (CLONE_VFORK), as musl's posix_spawn does. Each thread, each
 * lua_State, thus has its own; nothing is shared, nothing allocated. */
#define CHILD_STACK (32 * 1024)

static pid_t start_clone(struct req *r, int *pidfd) {
  _Alignas(16) char stack[CHILD_STACK];
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  if (pidfd) flags |= CLONE_PIDFD;
  pid_t pid = clone(child_main, stack + CHILD_STACK, flags, r, pidfd);
  int e = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return pid;
}

static pid_t start_fork(struct req *r) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return -1;
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) {
    r->errpipe = p[1];
    child_main(r);
  }
  int e = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(p[1]);
  if (pid > 0) {
    struct report rep;
    ssize_t n = LP_RETRY(read(p[0], &rep, sizeof rep));
    if (n == (ssize_t)sizeof rep) {
      r->err = rep.err;
      r->stage = rep.stage;
      r->arg = rep.arg;
    }
  }
  close(p[0]);
  errno = e;
  return pid;
}

static int rlimit_name_at(struct req *r, int i, char *buf, size_t n) {
  static const char *const names[] = {"as", "core", "cpu", "data", "fsize", "memlock",
    "nofile", "nproc", "rss", "stack", "locks", "msgqueue", "nice", "rtprio",
    "sigpending", NULL};
  for (int k = 0; names[k]; k++)
    if (lp_rlimit_resource(names[k]) == r->limits[i].res)
      return snprintf(buf, n, "%s", names[k]);
  return snprintf(buf, n, "%d", r->limits[i].res);
}

static int push_child_error(lua_State *L, struct req *r) {
  char what[64];
  switch (r->stage) {
  case ST_EXEC:
    return lp_failf(L, r->err, "%s", r->file);
  case ST_CHDIR:
    return lp_failf(L, r->err, "spawn %s: chdir %s", r->file, r->cwd);
  case ST_FD:
    return lp_failf(L, r->err, "spawn %s: dup2 fd %d to fd %d", r->file,
                    r->fds[r->arg].source, r->fds[r->arg].child);
  case ST_FD_MOVE:
    if (r->arg < 0) return lp_failf(L, r->err, "spawn %s: moving the error pipe", r->file);
    return lp_failf(L, r->err, "spawn %s: moving fd %d out of the way of the fds map",
                    r->file, r->fds[r->arg].source);
  case ST_RLIMIT:
    rlimit_name_at(r, r->arg, what, sizeof what);
    return lp_failf(L, r->err, "spawn %s: setrlimit %s", r->file, what);
  case ST_SETSID: return lp_failf(L, r->err, "spawn %s: setsid", r->file);
  case ST_SETPGID: return lp_failf(L, r->err, "spawn %s: setpgid %d", r->file, r->arg);
  case ST_TCSETPGRP:
    return lp_failf(L, r->err, "spawn %s: tcsetpgrp %d", r->file, r->arg);
  case ST_SETGROUPS: return lp_failf(L, r->err, "spawn %s: setgroups", r->file);
  case ST_SETGID:
    return lp_failf(L, r->err, "spawn %s: setgid %I", r->file, (lua_Integer)(unsigned)r->arg);
  case ST_SETUID:
    return lp_failf(L, r->err, "spawn %s: setuid %I", r->file, (lua_Integer)(unsigned)r->arg);
  case ST_PDEATHSIG: return lp_failf(L, r->err, "spawn %s: prctl", r->file);
  default: return lp_failf(L, r->err, "spawn %s", r->file);
  }
}

/* ---- building the request from Lua ---- */

/* execve takes char *const[] but never writes through it; Lua's strings are const. */
static char *unconst(const char *s) {
  union { const char *c; char *m; } u;
  u.c = s;
  return u.m;
}

/* Every string given to exec stays referenced until the spawn is done: one that
 * __index made, or that Lua code run meanwhile (a metamethod of another option, a
 * finalizer) removed from its table, could otherwise be collected before exec. A
 * short list leaves its values on the Lua stack (nothing allocated), a long one
 * moves them into a table left on the stack. */
#define KEEP_ON_STACK 64
#define MAX_ENTRIES (1 << 20)  /* argv or env entries: far beyond what ARG_MAX allows */

/* Returns the anchor table's index, or 0 when the n values will stay on the stack. */
static int keep_open(lua_State *L, lua_Integer n, const char *what) {
  if (n <= KEEP_ON_STACK) {
    luaL_checkstack(L, (int)n + 8, what);
    return 0;
  }
  lua_createtable(L, (int)n, 0);
  return lua_gettop(L);
}

/* The value on top, entry i: left on the stack, or moved into the anchor table. */
static void keep(lua_State *L, int anchor, lua_Integer i) {
  if (anchor) lua_rawseti(L, anchor, i);
}

/* argv from the array at idx; strings only (the facade converts numbers). With buf
 * (ARGV_STACK slots on the caller's stack), a short argv is built there instead of in
 * a userdata: one allocation fewer per spawn. A plain table is read raw; one with a
 * metatable through __len/__index, as always. NULL (E2BIG) for too many entries. */
#define ARGV_STACK 32
static char **check_argv_buf(lua_State *L, int idx, const char *what, char **buf) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: argv must be an array of strings", what);
  int raw = !lua_getmetatable(L, idx);
  if (!raw) lua_pop(L, 1);
  lua_Integer n = raw ? (lua_Integer)lua_rawlen(L, idx) : luaL_len(L, idx);
  if (n < 1) luaL_error(L, "%s: argv is empty", what);
  if (n > MAX_ENTRIES) return NULL;
  char **argv = (buf && n < ARGV_STACK) ? buf
    : lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
  int anchor = keep_open(L, n, what);
  for (lua_Integer i = 1; i <= n; i++) {
    if ((raw ? lua_rawgeti(L, idx, i) : lua_geti(L, idx, i)) != LUA_TSTRING)
      luaL_error(L, "%s: argv[%d] must be a string, got %s", what, (int)i,
                 luaL_typename(L, -1));
    argv[i - 1] = unconst(lua_tostring(L, -1));
    keep(L, anchor, i);
  }
  argv[n] = NULL;
  return argv;
}

static char **check_argv(lua_State *L, int idx, const char *what) {
  return check_argv_buf(L, idx, what, NULL);
}

/* A "K=V" entry of env: a key that is not empty and holds no '=', no NUL anywhere
 * (the child would see a different key, or a truncated value). */
static void check_kv(lua_State *L, const char *kv, size_t len) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || strlen(kv) != len)
    luaL_error(L, "env: bad entry '%s' (must be \"K=V\" with a key, no NUL)", kv);
}

static void check_key(lua_State *L, int k, int v) {
  size_t klen, vlen = 0;
  const char *key = lua_tolstring(L, k, &klen);
  if (lua_type(L, v) == LUA_TSTRING) lua_tolstring(L, v, &vlen);
  if (klen == 0 || strchr(key, '=') || strlen(key) != klen)
    luaL_error(L, "env: bad key '%s' (empty, or with '=' or NUL)", key);
  if (lua_type(L, v) == LUA_TSTRING && strlen(lua_tostring(L, v)) != vlen)
    luaL_error(L, "env: value of '%s' holds a NUL", key);
}

/* Sets *path to the first PATH= of envp, the one the child's getenv sees. */
static void note_path(const char *kv, const char **path) {
  if (!*path && kv[0] == 'P' && strncmp(kv, "PATH=", 5) == 0) *path = kv + 5;
}

static void env_map(lua_State *L, int idx, int anchor, char **envp, const char **path);

/* envp from an array {"K=V"} or a map {K=V} (whose "K=V" strings are made here), read
 * raw. Every string stays referenced (see keep). Sets *path to the env's first PATH,
 * if any. NULL (E2BIG) for too many entries. */
static char **check_env(lua_State *L, int idx, const char **path) {
  idx = lua_absindex(L, idx);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  int map = 0;
  lua_pushnil(L);
  if (lua_next(L, idx)) {   /* any key beyond the array part makes it a map */
    lua_pop(L, 2);
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { count++; lua_pop(L, 1); }
    map = count != n;
    if (map) n = count;
  }
  if (n > MAX_ENTRIES) return NULL;
  char **envp = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
  int anchor = keep_open(L, n, "env");
  lua_Integer i = 0;
  if (!map) {
    for (lua_Integer k = 1; k <= n; k++) {
      if (lua_rawgeti(L, idx, k) != LUA_TSTRING)
        luaL_error(L, "env: entries must be \"K=V\" strings");
      size_t len;
      const char *kv = lua_tolstring(L, -1, &len);
      check_kv(L, kv, len);
      envp[i++] = unconst(kv);
      note_path(kv, path);
      keep(L, anchor, i);
    }
    envp[i] = NULL;
    return envp;
  }
  if (!anchor) {   /* lua_next wants the key on top: the strings go to a table */
    lua_createtable(L, (int)n, 0);
    anchor = lua_gettop(L);
  }
  env_map(L, idx, anchor, envp, path);
  return envp;
}

/* The "K=V" strings of a map env (and of the "K=V" values it may also hold), made
 * and kept in the anchor table, into envp. */
static void env_map(lua_State *L, int idx, int anchor, char **envp, const char **path) {
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "env: value of '%s' must be a string", lua_tostring(L, -2));
      check_key(L, -2, -1);
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    } else {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "env: entries must be \"K=V\" strings");
      size_t len;
      check_kv(L, lua_tolstring(L, -1, &len), len);
      lua_pushvalue(L, -1);
    }
    const char *kv = lua_tostring(L, -1);
    lua_rawseti(L, anchor, i + 1);
    lua_pop(L, 1);
    envp[i++] = unconst(kv);
    note_path(kv, path);
  }
  envp[i] = NULL;
}

static const char *default_path(void) {
  const char *p = getenv("PATH");
  return p ? p : "/usr/local/bin:/bin:/usr/bin";
}

static void check_fds(lua_State *L, int idx, struct req *r) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
  r->fds = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(struct fdmap), 0);
  r->nfds = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!lua_isinteger(L, -2) || !lua_isinteger(L, -1))
      luaL_error(L, "spawn: fds must map child fd numbers to parent fd numbers");
    lua_Integer c = lua_tointeger(L, -2), p = lua_tointeger(L, -1);
    /* INT_MAX is no descriptor: the kernel's limit stays below it */
    if (c < 0 || c >= INT_MAX || p < 0 || p >= INT_MAX) luaL_error(L, "spawn: bad fd in fds");
    r->fds[r->nfds].child = (int)c;
    r->fds[r->nfds].source = r->fds[r->nfds].parent = (int)p;
    r->nfds++;
    lua_pop(L, 1);
  }
}

static void check_limits(lua_State *L, int idx, struct req *r) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { n++; lua_pop(L, 1); }
  r->limits = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(struct limit), 0);
  r->nlimits = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int res = lua_type(L, -2) == LUA_TSTRING ? lp_rlimit_resource(lua_tostring(L, -2)) : -1;
    if (res < 0) luaL_error(L, "spawn: unknown limit '%s'", luaL_tolstring(L, -2, NULL));
    struct limit *lim = &r->limits[r->nlimits++];
    lim->res = res;
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_geti(L, -1, 1);
      lim->rl.rlim_cur = lp_torlim(L, -1);
      lua_geti(L, -2, 2);
      lim->rl.rlim_max = lua_isnil(L, -1) ? lim->rl.rlim_cur : lp_torlim(L, -1);
      lua_pop(L, 2);
    } else {
      lim->rl.rlim_cur = lim->rl.rlim_max = lp_torlim(L, -1);
    }
    lua_pop(L, 1);
  }
}

/* A uid or gid: an integer in [0, 2^32 - 2]; -1 (2^32 - 1) means "no change" to
 * setresuid and would leave the child root, and a larger value would truncate. */
static unsigned check_id(lua_State *L, int idx, const char *what) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, idx, &isnum);
  if (!isnum) luaL_error(L, "spawn: %s must be an integer", what);
  if (v < 0 || v > (lua_Integer)0xfffffffe)
    luaL_error(L, "spawn: %s out of range: %I", what, v);
  return (unsigned)v;
}

#define MAX_GROUPS 65536   /* the kernel's NGROUPS_MAX */

static void check_groups(lua_State *L, int idx, struct req *r) {
  lua_Integer n = luaL_len(L, idx);
  if (n < 0 || n > MAX_GROUPS) luaL_error(L, "spawn: groups: more than %d entries", MAX_GROUPS);
  r->groups = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(gid_t), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    r->groups[i - 1] = (gid_t)check_id(L, -1, "groups entry");
    lua_pop(L, 1);
  }
  r->ngroups = (int)n;
  r->groups_set = 1;
}


/* An environment checked once for many spawns: core.envblock(list) -> block.
 * spawn{env = table} checks every "K=V" at every call (~300 instructions each, a
 * run's ~40 variables ~14 000 per spawn); spawn{env = block} only reads the array.
 * block:set(i, "K=V") replaces entry i (1..#list), e.g. a per-start variable. The
 * strings are kept in the block's user value, so the pointers stay valid. */
#define ENVBLOCK "lprocess.envblock"
typedef struct {
  lua_Integer n;
  const char *path;     /* the value of the first PATH=, or NULL */
  char *envp[];         /* n entries and a NULL */
} envblock;

static void envblock_path(envblock *b) {
  b->path = NULL;
  for (lua_Integer i = 0; i < b->n && !b->path; i++) note_path(b->envp[i], &b->path);
}

static int l_envblock(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n > MAX_ENTRIES) return lp_fail(L, E2BIG, "envblock");
  envblock *b = lua_newuserdatauv(L, sizeof *b + (size_t)(n + 1) * sizeof(char *), 1);
  b->n = 0;
  b->envp[0] = NULL;
  luaL_setmetatable(L, ENVBLOCK);
  lua_createtable(L, (int)n, 0);           /* the strings, anchored */
  for (lua_Integer k = 1; k <= n; k++) {
    if (lua_rawgeti(L, 1, k) != LUA_TSTRING)
      return luaL_error(L, "envblock: entries must be \"K=V\" strings");
    size_t len;
    const char *kv = lua_tolstring(L, -1, &len);
    check_kv(L, kv, len);
    lua_rawseti(L, -2, k);
    b->envp[k - 1] = unconst(kv);
  }
  b->envp[n] = NULL;
  b->n = n;
  lua_setiuservalue(L, -2, 1);
  envblock_path(b);
  return 1;
}

static int l_envblock_set(lua_State *L) {
  envblock *b = luaL_checkudata(L, 1, ENVBLOCK);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= b->n, 2, "entry out of range");
  size_t len;
  const char *kv = luaL_checklstring(L, 3, &len);
  check_kv(L, kv, len);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, i);
  int was_path = strncmp(b->envp[i - 1], "PATH=", 5) == 0;
  b->envp[i - 1] = unconst(kv);
  if (was_path || strncmp(kv, "PATH=", 5) == 0) envblock_path(b);
  return 0;
}

static int l_envblock_list(lua_State *L) {
  envblock *b = luaL_checkudata(L, 1, ENVBLOCK);
  lua_createtable(L, (int)b->n, 0);
  for (lua_Integer i = 0; i < b->n; i++) {
    lua_pushstring(L, b->envp[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const char *const spawn_keys[] = {
  "argv", "path", "env", "cwd", "fds", "close_fds", "setsid", "pgid", "pdeathsig",
  "umask", "limits", "uid", "gid", "groups", "pidfd", "method", "foreground", "sigmask",
  "sigignore", NULL
};
enum { OPT_ARGV, OPT_PATH, OPT_ENV, OPT_CWD, OPT_FDS, OPT_CLOSE_FDS, OPT_SETSID, OPT_PGID,
       OPT_PDEATHSIG, OPT_UMASK, OPT_LIMITS, OPT_UID, OPT_GID, OPT_GROUPS, OPT_PIDFD,
       OPT_METHOD, OPT_FOREGROUND, OPT_SIGMASK, OPT_SIGIGNORE, OPT_N };

/* The upvalue of spawn: {argv=OPT_ARGV, path=OPT_PATH, ...}. One pass over the
 * options table with one hash look-up per key present replaces a lua_getfield per
 * known option (most of them absent) and lp_checkkeys' strcmp of every key. */
static void push_spawn_keymap(lua_State *L) {
  lua_createtable(L, 0, OPT_N);
  for (int i = 0; spawn_keys[i]; i++) {
    lua_pushinteger(L, i);
    lua_setfield(L, -2, spawn_keys[i]);
  }
}

/* Stack slot of each option present (0: absent), in at[]. Raises on an unknown
 * string key, as lp_checkkeys does; other keys are the caller's array part. Values
 * stay on the stack, so strings taken from them stay anchored. */
static void collect_opts(lua_State *L, int opts, int map, int at[OPT_N]) {
  lua_pushnil(L);
  while (lua_next(L, opts)) {              /* ..., key, value */
    lua_pushvalue(L, -2);
    if (lua_rawget(L, map) != LUA_TNUMBER) {
      lua_pop(L, 1);
      if (lua_type(L, -2) == LUA_TSTRING)
        luaL_error(L, "spawn: unknown option '%s'", lua_tostring(L, -2));
      lua_pop(L, 1);
      continue;
    }
    int k = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_insert(L, -2);                     /* ..., value, key: the value stays */
    at[k] = lua_gettop(L) - 1;
  }
  /* An options table with a metatable: absent keys are looked up through __index, as
   * lua_getfield did (present ones never reach __index). */
  if (lua_getmetatable(L, opts)) {
    lua_pop(L, 1);
    for (int k = 0; k < OPT_N; k++) {
      if (at[k]) continue;
      if (lua_getfield(L, opts, spawn_keys[k]) == LUA_TNIL) lua_pop(L, 1);
      else at[k] = lua_gettop(L);
    }
  }
}

static int optbool(lua_State *L, int at, int def) { return at ? lua_toboolean(L, at) : def; }

static lua_Integer optint(lua_State *L, int at, const char *k) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, at, &isnum);
  if (!isnum) luaL_error(L, "option '%s' must be an integer", k);
  return v;
}

/* The returned string stays valid while the options table holds it. */
static const char *optstr(lua_State *L, int at, const char *k, const char *def) {
  if (!at) return def;
  if (lua_type(L, at) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", k);
  return lua_tostring(L, at);
}

/* uid, gid, groups. Root dropping to a uid without `groups` would keep root's
 * supplementary groups: they become the target gid alone. */
static void check_credentials(lua_State *L, const int at[OPT_N], struct req *r) {
  if (at[OPT_UID]) {
    r->uid_set = 1;
    r->uid = check_id(L, at[OPT_UID], "uid");
  }
  if (at[OPT_GID]) {
    r->gid_set = 1;
    r->gid = check_id(L, at[OPT_GID], "gid");
  }
  if (at[OPT_GROUPS]) {
    if (lua_type(L, at[OPT_GROUPS]) != LUA_TTABLE) luaL_error(L, "spawn: groups must be a table");
    check_groups(L, at[OPT_GROUPS], r);
  } else if (r->uid_set && geteuid() == 0) {
    r->groups = lua_newuserdatauv(L, sizeof(gid_t), 0);
    r->groups[0] = r->gid_set ? r->gid : getegid();
    r->ngroups = 1;
    r->groups_set = 1;
  }
}

/* foreground, sigmask and sigignore (after setsid and pgid, which foreground needs). */
static void check_signals(lua_State *L, const int at[OPT_N], struct req *r) {
  sigemptyset(&r->sigmask);
  sigemptyset(&r->sigignore);
  if (at[OPT_SIGMASK]) lp_checksigset(L, at[OPT_SIGMASK], &r->sigmask);
  if (at[OPT_SIGIGNORE]) {
    lp_checksigset(L, at[OPT_SIGIGNORE], &r->sigignore);
    if (sigismember(&r->sigignore, SIGKILL) == 1 || sigismember(&r->sigignore, SIGSTOP) == 1)
      luaL_error(L, "spawn: sigignore: KILL and STOP cannot be ignored");
  }
  if (at[OPT_FOREGROUND]) {
    lua_Integer fd = optint(L, at[OPT_FOREGROUND], "foreground");
    if (fd < 0 || fd > INT_MAX) luaL_error(L, "spawn: foreground: bad descriptor");
    if (!r->setsid && !r->pgid_set)
      luaL_error(L, "spawn: foreground needs setsid or pgid (a process group of its own)");
    r->foreground = (int)fd;
  }
}

/* fds, close_fds, setsid, pgid, pdeathsig, umask, limits. */
static void check_process(lua_State *L, const int at[OPT_N], struct req *r) {
  if (at[OPT_FDS]) {
    if (lua_type(L, at[OPT_FDS]) != LUA_TTABLE) luaL_error(L, "spawn: fds must be a table");
    check_fds(L, at[OPT_FDS], r);
  }
  r->close_fds = optbool(L, at[OPT_CLOSE_FDS], 1);
  r->setsid = optbool(L, at[OPT_SETSID], 0);
  if (at[OPT_PGID]) {
    r->pgid_set = 1;
    lua_Integer pgid = optint(L, at[OPT_PGID], "pgid");
    if (pgid < 0 || pgid > INT_MAX) luaL_error(L, "spawn: pgid out of range");
    r->pgid = (pid_t)pgid;
  }
  if (at[OPT_PDEATHSIG]) {
    r->pdeathsig = lp_tosig(L, at[OPT_PDEATHSIG]);
    if (r->pdeathsig <= 0)
      luaL_error(L, "spawn: pdeathsig: unknown signal '%s'",
                 luaL_tolstring(L, at[OPT_PDEATHSIG], NULL));
    r->parent = getpid();   /* each time: a fork by other code makes a cache stale */
  }
  if (at[OPT_UMASK]) {
    r->umask_set = 1;
    r->mask = (mode_t)optint(L, at[OPT_UMASK], "umask") & 0777;
  }
  if (at[OPT_LIMITS]) {
    if (lua_type(L, at[OPT_LIMITS]) != LUA_TTABLE) luaL_error(L, "spawn: limits must be a table");
    check_limits(L, at[OPT_LIMITS], r);
  }
}

/* The child has run: its pid (and pidfd), or its failure once it is reaped. */
static int spawn_result(lua_State *L, struct req *r, pid_t pid, int pidfd, int want_pidfd) {
  if (pid < 0) return lp_failf(L, errno, "spawn %s", r->file);
  if (r->err) {
    int st;
    LP_RETRY(waitpid(pid, &st, 0));
    if (pidfd >= 0) close(pidfd);
    return push_child_error(L, r);
  }
  lua_pushinteger(L, pid);
  if (!want_pidfd) return 1;
  if (pidfd < 0) pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) lua_pushnil(L);
  else lua_pushinteger(L, pidfd);
  return 2;
}

static int l_spawn(lua_State *L) {
  struct req r;
  memset(&r, 0, sizeof r);
  r.errpipe = r.foreground = -1;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, OPT_N + 40, "spawn");
  int at[OPT_N] = {0};
  collect_opts(L, 1, lua_upvalueindex(1), at);

  if (!at[OPT_ARGV]) return luaL_error(L, "spawn: argv must be an array of strings");
  char *argv_buf[ARGV_STACK];
  r.argv = check_argv_buf(L, at[OPT_ARGV], "spawn", argv_buf);
  if (!r.argv) return lp_fail(L, E2BIG, "spawn: argv");
  r.file = optstr(L, at[OPT_PATH], "path", r.argv[0]);
  r.path_env = NULL;
  envblock *eb = at[OPT_ENV] ? luaL_testudata(L, at[OPT_ENV], ENVBLOCK) : NULL;
  if (eb) {
    r.envp = eb->envp;
    r.path_env = eb->path;
  } else if (at[OPT_ENV]) {
    if (lua_type(L, at[OPT_ENV]) != LUA_TTABLE)
      return luaL_error(L, "spawn: env must be a table or an envblock");
    r.envp = check_env(L, at[OPT_ENV], &r.path_env);
    if (!r.envp) return lp_fail(L, E2BIG, "spawn: env");
  } else {
    r.envp = environ;
  }
  /* PATH is only searched for a name without a slash: no getenv otherwise. */
  if (!r.path_env && !strchr(r.file, '/')) r.path_env = default_path();
  r.cwd = optstr(L, at[OPT_CWD], "cwd", NULL);
  check_process(L, at, &r);
  check_credentials(L, at, &r);
  check_signals(L, at, &r);
  int want_pidfd = optbool(L, at[OPT_PIDFD], 0);
  const char *method = optstr(L, at[OPT_METHOD], "method", "vfork");
  int use_fork = strcmp(method, "fork") == 0;
  if (!use_fork && strcmp(method, "vfork") != 0)
    return luaL_error(L, "spawn: method must be \"vfork\" or \"fork\"");
  if (RUNNING_ON_VALGRIND) use_fork = 1;

  int pidfd = -1;
  pid_t pid;
  if (use_fork) {
    pid = start_fork(&r);
  } else {
    pid = start_clone(&r, want_pidfd ? &pidfd : NULL);
    if (pid < 0 && errno == EINVAL && want_pidfd) {  /* kernel without CLONE_PIDFD */
      pid = start_clone(&r, NULL);
      pidfd = -1;
    }
  }
  return spawn_result(L, &r, pid, pidfd, want_pidfd);
}

static int l_fork(lua_State *L) {
  pid_t pid = fork();
  if (pid < 0) return lp_fail(L, errno, "fork");
  lua_pushinteger(L, pid);
  return 1;
}

/* exec(path, argv [, env]) -- replaces this process; returns only on failure. */
static int l_exec(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  int has_env = !lua_isnoneornil(L, 3);   /* before check_argv pushes onto the stack */
  if (has_env) luaL_checktype(L, 3, LUA_TTABLE);
  char **argv = check_argv(L, 2, "exec");
  char **envp = environ;
  const char *path = NULL;
  if (has_env) envp = check_env(L, 3, &path);
  if (!argv || !envp) return lp_failf(L, E2BIG, "%s", file);
  exec_search(file, argv, envp, path ? path : default_path());
  return lp_failf(L, errno, "%s", file);
}

static int l__exit(lua_State *L) {
  int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);
  _exit(code);
}

void lp_open_spawn(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"fork", l_fork}, {"exec", l_exec}, {"_exit", l__exit}, {"envblock", l_envblock},
    {NULL, NULL}
  };
  static const luaL_Reg block_meth[] = {
    {"set", l_envblock_set}, {"list", l_envblock_list}, {NULL, NULL}
  };
  luaL_newmetatable(L, ENVBLOCK);
  luaL_newlib(L, block_meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
  push_spawn_keymap(L);
  lua_pushcclosure(L, l_spawn, 1);
  lua_setfield(L, -2, "spawn");
}
