--- lprocess.stop: the one way to stop a process group -- a signal (with CONT, so that
-- stopped members hear it), a grace period, then SIGKILL, until the group is empty.
-- Process:terminate, lprocess.run and the programs built on the library all use it.
--
--   local stop = require "lprocess.stop"
--   stop.signal(pgid, "TERM")       -- TERM and CONT to the group -> true | nil, msg, errno
--   stop.alive(pgid)                -- does the group still have a member?
--   -- blocking: leader's status (`wait(timeout)` waits for the leader, false on timeout)
--   local st = stop.sync(pgid, "TERM", 5, wait)
--   -- in an lprocess.loop: KILL after grace unless cancelled; the caller watches for
--   -- the group to empty (its members' exits come as SIGCHLD to a subreaper)
--   local s = stop.start(loop, pgid, "TERM", 5, on_kill)   -- s:cancel(), s:kill()
--
-- Caveats
-- * `target` is a process group id, or { pid = n } for a process that leads no group
--   of its own (it is then signalled alone).
-- * sync waits for the leader through `wait`; when the leader ended but other members
--   linger, it checks the group every 20 ms for the rest of the grace before the KILL:
--   a group has no descriptor to wait on, and this is the blocking convenience. A loop
--   learns of members ending from SIGCHLD instead (start).
local core = require "lprocess.core"

local M = {}

M.CHECK = 0.02   -- seconds between looks at a lingering group in sync

local function send(target, sig)
  if type(target) == "table" then return core.kill(target.pid, sig) end
  return core.killpg(target, sig)
end

--- signal(target, sig) -> true | nil, msg, errno: sig, then CONT unless sig is KILL,
-- STOP or CONT itself.
function M.signal(target, sig)
  local ok, err, errno = send(target, sig)
  if ok and sig ~= "KILL" and sig ~= "STOP" and sig ~= "CONT"
      and sig ~= core.signals.KILL and sig ~= core.signals.STOP then
    send(target, "CONT")
  end
  return ok, err, errno
end

function M.alive(target)
  return send(target, 0) == true
end

--- sync(target, sig, grace, wait) -> the leader's status (whatever `wait` returned last)
function M.sync(target, sig, grace, wait)
  local deadline = core.now() + grace
  M.signal(target, sig or "TERM")
  local st = wait(grace)
  if st and type(target) ~= "table" then
    while M.alive(target) and core.now() < deadline do core.sleep(M.CHECK) end
  end
  if M.alive(target) then send(target, "KILL") end
  if not st then st = wait() end
  return st
end

local Stop = {}
Stop.__index = Stop

--- start(loop, target, sig, grace, on_kill) -> a stop in progress: sig + CONT now,
-- KILL after grace (then on_kill()) unless :cancel()led first. Starting again on the
-- same target replaces the timer; :kill() skips the rest of the grace.
function M.start(loop, target, sig, grace, on_kill)
  local s = setmetatable({ target = target, on_kill = on_kill }, Stop)
  M.signal(target, sig or "TERM")
  if sig ~= "KILL" and sig ~= core.signals.KILL then
    s.timer = loop:timer(grace, function()
      s.timer = nil
      s:kill()
    end)
  end
  return s
end

function Stop:kill()
  self:cancel()
  send(self.target, "KILL")
  self.killed = true
  if self.on_kill then self.on_kill() end
end

function Stop:cancel()
  if self.timer then
    self.timer:cancel()
    self.timer = nil
  end
end

return M
