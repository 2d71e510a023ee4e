-- Shared by every spec (named in .busted). The busted process becomes a child
-- subreaper so that grandchildren orphaned by a test are re-parented here, where the
-- helpers can count and reap them, instead of piling up as zombies under PID 1.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local core = require "lprocess.core"
core.subreaper(true)
