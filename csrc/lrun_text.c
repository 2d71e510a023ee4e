/*
 * lrun_text.c -- lrun.text, lrun's own C module: the one hot text loop of its output
 * path, putting a prefix before every complete line of a chunk. Lua's gsub manages
 * ~100 MB/s here; this runs at memcpy speed, which `-o prefix` needs to keep up with
 * `cat`. It lives apart from lprocess.core: the process library knows no job output.
 * And two helpers of the job-file loader: caller_line, "which line of the file called
 * job()" (debug.getinfo's answer without a table and its strings per call), and
 * inert, "can reading this table run any of the file's code" (the walk of every
 * table a file defined, ~30 Lua lines a job in Lua).
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

/* Whether the table at idx and every table in it (keys and values, up to
 * INERT_DEPTH deep) has no metatable and holds no userdata: raw reads only, so no
 * metamethod of the job file runs. Deeper nesting (or a cycle) is not inert, and so
 * is a walk past *budget entries: a table shared at every level (100 copies of a
 * reference, 6 deep) is 100^6 visits, and this walk runs outside the file's deadline.
 * Not inert only means validation runs within it. */
#define INERT_DEPTH 8
static int inert_table(lua_State *L, int idx, int depth, long *budget) {
  if (depth > INERT_DEPTH) return 0;
  if (lua_getmetatable(L, idx)) return 0;   /* the caller resets the stack */
  luaL_checkstack(L, 3, "inert");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (--*budget < 0) return 0;
    int top = lua_gettop(L);
    for (int i = top - 1; i <= top; i++) {
      int t = lua_type(L, i);
      if (t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA) return 0;
      if (t == LUA_TTABLE && !inert_table(L, i, depth + 1, budget)) return 0;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* inert(list, field) -> whether each list[i][field] (i = 1..#list, read raw) is a
 * table inert_table accepts or a value that is neither a table nor userdata. The
 * budget: a million entries, and 64 more for each definition (a 100 000-job file
 * has ~5 a job). */
static int l_inert(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_Unsigned n = lua_rawlen(L, 1);
  long budget = 1000000L + (n < 1000000 ? (long)n * 64 : 64000000L);
  int ok = 1;
  for (lua_Unsigned i = 1; ok && i <= n && i <= (lua_Unsigned)LUA_MAXINTEGER; i++) {
    int base = lua_gettop(L);
    if (lua_rawgeti(L, 1, (lua_Integer)i) == LUA_TTABLE) {
      lua_pushvalue(L, 2);
      int t = lua_rawget(L, -2);
      if (t == LUA_TTABLE) ok = inert_table(L, lua_gettop(L), 1, &budget);
      else ok = t != LUA_TUSERDATA && t != LUA_TLIGHTUSERDATA;
    }
    lua_settop(L, base);
  }
  lua_pushboolean(L, ok);
  return 1;
}

int luaopen_lrun_text(lua_State *L) {
  static const luaL_Reg fns[] = { {"prefix_lines", l_prefix_lines},
    {"caller_line", l_caller_line}, {"inert", l_inert}, {NULL, NULL} };
  luaL_newlib(L, fns);
  return 1;
}
