-- lrun.slurm.upfront: submit a whole graph at once, with Slurm's own dependencies,
-- when every need and policy of it has a Slurm equivalent.
--
--   local ok, why = upfront.eligible(spec, units, opts)   -- opts: jobs, keep_going
--   local handles, err = upfront.submit(ex, units)        -- name -> handle | nil, err
--   upfront.lines(spec, units, run_id, out_dir)           -- what `-n` prints
--
-- A job's instances go in as one array job when nothing needs them with `failure`
-- or `started`. Then Slurm starts each job as soon as its dependencies allow, without waiting for
-- lrun to notice (a level costs Slurm's scheduling latency only); the scheduler
-- still runs the graph in its own view, and "starting" a unit only claims the job
-- Slurm already has. A need maps to afterok (success), afterany (done),
-- afternotok (failure) or after (started), over every instance of the job needed;
-- --kill-on-invalid-dep makes Slurm cancel what can no longer run, which lrun
-- shows as skipped, as it would have decided itself.
--
-- Not eligible (lrun submits as needs are met instead): a unit that is local, a
-- service, a `ready` probe or a `ready` need, an on_exit or Lua policy, retries
-- or restarts (a resubmitted job would need its dependents rewritten), success
-- codes other than 0 (Slurm's afterok means exit 0), or a -j bound below the
-- number of units (Slurm has no bound over a graph).
local sbatch = require "lrun.slurm.sbatch"
local poll = require "lrun.slurm.poll"

local M = {}

local DEP = { success = "afterok", done = "afterany", failure = "afternotok",
  started = "after" }

local function only_zero(codes)
  for c in pairs(codes) do
    if c ~= 0 then return false end
  end
  return codes[0] == true
end

local function why_not(spec, job)
  if (job.executor or spec.settings.executor) ~= "slurm" then return "a local job" end
  if job.kind == "service" then return "a service" end
  if job.ready then return "a readiness probe" end
  if job.on_exit or (job.policy and job.policy ~= "no") then return "a reaper policy" end
  if job.retries > 0 or job.restart ~= "no" then return "retries" end
  if not only_zero(job.success_codes) then return "success_codes" end
  for _, need in ipairs(job.needs) do
    if not DEP[need.cond] then return "a '" .. need.cond .. "' need" end
  end
  return nil
end

function M.eligible(spec, units, opts)
  if (opts.jobs or math.maxinteger) < #units then return nil, "a -j bound" end
  for _, u in ipairs(units) do
    local why = why_not(spec, u.job)
    if why then return nil, ("job %s: %s"):format(u.job.name, why) end
  end
  return true
end

-- Units by job name, in the units' (plan) order.
local function by_job(units)
  local t = {}
  for _, u in ipairs(units) do
    local list = t[u.job.name] or {}
    t[u.job.name] = list
    list[#list + 1] = u
  end
  return t
end

-- "afterok:1:2,afterany:3": every condition must hold (Slurm's ',' is AND). The
-- tasks of an array job share its id: a need on it names it once.
local function dependency(u, jobs, id_of)
  local parts = {}
  for _, need in ipairs(u.job.needs) do
    local ids, seen = {}, {}
    for _, v in ipairs(jobs[need.name]) do
      local id = id_of(v)
      if not seen[id] then ids[#ids + 1], seen[id] = id, true end
    end
    parts[#parts + 1] = DEP[need.cond] .. ":" .. table.concat(ids, ":")
  end
  return #parts > 0 and table.concat(parts, ",") or nil
end

-- What goes in with one sbatch each, in plan order: { unit =, array = units | nil }.
-- A job's instances become one array job (--array=0-N-1) when what needs it waits
-- for all of them to succeed or end (afterok / afterany on the array are that).
local function submissions(units, jobs)
  local plain = {}
  for _, u in ipairs(units) do
    for _, need in ipairs(u.job.needs) do
      if need.cond ~= "success" and need.cond ~= "done" then plain[need.name] = true end
    end
  end
  local list, seen = {}, {}
  for _, u in ipairs(units) do
    local name = u.job.name
    if #jobs[name] > 1 and not plain[name] then
      if not seen[name] then
        list[#list + 1], seen[name] = { unit = u, array = jobs[name] }, true
      end
    else
      list[#list + 1] = { unit = u }
    end
  end
  return list
end

-- Cancel the submitted Slurm jobs (job id -> how many units it holds); -> units.
local function cancel_all(ids)
  local list, n = {}, 0
  for id, units in pairs(ids) do list[#list + 1], n = tostring(id), n + units end
  if #list > 0 then poll.run(table.move(list, 1, #list, 2, { "scancel" }), 30) end
  return n
end

-- Submit everything in plan order (a topological order). On a failure, or a ^C /
-- SIGTERM / SIGHUP meanwhile (500 submissions take seconds), cancel what went in
-- and say why: nothing of the run is left behind.
function M.submit(ex, units)
  local jobs, ids, handles, submitted = by_job(units), {}, {}, {}
  local function id_of(v) return ids[v] end
  local loop, stopped = ex.loop, nil
  for _, sig in ipairs { "INT", "TERM", "HUP" } do
    loop:signal(sig, function() stopped = "SIG" .. sig end)
  end
  for _, sub in ipairs(submissions(units, jobs)) do
    loop:step(0)
    local u, h, err = sub.unit
    if stopped then
      err = "got " .. stopped .. " while submitting"
    else
      h, err = ex:submit(u, dependency(u, jobs, id_of), sub.array)
    end
    if not h then
      return nil, ("job %s: %s (cancelled the %d job(s) already submitted)"):format(
        u.name, err, cancel_all(submitted))
    end
    local hs, us = sub.array and h or { h }, sub.array or { u }
    for i, v in ipairs(us) do ids[v], handles[v.name] = hs[i].id, hs[i] end
    submitted[hs[1].id] = #us
  end
  return handles
end

function M.lines(units, run_id, out_dir, grace)
  local jobs, var, out = by_job(units), {}, {}
  for i, sub in ipairs(submissions(units, jobs)) do
    for _, v in ipairs(sub.array or { sub.unit }) do var[v] = "$J" .. i end
    local argv = sbatch.argv(sub.unit, { run_id = run_id, out_dir = out_dir, grace = grace,
      dependency = dependency(sub.unit, jobs, function(v) return var[v] end),
      array = sub.array and #sub.array })
    local line = sbatch.command_line(argv):gsub("'(%-%-dependency=[^']*)'", '"%1"')
    out[#out + 1] = ("J%d=$(%s)"):format(i, line)
  end
  return out
end

return M
