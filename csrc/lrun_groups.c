/*
 * lrun_groups.c -- lrun.groups: the process groups lrun has made, in memory it shares
 * with its watchdog. lrun writes a group's id when it makes it and clears it when the
 * group has emptied; the watchdog reads the table only once lrun is gone. Telling it
 * through a pipe cost two writes a job and two wake-ups of the watchdog on the other
 * core (~45 us of CPU a job on a 2-core machine, between the two processes).
 *
 *   local groups = require "lrun.groups"
 *   local t = groups.new(n)    -- before fork(); nil, message, errno on failure
 *   t:add(pgid)      -> true | false (the table is full: tell the watchdog otherwise)
 *   t:remove(pgid)   -> true | false (not in the table)
 *   t:list()         -> { pgid, ... }   (the watchdog, after lrun is gone)
 *   t:close()        -- unmaps; also __gc and __close
 *
 * Caveats: the table is shared with every process forked after new(), and only
 * with them (exec drops it). Only lrun writes; the watchdog reads after lrun's exit,
 * which the kernel orders after every store lrun made. A store lrun had no time to
 * make (killed between spawn and add) is covered as before, by the run's tag.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include <lua.h>
#include <lauxlib.h>

__attribute__((visibility("default"))) int luaopen_lrun_groups(lua_State *L);

#define GROUPS_MT "lrun.groups"
#define GROUPS_MAX 65536

/* Two processes share the table: its ints must be plain loads and stores (an atomic
 * emulated with a lock would keep that lock in each process's own memory). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lrun.groups needs lock-free atomic int");

typedef struct {
  atomic_int *slot;   /* shared: 0 free, else a pgid */
  int cap;
  int hi;             /* lrun's own: slots at and past hi are free */
} Groups;

static Groups *check_groups(lua_State *L) {
  Groups *g = luaL_checkudata(L, 1, GROUPS_MT);
  if (g->slot == NULL) luaL_error(L, "groups table is closed");
  return g;
}

static int check_pgid(lua_State *L, int arg) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, v > 0 && v <= INT_MAX, arg, "process group id out of range");
  return (int)v;
}

static int l_new(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n > 0 && n <= GROUPS_MAX, 1, "size out of range");
  Groups *g = lua_newuserdatauv(L, sizeof *g, 0);
  g->slot = NULL;
  g->cap = (int)n;
  g->hi = 0;
  luaL_setmetatable(L, GROUPS_MT);
  void *p = mmap(NULL, (size_t)n * sizeof(atomic_int), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "groups: mmap: %s", strerror(e));
    lua_pushinteger(L, e);
    return 3;
  }
  g->slot = p;   /* zero-filled by the kernel: every slot free */
  return 1;
}

/* Groups live a job's lifetime, so few are in the table at once: a scan of [0, hi)
 * is a scan of the running jobs. */
static int l_add(lua_State *L) {
  Groups *g = check_groups(L);
  int pgid = check_pgid(L, 2);
  int i = g->hi;   /* the first free slot, else hi */
  for (int j = g->hi - 1; j >= 0; j--) {
    int v = atomic_load_explicit(&g->slot[j], memory_order_relaxed);
    if (v == pgid) {   /* there already: one entry, one remove */
      lua_pushboolean(L, 1);
      return 1;
    }
    if (v == 0) i = j;
  }
  if (i == g->cap) {
    lua_pushboolean(L, 0);
    return 1;
  }
  atomic_store_explicit(&g->slot[i], pgid, memory_order_release);
  if (i == g->hi) g->hi++;
  lua_pushboolean(L, 1);
  return 1;
}

static int l_remove(lua_State *L) {
  Groups *g = check_groups(L);
  int pgid = check_pgid(L, 2);
  for (int i = 0; i < g->hi; i++) {
    if (atomic_load_explicit(&g->slot[i], memory_order_relaxed) == pgid) {
      atomic_store_explicit(&g->slot[i], 0, memory_order_release);
      while (g->hi > 0 && atomic_load_explicit(&g->slot[g->hi - 1], memory_order_relaxed) == 0)
        g->hi--;
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* Every slot, not [0, hi): in the watchdog hi is what it was at fork(). */
static int l_list(lua_State *L) {
  Groups *g = check_groups(L);
  lua_newtable(L);
  lua_Integer n = 0;
  for (int i = 0; i < g->cap; i++) {
    int v = atomic_load_explicit(&g->slot[i], memory_order_acquire);
    if (v > 0) {
      lua_pushinteger(L, v);
      lua_rawseti(L, -2, ++n);
    }
  }
  return 1;
}

static int l_close(lua_State *L) {
  Groups *g = luaL_checkudata(L, 1, GROUPS_MT);
  if (g->slot != NULL) {
    munmap(g->slot, (size_t)g->cap * sizeof(atomic_int));
    g->slot = NULL;
  }
  return 0;
}

int luaopen_lrun_groups(lua_State *L) {
  static const luaL_Reg methods[] = { {"add", l_add}, {"remove", l_remove},
    {"list", l_list}, {"close", l_close}, {NULL, NULL} };
  static const luaL_Reg meta[] = { {"__gc", l_close}, {"__close", l_close},
    {NULL, NULL} };
  luaL_newmetatable(L, GROUPS_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = { {"new", l_new}, {NULL, NULL} };
  luaL_newlib(L, fns);
  return 1;
}
