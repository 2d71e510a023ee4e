/*
 * lp_util.c -- error convention, signal and errno names, option tables, status tables.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <math.h>
#include <sys/wait.h>

#include "lprocess.h"

/* The text of an errno. glibc's strerror looks the text up in the message catalogs
 * of the locale (dcgettext: a lock and a domain search, ~1 600 instructions); some
 * failures are the usual answer (kill(-pgid, 0) of a group that has emptied: ESRCH,
 * asked once per child by a supervisor), so the catalog-free description comes first
 * where glibc has it.
 * Its wording is the C locale's, which is what strerror gives a program that never
 * called setlocale. */
const char *lp_strerror(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *s = strerrordesc_np(err);
  if (s) return s;
#endif
  return strerror(err);
}

int lp_fail(lua_State *L, int err, const char *ctx) {
  lua_pushnil(L);
  if (ctx)
    lua_pushfstring(L, "%s: %s", ctx, lp_strerror(err));
  else
    lua_pushstring(L, lp_strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

int lp_failf(lua_State *L, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushnil(L);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), lp_strerror(err));
  lua_remove(L, -2);
  lua_pushinteger(L, err);
  return 3;
}

int lp_result(lua_State *L, int ok, const char *ctx) {
  if (!ok) return lp_fail(L, errno, ctx);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- signals ---- */

static const struct { const char *name; int num; } sigtab[] = {
  {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
  {"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
  {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
  {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
#ifdef SIGSTKFLT
  {"STKFLT", SIGSTKFLT},
#endif
  {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
  {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
  {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
  {"IO", SIGIO},
#ifdef SIGPWR
  {"PWR", SIGPWR},
#endif
  {"SYS", SIGSYS},
  {NULL, 0}
};

const char *lp_signame(int sig) {
  for (int i = 0; sigtab[i].name; i++)
    if (sigtab[i].num == sig) return sigtab[i].name;
  return NULL;
}

int lp_tosig(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int isnum;
    lua_Integer n = lua_tointegerx(L, idx, &isnum);
    return (isnum && n >= 0 && n < NSIG) ? (int)n : -1;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strncasecmp(s, "SIG", 3) == 0) s += 3;
    for (int i = 0; sigtab[i].name; i++)
      if (strcasecmp(s, sigtab[i].name) == 0) return sigtab[i].num;
  }
  return -1;
}

int lp_checksigarg(lua_State *L, int idx, int arg) {
  int sig = lp_tosig(L, idx);
  if (sig < 0) {
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
      return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'",
                                                   lua_tostring(L, idx)));
    /* luaL_typeerror's message, for the value at idx rather than at arg */
    const char *tname;
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) tname = lua_tostring(L, -1);
    else if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) tname = "light userdata";
    else tname = luaL_typename(L, idx);
    luaL_argerror(L, arg, lua_pushfstring(L, "signal (number or name) expected, got %s", tname));
  }
  return sig;
}

int lp_checksig(lua_State *L, int arg) {
  int sig = lp_tosig(L, arg);
  if (sig < 0) {
    if (lua_type(L, arg) == LUA_TSTRING || lua_type(L, arg) == LUA_TNUMBER)
      return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'",
                                                   lua_tostring(L, arg)));
    luaL_typeerror(L, arg, "signal (number or name)");
  }
  return sig;
}

/* A set from an array of signals, or from a single signal. */
void lp_checksigset(lua_State *L, int idx, sigset_t *set) {
  sigemptyset(set);
  if (lua_type(L, idx) != LUA_TTABLE) {
    sigaddset(set, lp_checksig(L, idx));
    return;
  }
  lua_Integer n = luaL_len(L, idx);
  if (n > 4 * NSIG) luaL_error(L, "too many signals (%I)", n);   /* a hostile __len */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    int sig = lp_tosig(L, -1);
    if (sig <= 0)
      luaL_error(L, "unknown signal '%s' at index %d", luaL_tolstring(L, -1, NULL), (int)i);
    sigaddset(set, sig);
    lua_pop(L, 1);
  }
}

void lp_pushsigset(lua_State *L, const sigset_t *set) {
  lua_newtable(L);
  int n = 0;
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(set, sig) == 1) {
      lua_pushinteger(L, sig);
      lua_rawseti(L, -2, ++n);
    }
}

/* ---- pids ---- */

pid_t lp_checkpid(lua_State *L, int arg, lua_Integer min) {
  lua_Integer v = luaL_checkinteger(L, arg);
  if (v < min || v > 2147483647)
    luaL_argerror(L, arg, lua_pushfstring(L, "pid out of range: %I", v));
  return (pid_t)v;
}

pid_t lp_optpid(lua_State *L, int arg, lua_Integer min, pid_t def) {
  return lua_isnoneornil(L, arg) ? def : lp_checkpid(L, arg, min);
}

/* ---- option tables ---- */

void lp_checkkeys(lua_State *L, int idx, const char *what, const char *const keys[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;  /* array part: the caller's */
    const char *k = lua_tostring(L, -1);
    int ok = 0;
    for (int i = 0; keys[i]; i++)
      if (strcmp(k, keys[i]) == 0) { ok = 1; break; }
    if (!ok) luaL_error(L, "%s: unknown option '%s'", what, k);
  }
}

int lp_optboolfield(lua_State *L, int idx, const char *k, int def) {
  int t = lua_getfield(L, idx, k);
  int v = (t == LUA_TNIL) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- resource limits ---- */

static const struct { const char *name; int res; } rltab[] = {
  {"as", RLIMIT_AS}, {"core", RLIMIT_CORE}, {"cpu", RLIMIT_CPU},
  {"data", RLIMIT_DATA}, {"fsize", RLIMIT_FSIZE}, {"memlock", RLIMIT_MEMLOCK},
  {"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC}, {"rss", RLIMIT_RSS},
  {"stack", RLIMIT_STACK}, {"locks", RLIMIT_LOCKS}, {"msgqueue", RLIMIT_MSGQUEUE},
  {"nice", RLIMIT_NICE}, {"rtprio", RLIMIT_RTPRIO}, {"sigpending", RLIMIT_SIGPENDING},
  {NULL, 0}
};

int lp_rlimit_resource(const char *name) {
  for (int i = 0; rltab[i].name; i++)
    if (strcmp(name, rltab[i].name) == 0) return rltab[i].res;
  return -1;
}

/* A limit value: a non-negative integer, or "unlimited"/"infinity"/math.huge. */
rlim_t lp_torlim(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strcmp(s, "unlimited") == 0 || strcmp(s, "infinity") == 0) return RLIM_INFINITY;
  } else if (lua_isinteger(L, idx)) {
    lua_Integer n = lua_tointeger(L, idx);
    if (n >= 0) return (rlim_t)n;
  } else if (lua_type(L, idx) == LUA_TNUMBER && isinf(lua_tonumber(L, idx))) {
    return RLIM_INFINITY;
  }
  luaL_error(L, "limit must be a non-negative integer or \"unlimited\"");
  return 0;
}

/* ---- wait status ---- */

static double tv_seconds(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The status keys and "how" values, interned once in a table that lp_open_wait keeps
 * as an upvalue of wait and reap: lua_setfield with a C string looks the key up in
 * Lua's API string cache (which spawn's option names keep evicting) and re-hashes it
 * on a miss, on every field of every status; rawgeti + rawset with the interned
 * string skips that. */
enum { K_PID = 1, K_HOW, K_CODE, K_SIGNAL, K_SIGNAME, K_CORE, K_RUSAGE, K_UTIME, K_STIME,
       K_MAXRSS, K_MINFLT, K_MAJFLT, K_NVCSW, K_NIVCSW, K_EXIT, K_STOP, K_CONTINUE,
       K_NKEYS };
static const char *const status_keys[K_NKEYS] = { NULL, "pid", "how", "code", "signal",
  "signame", "core", "rusage", "utime", "stime", "maxrss", "minflt", "majflt", "nvcsw",
  "nivcsw", "exit", "stop", "continue" };

/* Past the keys, the keys table holds the metatable of status tables and a weak map
 * status -> its raw rusage. The rusage of a status is kept raw in a small userdata
 * and turned into the table `st.rusage` on its first access (by __index): most
 * statuses are never asked for it, and the table with its seven fields was the
 * largest part of a status's cost. `st.rusage.maxrss` reads as before; pairs(st)
 * (through __pairs) builds it first, so it lists every field. */
enum { K_MT = K_NKEYS, K_RAW };
struct lp_ru { double utime, stime; lua_Integer v[5]; };

/* Push the interned key (or value) k, then the value: the pair lua_rawset takes. */
#define KEY(k) lua_rawgeti(L, keys, (k))
#define SET() lua_rawset(L, -3)

static void push_rusage(lua_State *L, int keys, const struct lp_ru *u) {
  lua_createtable(L, 0, 7);
  KEY(K_UTIME); lua_pushnumber(L, u->utime); SET();
  KEY(K_STIME); lua_pushnumber(L, u->stime); SET();
  for (int i = 0; i < 5; i++) {
    KEY(K_MAXRSS + i); lua_pushinteger(L, u->v[i]); SET();
  }
}

/* __index(st, k): only "rusage" is ever absent and known; it is built once, stored
 * in st and dropped from the weak map. Anything else is nil, as in a plain table. */
static int status_index(lua_State *L) {
  int keys = lua_upvalueindex(1);
  KEY(K_RUSAGE);
  int is_ru = lua_rawequal(L, 2, -1);
  lua_pop(L, 1);
  if (!is_ru) return 0;
  lua_rawgeti(L, keys, K_RAW);           /* map */
  int map = lua_gettop(L);
  lua_pushvalue(L, 1);
  lua_rawget(L, map);                    /* map, raw | nil */
  const struct lp_ru *u = lua_touserdata(L, -1);
  if (u == NULL || lua_type(L, 1) != LUA_TTABLE) return 0;
  push_rusage(L, keys, u);               /* map, raw, rusage */
  KEY(K_RUSAGE);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);                      /* st.rusage = rusage */
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, map);                    /* map[st] = nil */
  return 1;
}

static int status_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

/* __pairs(st): rusage first made real, then a raw traversal. */
static int status_pairs(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushliteral(L, "rusage");
  lua_gettable(L, 1);
  lua_pushcfunction(L, status_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

void lp_pushstatuskeys(lua_State *L) {
  lua_createtable(L, K_RAW, 0);
  for (int i = 1; i < K_NKEYS; i++) {
    lua_pushstring(L, status_keys[i]);
    lua_rawseti(L, -2, i);
  }
  lua_createtable(L, 0, 2);              /* the metatable of status tables */
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, status_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, status_pairs);
  lua_setfield(L, -2, "__pairs");
  lua_rawseti(L, -2, K_MT);
  lua_createtable(L, 0, 0);              /* status -> raw rusage, weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, -2, K_RAW);
}

void lp_pushstatus(lua_State *L, int keys, pid_t pid, int status, const struct rusage *ru) {
  int sig = 0, core = 0;
  keys = lua_absindex(L, keys);
  lua_createtable(L, 0, 7);
  KEY(K_PID); lua_pushinteger(L, pid); SET();
  if (WIFEXITED(status)) {
    KEY(K_HOW); KEY(K_EXIT); SET();
    KEY(K_CODE); lua_pushinteger(L, WEXITSTATUS(status)); SET();
  } else if (WIFSIGNALED(status)) {
    KEY(K_HOW); KEY(K_SIGNAL); SET();   /* how = "signal": the same string as the key */
    sig = WTERMSIG(status);
    core = WCOREDUMP(status) != 0;
  } else if (WIFSTOPPED(status)) {
    KEY(K_HOW); KEY(K_STOP); SET();
    sig = WSTOPSIG(status);
  } else if (WIFCONTINUED(status)) {
    KEY(K_HOW); KEY(K_CONTINUE); SET();
    sig = SIGCONT;
  }
  if (sig) {
    KEY(K_SIGNAL); lua_pushinteger(L, sig); SET();
    const char *name = lp_signame(sig);
    KEY(K_SIGNAME);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "%d", sig);
    SET();
  }
  KEY(K_CORE); lua_pushboolean(L, core); SET();
  if (ru) {
    lua_rawgeti(L, keys, K_RAW);
    lua_pushvalue(L, -2);
    struct lp_ru *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->utime = tv_seconds(ru->ru_utime);
    u->stime = tv_seconds(ru->ru_stime);
    u->v[0] = ru->ru_maxrss;
    u->v[1] = ru->ru_minflt;
    u->v[2] = ru->ru_majflt;
    u->v[3] = ru->ru_nvcsw;
    u->v[4] = ru->ru_nivcsw;
    lua_rawset(L, -3);                   /* map[st] = raw */
    lua_pop(L, 1);
    lua_rawgeti(L, keys, K_MT);
    lua_setmetatable(L, -2);
  }
}

#undef KEY
#undef SET

/* ---- time ---- */

double lp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int lp_ms_until(double deadline) {
  if (deadline < 0) return -1;
  double left = deadline - lp_now();
  if (left <= 0) return 0;
  double ms = ceil(left * 1000.0);
  return ms > 2147483647.0 ? 2147483647 : (int)ms;
}

/* ---- name tables ---- */

#define E(x) {#x, x}
static const struct { const char *name; int num; } errtab[] = {
  E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(ENOEXEC),
  E(EBADF), E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY),
  E(EEXIST), E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE),
  E(EMFILE), E(ENOTTY), E(ETXTBSY), E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS),
  E(EMLINK), E(EPIPE), E(EDOM), E(ERANGE), E(EDEADLK), E(ENAMETOOLONG), E(ENOLCK),
  E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(EWOULDBLOCK), E(ENOTSOCK), E(EADDRINUSE),
  E(EADDRNOTAVAIL), E(ENETUNREACH), E(ECONNABORTED), E(ECONNRESET), E(ENOTCONN),
  E(ETIMEDOUT), E(ECONNREFUSED), E(EHOSTUNREACH), E(EALREADY), E(EINPROGRESS),
  E(ECANCELED), E(EOPNOTSUPP),
  {NULL, 0}
};
#undef E

static int l_strerror(lua_State *L) {
  lua_pushstring(L, lp_strerror((int)luaL_checkinteger(L, 1)));
  return 1;
}

void lp_open_util(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; sigtab[i].name; i++) {
    lua_pushinteger(L, sigtab[i].num);
    lua_setfield(L, -2, sigtab[i].name);
    lua_pushstring(L, sigtab[i].name);
    lua_rawseti(L, -2, sigtab[i].num);
  }
  lua_setfield(L, -2, "signals");
  lua_newtable(L);
  for (int i = 0; errtab[i].name; i++) {
    lua_pushinteger(L, errtab[i].num);
    lua_setfield(L, -2, errtab[i].name);
    /* EAGAIN == EWOULDBLOCK: the first name wins for the reverse map */
    if (lua_rawgeti(L, -1, errtab[i].num) == LUA_TNIL) {
      lua_pushstring(L, errtab[i].name);
      lua_rawseti(L, -3, errtab[i].num);
    }
    lua_pop(L, 1);
  }
  lua_setfield(L, -2, "errno");
  /* rlimits: {nofile = RLIMIT_NOFILE, [RLIMIT_NOFILE] = "nofile", ...}, like signals:
   * the one list of names that spawn's `limits` and getrlimit accept. */
  lua_newtable(L);
  for (int i = 0; rltab[i].name; i++) {
    lua_pushinteger(L, rltab[i].res);
    lua_setfield(L, -2, rltab[i].name);
    lua_pushstring(L, rltab[i].name);
    lua_rawseti(L, -2, rltab[i].res);
  }
  lua_setfield(L, -2, "rlimits");
  lua_pushcfunction(L, l_strerror);
  lua_setfield(L, -2, "strerror");
}
