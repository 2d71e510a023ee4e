-- lrun.slurm.admin: what the command line asks of Slurm outside a run.
--
--   admin.preflight()            -> true | nil, message   (before anything is submitted)
--   admin.dry_run(spec, selected, run_id, out_dir) -> text: the sbatch lines of `-n`
--   admin.cancel_run(run_id, say) -> exit code            (`--cancel RUN_ID`)
--
-- Every job of a run carries `--comment=lrun:RUN_ID`, so a run whose lrun was killed
-- (SIGKILL: no chance to scancel) can still be found and removed.
local core = require "lprocess.core"
local graph = require "lrun.graph"
local poll = require "lrun.slurm.poll"
local sbatch = require "lrun.slurm.sbatch"

local M = {}

local function on_path(name)
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local st = core.stat(dir .. "/" .. name)
    if st then return true end
  end
  return false
end

-- Slurm must be usable before the first job is submitted: a run that fails after
-- half of its graph went in is worse than one that does not start.
function M.preflight()
  for _, tool in ipairs { "sbatch", "squeue", "scancel", "scontrol" } do
    if not on_path(tool) then
      return nil, "--executor slurm: " .. tool .. " not found on PATH (is Slurm's client installed?)"
    end
  end
  local conf = os.getenv("SLURM_CONF")
  if not conf or conf == "" then
    return nil, "--executor slurm: SLURM_CONF is not set (export SLURM_CONF=/path/to/slurm.conf)"
  end
  if not core.stat(conf) then
    return nil, "--executor slurm: SLURM_CONF=" .. conf .. ": no such file"
  end
  local ok, text = poll.run({ "scontrol", "ping" }, 15)
  if not ok or not text:find("is UP", 1, true) then
    return nil, "--executor slurm: the Slurm controller does not answer: " ..
      (text:gsub("%s+$", ""):gsub("\n", "; "))
  end
  return true
end

-- The run's units as the scheduler makes them, in plan order.
local function units_of(spec, selected)
  local units = {}
  for _, name in ipairs(assert(graph.order(spec, selected))) do
    local job = spec.by_name[name]
    for i = 0, job.instances - 1 do
      units[#units + 1] = { job = job, instance = i,
        name = job.instances > 1 and (name .. "." .. i) or name }
    end
  end
  return units
end

function M.dry_run(spec, selected, run_id, out_dir, jobs)
  local slurm = require "lrun.slurm"
  local upfront = require "lrun.slurm.upfront"
  local units = units_of(spec, selected)
  local grace = spec.settings.grace
  local ok, why = upfront.eligible(spec, units, { jobs = jobs or spec.settings.jobs })
  if ok then
    return "# submitted up front, in this order; Slurm runs the graph:\n" ..
      table.concat(upfront.lines(units, run_id, out_dir, grace), "\n") .. "\n"
  end
  local lines = {}
  for _, u in ipairs(units) do
    if slurm.executor_of(spec, u.job) == "slurm" then
      lines[#lines + 1] = sbatch.command_line(sbatch.argv(u,
        { run_id = run_id, out_dir = out_dir, grace = grace }))
    end
  end
  if #lines == 0 then return "" end
  return "# submitted with sbatch as each job's needs are met (" .. why .. "):\n" ..
    table.concat(lines, "\n") .. "\n"
end

-- The ids of the run's jobs that Slurm still lists as not ended.
local function live_ids(run_id)
  -- -r: a task of an array job on its own line ("123_4"), pending ones too
  local ok, text = poll.run({ "squeue", "-h", "-r", "-o", "%i|%k" }, 30)
  if not ok then return nil, text end
  local ids, want = {}, "lrun:" .. run_id
  for line in text:gmatch("[^\n]+") do
    local id, comment = line:match("^%s*([%d_]+)|(.*)$")
    if id and comment == want then ids[#ids + 1] = id end
  end
  return ids
end

function M.cancel_run(run_id, say)
  local ok, err = M.preflight()
  if not ok then say(err) return 2 end
  local ids, qerr = live_ids(run_id)
  if not ids then say("squeue: " .. qerr) return 1 end
  if #ids == 0 then say("no job of run " .. run_id .. " is queued or running") return 0 end
  local argv = table.move(ids, 1, #ids, 2, { "scancel" })
  local text
  ok, text = poll.run(argv, 30)
  if not ok then say("scancel: " .. text:gsub("%s+$", "")) end
  -- Verify: every one of them leaves the queue (or ends) within a deadline.
  local deadline = core.now() + 30
  repeat
    local left = live_ids(run_id) or {}
    if #left == 0 then
      say(string.format("cancelled %d job(s) of run %s", #ids, run_id))
      return 0
    end
    core.sleep(0.5)
  until core.now() > deadline
  say("jobs of run " .. run_id .. " still listed after 30 s: " .. table.concat(live_ids(run_id) or {}, " "))
  return 1
end

return M
