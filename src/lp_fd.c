/*
 * lp_fd.c -- descriptors: pipe, dup, dup2, close, open, read, write, flags, fdopen,
 * flock, poll and an epoll poller for the event loop.
 *
 * Caveats
 * - Every descriptor made here is close-on-exec, except what dup2 makes: dup2 is how
 *   a descriptor is handed to a child, so its result is left inheritable.
 * - closefrom and spawn's close_fds use close_range; without it (kernels before 5.11,
 *   seccomp profiles of older container runtimes) lp_fds_from lists /proc/self/fd,
 *   and only without /proc tries every number below the hard nofile limit.
 * - read/write return false (not an error) on EAGAIN, so nonblocking loops read well.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "lprocess.h"

#define EPOLLER "lprocess.epoll"

static int checkfd(lua_State *L, int arg) {
  lua_Integer fd = luaL_checkinteger(L, arg);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, arg, "bad descriptor");
  return (int)fd;
}

struct dirent64_raw { unsigned long long ino; long long off; unsigned short reclen;
                     unsigned char type; char name[]; };

LP_CHILD_SIDE static void fd_act(int fd, int close_them) {
  if (close_them) close(fd);
  else fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* The descriptors listed in /proc/self/fd (raw getdents64 into a stack buffer: no
 * malloc, no opendir). 0 when the whole list was read. */
LP_CHILD_SIDE static int fds_from_proc(int from, int close_them) {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  _Alignas(8) char buf[2048];
  long n;
  while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      const struct dirent64_raw *d = (const void *)(buf + off);
      off += d->reclen;
      long fd = 0;
      const char *c = d->name;
      if (!*c) continue;
      for (; *c >= '0' && *c <= '9' && fd <= INT_MAX; c++) fd = fd * 10 + (*c - '0');
      if (*c || fd < from || fd > INT_MAX || fd == dir) continue;   /* ".", ".." */
      fd_act((int)fd, close_them);
    }
  }
  close(dir);
  return n == 0 ? 0 : -1;
}

LP_CHILD_SIDE void lp_fds_from(int from, int close_them) {
  if (fds_from_proc(from, close_them) == 0) return;
  /* No /proc: every number below the hard limit (the soft one may have been lowered
   * under descriptors that stay open). */
  struct rlimit rl;
  long top = 1L << 20;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
    top = rl.rlim_max > INT_MAX ? INT_MAX : (long)rl.rlim_max;
  for (long fd = from; fd < top; fd++) fd_act((int)fd, close_them);
}

/* closefrom(n): close every descriptor >= n (a forked helper sheds what it inherited). */
static int l_closefrom(lua_State *L) {
  int from = checkfd(L, 1);
  if (syscall(SYS_close_range, (unsigned)from, ~0U, 0U) < 0) lp_fds_from(from, 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* A timeout in seconds: nil or negative waits forever; NaN is refused. */
static double check_timeout(lua_State *L, int arg) {
  double t = luaL_optnumber(L, arg, -1);
  luaL_argcheck(L, t == t, arg, "NaN is no timeout");
  return t;
}

static const char *const pipe_keys[] = {"nonblock", NULL};

/* pipe([{nonblock = true | "r" | "w"}]): true makes both ends nonblocking, "r" or
 * "w" only that end (the other is meant for a child, which expects blocking I/O). */
static int l_pipe(lua_State *L) {
  int flags = O_CLOEXEC, p[2], one = -1;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lp_checkkeys(L, 1, "pipe", pipe_keys);
    lua_getfield(L, 1, "nonblock");
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *end = lua_tostring(L, -1);
      if (strcmp(end, "r") == 0) one = 0;
      else if (strcmp(end, "w") == 0) one = 1;
      else return luaL_error(L, "pipe: nonblock must be true, \"r\" or \"w\"");
    } else if (lua_toboolean(L, -1)) {
      flags |= O_NONBLOCK;
    }
    lua_pop(L, 1);
  }
  if (pipe2(p, flags) < 0) return lp_fail(L, errno, "pipe");
  /* a new pipe end has no other status flags: one F_SETFL, no F_GETFL */
  if (one >= 0 && fcntl(p[one], F_SETFL, O_NONBLOCK) < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return lp_fail(L, e, "pipe");
  }
  lua_pushinteger(L, p[0]);
  lua_pushinteger(L, p[1]);
  return 2;
}

static int l_dup(lua_State *L) {
  int fd = checkfd(L, 1);
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, (int)luaL_optinteger(L, 2, 0));
  if (nfd < 0) return lp_failf(L, errno, "dup %d", fd);
  lua_pushinteger(L, nfd);
  return 1;
}

static int l_dup2(lua_State *L) {
  int fd = checkfd(L, 1), to = checkfd(L, 2);
  if (LP_RETRY(dup2(fd, to)) < 0) return lp_failf(L, errno, "dup2 %d %d", fd, to);
  lua_pushinteger(L, to);
  return 1;
}

static int l_close(lua_State *L) {
  int fd = checkfd(L, 1);
  /* Linux frees the descriptor even when close reports EINTR: never retry. */
  if (close(fd) < 0 && errno != EINTR) return lp_failf(L, errno, "close %d", fd);
  lua_pushboolean(L, 1);
  return 1;
}

/* open(path, flags, mode): flags is a string of r w a c t x n f d (see doc). */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *fl = luaL_optstring(L, 2, "r");
  mode_t mode = (mode_t)luaL_optinteger(L, 3, 0666);
  int rd = 0, wr = 0, flags = O_CLOEXEC;
  for (const char *c = fl; *c; c++) {
    switch (*c) {
    case 'r': rd = 1; break;
    case 'w': wr = 1; break;
    case 'a': wr = 1; flags |= O_APPEND; break;
    case 'c': flags |= O_CREAT; break;
    case 't': flags |= O_TRUNC; break;
    case 'x': flags |= O_EXCL; break;
    case 'n': flags |= O_NONBLOCK; break;
    case 'f': flags |= O_NOFOLLOW; break;
    case 'd': flags |= O_DIRECTORY; break;
    default: return luaL_argerror(L, 2, lua_pushfstring(L, "unknown open flag '%c'", *c));
    }
  }
  flags |= (rd && wr) ? O_RDWR : wr ? O_WRONLY : O_RDONLY;
  int fd = (int)LP_RETRY(open(path, flags, mode));
  if (fd < 0) return lp_failf(L, errno, "open %s", path);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_read(lua_State *L) {
  int fd = checkfd(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, n > 0, 2, "size must be positive");
  /* Up to 64 KiB go through the stack: an EOF or EAGAIN then costs no allocation
   * and a short read copies only what came (the per-chunk path of a program relaying a child's output). */
  char stackbuf[65536];
  luaL_Buffer b;
  char *p = (size_t)n <= sizeof stackbuf ? stackbuf : luaL_buffinitsize(L, &b, (size_t)n);
  ssize_t got = LP_RETRY(read(fd, p, (size_t)n));
  if (got < 0) {
    if (errno == EAGAIN) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_failf(L, errno, "read %d", fd);
  }
  if (p == stackbuf) lua_pushlstring(L, stackbuf, (size_t)got);
  else luaL_pushresultsize(&b, (size_t)got);
  return 1;
}

static int l_write(lua_State *L) {
  int fd = checkfd(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "offset out of range");
  ssize_t n = LP_RETRY(write(fd, s + i - 1, len - (size_t)(i - 1)));
  if (n < 0) {
    if (errno == EAGAIN) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_failf(L, errno, "write %d", fd);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int setflag(lua_State *L, int get, int set, int flag, const char *what) {
  int fd = checkfd(L, 1);
  int on = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
  int old = fcntl(fd, get);
  if (old < 0 || fcntl(fd, set, on ? (old | flag) : (old & ~flag)) < 0)
    return lp_failf(L, errno, "%s %d", what, fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_setnonblock(lua_State *L) {
  return setflag(L, F_GETFL, F_SETFL, O_NONBLOCK, "setnonblock");
}

static int l_setcloexec(lua_State *L) {
  return setflag(L, F_GETFD, F_SETFD, FD_CLOEXEC, "setcloexec");
}

/* Same as liolib's: fdopen'ed handles close like io.open's. */
static int io_fclose(lua_State *L) {
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int res = fclose(p->f);
  return luaL_fileresult(L, (res == 0), NULL);
}

static int l_fdopen(lua_State *L) {
  int fd = checkfd(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  luaL_Stream *p = (luaL_Stream *)lua_newuserdatauv(L, sizeof(luaL_Stream), 0);
  p->closef = NULL;  /* mark as closed until it is opened */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  p->f = fdopen(fd, mode);
  if (!p->f) return lp_failf(L, errno, "fdopen %d", fd);
  p->closef = io_fclose;
  return 1;
}

static int l_fileno(lua_State *L) {
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  if (p->closef == NULL) return luaL_error(L, "attempt to use a closed file");
  lua_pushinteger(L, fileno(p->f));
  return 1;
}

/* flock(fd, "ex"|"sh"|"un" [, nonblock]) -> true | false (would block) | nil, msg */
static int l_flock(lua_State *L) {
  static const char *const ops[] = {"ex", "sh", "un", NULL};
  static const int opv[] = {LOCK_EX, LOCK_SH, LOCK_UN};
  int fd = checkfd(L, 1);
  int op = opv[luaL_checkoption(L, 2, "ex", ops)];
  if (lua_toboolean(L, 3)) op |= LOCK_NB;
  if (LP_RETRY(flock(fd, op)) < 0) {
    if (errno == EWOULDBLOCK) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_failf(L, errno, "flock %d", fd);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int ev_from(lua_State *L, int idx) {
  const char *s = luaL_checkstring(L, idx);
  int ev = 0;
  for (; *s; s++) {
    if (*s == 'r') ev |= EPOLLIN;
    else if (*s == 'w') ev |= EPOLLOUT;
    else luaL_error(L, "events must be \"r\", \"w\" or \"rw\"");
  }
  return ev;
}

static void push_ev(lua_State *L, unsigned ev) {
  char buf[4];
  int n = 0;
  if (ev & (EPOLLIN | EPOLLPRI)) buf[n++] = 'r';
  if (ev & EPOLLOUT) buf[n++] = 'w';
  if (ev & EPOLLHUP) buf[n++] = 'h';
  if (ev & EPOLLERR) buf[n++] = 'e';
  lua_pushlstring(L, buf, (size_t)n);
}

/* poll({[fd]="r"|"w"|"rw"}, timeout_s) -> {[fd]=events} (empty on timeout) */
static int l_poll(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double timeout = check_timeout(L, 2);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) { n++; lua_pop(L, 1); }
  struct pollfd *pfd = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *pfd, 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (!lua_isinteger(L, -2)) luaL_error(L, "poll: keys must be descriptors");
    pfd[i].fd = (int)lua_tointeger(L, -2);
    int ev = ev_from(L, -1);   /* EPOLLIN/OUT equal POLLIN/OUT on Linux */
    pfd[i].events = (short)(((ev & EPOLLIN) ? POLLIN : 0) | ((ev & EPOLLOUT) ? POLLOUT : 0));
    pfd[i].revents = 0;
    i++;
    lua_pop(L, 1);
  }
  double deadline = timeout < 0 ? -1 : lp_now() + timeout;
  int r;
  do {
    r = poll(pfd, (nfds_t)n, lp_ms_until(deadline));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return lp_fail(L, errno, "poll");
  lua_createtable(L, 0, r);
  for (i = 0; i < n; i++) {
    if (!pfd[i].revents) continue;
    unsigned ev = 0;
    if (pfd[i].revents & POLLIN) ev |= EPOLLIN;
    if (pfd[i].revents & POLLOUT) ev |= EPOLLOUT;
    if (pfd[i].revents & POLLHUP) ev |= EPOLLHUP;
    if (pfd[i].revents & (POLLERR | POLLNVAL)) ev |= EPOLLERR;
    push_ev(L, ev);
    lua_rawseti(L, -2, pfd[i].fd);
  }
  return 1;
}

/* ---- epoll poller ---- */

typedef struct { int fd; } epoller;

static epoller *check_ep(lua_State *L) {
  epoller *e = luaL_checkudata(L, 1, EPOLLER);
  if (e->fd < 0) luaL_error(L, "poller is closed");
  return e;
}

static int l_epoll(lua_State *L) {
  epoller *e = lua_newuserdatauv(L, sizeof *e, 0);
  e->fd = -1;
  luaL_setmetatable(L, EPOLLER);
  e->fd = epoll_create1(EPOLL_CLOEXEC);
  if (e->fd < 0) return lp_fail(L, errno, "epoll_create");
  return 1;
}

static int ep_ctl(lua_State *L, int op, const char *what) {
  epoller *e = check_ep(L);
  int fd = checkfd(L, 2);
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.data.fd = fd;
  if (op != EPOLL_CTL_DEL) ev.events = (uint32_t)ev_from(L, 3);
  if (epoll_ctl(e->fd, op, fd, &ev) < 0) return lp_failf(L, errno, "epoll %s %d", what, fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int ep_add(lua_State *L) { return ep_ctl(L, EPOLL_CTL_ADD, "add"); }
static int ep_mod(lua_State *L) { return ep_ctl(L, EPOLL_CTL_MOD, "mod"); }
static int ep_del(lua_State *L) { return ep_ctl(L, EPOLL_CTL_DEL, "del"); }

/* :wait(timeout_s) -> {fd1, ev1, fd2, ev2, ...} */
static int ep_wait(lua_State *L) {
  epoller *e = check_ep(L);
  double timeout = check_timeout(L, 2);
  double deadline = timeout < 0 ? -1 : lp_now() + timeout;
  struct epoll_event evs[128];
  int n;
  do {
    n = epoll_wait(e->fd, evs, 128, lp_ms_until(deadline));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return lp_fail(L, errno, "epoll_wait");
  lua_createtable(L, 2 * n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, evs[i].data.fd);
    lua_rawseti(L, -2, 2 * i + 1);
    push_ev(L, evs[i].events);
    lua_rawseti(L, -2, 2 * i + 2);
  }
  return 1;
}

static int ep_fd(lua_State *L) {
  lua_pushinteger(L, check_ep(L)->fd);
  return 1;
}

static int ep_close(lua_State *L) {
  epoller *e = luaL_checkudata(L, 1, EPOLLER);
  if (e->fd >= 0) close(e->fd);
  e->fd = -1;
  return 0;
}

void lp_open_fd(lua_State *L) {
  static const luaL_Reg meth[] = {
    {"add", ep_add}, {"mod", ep_mod}, {"del", ep_del}, {"wait", ep_wait},
    {"fd", ep_fd}, {"close", ep_close}, {NULL, NULL}
  };
  luaL_newmetatable(L, EPOLLER);
  lua_pushcfunction(L, ep_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, ep_close);
  lua_setfield(L, -2, "__close");
  luaL_newlib(L, meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"pipe", l_pipe}, {"closefrom", l_closefrom}, {"dup", l_dup}, {"dup2", l_dup2}, {"close", l_close},
    {"open", l_open}, {"read", l_read}, {"write", l_write},
    {"setnonblock", l_setnonblock}, {"setcloexec", l_setcloexec},
    {"fdopen", l_fdopen}, {"fileno", l_fileno}, {"flock", l_flock},
    {"poll", l_poll}, {"epoll", l_epoll}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
