-- lrun.runner: the graph scheduler. It turns a validated spec into units (one per
-- job instance), starts them through an executor as their needs are met and slots
-- are free, asks the reaper policy what each exit means, and stops everything in
-- reverse dependency order at the end or on a signal.
--
-- Unit states: waiting -> queued -> running [-> ready] -> one of the ends:
--   ok | failed | timeout | gave up | skipped | stopped
-- A restarting unit goes back to "backoff" (services) or "retrying" (jobs) between
-- runs. `-j N` bounds running *jobs*; services run outside the bound (a service
-- holding a slot forever would starve the jobs that need it).
--
-- A run with batch jobs ends when they have all ended (services are then stopped);
-- a run of services only goes on until lrun is told to stop.
local core = require "lprocess.core"
local graph = require "lrun.graph"
local policy = require "lprocess.policy"
local ready = require "lprocess.ready"
local executor = require "lrun.executor"

local M = {}
local Runner = {}
Runner.__index = Runner

local ENDED = { ok = true, failed = true, timeout = true, ["gave up"] = true,
  skipped = true, stopped = true }
local FAILED = { failed = true, timeout = true, ["gave up"] = true }
local LIVE = { running = true, ready = true }
-- Deaths that count as a clean stop when lrun itself asked the unit to stop.
local STOP_SIGNALS = { HUP = true, INT = true, TERM = true, PIPE = true }

-- opts: loop, out, jobs, keep_going, grace, targets, events, joblog, run_id,
-- exit_on_failure, verbose, quiet, env, watchdog
function M.new(spec, opts)
  local self = setmetatable({
    spec = spec,
    loop = opts.loop,
    out = opts.out,
    jobs_limit = opts.jobs or spec.settings.jobs or 1,
    keep_going = opts.keep_going or spec.settings.keep_going,
    exit_on_failure = opts.exit_on_failure or spec.settings.exit_on_failure,
    grace = opts.grace or spec.settings.grace or 5,
    events = opts.events,
    joblog = opts.joblog,
    verbose = opts.verbose,
    units = {},          -- in plan order
    by_job = {},         -- job name -> its units
    queue = {}, qhead = 1,   -- jobs whose needs are met, in plan order
    svc_queue = {},          -- services: they start at once, outside the -j bound
    running_jobs = 0,
    halted = false,      -- a failure without -k: no new starts
    shutting = nil,      -- nil | { signal = N or nil, sig = "TERM" }
    batch = 0,           -- job units not yet ended
    unended = 0,         -- units of any kind not yet ended
    seq = 0,
  }, Runner)
  local selected, err = graph.select(spec, opts.targets)
  if not selected then return nil, err end
  self.order = assert(graph.order(spec, selected))
  self.dependents = graph.dependents(spec)
  for _, name in ipairs(self.order) do
    local job = spec.by_name[name]
    local list = {}
    for i = 0, job.instances - 1 do
      local u = {
        name = job.instances > 1 and (name .. "." .. i) or name,
        job = job, instance = i, state = "waiting", attempt = 0, restarts = 0,
        service = job.kind == "service",
      }
      list[#list + 1] = u
      self.units[#self.units + 1] = u
      if not u.service then self.batch = self.batch + 1 end
      self.unended = self.unended + 1
    end
    self.by_job[name] = list
  end
  -- Every name up front, so prefixes are padded to one width from the first line.
  for _, u in ipairs(self.units) do opts.out:register(u.name) end
  -- hook: units whose job says executor = "slurm" go to lrun.slurm (which may
  -- submit the whole graph now, and fail: nothing is left submitted then)
  local ex, ex_err = require("lrun.slurm").wrap(spec, opts, executor.new {
    loop = self.loop, out = self.out, env = opts.env or core.environ(),
    run_id = opts.run_id, grace = self.grace, on_group = opts.watchdog,
    on_leftover = function(u, pgid)
      if u.stopping or self.shutting then return end   -- being stopped anyway
      self:_say(string.format("job %s: its process group %d outlived it; stopping it",
        u.name, pgid))
      self:_emit("leftover", u, { pgid = pgid })
    end,
  }, self.units)
  if not ex then return nil, ex_err end
  self.ex = ex
  return self
end

function Runner:_say(msg)
  self.out:message(msg)
end

function Runner:_emit(kind, u, fields)
  if not self.events then return end
  fields = fields or {}
  fields.job = u.name
  fields.instance = u.instance
  fields.attempt = u.attempt
  self.events:emit(kind, fields)
end

function Runner:_grace(job)
  return job.kill_grace or self.grace
end

---------------------------------------------------------------------------------------
-- needs

-- "met", "never" (can no longer be met) or "wait", for one need over a job's units.
local function need_state(units, cond)
  local all = true
  for _, v in ipairs(units) do
    local s, met, never = v.state, false, false
    if cond == "success" then
      met, never = s == "ok", ENDED[s] and s ~= "ok"
    elseif cond == "done" then
      met = ENDED[s]
    elseif cond == "started" then
      met, never = v.ever_started, s == "skipped"
    elseif cond == "ready" then
      met = v.is_ready or (not v.service and s == "ok")
      never = ENDED[s] and not met
    elseif cond == "failure" then
      met, never = FAILED[s], s == "ok" or s == "skipped" or s == "stopped"
    end
    if never then return "never" end
    all = all and met
  end
  return all and "met" or "wait"
end

function Runner:_evaluate(u)
  if u.state ~= "waiting" then return end
  for _, need in ipairs(u.job.needs) do
    local st = need_state(self.by_job[need.name], need.cond)
    if st == "never" then
      -- A job that runs only on another's failure is not at fault when that
      -- other job succeeded: its skip does not fail the run.
      u.benign = need.cond == "failure" and need_state(self.by_job[need.name], "success") == "met"
      return self:_finish(u, "skipped", string.format("needs %s (%s), which can no longer be met",
        need.name, need.cond))
    elseif st == "wait" then
      return
    end
  end
  u.state = "queued"
  local q = u.service and self.svc_queue or self.queue
  q[#q + 1] = u
end

-- Something about `job` changed: look again at the units that need it.
function Runner:_changed(job)
  for _, name in ipairs(self.dependents[job.name] or {}) do
    for _, v in ipairs(self.by_job[name] or {}) do self:_evaluate(v) end
  end
  self:_fill()
end

---------------------------------------------------------------------------------------
-- starting

function Runner:_fill()
  if self.halted or self.shutting then return end
  local sq = self.svc_queue
  while sq[1] do
    local v = table.remove(sq, 1)
    if v.state == "queued" then self:_start(v) end
  end
  local q = self.queue
  while self.qhead <= #q and self.running_jobs < self.jobs_limit do
    local u = q[self.qhead]
    self.qhead = self.qhead + 1
    if u.state == "queued" then self:_start(u) end
  end
  if self.qhead > 64 and self.qhead > #q // 2 then   -- drop the consumed head
    local rest = #q - self.qhead + 1
    table.move(q, self.qhead, #q, 1)
    for i = #q, rest + 1, -1 do q[i] = nil end
    self.qhead = 1
  end
end

function Runner:_user_policy(job)
  if job.on_exit then return job.on_exit end
  if job.policy then return self.spec.policies[job.policy] or policy.builtin[job.policy] end
end

function Runner:_start(u)
  local job = u.job
  u.attempt = u.attempt + 1
  u.state = "running"
  u.is_ready = false
  u.started = core.now()
  u.started_wall = core.realtime()
  u.timed_out, u.stopping = false, false
  if not u.service then self.running_jobs = self.running_jobs + 1 end
  local probe
  if job.ready then
    local ok, p = pcall(ready.new, job, self.loop, {
      watch_output = function(fn)
        local function w(line, stream) fn(line, stream) end
        self.out:watch(u.name, w)
        return function() self.out:unwatch(u.name, w) end
      end,
    })
    local spawn_opts = p
    if ok then ok, spawn_opts = pcall(p.spawn_opts, p) end
    if not ok then
      local why = "readiness probe: " .. tostring(spawn_opts)
      self:_say(string.format("job %s: %s", u.name, why))
      return self:_exited(u, nil, nil, why)
    end
    probe = p
    probe.opts = spawn_opts
  end
  u.probe = probe
  self.out:register(u.name)
  local h, err = self.ex:start(u, {
    spawn_opts = probe and probe.opts or nil,
    exit = function(status, handle) self:_exited(u, status, handle) end,
  })
  if not h then
    if probe then probe:cancel() end
    u.probe = nil
    self:_say(string.format("job %s: %s", u.name, err))
    return self:_exited(u, nil, nil, err)
  end
  u.handle, u.pid = h, h.pid
  u.ever_started = true
  if self.verbose then self:_say(string.format("job %s: started (pid %d)", u.name, h.pid)) end
  self:_emit("start", u, { pid = h.pid })
  -- hook: an executor whose units queue first (Slurm) arms the timeout once it runs
  local function arm()
    u.timer = self.loop:timer(job.timeout, function()
      u.timer = nil
      if not LIVE[u.state] then return end
      u.timed_out = true
      self:_say(string.format("job %s: timed out after %gs; sending %s", u.name, job.timeout,
        job.kill_signal))
      self:_emit("timeout", u, { after = job.timeout })
      self.ex:stop(h, job.kill_signal, self:_grace(job))
    end)
  end
  if job.timeout then
    if h.defers_start then h.on_running = arm else arm() end
  end
  if probe then
    probe:after_spawn()
    probe:start(h.pid, function() self:_ready(u) end, function(why)
      self:_say(string.format("job %s: not ready: %s", u.name, why))
      self:_emit("unready", u, { reason = why })
      u.unready = why
      self.ex:stop(h, job.kill_signal, self:_grace(job))
    end)
  else
    self:_ready(u)
  end
  self:_changed(job)
end

function Runner:_ready(u)
  if not LIVE[u.state] or u.is_ready then return end
  u.is_ready = true
  u.ready_at = core.now()
  if u.service then u.state = "ready" end
  if u.job.ready then
    if self.verbose or u.service then self:_say(string.format("job %s: ready", u.name)) end
    self:_emit("ready", u, { after = u.ready_at - u.started })
  end
  self:_changed(u.job)
end

---------------------------------------------------------------------------------------
-- exits

local function is_success(job, status, stopping)
  if not status then return false end
  if status.how == "exit" then return job.success_codes[status.code] == true end
  return stopping and STOP_SIGNALS[status.signame] == true
end

function Runner:_exited(u, status, h, spawn_err)
  local job = u.job
  if u.timer then u.timer:cancel(); u.timer = nil end
  if u.probe then u.probe:cancel(); u.probe = nil end
  if not u.service then self.running_jobs = self.running_jobs - 1 end
  u.status, u.spawn_error = status, spawn_err
  u.ended = core.now()
  -- hook: the executor's own word on the run (Slurm's elapsed, TIMEOUT, NODE_FAIL...)
  if h and h.timed_out then u.timed_out = true end
  spawn_err = spawn_err or (h and h.failure)
  local runtime = h and h.elapsed or (u.ended - (u.started or u.ended))
  u.runtime = runtime
  local ok = is_success(job, status, u.stopping)
  u.cpu = status and status.rusage and (status.rusage.utime + status.rusage.stime) or nil
  u.maxrss = status and status.rusage and math.max(u.maxrss or 0, status.rusage.maxrss)
    or u.maxrss
  u.bytes = h and h.bytes or 0
  self:_emit("exit", u, {
    pid = u.pid, how = status and status.how or "error", code = status and status.code,
    signal = status and status.signame, runtime = runtime, error = spawn_err,
  })

  if self.shutting or u.stopping and not u.timed_out and not u.unready then
    return self:_finish(u, "stopped")
  end
  local ev = {
    job = job.name, name = u.name, instance = u.instance, pid = u.pid,
    -- a spawn that failed still gives policies a status to look at
    status = status or { how = "error", error = spawn_err },
    error = spawn_err, success = ok and not u.timed_out, stopping = u.stopping,
    timed_out = u.timed_out, kind = job.kind, attempt = u.attempt, retries = job.retries,
    restarts = u.restarts, runtime = runtime,
    since_ready = u.ready_at and (u.ended - u.ready_at) or nil,
    restart = job.restart,
  }
  local user_fn = self:_user_policy(job)
  -- only a user's policy reads the output tail; the built-ins never do
  if user_fn then ev.last_lines = self.out:tail(u.name, 10) end
  local decision, perr = policy.decide(job, ev, user_fn)
  if perr then self:_say(string.format("job %s: policy: %s", u.name, perr)) end
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
  else
    return self:_finish(u, failed_result, u.unready or spawn_err)
  end
end

-- Run the unit again after `delay` (policy's) or its own backoff / retry_delay.
function Runner:_again(u, delay, ev)
  local job = u.job
  -- Services, and jobs re-run beyond their retries by a policy, go through the
  -- start limit and the backoff: no policy can make lrun spin.
  if u.service or u.attempt > job.retries then
    u.limiter = u.limiter or policy.limiter(job)
    if u.stable_timer then u.stable_timer:cancel() end
    -- Up and ready long enough: the crash loop is over, start the backoff afresh.
    if ev.since_ready and ev.since_ready >= policy.stable_period(job) then
      u.restarts = 0
      u.limiter:reset()
    end
    if not u.limiter:record(core.now(), ev.runtime, u.status) then
      self:_say(string.format("job %s: gave up: %s; last exit: %s", u.name,
        u.limiter:reason(), M.describe_status(u.status, u.spawn_error)))
      return self:_finish(u, "gave up")
    end
    u.restarts = u.restarts + 1
    delay = delay or policy.backoff(job, u.restarts)
    u.state = u.service and "backoff" or "retrying"
  else
    delay = delay or job.retry_delay
    u.state = "retrying"
    u.restarts = u.restarts + 1
  end
  self:_say(string.format("job %s: %s (%s), %s in %.2fs", u.name,
    M.describe_status(u.status, u.spawn_error), u.service and "restart" or "retry",
    u.service and ("restart " .. u.restarts) or ("attempt " .. (u.attempt + 1)), delay))
  self:_emit("restart", u, { delay = delay })
  u.is_ready = false
  self:_changed(job)
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

function Runner:_finish(u, result, reason)
  u.state = result
  self.unended = self.unended - 1
  -- Its output is complete (group mode prints it now) and its buffers can go.
  self.out:forget(u.name)
  u.envp, u.handle, u.copts = nil, nil, nil
  u.reason = reason
  if u.again then u.again:cancel(); u.again = nil end
  if not u.service then self.batch = self.batch - 1 end
  if result == "skipped" then
    self:_emit("skip", u, { reason = reason })
    if self.verbose then self:_say(string.format("job %s: skipped: %s", u.name, reason)) end
  elseif result == "failed" or result == "timeout" then   -- "gave up" said why already
    self:_say(string.format("job %s: %s (%s)", u.name, result,
      M.describe_status(u.status, u.spawn_error)))
  end
  if self.joblog and result ~= "skipped" and u.attempt > 0 then
    self.seq = self.seq + 1
    local st = u.status
    self.joblog:write {
      seq = self.seq, start = u.started_wall, runtime = u.runtime or 0,
      receive = u.bytes or 0,
      exitval = st and st.how == "exit" and st.code or (st and 0 or 127),
      signal = st and st.how == "signal" and st.signal or 0,
      command = u.job.argv or u.job.cmd,
    }
  end
  if FAILED[result] then self:_failure(u, result) end
  self:_changed(u.job)
  self:_maybe_done()
end

function Runner:_failure(u, result)
  if result == "gave up" and self.exit_on_failure then
    return self:shutdown(nil, "service " .. u.name .. " gave up")
  end
  if self.keep_going or self.halted or u.service then return end
  -- make's behaviour: the first failure stops new starts; running jobs finish.
  self.halted = true
  for _, v in ipairs(self.units) do
    if (v.state == "waiting" or v.state == "queued") and not v.service then
      self:_finish(v, "skipped", "not started after a failure")
    end
  end
end

---------------------------------------------------------------------------------------
-- the end

-- Units still running that nothing live needs: these may stop now (reverse order).
function Runner:_stoppable(u)
  for _, name in ipairs(self.dependents[u.job.name] or {}) do
    for _, v in ipairs(self.by_job[name] or {}) do
      if LIVE[v.state] then return false end
    end
  end
  return true
end

function Runner:_stop_some()
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

-- Stop everything: `signal` (a number) when lrun was signalled, else nil.
function Runner:shutdown(signal, why)
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

function Runner:_maybe_done()
  if self.shutting then
    self:_stop_some()
  elseif self.batch == 0 then
    local any_service = false
    for _, u in ipairs(self.units) do
      if u.service and not ENDED[u.state] then any_service = true end
    end
    local had_batch = false
    for _, u in ipairs(self.units) do
      if not u.service then had_batch = true break end
    end
    if had_batch and any_service then return self:shutdown(nil, nil) end
  end
end

function Runner:finished()
  return self.unended == 0 and not self.ex:busy()
end

function M.describe_status(st, err)
  if err then return err end
  if not st then return "not run" end
  if st.how == "exit" then return "exit " .. st.code end
  return "SIG" .. tostring(st.signame) .. (st.core and ", core dumped" or "")
end

-- Run to the end. Returns the exit code (DESIGN.md).
function Runner:run()
  for _, u in ipairs(self.units) do self:_evaluate(u) end
  self:_fill()
  self:_maybe_done()
  self.loop:run(function() return self:finished() end)
  self.ex:close()
  if self.shutting and self.shutting.signal then return 128 + self.shutting.signal end
  for _, u in ipairs(self.units) do
    if u.state ~= "ok" and not (u.service and u.state == "stopped") and not u.benign then
      return 1
    end
  end
  return 0
end

function Runner:results()
  local rows = {}
  for _, u in ipairs(self.units) do
    local st = u.status
    rows[#rows + 1] = {
      name = u.name, result = u.state, code = st and st.how == "exit" and st.code or nil,
      signame = st and st.how == "signal" and st.signame or nil,
      duration = u.runtime, cpu = u.cpu, maxrss = u.maxrss, attempts = u.attempt,
    }
  end
  return rows
end

-- For --status: one line per unit.
function Runner:states()
  local list = {}
  for _, u in ipairs(self.units) do
    list[#list + 1] = { name = u.name, state = u.state, pid = LIVE[u.state] and u.pid or nil,
      restarts = u.restarts, attempt = u.attempt }
  end
  return list
end

function Runner:counts()
  local c = { done = 0, running = 0, queued = 0, failed = 0 }
  for _, u in ipairs(self.units) do
    if LIVE[u.state] then c.running = c.running + 1
    elseif ENDED[u.state] then
      c.done = c.done + 1
      if FAILED[u.state] then c.failed = c.failed + 1 end
    else c.queued = c.queued + 1 end
  end
  c.total = #self.units
  return c
end

return M
