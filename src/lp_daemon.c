/*
 * lp_daemon.c -- what daemon setup and pidfiles need beyond lp_fd.c: rename without
 * replacing, hard links and unlink (a pidfile appears whole, never half-written), file identity (stat: dev/ino
 * tell "the file I locked" from "the file now at that path"), byte-range locks on
 * the open file description (a second lock, independent of flock), readlink,
 * directory listing and creation, and the close-on-exec flag of a descriptor.
 *
 * Caveats
 * - ofdlock uses F_OFD_SETLK(W) (Linux 3.15+). Where that is missing it falls back to
 *   classic POSIX record locks, which belong to the process, not the descriptor:
 *   closing any descriptor of the file then drops the lock.
 * - flock and fcntl locks do not interact on Linux: holding one never blocks the other.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "lprocess.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

static int checkfd(lua_State *L, int arg) {
  lua_Integer fd = luaL_checkinteger(L, arg);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, arg, "bad descriptor");
  return (int)fd;
}

/* link(old, new) -> true | nil, msg, errno (EEXIST when new exists, symlink or not) */
static int l_link(lua_State *L) {
  const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
  if (LP_RETRY(link(from, to)) < 0) return lp_failf(L, errno, "link %s %s", from, to);
  lua_pushboolean(L, 1);
  return 1;
}

/* rename(old, new [, noreplace]) -> true | nil, msg, errno. With noreplace (renameat2
 * RENAME_NOREPLACE) an existing new, symlink or not, is EEXIST; where the filesystem
 * or kernel lacks it, link + unlink does the same (EINVAL/ENOSYS never surface). */
static int l_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
  int noreplace = lua_toboolean(L, 3);
  long r;
  if (noreplace) {
    r = LP_RETRY(syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE));
    if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
      r = LP_RETRY(link(from, to));
      if (r == 0) unlink(from);
    }
  } else {
    r = LP_RETRY(rename(from, to));
  }
  if (r < 0) return lp_failf(L, errno, "rename %s %s", from, to);
  lua_pushboolean(L, 1);
  return 1;
}

/* unlink(path) -> true | nil, msg, errno (never removes a directory, unlike os.remove) */
static int l_unlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (LP_RETRY(unlink(path)) < 0) return lp_failf(L, errno, "unlink %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "link";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  return "unknown";
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* {dev=, ino=, type="file"|"directory"|"link"|"socket"|"fifo"|"char"|"block",
 *  mode= (permission bits), nlink=, uid=, gid=, size=, mtime= (float seconds)} */
static int push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 9);
  setint(L, "dev", (lua_Integer)st->st_dev);
  setint(L, "ino", (lua_Integer)st->st_ino);
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  setint(L, "mode", (lua_Integer)(st->st_mode & 07777));
  setint(L, "nlink", (lua_Integer)st->st_nlink);
  setint(L, "uid", (lua_Integer)st->st_uid);
  setint(L, "gid", (lua_Integer)st->st_gid);
  setint(L, "size", (lua_Integer)st->st_size);
  lua_pushnumber(L, (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  return 1;
}

static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0) return lp_failf(L, errno, "stat %s", path);
  return push_stat(L, &st);
}

static int l_lstat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) < 0) return lp_failf(L, errno, "lstat %s", path);
  return push_stat(L, &st);
}

static int l_fstat(lua_State *L) {
  int fd = checkfd(L, 1);
  struct stat st;
  if (fstat(fd, &st) < 0) return lp_failf(L, errno, "fstat %d", fd);
  return push_stat(L, &st);
}

/* readlink(path) -> target */
static int l_readlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n < 0) return lp_failf(L, errno, "readlink %s", path);
  if ((size_t)n == sizeof buf) return lp_failf(L, ENAMETOOLONG, "readlink %s", path);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* listdir(path) -> array of entry names, without "." and ".." (unsorted) */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = (int)LP_RETRY(open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) return lp_failf(L, errno, "opendir %s", path);
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    return lp_failf(L, e, "opendir %s", path);
  }
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *de;
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (!de) break;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  int e = errno;
  closedir(d);
  if (e) return lp_failf(L, e, "readdir %s", path);
  return 1;
}

/* mkdir(path [, mode]) -> true | nil, msg, errno (EEXIST when path exists, whatever it
 * is). mode: permission bits, 0777 by default, masked by the umask as mkdir(2) does. */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer mode = luaL_optinteger(L, 2, 0777);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode out of range");
  if (LP_RETRY(mkdir(path, (mode_t)mode)) < 0) return lp_failf(L, errno, "mkdir %s", path);
  lua_pushboolean(L, 1);
  return 1;
}

/* getcloexec(fd) -> bool | nil, msg, errno (EBADF when fd is not open) */
static int l_getcloexec(lua_State *L) {
  int fd = checkfd(L, 1);
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0) return lp_failf(L, errno, "fcntl %d", fd);
  lua_pushboolean(L, (fl & FD_CLOEXEC) != 0);
  return 1;
}

/* ofdlock(fd, "w"|"r"|"u" [, wait]) -> true | false (another holds it; only without
 * wait) | nil, msg, errno. A whole-file record lock owned by the open file
 * description: inherited across fork, released when its last descriptor closes. */
static int l_ofdlock(lua_State *L) {
  static const char *const kinds[] = {"w", "r", "u", NULL};
  static const short typev[] = {F_WRLCK, F_RDLCK, F_UNLCK};
  int fd = checkfd(L, 1);
  short type = typev[luaL_checkoption(L, 2, NULL, kinds)];
  int wait = lua_toboolean(L, 3);
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;    /* start 0, len 0: the whole file, however it grows */
#ifdef F_OFD_SETLK
  int r = (int)LP_RETRY(fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl));
  if (r < 0 && errno == EINVAL)
#else
  int r = -1;
#endif
    r = (int)LP_RETRY(fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl));
  if (r < 0) {
    if (!wait && (errno == EAGAIN || errno == EACCES)) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lp_failf(L, errno, "lock %d", fd);
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lp_open_daemon(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"link", l_link}, {"rename", l_rename}, {"unlink", l_unlink}, {"stat", l_stat}, {"lstat", l_lstat},
    {"fstat", l_fstat}, {"readlink", l_readlink}, {"listdir", l_listdir}, {"mkdir", l_mkdir},
    {"getcloexec", l_getcloexec}, {"ofdlock", l_ofdlock}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
