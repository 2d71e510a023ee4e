-- Reaping children, the signal-driven way (the tutorial's approach 1, done right).
--
--   lua5.4 examples/reaping/signal.lua        (after `make`, from the checkout, with
--                                               LUA_PATH/LUA_CPATH as in the README)
--
-- The tutorial reaps from a Python SIGCHLD handler. Here no code runs in a signal
-- handler at all: sigwatch blocks SIGCHLD and delivers it on a descriptor, which the
-- parent waits on with poll() next to whatever else it does. SIGCHLD coalesces --
-- two children ending together may raise it once -- so every wake-up reaps until
-- nothing is left (lprocess.reap loops waitpid(-1, WNOHANG)).
local lp = require "lprocess"
local core = lp.core

io.stdout:setvbuf("line")
local watch <close> = assert(core.sigwatch { "CHLD" })

print(("before the spawn, parent pid is %d"):format(core.getpid()))
local t0 = lp.now()
local naps = { 0.2, 0.4, 0.4 }          -- the last two end at the same moment
local running = {}
for i, nap in ipairs(naps) do
  local p = assert(lp.spawn { "sh", "-c",
    ("echo 'child %d sleeping %.1f seconds...'; sleep %.1f; echo 'child %d sleep done.'")
      :format(i, nap, nap, i) })
  running[p.pid] = p
  print(("hello from the parent, child %d pid is %d"):format(i, p.pid))
end

-- The parent's "work": here, waiting at most 10 seconds. It wakes only when a
-- signal arrives, never to look around.
local wakeups, reaped = 0, 0
local deadline = t0 + 10
while next(running) and lp.now() < deadline do
  local ready = core.poll({ [watch:fd()] = "r" }, deadline - lp.now())
  if ready[watch:fd()] then
    wakeups = wakeups + 1
    watch:read()                           -- what arrived: { 17 }, however many ended
    for _, st in ipairs(lp.reap()) do
      local p = running[st.pid]
      running[st.pid] = nil
      reaped = reaped + 1
      print(("reaped child process %d, status is %s %d, %.2f s after the spawn"):format(
        st.pid, st.how, st.code or st.signal, lp.now() - t0))
      assert(p == nil or p.status == st)   -- the Process object got it too
    end
  end
end

local _, _, errno = lp.wait(-1, { nohang = true })
print(("parent done: %d children reaped in %d wake-ups, %s"):format(reaped, wakeups,
  errno == core.errno.ECHILD and "no child left, so no zombie" or "children left over!"))
os.exit(reaped == #naps and errno == core.errno.ECHILD and 0 or 1)
