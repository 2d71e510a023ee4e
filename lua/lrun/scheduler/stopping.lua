--- lrun.scheduler.stopping: the end of a run -- stopping units in reverse dependency
-- order (what nothing live needs goes first), a shutdown on a signal or a request,
-- an abort when lrun cannot go on safely, and noticing that only services are left.
-- Methods of the scheduler (lrun.scheduler installs them).
--
--   stopping.install(Scheduler)  -- adds shutdown, abort, _stop_some, _maybe_done
local core = require "lprocess.core"
local units = require "lrun.units"

local M = {}
local Scheduler = {}

local ENDED, LIVE = units.ENDED, units.LIVE

-- Units still running that nothing live needs: these may stop now (reverse order).
-- The needs index ({ dependent job, need index, ... } per needed job) names them.
function Scheduler:_stoppable(u)
  local edges = self.edges[u.job.name]
  if not edges then return true end
  for i = 1, #edges, 2 do
    for _, v in ipairs(self.by_job[edges[i].name] or {}) do
      if LIVE[v.state] then return false end
    end
  end
  return true
end

function Scheduler:_stop_some()
  local sig = self.shutting.sig
  for _, u in ipairs(self.units) do
    if LIVE[u.state] and not u.stopping and self:_stoppable(u) then
      u.stopping = true
      if self.verbose then self:_say(string.format("job %s: stopping", u.name)) end
      self:_emit("stop", u, {})
      self.ex:stop(u.handle, sig or u.job.kill_signal, self:_grace(u.job))
    end
  end
end

-- Stop everything because lrun itself cannot go on safely (a watchdog that no longer
-- hears, say): like a stop request, and the run fails whatever the jobs did.
function Scheduler:abort(why)
  self.aborted = why
  self:shutdown(nil, why)
end

-- Stop everything: `signal` (a number) when lrun was signalled, else nil.
function Scheduler:shutdown(signal, why)
  if self.shutting then
    if signal then   -- a second signal: no more grace
      self.shutting.hurry = true
      self:_say("second signal: killing every job now")
      self.ex:kill_all()
    end
    return
  end
  self.shutting = { signal = signal, sig = signal and core.signals[signal] or nil }
  if why then self:_say(why) end
  for _, u in ipairs(self.units) do
    if u.state == "waiting" or u.state == "queued" then
      self:_finish(u, "skipped", "not started: lrun is stopping")
    elseif u.state == "backoff" or u.state == "retrying" then
      self:_finish(u, "stopped")
    end
  end
  self:_stop_some()
  self:_maybe_done()
end

function Scheduler:_maybe_done()
  if self.shutting then return self:_stop_some() end
  if self.batch ~= 0 then return end
  local any_service, had_batch = false, false
  for _, u in ipairs(self.units) do
    if u.service then
      any_service = any_service or not ENDED[u.state]
    else
      had_batch = true
    end
  end
  if had_batch and any_service and not self.hold then return self:shutdown(nil, nil) end
end

function M.install(class)
  for k, fn in pairs(Scheduler) do class[k] = fn end
end

return M
