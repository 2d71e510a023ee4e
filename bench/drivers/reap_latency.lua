-- reap_latency.lua -- from a child's exit to its reaping in lprocess's event loop.
--
--   lua5.4 bench/drivers/reap_latency.lua N STAMP [DELAY_US]
-- N times: spawn STAMP (after DELAY_US it writes CLOCK_MONOTONIC in ns to its stdout,
-- a pipe, and exits at once; the delay lets the loop block first), let the loop
-- reap it (SIGCHLD on a signalfd, waitpid(-1, WNOHANG)),
-- take the time in the loop:child callback, then read the stamp. Prints one latency
-- in ns per line. The C floor is `spawnc -l N -- STAMP` (a blocking waitpid).
do
  local root = (arg[0]:match("^(.*)/bench/drivers/[^/]*$")) or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LPROCESS_CPATH") or (root .. "/build/?.so")) .. ";" .. package.cpath
end
local lp = require "lprocess"
local now = lp.core.now
local loop = require("lprocess.loop").new()

local n, stamp, delay = tonumber(arg[1]), arg[2], arg[3] or "0"
local out = {}
for i = 1, n do
  local p = assert(lp.spawn { stamp, delay, stdout = "pipe" })
  local reaped
  loop:child(p.pid, function(st)
    reaped = now()
    assert(st.how == "exit" and st.code == 0)
  end)
  loop:run(function() return reaped ~= nil end)
  local s = p.stdout:read("a")
  p:close_pipes()
  out[i] = ("%d"):format(math.floor(reaped * 1e9 + 0.5) - assert(math.tointeger(tonumber(s))))
end
loop:close()
io.write(table.concat(out, "\n"), "\n")
