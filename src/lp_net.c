/*
 * lp_net.c -- the few sockets a process runner needs: nonblocking TCP connects for
 * readiness probes, Unix sockets for notify=systemd and the daemon's status socket,
 * the peer credentials of a Unix socket, and a TCP listener for a local status page.
 */
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "lprocess.h"

/* A connect started on a new nonblocking socket: the fd (connected or in progress),
 * or -1 with errno. */
static int start_connect(const struct addrinfo *a) {
  int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS && errno != EINTR) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Has the connect in progress on fd failed within ms? (A refused connect to a local
 * address is known at once.) On failure the fd is closed and errno set. */
static int failed_within(int fd, int ms) {
  struct pollfd p = { fd, POLLOUT, 0 };
  if (LP_RETRY(poll(&p, 1, ms)) <= 0) return 0;   /* still in progress: keep it */
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (!err) return 0;
  close(fd);
  errno = err;
  return 1;
}

#define TRY_NEXT_MS 50

/* tcp_connect(host, port) -> fd with the connect in progress (poll it for "w", then
 * sockerror), or nil, msg, errno when it failed at once. Every address of host is
 * tried in order ("localhost" may give ::1 before 127.0.0.1): one that fails at
 * once, or within TRY_NEXT_MS, passes to the next; the last one is returned in
 * progress. */
static int l_tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
  char serv[16];
  snprintf(serv, sizeof serv, "%d", (int)port);
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int gai = getaddrinfo(host, serv, &hints, &ai);
  if (gai != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "connect %s:%d: %s", host, (int)port, gai_strerror(gai));
    lua_pushinteger(L, EINVAL);
    return 3;
  }
  int fd = -1, e = ECONNREFUSED;
  for (const struct addrinfo *a = ai; a; a = a->ai_next) {
    fd = start_connect(a);
    if (fd >= 0 && (!a->ai_next || !failed_within(fd, TRY_NEXT_MS))) break;
    e = errno;   /* read before freeaddrinfo, which may change it */
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) return lp_failf(L, e, "connect %s:%d", host, (int)port);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_sockerror(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1), err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return lp_fail(L, errno, "getsockopt");
  lua_pushinteger(L, err);
  return 1;
}

static int unix_addr(lua_State *L, int arg, struct sockaddr_un *sa) {
  size_t len;
  const char *path = luaL_checklstring(L, arg, &len);
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (len >= sizeof sa->sun_path) luaL_argerror(L, arg, "socket path too long");
  memcpy(sa->sun_path, path, len);
  /* a leading '@' names an abstract socket, as systemd's NOTIFY_SOCKET does */
  if (path[0] == '@') sa->sun_path[0] = '\0';
  return (int)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
}

static int socktype(lua_State *L, int arg) {
  static const char *const types[] = {"stream", "dgram", NULL};
  return luaL_checkoption(L, arg, "stream", types) == 0 ? SOCK_STREAM : SOCK_DGRAM;
}

/* unix_listen(path [, "stream"|"dgram"]) -> fd (nonblocking) */
static int l_unix_listen(lua_State *L) {
  struct sockaddr_un sa;
  int alen = unix_addr(L, 1, &sa), type = socktype(L, 2);
  int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return lp_fail(L, errno, "socket");
  if (bind(fd, (struct sockaddr *)&sa, (socklen_t)alen) < 0
      || (type == SOCK_STREAM && listen(fd, 64) < 0)) {
    int e = errno;
    close(fd);
    return lp_failf(L, e, "bind %s", lua_tostring(L, 1));
  }
  lua_pushinteger(L, fd);
  return 1;
}

/* unix_connect(path [, type]) -> fd (blocking connect, then nonblocking) */
static int l_unix_connect(lua_State *L) {
  struct sockaddr_un sa;
  int alen = unix_addr(L, 1, &sa), type = socktype(L, 2);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return lp_fail(L, errno, "socket");
  if (LP_RETRY(connect(fd, (struct sockaddr *)&sa, (socklen_t)alen)) < 0) {
    int e = errno;
    close(fd);
    return lp_failf(L, e, "connect %s", lua_tostring(L, 1));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_accept(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int c = (int)LP_RETRY(accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (c < 0) {
    if (errno == EAGAIN || errno == ECONNABORTED) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_fail(L, errno, "accept");
  }
  lua_pushinteger(L, c);
  return 1;
}

static int l_recv(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, n > 0, 2, "size must be positive");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)n);
  ssize_t got = LP_RETRY(recv(fd, p, (size_t)n, MSG_DONTWAIT));
  if (got < 0) {
    if (errno == EAGAIN) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_fail(L, errno, "recv");
  }
  luaL_pushresultsize(&b, (size_t)got);
  return 1;
}

static int l_send(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  ssize_t n = LP_RETRY(send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT));
  if (n < 0) {
    if (errno == EAGAIN) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_fail(L, errno, "send");
  }
  lua_pushinteger(L, n);
  return 1;
}

/* peercred(fd) -> pid, uid, gid of the process at the other end of a connected Unix
 * socket (as it was when it connected: SO_PEERCRED). */
static int l_peercred(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
    return lp_fail(L, errno, "getsockopt SO_PEERCRED");
  lua_pushinteger(L, cr.pid);
  lua_pushinteger(L, cr.uid);
  lua_pushinteger(L, cr.gid);
  return 3;
}

/* tcp_listen(host, port) -> fd (nonblocking, SO_REUSEADDR, backlog 64). host is a
 * numeric address or a name; the first address it resolves to is bound. Port 0
 * picks a free port (sockname tells which). */
static int l_tcp_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port < 65536, 2, "port out of range");
  char serv[16];
  snprintf(serv, sizeof serv, "%d", (int)port);
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  int gai = getaddrinfo(host, serv, &hints, &ai);
  if (gai != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "listen %s:%d: %s", host, (int)port, gai_strerror(gai));
    lua_pushinteger(L, EINVAL);
    return 3;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
      || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return lp_failf(L, e, "listen %s:%d", host, (int)port);
  }
  freeaddrinfo(ai);
  lua_pushinteger(L, fd);
  return 1;
}

/* sockname(fd) -> address, port of a bound TCP socket ("127.0.0.1", 8080). */
static int l_sockname(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return lp_fail(L, errno, "getsockname");
  char buf[INET6_ADDRSTRLEN];
  int port;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  } else {
    return lp_fail(L, EAFNOSUPPORT, "getsockname");
  }
  lua_pushstring(L, buf);
  lua_pushinteger(L, port);
  return 2;
}

void lp_open_net(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"tcp_connect", l_tcp_connect}, {"sockerror", l_sockerror},
    {"unix_listen", l_unix_listen}, {"unix_connect", l_unix_connect},
    {"accept", l_accept}, {"recv", l_recv}, {"send", l_send},
    {"peercred", l_peercred}, {"tcp_listen", l_tcp_listen}, {"sockname", l_sockname},
    {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
