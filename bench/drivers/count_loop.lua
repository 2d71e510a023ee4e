-- count_loop.lua -- N spawn+wait of PROG through one lprocess API, for counting the
-- parent's syscalls (strace -c) and user instructions (valgrind). The counts workload
-- runs it at two N and divides the difference, so start-up cancels out.
--
--   lua5.4 bench/drivers/count_loop.lua API N PROG
-- API
--   core    lprocess.core.spawn(opts) + lprocess.core.wait(pid), one options table
--           {argv={PROG}} reused (core.spawn keeps nothing of it)
--   facade  lprocess.spawn{PROG} + p:wait()
--   loop    lprocess.spawn{PROG} + loop:child(pid, fn) + loop:run(until reaped)
do
  local root = (arg[0]:match("^(.*)/bench/drivers/[^/]*$")) or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LPROCESS_CPATH") or (root .. "/build/?.so")) .. ";" .. package.cpath
end
local lp = require "lprocess"
local core = lp.core

local api, n, prog = arg[1], tonumber(arg[2]), arg[3]

if api == "core" then
  local opts = { argv = { prog } }
  for _ = 1, n do
    local pid = core.spawn(opts)
    core.wait(pid)
  end
elseif api == "facade" then
  for _ = 1, n do
    local p = lp.spawn { prog }
    p:wait()
  end
elseif api == "loop" then
  local loop = require("lprocess.loop").new()
  local done
  local function reaped() done = true end
  local function until_done() return done end
  for _ = 1, n do
    done = false
    local p = lp.spawn { prog }
    loop:child(p.pid, reaped)
    loop:run(until_done)
  end
else
  error("unknown API " .. tostring(api))
end
