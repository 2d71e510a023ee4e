/*
 * spawn_host.c -- a C host of lprocess.core for the hardening specs: what a Lua script
 * alone cannot do.
 *
 *   spawn-host threads N ITER   N threads, each with its own lua_State, spawn ITER
 *                               echo children at once and check every output; exit 0
 *                               when all were right.
 *   spawn-host forked           spawn with pdeathsig, then fork() here (not through
 *                               core.fork) and spawn with pdeathsig in the child; prints
 *                               the exit code the grandchild had (7 when right).
 *
 * LUA_CPATH must find the lprocess.core under test.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static const char *const threads_chunk =
  "local tag, iter = ...\n"
  "local core = require 'lprocess.core'\n"
  "for i = 1, iter do\n"
  "  local want = tag .. '-' .. i .. '-' .. string.rep('x', i % 50)\n"
  "  local r, w = assert(core.pipe())\n"
  "  local pid, err = core.spawn { argv = { 'echo', want }, fds = { [1] = w } }\n"
  "  core.close(w)\n"
  "  if not pid then core.close(r) error(err) end\n"
  "  local out = {}\n"
  "  repeat local s = core.read(r) out[#out + 1] = s or '' until not s or s == ''\n"
  "  core.close(r)\n"
  "  local st = core.wait(pid)\n"
  "  local got = table.concat(out)\n"
  "  if got ~= want .. '\\n' or st.how ~= 'exit' or st.code ~= 0 then\n"
  "    error(string.format('spawn %d: want %q, got %q (%s %s)', i, want, got, st.how,\n"
  "      tostring(st.code or st.signame)))\n"
  "  end\n"
  "end\n";

struct job { int id, iter, ok; char err[512]; };

static int run(lua_State *L, const char *chunk, int nargs) {
  if (luaL_loadstring(L, chunk) != LUA_OK) return 0;
  lua_insert(L, -1 - nargs);
  return lua_pcall(L, nargs, 0, 0) == LUA_OK;
}

static void *thread_main(void *arg) {
  struct job *j = arg;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushfstring(L, "t%d", j->id);
  lua_pushinteger(L, j->iter);
  j->ok = run(L, threads_chunk, 2);
  if (!j->ok) snprintf(j->err, sizeof j->err, "%s", lua_tostring(L, -1));
  lua_close(L);
  return NULL;
}

static int threads(int n, int iter) {
  pthread_t t[16];
  struct job jobs[16];
  if (n < 1 || n > 16) return 2;
  for (int i = 0; i < n; i++) {
    jobs[i] = (struct job){ .id = i, .iter = iter };
    if (pthread_create(&t[i], NULL, thread_main, &jobs[i]) != 0) return 2;
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    if (!jobs[i].ok) {
      fprintf(stderr, "thread %d: %s\n", i, jobs[i].err);
      bad = 1;
    }
  }
  return bad;
}

static int l_cfork(lua_State *L) {
  lua_pushinteger(L, fork());
  return 1;
}

static const char *const forked_chunk =
  "local core = require 'lprocess.core'\n"
  "local pid = assert(core.spawn { argv = { 'true' }, pdeathsig = 'KILL' })\n"
  "core.wait(pid)\n"
  "local child = cfork()\n"
  "if child == 0 then\n"
  "  local p = core.spawn { argv = { 'sh', '-c', 'exit 7' }, pdeathsig = 'KILL' }\n"
  "  local st = p and core.wait(p)\n"
  "  core._exit(st and st.how == 'exit' and st.code or 99)\n"
  "end\n"
  "local st = core.wait(child)\n"
  "print(st.code)\n";

static int forked(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "cfork", l_cfork);
  int ok = run(L, forked_chunk, 0);
  if (!ok) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "threads") == 0) return threads(atoi(argv[2]), atoi(argv[3]));
  if (argc == 2 && strcmp(argv[1], "forked") == 0) return forked();
  fprintf(stderr, "usage: spawn-host threads N ITER | forked\n");
  return 2;
}
