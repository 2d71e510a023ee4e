/*
 * lrun_main.c -- the `lrun` program: Lua 5.4 embedded, running lrun.cli.
 *
 * Why not `#!/usr/bin/env lua5.4`: the stand-alone interpreter installs a SIGINT
 * handler of its own around every chunk it runs, so a script can never see that
 * SIGINT was ignored by whoever started it (`nohup`, a shell's `cmd &`, a container
 * runtime), and lrun must hand that on to its jobs and to CMD in --init, as tini
 * does. This host touches no signal: core.sigstate() sees what lrun was given.
 * scripts/lrun remains the entry point of a luarocks install (see its Caveats).
 *
 * From a checkout (this file built as ROOT/build/bin/lrun, next to ROOT/lua), the
 * checkout's modules are used; installed, the interpreter's default paths (or
 * LUA_PATH / LUA_CPATH) find them.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static const char BOOT[] =
  "local exe = ...\n"
  "local root = exe and exe:match('^(.*)/build[^/]*/bin/[^/]*$')\n"
  "if root then\n"
  "  local f = io.open(root .. '/lua/lrun/cli.lua')\n"
  "  if f then\n"
  "    f:close()\n"
  "    package.path = root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. package.path\n"
  "    package.cpath = (os.getenv('LPROCESS_CPATH') or (root .. '/build/?.so')) .. ';'\n"
  "      .. package.cpath\n"
  "  end\n"
  "end\n"
  "-- closed stdio (`lrun ... <&- >&- 2>&-`) becomes /dev/null before lrun opens anything\n"
  "require('lprocess').ensure_stdio()\n"
  "local cli = require('lrun.cli')\n"
  "return cli.main(arg), cli.needs_close()\n";

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* arg = { [0] = argv[0], argv[1], ... }, as lua.c makes it for a script */
static void set_args(lua_State *L, int argc, char **argv) {
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fputs("lrun: cannot create a Lua state: not enough memory\n", stderr);
    return 70;
  }
  luaL_openlibs(L);
  set_args(L, argc, argv);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  lua_pushcfunction(L, traceback);
  if (luaL_loadbufferx(L, BOOT, sizeof BOOT - 1, "=lrun", "t") != LUA_OK) {
    fprintf(stderr, "lrun: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 70;
  }
  if (n > 0) {
    exe[n] = '\0';
    lua_pushstring(L, exe);
  } else {
    lua_pushnil(L);
  }
  int code = 70, close_state = 1;
  if (lua_pcall(L, 1, 2, 1) != LUA_OK) {
    fprintf(stderr, "lrun: internal error: %s\n", lua_tostring(L, -1));
  } else {
    if (lua_isinteger(L, -2)) {
      lua_Integer c = lua_tointeger(L, -2);
      code = c >= 0 && c <= 255 ? (int)c : 70;
    }
    close_state = lua_toboolean(L, -1);
  }
  fflush(stdout);
  /* Closing frees the heap object by object (0.3 s after a 100 000-job plan); when no
   * finalizer has an effect outside this process, exit's stdio flush and the kernel's
   * reclaim do the same work at once. */
  if (close_state) lua_close(L);
  return code;
}
