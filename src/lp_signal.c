/*
 * lp_signal.c -- signals as a readable descriptor: sigwatch, sigmask, sigaction.
 *
 * Caveats
 * - sigwatch blocks its signals for the whole process and reads them from a
 *   signalfd. Children are unaffected: spawn clears the mask in the child.
 *   Closing the last watcher of a signal unblocks it again.
 * - sigstate() reads the mask and the ignored set a spawned program should inherit
 *   when the caller wants to hand on its own (spawn's sigmask and sigignore).
 * - The self-pipe variant (selfpipe=true, or no signalfd) installs a handler that
 *   only write()s the signal number to a nonblocking pipe; no Lua ever runs in a
 *   signal handler. Bytes for a signal that arrives while the pipe is full are
 *   dropped, which loses nothing: standard signals coalesce anyway.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "lprocess.h"

#define SIGWATCH "lprocess.sigwatch"

typedef struct {
  int fd;          /* readable end: the signalfd, or the pipe's read end */
  int wfd;         /* self-pipe write end, -1 with signalfd */
  sigset_t set;
  struct sigaction old[NSIG];   /* self-pipe: dispositions to restore */
} sigwatch;

static int blockers[NSIG];                 /* signalfd watchers per signal */
static volatile sig_atomic_t pipe_of[NSIG]; /* self-pipe write end per signal, or -1 */
static int pipe_init;

static void on_signal(int sig) {
  int saved = errno;
  int fd = (sig > 0 && sig < NSIG) ? pipe_of[sig] : -1;
  if (fd >= 0) {
    unsigned char c = (unsigned char)sig;
    ssize_t n = write(fd, &c, 1);
    (void)n;
  }
  errno = saved;
}

static sigwatch *check_watch(lua_State *L) {
  sigwatch *w = luaL_checkudata(L, 1, SIGWATCH);
  if (w->fd < 0) luaL_error(L, "sigwatch is closed");
  return w;
}

static int open_signalfd(lua_State *L, sigwatch *w) {
  sigset_t old;
  sigprocmask(SIG_BLOCK, &w->set, &old);
  w->fd = signalfd(-1, &w->set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (w->fd < 0) {
    int e = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return lp_fail(L, e, "signalfd");
  }
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(&w->set, sig) == 1) blockers[sig]++;
  return 0;
}

static int open_selfpipe(lua_State *L, sigwatch *w) {
  int p[2];
  if (!pipe_init) {
    for (int i = 0; i < NSIG; i++) pipe_of[i] = -1;
    pipe_init = 1;
  }
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember(&w->set, sig) == 1 && pipe_of[sig] >= 0)
      return luaL_error(L, "sigwatch: signal %d is already watched by a self-pipe", sig);
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return lp_fail(L, errno, "pipe");
  w->fd = p[0];
  w->wfd = p[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigfillset(&sa.sa_mask);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sigismember(&w->set, sig) != 1) continue;
    pipe_of[sig] = p[1];
    sigaction(sig, &sa, &w->old[sig]);
  }
  /* The handler must be able to run: unblock what we now catch. */
  sigprocmask(SIG_UNBLOCK, &w->set, NULL);
  return 0;
}

static void close_watch(sigwatch *w) {
  if (w->fd < 0) return;
  if (w->wfd >= 0) {
    for (int sig = 1; sig < NSIG; sig++)
      if (sigismember(&w->set, sig) == 1) {
        sigaction(sig, &w->old[sig], NULL);
        pipe_of[sig] = -1;
      }
    close(w->wfd);
    w->wfd = -1;
  } else {
    sigset_t unblock;
    sigemptyset(&unblock);
    for (int sig = 1; sig < NSIG; sig++)
      if (sigismember(&w->set, sig) == 1 && --blockers[sig] == 0) sigaddset(&unblock, sig);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
  }
  close(w->fd);
  w->fd = -1;
}

static const char *const watch_keys[] = {"selfpipe", NULL};

/* sigwatch(sigs [, {selfpipe=bool}]) -> watcher */
static int l_sigwatch(lua_State *L) {
  sigset_t set;
  lp_checksigset(L, 1, &set);
  int selfpipe = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lp_checkkeys(L, 2, "sigwatch", watch_keys);
    selfpipe = lp_optboolfield(L, 2, "selfpipe", 0);
  }
  if (sigismember(&set, SIGKILL) == 1 || sigismember(&set, SIGSTOP) == 1)
    return luaL_argerror(L, 1, "KILL and STOP cannot be watched");
  sigwatch *w = lua_newuserdatauv(L, sizeof *w, 0);
  w->fd = w->wfd = -1;
  w->set = set;
  luaL_setmetatable(L, SIGWATCH);
  int r = selfpipe ? open_selfpipe(L, w) : open_signalfd(L, w);
  if (r == 3 && !selfpipe && (lua_tointeger(L, -1) == ENOSYS || lua_tointeger(L, -1) == EINVAL)) {
    lua_pop(L, 3);          /* no signalfd here: fall back to the self-pipe */
    r = open_selfpipe(L, w);
  }
  if (r) return r;
  return 1;
}

/* :read() -> array of the signal numbers that arrived since the last read */
static int w_read(lua_State *L) {
  sigwatch *w = check_watch(L);
  lua_newtable(L);
  int n = 0;
  for (;;) {
    if (w->wfd < 0) {
      struct signalfd_siginfo si[16];
      ssize_t got = LP_RETRY(read(w->fd, si, sizeof si));
      if (got <= 0) break;
      for (size_t i = 0; i < (size_t)got / sizeof si[0]; i++) {
        lua_pushinteger(L, si[i].ssi_signo);
        lua_rawseti(L, -2, ++n);
      }
      if ((size_t)got < sizeof si) break;   /* drained: no read just for EAGAIN */
    } else {
      unsigned char buf[64];
      ssize_t got = LP_RETRY(read(w->fd, buf, sizeof buf));
      if (got <= 0) break;
      for (ssize_t i = 0; i < got; i++) {
        lua_pushinteger(L, buf[i]);
        lua_rawseti(L, -2, ++n);
      }
      if ((size_t)got < sizeof buf) break;
    }
  }
  return 1;
}

static int w_fd(lua_State *L) {
  lua_pushinteger(L, check_watch(L)->fd);
  return 1;
}

static int w_close(lua_State *L) {
  close_watch(luaL_checkudata(L, 1, SIGWATCH));
  return 0;
}

static int w_tostring(lua_State *L) {
  sigwatch *w = luaL_checkudata(L, 1, SIGWATCH);
  lua_pushfstring(L, "sigwatch (fd %d%s)", w->fd, w->wfd >= 0 ? ", self-pipe" : "");
  return 1;
}

/* sigmask(how, sigs) -> previous mask as an array */
static int l_sigmask(lua_State *L) {
  static const char *const hows[] = {"block", "unblock", "set", NULL};
  static const int howv[] = {SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK};
  int how = howv[luaL_checkoption(L, 1, NULL, hows)];
  sigset_t set, old;
  if (lua_isnoneornil(L, 2)) sigemptyset(&set);
  else lp_checksigset(L, 2, &set);
  if (sigprocmask(how, &set, &old) < 0) return lp_fail(L, errno, "sigprocmask");
  lp_pushsigset(L, &old);
  return 1;
}

/* sigaction(sig, "default"|"ignore") -> previous disposition */
static int l_sigaction(lua_State *L) {
  static const char *const acts[] = {"default", "ignore", NULL};
  int sig = lp_checksig(L, 1);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  struct sigaction *nsa = NULL;
  if (!lua_isnoneornil(L, 2)) {
    sa.sa_handler = luaL_checkoption(L, 2, NULL, acts) == 0 ? SIG_DFL : SIG_IGN;
    nsa = &sa;
  }
  if (sigaction(sig, nsa, &old) < 0) return lp_failf(L, errno, "sigaction %d", sig);
  lua_pushstring(L, old.sa_handler == SIG_DFL ? "default"
                    : old.sa_handler == SIG_IGN ? "ignore" : "handler");
  return 1;
}

/* sigstate() -> mask, ignored: the calling thread's blocked signals and the signals
 * whose disposition is SIG_IGN now, as arrays (what spawn's sigmask and sigignore take). */
static int l_sigstate(lua_State *L) {
  sigset_t mask, ign;
  if (sigprocmask(SIG_BLOCK, NULL, &mask) < 0) return lp_fail(L, errno, "sigprocmask");
  sigemptyset(&ign);
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN) sigaddset(&ign, sig);
  }
  lp_pushsigset(L, &mask);
  lp_pushsigset(L, &ign);
  return 2;
}

/* raise(sig): signal this process (used to die "by" a signal after cleanup). */
static int l_raise(lua_State *L) {
  int sig = lp_checksig(L, 1);
  if (raise(sig) != 0) return lp_fail(L, errno, "raise");
  lua_pushboolean(L, 1);
  return 1;
}

void lp_open_signal(lua_State *L) {
  static const luaL_Reg meth[] = {
    {"read", w_read}, {"fd", w_fd}, {"close", w_close}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", w_close}, {"__close", w_close}, {"__tostring", w_tostring}, {NULL, NULL}
  };
  luaL_newmetatable(L, SIGWATCH);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"sigwatch", l_sigwatch}, {"sigmask", l_sigmask}, {"sigaction", l_sigaction},
    {"sigstate", l_sigstate}, {"raise", l_raise}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
