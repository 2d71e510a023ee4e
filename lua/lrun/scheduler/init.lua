--- lrun.scheduler: the graph scheduler. It turns a validated spec into units (one per
-- job instance, lrun.units), starts them through an executor as their needs are met
-- and slots are free, asks the reaper policy (lrun.policy) what each exit means, and
-- stops everything in reverse dependency order at the end or on a signal.
--
--   local s = scheduler.new(spec, selected, { loop =, out =, executor =, jobs =, ... })
--   local code = s:run()          -- to the end; the exit code of the run
--   s:shutdown(sig, why)          -- as on SIGTERM (sig = 15) or a stop request (nil)
--   s:abort(why)                  -- a shutdown that fails the run
--   s:orphan_reaped()             -- a re-parented orphan ended: a group may be empty
--   s:results(), s:states(), s:counts()
--   s:start_unit(u), s:stop_unit(u), s:add_jobs(...), ...   -- lrun.scheduler.ops
--
-- `-j N` bounds running *jobs*; services run outside the bound (a service holding a
-- slot forever would starve the jobs that need it). A run with batch jobs ends when
-- they have all ended (services are then stopped); a run of services only goes on
-- until lrun is told to stop.
--
-- The executor (lrun.executor) owns processes; the scheduler knows units and the
-- handles the executor gives back, whose `pid` it only reports (events, --status,
-- readiness probes). A spawn that fails for want of resources (EAGAIN, ENOMEM) is
-- tried again with a backoff for up to SPAWN_PATIENCE seconds before the unit fails.
local core = require "lprocess.core"
local graph = require "lrun.graph"
local policy = require "lrun.policy"
local ready = require "lrun.ready"
local units = require "lrun.units"
local exits = require "lrun.scheduler.exits"
local needs = require "lrun.scheduler.needs"
local stopping = require "lrun.scheduler.stopping"
local ops = require "lrun.scheduler.ops"

local M = {}
local Scheduler = {}
Scheduler.__index = Scheduler
exits.install(Scheduler)
needs.install(Scheduler)
stopping.install(Scheduler)
local describe = exits.describe
M.describe = describe
ops.install(Scheduler, describe)

local FAILED, LIVE = units.FAILED, units.LIVE
local ON_START, ON_READY = needs.ON_START, needs.ON_READY

M.SPAWN_PATIENCE = 10                  -- seconds a transient spawn failure is retried
local TRANSIENT = { [core.errno.EAGAIN] = true, [core.errno.ENOMEM] = true }

-- opts: loop, out, executor (an executor, or a function(units) -> executor | nil,
-- message, for one that must see the units first: Slurm's up-front submission),
-- jobs, keep_going, grace, events, joblog, exit_on_failure, verbose
-- -> scheduler | nil, message
function M.new(spec, selected, opts)
  local self = setmetatable({
    spec = spec,
    loop = opts.loop,
    out = opts.out,
    ex = opts.executor,
    jobs_limit = opts.jobs or spec.settings.jobs or 1,
    keep_going = opts.keep_going or spec.settings.keep_going,
    exit_on_failure = opts.exit_on_failure or spec.settings.exit_on_failure,
    grace = opts.grace or spec.settings.grace or 5,
    events = opts.events,
    joblog = opts.joblog,
    verbose = opts.verbose,
    queue = {}, qhead = 1,   -- jobs whose needs are met, in plan order
    svc_queue = {},          -- services: they start at once, outside the -j bound
    running_jobs = 0,
    halted = false,      -- a failure without -k: no new starts
    shutting = nil,      -- nil | { signal = N or nil, sig = "TERM" }
    batch = 0,           -- job units not yet ended
    seq = 0,
    -- wall clock = monotonic + this (the joblog's start column): no wall time per unit
    wall_offset = core.realtime() - core.now(),
  }, Scheduler)
  -- The executor's hooks, one table for every start: the unit is the handle's.
  self.hooks = { spawn_opts = nil, exit = function(st, h) self:_exited(h.unit, st, h) end }
  self.order = assert(graph.order(spec, selected))
  self.units, self.by_job = units.build(spec, self.order)
  self:_index_needs()
  for _, u in ipairs(self.units) do
    if not u.service then self.batch = self.batch + 1 end
  end
  self.unended = #self.units
  -- Every name up front, so prefixes are padded to one width from the first line.
  for _, u in ipairs(self.units) do self.out:register(u.name) end
  if type(self.ex) == "function" then
    local ex, err = self.ex(self.units)
    if not ex then return nil, err end
    self.ex = ex
  end
  return self
end

function Scheduler:_say(msg)
  self.out:message(msg)
end

-- Whether an event of `u` is read by anyone: a quiet bus only keeps an exit's output.
function Scheduler:_heard(kind, u)
  local events = self.events
  if not events then return false end
  if events.quiet and events:quiet() then
    if kind == "exit" then events:ended(u.name) end
    return false
  end
  return true
end

-- An event to the bus, unasked (the caller has asked _heard: its fields cost a table).
function Scheduler:_send(kind, u, fields)
  fields = fields or {}
  fields.job = u.name
  fields.instance = u.instance
  fields.attempt = u.attempt
  self.events:emit(kind, fields)
end

function Scheduler:_emit(kind, u, fields)
  if self:_heard(kind, u) then self:_send(kind, u, fields) end
end

function Scheduler:_grace(job)
  return job.kill_grace or self.grace
end

-- The executor saw a group outlive its leader; it is stopping it.
function Scheduler:leftover(u, pgid)
  if u.stopping or self.shutting then return end   -- being stopped anyway
  self:_say(string.format("job %s: its process group %d outlived it; stopping it",
    u.name, pgid))
  self:_emit("leftover", u, { pgid = pgid })
end

function Scheduler:orphan_reaped()
  self.ex:check_groups()
end

---------------------------------------------------------------------------------------
-- starting

function Scheduler:_fill()
  if self.halted or self.shutting then return end
  local sq, q = self.svc_queue, self.queue
  if not sq[1] and (self.qhead > #q or self.running_jobs >= self.jobs_limit) then return end
  while sq[1] do
    local v = table.remove(sq, 1)
    if v.state == "queued" then self:_start(v) end
  end
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

function Scheduler:_user_policy(job)
  if job.on_exit then return job.on_exit end
  if job.policy then return self.spec.policies[job.policy] or policy.builtin[job.policy] end
end

-- The readiness probe of a unit whose job has `ready`, with its spawn options;
-- nil, why when the probe cannot be set up.
function Scheduler:_probe(u)
  local ok, p = pcall(ready.new, u.job, self.loop, {
    watch_output = function(fn)
      local function w(line, stream) fn(line, stream) end
      self.out:watch(u.name, w)
      return function() self.out:unwatch(u.name, w) end
    end,
  })
  local spawn_opts = p
  if ok then ok, spawn_opts = pcall(p.spawn_opts, p) end
  if not ok then return nil, "readiness probe: " .. tostring(spawn_opts) end
  p.opts = spawn_opts
  return p
end

function Scheduler:_arm_timeout(u, h)
  local job = u.job
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

-- A spawn that failed for want of resources: try again after a backoff, for at most
-- SPAWN_PATIENCE seconds from the first failure. -> true when a retry is planned.
function Scheduler:_spawn_later(u, err)
  local now = core.now()
  u.spawn_trouble = u.spawn_trouble or now
  if now - u.spawn_trouble >= M.SPAWN_PATIENCE then return false end
  if not u.spawn_said then
    u.spawn_said = true
    self:_say(string.format("job %s: %s; trying again for up to %gs", u.name, err,
      M.SPAWN_PATIENCE))
  end
  u.spawn_tries = (u.spawn_tries or 0) + 1
  local delay = math.min(0.05 * 2 ^ (u.spawn_tries - 1), 1)
  u.attempt = u.attempt - 1             -- the retry is the same attempt
  u.state = "queued"
  u.again = self.loop:timer(delay, function()
    u.again = nil
    if self.shutting or (self.halted and not u.service) then
      return self:_finish(u, "skipped", "not started: lrun is stopping")
    end
    if u.service then return self:_start(u) end
    table.insert(self.queue, self.qhead, u)
    self:_fill()
  end)
  return true
end

function Scheduler:_start(u)
  local job = u.job
  u.attempt = u.attempt + 1
  u.state = "running"
  -- A unit is ready from ready_at on; not from an earlier run's (nil: not yet).
  u.ready_at = nil
  u.started = core.now()
  u.timed_out, u.stopping = nil, nil
  if not u.service then self.running_jobs = self.running_jobs + 1 end
  local probe, err, errno
  if job.ready then
    probe, err = self:_probe(u)
    if not probe then
      self:_say(string.format("job %s: %s", u.name, err))
      return self:_exited(u, nil, nil, err)
    end
  end
  local hooks = self.hooks
  hooks.spawn_opts = probe and probe.opts or nil
  local h
  h, err, errno = self.ex:start(u, hooks)
  if not h then
    if probe then probe:cancel() end
    if TRANSIENT[errno] then
      if not u.service then self.running_jobs = self.running_jobs - 1 end
      if self:_spawn_later(u, err) then return end
      if not u.service then self.running_jobs = self.running_jobs + 1 end
    end
    self:_say(string.format("job %s: %s", u.name, err))
    return self:_exited(u, nil, nil, err)
  end
  u.spawn_trouble, u.spawn_said, u.spawn_tries = nil, nil, nil
  u.handle, u.pid = h, h.pid   -- a pid: the unit has started (the "started" need)
  if self.verbose then self:_say(string.format("job %s: started (pid %d)", u.name, h.pid)) end
  if self:_heard("start", u) then self:_send("start", u, { pid = h.pid }) end
  if job.timeout then
    -- an executor whose units queue first (Slurm) says when the unit really runs
    if h.defers_start then
      h.on_running = function() self:_arm_timeout(u, h) end
    else
      self:_arm_timeout(u, h)
    end
  end
  if probe then
    u.probe = probe
    probe:after_spawn()
    probe:start(h.pid, function() self:_ready(u) end, function(why)
      self:_say(string.format("job %s: not ready: %s", u.name, why))
      self:_emit("unready", u, { reason = why })
      u.unready = why
      self.ex:stop(h, job.kill_signal, self:_grace(job))
    end)
  else
    self:_ready(u, true)
  end
  self:_changed(job, ON_START)
end

-- held: the caller looks at the needs itself (a start without a probe is its ready).
function Scheduler:_ready(u, held)
  if not LIVE[u.state] or u.ready_at then return end
  u.ready_at = core.now()
  if u.service then u.state = "ready" end
  if u.job.ready then
    if self.verbose or u.service then self:_say(string.format("job %s: ready", u.name)) end
    self:_emit("ready", u, { after = u.ready_at - u.started })
  end
  if not held then self:_changed(u.job, ON_READY) end
end

function Scheduler:_finish(u, result, reason)
  u.state = result
  self.unended = self.unended - 1
  -- Its output is complete (group mode prints it now) and its buffers can go.
  self.out:forget(u.name)
  self.ex:forget(u)
  u.handle = nil
  u.reason = reason
  if u.again then u.again:cancel(); u.again = nil end
  if not u.service then self.batch = self.batch - 1 end
  if result == "skipped" then
    self:_emit("skip", u, { reason = reason })
    if self.verbose then self:_say(string.format("job %s: skipped: %s", u.name, reason)) end
  elseif result == "failed" or result == "timeout" then   -- "gave up" said why already
    self:_say(string.format("job %s: %s (%s)", u.name, result, describe(u)))
  end
  if self.joblog and result ~= "skipped" and u.attempt > 0 then self:_joblog(u) end
  if FAILED[result] then self:_failure(u, result) end
  if u.on_end then self:_ended_hook(u) end   -- a restart by hand comes back here
  self:_changed(u.job)
  self:_maybe_done()
end

function Scheduler:_failure(u, result)
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

function Scheduler:finished()
  -- `hold`: a services-only run whose units were stopped by hand goes on
  return self.unended == 0 and not self.ex:busy() and not (self.hold and not self.shutting)
end

-- Run to the end. Returns the exit code (doc/design.md, "Exit codes").
function Scheduler:run()
  for _, u in ipairs(self.units) do self:_evaluate(u) end
  self:_fill()
  self:_maybe_done()
  self.loop:run(function() return self:finished() end)
  self.ex:close()
  if self.shutting and self.shutting.signal then return 128 + self.shutting.signal end
  if self.aborted then return 1 end
  for _, u in ipairs(self.units) do
    if u.state ~= "ok" and not (u.service and u.state == "stopped") and not u.benign then
      return 1
    end
  end
  return 0
end

function Scheduler:results() return units.results(self.units) end
function Scheduler:states() return units.states(self.units) end
function Scheduler:counts() return units.counts(self.units) end

return M
