/*
 * lua-host.c -- a minimal `lua5.4` for `make sanitize`, built with ASan+UBSan.
 *
 * The sanitizer runtimes must come first in a process. Preloading them into the
 * stock interpreter (LD_PRELOAD) also preloads them into every child -- coreutils,
 * shells, a test's crashing child -- and changes how those behave. Linking them
 * into the interpreter instead keeps them in Lua processes only: `make sanitize`
 * puts this host first in PATH under the name lua5.4.
 *
 * It does what the specs and scripts/lrun need of lua.c: `lua5.4 [-e code]...
 * [script [args]]`, the `arg` table, LUA_INIT, errors with a traceback, exit codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL && !lua_isnoneornil(L, 1)) msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

static int report(lua_State *L, int status, const char *progname) {
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int docall(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  return status;
}

static int run_init(lua_State *L, const char *progname) {
  const char *init = getenv("LUA_INIT_5_4");
  if (!init) init = getenv("LUA_INIT");
  if (!init) return LUA_OK;
  int status = init[0] == '@' ? luaL_loadfile(L, init + 1)
                              : luaL_loadbuffer(L, init, strlen(init), "=LUA_INIT");
  if (status == LUA_OK) status = docall(L, 0);
  return report(L, status, progname);
}

int main(int argc, char **argv) {
  const char *progname = argv[0];
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  int script = argc;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) { i++; continue; }
    if (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) { script = i; break; }
    if (strcmp(argv[i], "--") == 0) { script = i + 1; break; }
  }
  /* arg: script at 0, its arguments at 1.., the interpreter's options below 0 */
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - (script < argc ? script : argc - 1));
  }
  lua_setglobal(L, "arg");
  int status = run_init(L, progname);
  for (int i = 1; status == LUA_OK && i < script; i++) {
    if (strcmp(argv[i], "-e") == 0) {
      const char *code = argv[++i];
      status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
      if (status == LUA_OK) status = docall(L, 0);
      report(L, status, progname);
    }
  }
  if (status == LUA_OK && script < argc) {
    const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
    status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
      int n = argc - script - 1;
      luaL_checkstack(L, n, "too many arguments to script");
      for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
      status = docall(L, n);
    }
    report(L, status, progname);
  }
  lua_close(L);
  return status == LUA_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
