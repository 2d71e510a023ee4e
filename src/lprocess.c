/*
 * lprocess.c -- luaopen_lprocess_core: the C core of lprocess.
 *
 * Thin, correct bindings of the POSIX process primitives; no policy lives here (see
 * lua/lprocess/ for that). Each concern is a file of its own, sharing lprocess.h.
 */
#include "lprocess.h"

__attribute__((visibility("default"))) int luaopen_lprocess_core(lua_State *L);

int luaopen_lprocess_core(lua_State *L) {
  lua_newtable(L);
  lp_open_util(L);
  lp_open_spawn(L);
  lp_open_wait(L);
  lp_open_signal(L);
  lp_open_fd(L);
  lp_open_proc(L);
  lp_open_net(L);
  lp_open_daemon(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
