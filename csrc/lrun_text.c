/*
 * lrun_text.c -- lrun.text, lrun's own C module: the one hot text loop of its output
 * path, putting a prefix before every complete line of a chunk. Lua's gsub manages
 * ~100 MB/s here; this runs at memcpy speed, which `-o prefix` needs to keep up with
 * `cat`. It lives apart from lprocess.core: the process library knows no job output.
 * And caller_line, the job-file loader's "which line of the file called job()": the
 * same answer as debug.getinfo without a table and its strings per call.
 */
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

__attribute__((visibility("default"))) int luaopen_lrun_text(lua_State *L);

/* prefix_lines(s, init, prefix) -> text, last
 * last: index of the last "\n" at or after init (init-1 when there is none);
 * text: s[init..last] with prefix before each line ("" when there is none). */
static int l_prefix_lines(lua_State *L) {
  size_t len, plen;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer init = luaL_optinteger(L, 2, 1);
  const char *prefix = luaL_checklstring(L, 3, &plen);
  luaL_argcheck(L, init >= 1 && (size_t)init <= len + 1, 2, "initial position out of range");
  const char *start = s + init - 1;
  size_t span = len - (size_t)(init - 1);
  const char *nl = span ? memrchr(start, '\n', span) : NULL;
  if (!nl) {
    lua_pushliteral(L, "");
    lua_pushinteger(L, init - 1);
    return 2;
  }
  size_t body = (size_t)(nl - start) + 1, lines = 0;
  for (const char *p = start; p <= nl; p++) {
    p = memchr(p, '\n', (size_t)(nl - p) + 1);
    lines++;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, body + lines * plen);
  const char *p = start;
  while (p <= nl) {
    const char *e = memchr(p, '\n', (size_t)(nl - p) + 1);
    size_t n = (size_t)(e - p) + 1;
    memcpy(out, prefix, plen);
    memcpy(out + plen, p, n);
    out += plen + n;
    p = e + 1;
  }
  luaL_pushresultsize(&b, body + lines * plen);
  lua_pushinteger(L, (lua_Integer)(nl - s) + 1);
  return 2;
}

/* caller_line(source, from) -> line | nil
 * The current line of the nearest function on the stack, from level `from` (as
 * debug.getinfo counts from the Lua caller) up to 50 levels, whose chunk name is
 * `source` ("@jobs.lua"). debug.getinfo(level, "Sl") builds a table of 7 fields and
 * their strings per call: ~4 000 instructions a job definition. */
static int l_caller_line(lua_State *L) {
  size_t slen;
  const char *source = luaL_checklstring(L, 1, &slen);
  lua_Integer from = luaL_checkinteger(L, 2);
  luaL_argcheck(L, from >= 0 && from <= 1000, 2, "level out of range");
  lua_Debug ar;
  for (int level = (int)from; level < (int)from + 50 && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar)) break;
    if (ar.currentline > 0 && ar.srclen == slen && memcmp(ar.source, source, slen) == 0) {
      lua_pushinteger(L, ar.currentline);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

int luaopen_lrun_text(lua_State *L) {
  static const luaL_Reg fns[] = { {"prefix_lines", l_prefix_lines},
    {"caller_line", l_caller_line}, {NULL, NULL} };
  luaL_newlib(L, fns);
  return 1;
}
