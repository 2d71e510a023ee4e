-- lrun.slurm: the Slurm executor -- each unit (job instance) is one Slurm batch job.
--
--   local ex = slurm.new{ loop=, out=, run_id=, grace=, out_dir= }
--   local h, err = ex:start(unit, hooks)   -- sbatch; hooks.exit(status, h) at its end
--   ex:stop(h, sig, grace) / ex:signal(h, sig) / ex:kill_all() / ex:busy() / ex:close()
--   slurm.wrap(spec, opts, local_ex, units) -- the runner's executor: local_ex alone,
--                                          -- or one that sends each unit to its own
--
-- The scheduler submits a unit when its needs are met, as it starts a local one, so
-- every need condition, readiness, services and Lua policies mean what they mean
-- locally; or, when the whole graph has Slurm equivalents, wrap submits it up front
-- (lrun.slurm.upfront) and starting a unit claims its job. Every job of the run is
-- watched by ONE squeue per tick (0.5 s, slowing to 2 s while nothing changes),
-- spawned through the loop and read as it comes, so lrun never blocks on Slurm for
-- long; the same tick reads what the jobs' output files gained (lrun.slurm.follow).
-- A handle carries, for the scheduler: pid (the Slurm job id), elapsed (Slurm's
-- run time), timed_out (Slurm's TIMEOUT), failure (OUT_OF_MEMORY, NODE_FAIL, ...:
-- the reason shown) and on_running (set by the scheduler: called once the job
-- leaves the queue, so a timeout counts run time).
--
-- Stopping: scancel --full -s SIG, then a plain scancel after grace; a job still
-- pending is cancelled at once. Cancels asked for in one loop turn go out as one
-- scancel. The unit's exit is announced only once squeue shows it ended.
local core = require "lprocess.core"
local sbatch = require "lrun.slurm.sbatch"
local poll = require "lrun.slurm.poll"
local follow = require "lrun.slurm.follow"

local M = {}
local Slurm = {}
Slurm.__index = Slurm

M.MIN_INTERVAL, M.MAX_INTERVAL = 0.5, 2
-- squeue no longer lists a job (purged, or the controller restarted) this many
-- times in a row: ask scontrol, then the jobcomp file, then give up on it.
local MISSING_LIMIT = 3

function M.new(opts)
  return setmetatable({
    loop = opts.loop, out = opts.out, run_id = opts.run_id, grace = opts.grace or 5,
    out_dir = opts.out_dir, jobcomp = nil,
    jobs = {},          -- key ("123", "124_7") -> handle, until squeue shows its end
    interval = M.MIN_INTERVAL,
    cancels = nil,      -- signal ("" = plain scancel) -> ids, flushed once per loop turn
    failures = 0,
  }, Slurm)
end

-- The directory for -o/-e must exist before sbatch runs (Slurm does not make it).
function Slurm:_ensure_dir()
  if self.dir_ok then return true end
  local ok, out = poll.run({ "mkdir", "-p", self.out_dir }, 10)
  if not ok then return nil, "slurm output directory: " .. out:gsub("%s+$", "") end
  self.dir_ok = true
  self.out:message(string.format("slurm: run %s (lrun --executor slurm --cancel %s), " ..
    "job output in %s", self.run_id, self.run_id, self.out_dir))
  if self.as_needed_why then
    self.out:message("slurm: each job is submitted when its needs are met (" ..
      self.as_needed_why .. ": no Slurm equivalent)")
  end
  return true
end

-- A handle watches one Slurm job, or one task of an array job: key is what squeue
-- (JobArrayID), scancel and scontrol call it ("123", "124_7"), id the job id.
function Slurm:_watch(unit, id, key, array)
  local h = { unit = unit, id = id, key = key, pid = id, state = "PENDING",
    defers_start = true, submitted = core.now(), followers = {} }
  local out_path, err_path = sbatch.out_paths(unit, self.out_dir, key, array)
  if out_path then h.followers[1] = follow.new(self.out, unit.name, "stdout", out_path) end
  if err_path then h.followers[#h.followers + 1] = follow.new(self.out, unit.name, "stderr", err_path) end
  self.jobs[key] = h
  return h
end

-- sbatch a unit (with a Slurm dependency, for the up-front path), or every unit of
-- a job as one array job (`array` = the units, instances 0..N-1). The handle (the
-- list of them, for an array) is watched from now on, and claimed by start.
function Slurm:submit(unit, dependency, array)
  local ok, err = self:_ensure_dir()
  if not ok then return nil, err end
  local argv = sbatch.argv(unit, { run_id = self.run_id, out_dir = self.out_dir,
    grace = self.grace, dependency = dependency, array = array and #array })
  local answer
  ok, answer = poll.run(argv, 60)
  local id = ok and tonumber(answer:match("^%s*(%d+)"))
  if not id then
    return nil, "sbatch: " .. (answer:gsub("%s+$", ""):gsub("\n", "; "))
  end
  self:_kick()
  if not array then return self:_watch(unit, id, tostring(id)) end
  local list = {}
  for i, u in ipairs(array) do list[i] = self:_watch(u, id, id .. "_" .. u.instance, true) end
  return list
end

function Slurm:start(unit, hooks)
  local extra = hooks.spawn_opts
  if extra and (next(extra.fds or {}) or next(extra.setenv or {})) then   -- notify
    return nil, "a notify readiness probe cannot reach a Slurm job (use log, file or tcp)"
  end
  local h = self.pre and self.pre[unit.name]
  if not h then
    local err
    h, err = self:submit(unit)
    if not h then return nil, err end
    h.hooks = hooks
    return h
  end
  -- Submitted up front: Slurm may have run it already; tell the scheduler once
  -- it has what start returns.
  self.pre[unit.name] = nil
  h.hooks = hooks
  self.loop:defer(function()
    if h.status then
      self:_deliver(h)
    elseif h.left_queue and h.on_running then
      h.on_running()
    end
  end)
  return h
end

-- Up-front jobs whose unit the scheduler ended without starting it (skipped after
-- a failure, or lrun is stopping): cancel them.
function Slurm:_abandon()
  for _, h in pairs(self.pre or {}) do
    local st = h.unit.state
    if not h.abandoned and st ~= "waiting" and st ~= "queued" and self.jobs[h.key] then
      h.abandoned = true
      self:_cancel(h.key)
    end
  end
end

-- Something changed: look again soon, at the fastest pace.
function Slurm:_kick()
  self.interval = M.MIN_INTERVAL
  if self.timer and self.timer_at - core.now() > M.MIN_INTERVAL then
    self.timer:cancel()
    self.timer = nil
  end
  if not self.timer then self:_schedule(M.MIN_INTERVAL) end
end

function Slurm:_schedule(delay)
  self.timer_at = core.now() + delay
  self.timer = self.loop:timer(delay, function()
    self.timer = nil
    self:_tick()
  end)
end

function Slurm:_tick()
  if not next(self.jobs) then return end
  self:_abandon()
  local grew = false
  for _, h in pairs(self.jobs) do
    if h.hooks then   -- an up-front job's output waits until its unit starts
      for _, f in ipairs(h.followers) do
        if f:poll() > 0 then grew = true end
      end
    end
  end
  if not self.querying then self:_query() end
  if grew then self.interval = M.MIN_INTERVAL end
  self:_schedule(self.interval)
end

function Slurm:_query()
  local ids, seen = {}, {}
  for _, h in pairs(self.jobs) do
    if not seen[h.id] then ids[#ids + 1], seen[h.id] = h.id, true end
  end
  table.sort(ids)
  self.querying = true
  poll.async(self.loop, poll.squeue_argv(ids), function(ok, text)
    self.querying = false
    if not ok then
      self.failures = self.failures + 1
      if self.failures == 10 then
        self.out:message("slurm: squeue keeps failing (" .. text:gsub("%s+$", "") ..
          "); still trying")
      end
      return
    end
    self.failures = 0
    self:_update(poll.parse_squeue(text))
  end)
end

function Slurm:_update(recs)
  local changed = false
  -- a unit's end may submit others: walk a copy of the table
  local list = {}
  for _, h in pairs(self.jobs) do list[#list + 1] = h end
  table.sort(list, function(a, b)
    if a.id ~= b.id then return a.id < b.id end
    return a.unit.instance < b.unit.instance
  end)
  for _, h in ipairs(list) do
    local rec = recs[h.key]
    if rec then
      h.missing = 0
      if rec.JobState ~= h.state then
        changed = true
        h.state = rec.JobState
        if rec.JobState ~= "PENDING" and not h.left_queue then
          h.left_queue = true
          if h.on_running then h.on_running() end
        end
      end
      local status, extra = poll.outcome(rec)
      if status then self:_ended(h, status, extra) end
    else
      h.missing = (h.missing or 0) + 1
      if h.missing >= MISSING_LIMIT then
        changed = true
        self:_lost(h)
      end
    end
  end
  if changed then
    self.interval = M.MIN_INTERVAL
  else
    self.interval = math.min(self.interval * 1.5, M.MAX_INTERVAL)
  end
end

-- The jobcomp/filetxt log, when the cluster keeps one (asked once).
function Slurm:_jobcomp()
  if self.jobcomp == nil then
    local ok, text = poll.run({ "scontrol", "show", "config" }, 10)
    self.jobcomp = ok and text:find("JobCompType%s*=%s*jobcomp/filetxt")
      and text:match("JobCompLoc%s*=%s*(%S+)") or false
  end
  return self.jobcomp or nil
end

-- squeue forgot the job: scontrol may still know it, the jobcomp file keeps it.
function Slurm:_lost(h)
  local ok, text = poll.run({ "scontrol", "-o", "show", "job", h.key }, 10)
  local rec = ok and poll.parse_scontrol(text) or poll.from_jobcomp(self:_jobcomp(), h.key)
  local status, extra = rec and poll.outcome(rec)
  if not status then
    status = { how = "exit", code = 1 }
    extra = { failure = "Slurm job " .. h.key .. " vanished from the queue" }
  end
  self:_ended(h, status, extra)
end

function Slurm:_ended(h, status, extra)
  if not self.jobs[h.key] then return end
  self.jobs[h.key] = nil
  h.status, h.ended = status, core.now()
  h.elapsed, h.timed_out, h.failure = extra.elapsed, extra.timed_out, extra.failure
  h.skipped, h.slurm_state = extra.skipped, extra.state
  if h.kill_timer then h.kill_timer:cancel(); h.kill_timer = nil end
  if h.hooks then self:_deliver(h) end   -- else start delivers it
end

function Slurm:_deliver(h)
  if h.delivered then return end   -- claimed and seen ended in one loop turn
  h.delivered = true
  h.bytes = 0
  for _, f in ipairs(h.followers) do f:finish(); h.bytes = h.bytes + f.offset end
  h.hooks.exit(h.status, h)
end

---------------------------------------------------------------------------------------
-- cancelling

-- Queue a scancel of id with sig (nil: a plain cancel); one scancel per signal
-- goes out at the end of this loop turn.
function Slurm:_cancel(id, sig)
  if not self.cancels then
    self.cancels = {}
    self.loop:defer(function() self:_flush_cancels() end)
  end
  local key = sig or ""
  local list = self.cancels[key] or {}
  self.cancels[key] = list
  list[#list + 1] = tostring(id)
end

function Slurm:_flush_cancels()
  local cancels = self.cancels
  self.cancels = nil
  for sig, ids in pairs(cancels or {}) do
    local argv = { "scancel" }
    if sig ~= "" then table.move({ "--full", "--signal=" .. sig }, 1, 2, 2, argv) end
    table.move(ids, 1, #ids, #argv + 1, argv)
    local ok, text = poll.run(argv, 30)
    if not ok and text:find("%S") then
      self.out:message("slurm: " .. table.concat(argv, " ", 1, math.min(#argv, 6)) ..
        ": " .. text:gsub("%s+$", ""))
    end
  end
  self:_kick()
end

function Slurm:stop(h, sig, grace)
  if self.pre then self.loop:defer(function() self:_abandon() end) end
  if not self.jobs[h.key] then return end
  if h.stopping and sig ~= "KILL" then return end
  h.stopping = true
  if h.state == "PENDING" or sig == "KILL" then
    return self:_cancel(h.key)
  end
  self:_cancel(h.key, sig)
  if h.kill_timer then h.kill_timer:cancel() end
  h.kill_timer = self.loop:timer(grace or self.grace, function()
    h.kill_timer = nil
    if self.jobs[h.key] then self:_cancel(h.key) end
  end)
end

function Slurm:signal(h, sig)
  if self.jobs[h.key] and h.state ~= "PENDING" then self:_cancel(h.key, sig) end
end

-- Every job of the run, now (a second ^C).
function Slurm:kill_all()
  for id in pairs(self.jobs) do self:_cancel(id) end
  self:_flush_cancels()
end

-- Asked once every unit has ended: what Slurm still has of the run goes now.
function Slurm:busy()
  if self.pre then self:_abandon() end
  return next(self.jobs) ~= nil
end

function Slurm:check_groups() end

function Slurm:close()
  if self.cancels then self:_flush_cancels() end
  if self.timer then self.timer:cancel(); self.timer = nil end
end

---------------------------------------------------------------------------------------
-- a run whose units go to either executor

local Mux = {}
Mux.__index = Mux

function Mux:start(unit, hooks)
  local ex = self.pick(unit) == "slurm" and self.slurm or self.local_ex
  local h, err, errno = ex:start(unit, hooks)
  if h then h.ex = ex end
  return h, err, errno
end

function Mux:stop(h, sig, grace) return h.ex:stop(h, sig, grace) end
function Mux:signal(h, sig) return h.ex:signal(h, sig) end
function Mux:kill_all() self.local_ex:kill_all(); self.slurm:kill_all() end
function Mux:busy() return self.local_ex:busy() or self.slurm:busy() end
function Mux:check_groups() self.local_ex:check_groups() end
function Mux:forget(unit) self.local_ex:forget(unit) end
function Mux:close() self.local_ex:close(); self.slurm:close() end

-- Which executor a job uses: its own `executor`, else the run's (settings, or
-- --executor, which the command line writes into settings).
function M.executor_of(spec, job)
  return job.executor or spec.settings.executor or "local"
end

function M.uses_slurm(spec, names)
  for _, job in ipairs(spec.jobs) do
    if (not names or names[job.name]) and M.executor_of(spec, job) == "slurm" then
      return true
    end
  end
  return false
end

-- Where the jobs' -o/-e files go: --log-dir (or settings' log_dir), else
-- ./lrun-slurm/RUN_ID (a directory the compute nodes must see, as the job's own).
function M.out_dir(dir, run_id)
  dir = dir or ("lrun-slurm/" .. run_id)
  if dir:sub(1, 1) ~= "/" then dir = (core.getcwd() or ".") .. "/" .. dir end
  return dir
end

-- opts: the runner's (loop, out, run_id, slurm_dir, grace, jobs); local_ex: its
-- local executor, returned as it is when no job of the spec goes to Slurm; units:
-- the run's, in plan order. When the whole graph has Slurm equivalents it is
-- submitted here (lrun.slurm.upfront). -> executor | nil, message
function M.wrap(spec, opts, local_ex, units)
  if not M.uses_slurm(spec) then return local_ex end
  local slurm = M.new { loop = opts.loop, out = opts.out, run_id = opts.run_id,
    grace = opts.grace or spec.settings.grace,
    out_dir = M.out_dir(opts.slurm_dir or spec.settings.log_dir, opts.run_id) }
  local upfront = require "lrun.slurm.upfront"
  local ok, why = upfront.eligible(spec, units or {}, opts)
  if os.getenv("LRUN_SLURM_AS_NEEDED") == "1" then ok, why = false, "LRUN_SLURM_AS_NEEDED=1" end
  if ok and units and #units > 0 then
    local pre, err = upfront.submit(slurm, units)
    if not pre then return nil, "slurm: " .. err end
    slurm.pre = pre
    local n, seen = 0, {}
    for _, h in pairs(pre) do
      if not seen[h.id] then n, seen[h.id] = n + 1, true end
    end
    opts.out:message(("slurm: the whole graph went in up front (%d jobs in %d " ..
      "submissions, with Slurm dependencies)"):format(#units, n))
  elseif units then
    slurm.as_needed_why = why
  end
  return setmetatable({ local_ex = local_ex, slurm = slurm,
    pick = function(unit) return M.executor_of(spec, unit.job) end }, Mux)
end

return M
