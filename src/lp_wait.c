/*
 * lp_wait.c -- waiting for and signalling processes: wait, reap, kill, killpg, pidfds.
 */
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "lprocess.h"

static const char *const wait_keys[] = {"nohang", "untraced", "continued", NULL};

/* wait(pid [, {nohang=, untraced=, continued=}]) -> status | false | nil, msg, errno */
static int l_wait(lua_State *L) {
  pid_t pid = lp_optpid(L, 1, -2147483647, -1);
  int flags = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lp_checkkeys(L, 2, "wait", wait_keys);
    if (lp_optboolfield(L, 2, "nohang", 0)) flags |= WNOHANG;
    if (lp_optboolfield(L, 2, "untraced", 0)) flags |= WUNTRACED;
    if (lp_optboolfield(L, 2, "continued", 0)) flags |= WCONTINUED;
  }
  int st;
  struct rusage ru;
  pid_t got = (pid_t)LP_RETRY(wait4(pid, &st, flags, &ru));
  if (got < 0) return lp_failf(L, errno, "wait %d", (int)pid);
  if (got == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lp_pushstatus(L, lua_upvalueindex(1), got, st, &ru);
  return 1;
}

/* reap([max]) -> array of statuses of every child that has ended, without blocking.
 * SIGCHLD coalesces, so one wake-up must drain them all. */
static int l_reap(lua_State *L) {
  lua_Integer max = luaL_optinteger(L, 1, LUA_MAXINTEGER);
  lua_newtable(L);
  lua_Integer n = 0;
  while (n < max) {
    int st;
    struct rusage ru;
    pid_t got = (pid_t)LP_RETRY(wait4(-1, &st, WNOHANG, &ru));
    if (got <= 0) break;   /* 0: none ready; ECHILD: no children at all */
    lp_pushstatus(L, lua_upvalueindex(1), got, st, &ru);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* kill(pid, sig): pid 0, -1 or -pgid as kill(2) takes them, when given as such. */
static int l_kill(lua_State *L) {
  pid_t pid = lp_checkpid(L, 1, -2147483647);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lp_checksig(L, 2);
  if (kill(pid, sig) < 0) return lp_failf(L, errno, "kill %d", (int)pid);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_killpg(lua_State *L) {
  if (luaL_checkinteger(L, 1) <= 1) return luaL_argerror(L, 1, "process group must be > 1");
  pid_t pgid = lp_checkpid(L, 1, 2);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lp_checksig(L, 2);
  if (killpg(pgid, sig) < 0) return lp_failf(L, errno, "killpg %d", (int)pgid);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_pidfd_open(lua_State *L) {
  pid_t pid = lp_checkpid(L, 1, 1);
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);   /* always close-on-exec */
  if (fd < 0) return lp_failf(L, errno, "pidfd_open %d", (int)pid);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_pidfd_send_signal(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lp_checksig(L, 2);
  if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0)
    return lp_fail(L, errno, "pidfd_send_signal");
  lua_pushboolean(L, 1);
  return 1;
}

void lp_open_wait(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"kill", l_kill}, {"killpg", l_killpg},
    {"pidfd_open", l_pidfd_open}, {"pidfd_send_signal", l_pidfd_send_signal},
    {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
  /* wait and reap build status tables: the interned keys are their upvalue */
  static const luaL_Reg status_fns[] = { {"wait", l_wait}, {"reap", l_reap}, {NULL, NULL} };
  lp_pushstatuskeys(L);
  luaL_setfuncs(L, status_fns, 1);
}
