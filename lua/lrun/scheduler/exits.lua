--- lrun.scheduler.exits: what the end of a unit's run means -- the exit event, the
-- policy's decision, retries and restarts through the start limit, the joblog row.
-- Methods of the scheduler (lrun.scheduler installs them); nothing here spawns.
--
--   exits.install(Scheduler)   -- adds _exited, _again, _joblog and their helpers
--   exits.describe(unit)       -- its last end in lprocess.status's wording
local core = require "lprocess.core"
local status = require "lprocess.status"
local policy = require "lrun.policy"
local needs = require "lrun.scheduler.needs"

local M = {}
local Scheduler = {}

-- The wording of a unit's last end: lprocess.status's, or the spawn's error.
local function describe(u)
  if u.spawn_error then return u.spawn_error end
  if not u.status then return "not run" end
  return status.describe(u.status)
end
M.describe = describe

-- What the unit's end tells the policy; ended: when _record_exit saw it, success:
-- policy.success's answer (less a timeout).
local function event(u, st, spawn_err, ended, success)
  local job = u.job
  return {
    job = job.name, name = u.name, instance = u.instance, pid = u.pid,
    -- a spawn that failed still gives policies a status to look at
    status = st or { how = "error", error = spawn_err },
    error = spawn_err,
    success = success,
    stopping = u.stopping or false, timed_out = u.timed_out or false, kind = job.kind,
    attempt = u.attempt,
    retries = job.retries, restarts = u.restarts, runtime = u.runtime,
    since_ready = u.ready_at and (ended - u.ready_at) or nil,
    restart = job.restart,
  }
end

-- -> when the unit ended (core.now)
function Scheduler:_record_exit(u, st, h, spawn_err)
  if u.timer then u.timer:cancel(); u.timer = nil end
  if u.probe then u.probe:cancel(); u.probe = nil end
  if not u.service then self.running_jobs = self.running_jobs - 1 end
  -- the executor's own word on the run (Slurm's elapsed, TIMEOUT, NODE_FAIL...)
  if h and h.timed_out then u.timed_out = true end
  spawn_err = spawn_err or (h and h.failure)
  -- The rusage of a status is built only when read (lprocess.core): the summary
  -- reads the last one (units.results); an earlier run's peak is kept here.
  local prev = u.status and u.status.rusage
  if prev then u.maxrss = math.max(u.maxrss or 0, prev.maxrss) end
  u.status, u.spawn_error = st, spawn_err
  local ended = core.now()
  u.runtime = h and h.elapsed or (ended - (u.started or ended))
  u.bytes = h and h.bytes or 0
  if self:_heard("exit", u) then
    self:_send("exit", u, {
      pid = u.pid, how = st and st.how or "error", code = st and st.code,
      signal = st and st.signame, runtime = u.runtime, error = spawn_err,
    })
  end
  return ended
end

function Scheduler:_exited(u, st, h, spawn_err)
  local ended = self:_record_exit(u, st, h, spawn_err)
  spawn_err = u.spawn_error   -- the executor may have given a reason (Slurm's NODE_FAIL...)
  if self.shutting or u.stopping and not u.timed_out and not u.unready then
    return self:_finish(u, "stopped")
  end
  local success = policy.success(u.job, st, u.stopping) and not u.timed_out
  -- A plain job's built-in answer needs no event table (one of ~20 fields a job).
  local decision = policy.quick(u.job, success, u.stopping, u.attempt)
  local ev
  if not decision then
    ev = event(u, st, spawn_err, ended, success)
    local user_fn = self:_user_policy(u.job)
    -- only a user's policy reads the output tail; the built-ins never do
    if user_fn then ev.last_lines = self.out:tail(u.name, 10) end
    local perr
    decision, perr = policy.decide(u.job, ev, user_fn)
    if perr then self:_say(string.format("job %s: policy: %s", u.name, perr)) end
  end
  local action = decision.action
  local failed_result = u.timed_out and "timeout" or "failed"
  if action == "retry" or action == "restart" then
    if self.halted and not u.service then
      return self:_finish(u, failed_result)
    end
    return self:_again(u, decision.delay, ev)
  elseif action == "stop" then
    self:_finish(u, ev.success and "ok" or failed_result)
    return self:shutdown(nil, "stop requested by the policy of job " .. u.name)
  elseif action == "done" then
    return self:_finish(u, "ok")
  end
  return self:_finish(u, failed_result, u.unready or spawn_err)
end

-- The delay before a unit runs again, through the start limit for services and for
-- jobs re-run beyond their retries: no policy can make lrun spin. nil: give up.
function Scheduler:_next_delay(u, delay, ev)
  local job = u.job
  if not (u.service or u.attempt > job.retries) then
    u.state = "retrying"
    u.restarts = u.restarts + 1
    return delay or job.retry_delay
  end
  u.limiter = u.limiter or policy.limiter(job)
  if u.stable_timer then u.stable_timer:cancel() end
  -- Up and ready long enough: the crash loop is over, start the backoff afresh.
  if ev.since_ready and ev.since_ready >= policy.stable_period(job) then
    u.restarts = 0
    u.limiter:reset()
  end
  if not u.limiter:record(core.now(), ev.runtime) then
    self:_say(string.format("job %s: gave up: %s; last exit: %s", u.name,
      u.limiter:reason(), describe(u)))
    return nil
  end
  u.restarts = u.restarts + 1
  u.state = u.service and "backoff" or "retrying"
  return delay or policy.backoff(job, u.restarts)
end

-- Run the unit again after `delay` (policy's) or its own backoff / retry_delay.
function Scheduler:_again(u, delay, ev)
  delay = self:_next_delay(u, delay, ev)
  if not delay then return self:_finish(u, "gave up") end
  self:_say(string.format("job %s: %s (%s), %s in %.2fs", u.name, describe(u),
    u.service and "restart" or "retry",
    u.service and ("restart " .. u.restarts) or ("attempt " .. (u.attempt + 1)), delay))
  self:_emit("restart", u, { delay = delay })
  u.ready_at = nil
  self:_changed(u.job, needs.ON_READY)   -- it is no longer ready
  u.again = self.loop:timer(delay, function()
    u.again = nil
    if self.shutting or (self.halted and not u.service) then
      return self:_finish(u, u.service and "stopped" or "failed")
    end
    if not u.service then
      -- the retry takes a -j slot like any start
      u.state = "queued"
      table.insert(self.queue, self.qhead, u)
      return self:_fill()
    end
    self:_start(u)
  end)
end

function Scheduler:_joblog(u)
  self.seq = self.seq + 1
  local st = u.status
  self.joblog:write {
    -- Host names the unit: --resume reads rows back by it
    seq = self.seq, host = u.name, start = u.started and u.started + self.wall_offset,
    runtime = u.runtime or 0,
    receive = u.bytes or 0,
    exitval = st and st.how == "exit" and st.code or (st and 0 or 127),
    signal = st and st.how == "signal" and st.signal or 0,
    command = u.job.argv or u.job.cmd,
  }
end

function M.install(class)
  for k, fn in pairs(Scheduler) do class[k] = fn end
end

return M
