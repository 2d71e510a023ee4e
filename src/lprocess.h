/*
 * lprocess.h -- shared declarations of the lprocess.core C module.
 *
 * One file per concern (lp_spawn.c, lp_wait.c, lp_signal.c, lp_fd.c, lp_proc.c,
 * lp_net.c); each exports one lp_open_* function that adds its functions to the
 * module table. Everything here has hidden visibility: only luaopen_* is exported.
 */
#ifndef LPROCESS_H
#define LPROCESS_H

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/resource.h>

#include <lua.h>
#include <lauxlib.h>

/* Retry a syscall expression while it fails with EINTR. */
#define LP_RETRY(expr) __extension__ ({ long lp_r_; do { lp_r_ = (long)(expr); } \
                          while (lp_r_ == -1 && errno == EINTR); lp_r_; })

/* Code that runs in a spawned child between clone(CLONE_VM) and exec: not
 * instrumented by ASan (see lp_spawn.c), async-signal-safe only. */
#define LP_CHILD_SIDE __attribute__((no_sanitize("address")))

/* Marks close-on-exec (or, with close_them, closes) every open descriptor >= from.
 * Async-signal-safe: the fallback for kernels or seccomp profiles without close_range. */
void lp_fds_from(int from, int close_them);

/* Registration of each part of the module (called by luaopen_lprocess_core). */
void lp_open_util(lua_State *L);
void lp_open_spawn(lua_State *L);
void lp_open_wait(lua_State *L);
void lp_open_signal(lua_State *L);
void lp_open_fd(lua_State *L);
void lp_open_proc(lua_State *L);
void lp_open_net(lua_State *L);
void lp_open_daemon(lua_State *L);

/* strerror's text without the locale's message catalogs (see lp_util.c). */
const char *lp_strerror(int err);
/* Failure convention: pushes nil, "ctx: strerror(err)", err and returns 3. */
int lp_fail(lua_State *L, int err, const char *ctx);
int lp_failf(lua_State *L, int err, const char *fmt, ...);
/* Pushes true and returns 1 when ok, else lp_fail with errno. */
int lp_result(lua_State *L, int ok, const char *ctx);

/* Signals given as 15, "TERM" or "SIGTERM". */
int lp_checksig(lua_State *L, int arg);
/* The same for the value at stack index idx, reported as argument number arg. */
int lp_checksigarg(lua_State *L, int idx, int arg);
int lp_tosig(lua_State *L, int idx);       /* -1 when not a valid signal */
const char *lp_signame(int sig);           /* "TERM", or NULL if unknown */
void lp_checksigset(lua_State *L, int idx, sigset_t *set);
void lp_pushsigset(lua_State *L, const sigset_t *set);

/* A pid (or a process group) argument: an integer in [min, INT_MAX], raised on
 * otherwise, so that 2^32 - 1 never becomes -1 (every process) by truncation. */
pid_t lp_checkpid(lua_State *L, int arg, lua_Integer min);
pid_t lp_optpid(lua_State *L, int arg, lua_Integer min, pid_t def);

/* Raise on keys of table idx that are not in the NULL-terminated list. */
void lp_checkkeys(lua_State *L, int idx, const char *what, const char *const keys[]);
/* Optional fields of an options table; absent or nil gives the default. */
int lp_optboolfield(lua_State *L, int idx, const char *k, int def);

/* Resource limits by name ("nofile", "core", ...); -1 when unknown. */
int lp_rlimit_resource(const char *name);
rlim_t lp_torlim(lua_State *L, int idx);

/* Wait status as the table documented in doc/design.md. `keys` is the index of the table
 * lp_pushstatuskeys pushed (kept as an upvalue by the caller): the field names are
 * interned once, not looked up again for every status. */
void lp_pushstatuskeys(lua_State *L);
void lp_pushstatus(lua_State *L, int keys, pid_t pid, int status, const struct rusage *ru);

/* Monotonic clock in seconds. */
double lp_now(void);
/* Milliseconds left until a monotonic deadline for poll/epoll; -1 (forever) when
 * the deadline is negative. Rounds up so a wait never ends early. */
int lp_ms_until(double deadline);

#endif
