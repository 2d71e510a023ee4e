-- Reaping children by polling (the tutorial's approach 2), to see why it is worse.
--
--   lua5.4 examples/reaping/polling.lua [INTERVAL]      (default 0.5 seconds)
--
-- The parent looks for ended children every INTERVAL with a non-blocking wait and
-- sleeps in between. Two costs, both printed at the end:
-- * latency: a child is reaped up to one INTERVAL after it ended -- a zombie until
--   then, and whoever waits for its result waits too;
-- * waste: the parent wakes up every INTERVAL whether anything happened or not.
-- A shorter INTERVAL trades the first for the second; signal.lua has neither.
local lp = require "lprocess"

io.stdout:setvbuf("line")
local interval = tonumber(arg[1]) or 0.5
local nap = 0.3

print(("before the spawn, parent pid is %d"):format(lp.core.getpid()))
local t0 = lp.now()
local p = assert(lp.spawn { "sh", "-c",
  ("echo 'child sleeping %.1f seconds...'; sleep %.1f; echo 'child sleep done.'"):format(nap, nap) })
print(("hello from the parent, the child pid is %d"):format(p.pid))

local wakeups, st = 0
while true do
  st = lp.wait(-1, { nohang = true })    -- false: no child has ended yet
  if st then break end
  lp.sleep(interval)
  wakeups = wakeups + 1
  print("one loop...")
end
local at = lp.now() - t0
print(("reaped child process %d, status is %s %d"):format(st.pid, st.how, st.code))
print(("polling: %d wake-ups for one child; reaped %.2f s after the spawn, though it "
  .. "ended after about %.2f s (up to one interval, %.2f s, late)"):format(wakeups, at, nap,
  interval))
os.exit(st.pid == p.pid and p.status == st and 0 or 1)
