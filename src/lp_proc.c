/*
 * lp_proc.c -- the process's own attributes: ids, sessions, groups, subreaper,
 * terminal, cwd, umask, clocks, rlimits, users, features.
 */
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include "lprocess.h"

static int push_id(lua_State *L, long id, const char *ctx) {
  if (id < 0) return lp_fail(L, errno, ctx);
  lua_pushinteger(L, id);
  return 1;
}

static int l_getpid(lua_State *L) { return push_id(L, getpid(), "getpid"); }
static int l_getppid(lua_State *L) { return push_id(L, getppid(), "getppid"); }
static int l_getuid(lua_State *L) { return push_id(L, (long)getuid(), "getuid"); }
static int l_geteuid(lua_State *L) { return push_id(L, (long)geteuid(), "geteuid"); }
static int l_getgid(lua_State *L) { return push_id(L, (long)getgid(), "getgid"); }
static int l_setsid(lua_State *L) { return push_id(L, setsid(), "setsid"); }

static int l_getpgid(lua_State *L) {
  return push_id(L, getpgid(lp_optpid(L, 1, 0, 0)), "getpgid");
}

static int l_setpgid(lua_State *L) {
  pid_t pid = lp_optpid(L, 1, 0, 0), pgid = lp_optpid(L, 2, 0, 0);
  return lp_result(L, setpgid(pid, pgid) == 0, "setpgid");
}

static int l_subreaper(lua_State *L) {
  int on = lua_isnone(L, 1) ? 1 : lua_toboolean(L, 1);
  return lp_result(L, prctl(PR_SET_CHILD_SUBREAPER, on, 0, 0, 0) == 0, "subreaper");
}

static int l_getsubreaper(lua_State *L) {
  int on = 0;
  if (prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) < 0) return lp_fail(L, errno, "subreaper");
  lua_pushboolean(L, on);
  return 1;
}

static int l_pdeathsig(lua_State *L) {
  int sig = lua_isnoneornil(L, 1) ? 0 : lp_checksig(L, 1);
  return lp_result(L, prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0, "prctl");
}

static int l_tcsetpgrp(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  return lp_result(L, tcsetpgrp(fd, lp_checkpid(L, 2, 1)) == 0, "tcsetpgrp");
}

static int l_tcgetpgrp(lua_State *L) {
  return push_id(L, tcgetpgrp((int)luaL_checkinteger(L, 1)), "tcgetpgrp");
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int l_chdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (chdir(path) < 0) return lp_failf(L, errno, "chdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_getcwd(lua_State *L) {
  char buf[4096];
  if (!getcwd(buf, sizeof buf)) return lp_fail(L, errno, "getcwd");
  lua_pushstring(L, buf);
  return 1;
}

static int l_umask(lua_State *L) {
  mode_t old;
  if (lua_isnoneornil(L, 1)) {   /* read it without changing it */
    old = umask(022);
    umask(old);
  } else {
    old = umask((mode_t)luaL_checkinteger(L, 1) & 0777);
  }
  lua_pushinteger(L, old);
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, lp_now());
  return 1;
}

static int l_realtime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}

/* sleep(s): the whole duration, whatever signals arrive meanwhile. */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s == s, 1, "NaN is no duration");
  if (s <= 0) return 0;
  if (s > 1e15) s = 1e15;   /* ~31 million years: keeps the time_t conversion defined */
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  double end = (double)until.tv_sec + (double)until.tv_nsec / 1e9 + s;
  until.tv_sec = (time_t)end;
  until.tv_nsec = (long)((end - (double)until.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {}
  return 0;
}

static int check_res(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  int res = lp_rlimit_resource(name);
  if (res < 0) luaL_argerror(L, arg, lua_pushfstring(L, "unknown limit '%s'", name));
  return res;
}

static void push_rlim(lua_State *L, rlim_t v) {
  if (v == RLIM_INFINITY) lua_pushliteral(L, "unlimited");
  else lua_pushinteger(L, (lua_Integer)v);
}

static int l_getrlimit(lua_State *L) {
  struct rlimit rl;
  if (getrlimit(check_res(L, 1), &rl) < 0) return lp_fail(L, errno, "getrlimit");
  push_rlim(L, rl.rlim_cur);
  push_rlim(L, rl.rlim_max);
  return 2;
}

static int l_setrlimit(lua_State *L) {
  int res = check_res(L, 1);
  struct rlimit rl;
  if (getrlimit(res, &rl) < 0) return lp_fail(L, errno, "getrlimit");
  if (!lua_isnoneornil(L, 2)) rl.rlim_cur = lp_torlim(L, 2);
  if (!lua_isnoneornil(L, 3)) rl.rlim_max = lp_torlim(L, 3);
  return lp_result(L, setrlimit(res, &rl) == 0, "setrlimit");
}

/* getpwnam(name or uid) -> {name=, uid=, gid=, dir=, shell=} | nil, msg */
static int l_getpwnam(lua_State *L) {
  struct passwd *pw;
  errno = 0;
  if (lua_isinteger(L, 1)) pw = getpwuid((uid_t)lua_tointeger(L, 1));
  else pw = getpwnam(luaL_checkstring(L, 1));
  if (!pw) {
    lua_pushnil(L);
    lua_pushfstring(L, "unknown user '%s'", luaL_tolstring(L, 1, NULL));
    lua_pushinteger(L, errno ? errno : ENOENT);
    return 3;
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, pw->pw_name); lua_setfield(L, -2, "name");
  lua_pushinteger(L, pw->pw_uid); lua_setfield(L, -2, "uid");
  lua_pushinteger(L, pw->pw_gid); lua_setfield(L, -2, "gid");
  lua_pushstring(L, pw->pw_dir); lua_setfield(L, -2, "dir");
  lua_pushstring(L, pw->pw_shell); lua_setfield(L, -2, "shell");
  return 1;
}

static int l_getgrnam(lua_State *L) {
  struct group *gr;
  errno = 0;
  if (lua_isinteger(L, 1)) gr = getgrgid((gid_t)lua_tointeger(L, 1));
  else gr = getgrnam(luaL_checkstring(L, 1));
  if (!gr) {
    lua_pushnil(L);
    lua_pushfstring(L, "unknown group '%s'", luaL_tolstring(L, 1, NULL));
    lua_pushinteger(L, errno ? errno : ENOENT);
    return 3;
  }
  lua_createtable(L, 0, 2);
  lua_pushstring(L, gr->gr_name); lua_setfield(L, -2, "name");
  lua_pushinteger(L, gr->gr_gid); lua_setfield(L, -2, "gid");
  return 1;
}

/* getgrouplist(user, gid) -> array of gids (the supplementary groups to set) */
static int l_getgrouplist(lua_State *L) {
  const char *user = luaL_checkstring(L, 1);
  gid_t gid = (gid_t)luaL_checkinteger(L, 2);
  int n = 64;
  gid_t *g = NULL;
  for (;;) {
    g = lua_newuserdatauv(L, (size_t)n * sizeof *g, 0);
    int want = n;
    if (getgrouplist(user, gid, g, &want) >= 0) { n = want; break; }
    lua_pop(L, 1);
    if (want <= n) return lp_fail(L, EINVAL, "getgrouplist");
    n = want;
  }
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, g[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

extern char **environ;

/* environ() -> {K = V} of this process's environment */
static int l_environ(lua_State *L) {
  lua_newtable(L);
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

static int kernel_at_least(int major, int minor) {
  struct utsname u;
  int ma = 0, mi = 0;
  if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2) return 0;
  return ma > major || (ma == major && mi >= minor);
}

void lp_open_proc(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"getpid", l_getpid}, {"getppid", l_getppid}, {"getuid", l_getuid},
    {"geteuid", l_geteuid}, {"getgid", l_getgid}, {"setsid", l_setsid},
    {"getpgid", l_getpgid}, {"setpgid", l_setpgid}, {"subreaper", l_subreaper},
    {"getsubreaper", l_getsubreaper}, {"pdeathsig", l_pdeathsig},
    {"tcsetpgrp", l_tcsetpgrp}, {"tcgetpgrp", l_tcgetpgrp}, {"isatty", l_isatty},
    {"chdir", l_chdir}, {"getcwd", l_getcwd}, {"umask", l_umask}, {"now", l_now}, {"realtime", l_realtime},
    {"sleep", l_sleep}, {"getrlimit", l_getrlimit}, {"setrlimit", l_setrlimit},
    {"getpwnam", l_getpwnam}, {"getgrnam", l_getgrnam},
    {"getgrouplist", l_getgrouplist}, {"environ", l_environ}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "signalfd");
  int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  lua_pushboolean(L, pidfd >= 0);
  lua_setfield(L, -2, "pidfd");
  if (pidfd >= 0) close(pidfd);
  lua_pushboolean(L, kernel_at_least(5, 2));
  lua_setfield(L, -2, "clone_pidfd");
  lua_pushboolean(L, kernel_at_least(5, 11));
  lua_setfield(L, -2, "close_range");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "subreaper");
  lua_setfield(L, -2, "features");
}
