-- lrun.slurm.sbatch: how a job instance becomes one `sbatch` command line.
--
--   local argv = sbatch.argv(unit, { run_id =, out_dir =, grace =, dependency =, array = })
--   sbatch.command_line(argv)   -- the same, quoted for a shell (what `-n` prints)
--   sbatch.script(job)          -- the --wrap text: umask, env, then exec the command
--
-- Everything the job needs travels in the command line itself (--wrap), so `-n`
-- shows exactly what is submitted and nothing is written before submission.
-- The job's environment is lrun's (sbatch exports the submitting environment)
-- plus the job's `env` and LRUN_JOB / LRUN_INSTANCE / LRUN_RUN_ID, set in the
-- script so that values may hold any byte (--export splits at commas).
-- Output goes to OUT_DIR/%x-%j.out and .err (%x = job name = the unit's name),
-- which lrun.slurm.follow reads while the job runs.
local M = {}

-- Slurm's own limit is a backstop behind lrun's kill: timeout + grace, in whole
-- minutes (Slurm's granularity), rounded up.
local function minutes(seconds)
  return tostring(math.max(1, math.ceil(seconds / 60)))
end

function M.quote(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function command_text(job)
  if job.argv then
    local words = {}
    for i, a in ipairs(job.argv) do words[i] = M.quote(a) end
    return table.concat(words, " ")
  end
  return "/bin/sh -c " .. M.quote(job.cmd)
end

-- The batch script, as one --wrap string. The tasks of an array job take their
-- instance from Slurm's task id.
function M.script(job, instance, run_id, array)
  local parts = {}
  if job.umask then parts[#parts + 1] = string.format("umask %03o", job.umask) end
  local names = {}
  for k in pairs(job.env) do names[#names + 1] = k end
  table.sort(names)
  local env = { "LRUN_JOB=" .. M.quote(job.name),
    "LRUN_INSTANCE=" .. (array and '"$SLURM_ARRAY_TASK_ID"' or tostring(instance)),
    "LRUN_RUN_ID=" .. M.quote(run_id) }
  for _, k in ipairs(names) do env[#env + 1] = k .. "=" .. M.quote(job.env[k]) end
  parts[#parts + 1] = "export " .. table.concat(env, " ")
  parts[#parts + 1] = "exec " .. command_text(job)
  return table.concat(parts, "; ")
end

-- The Slurm resource options of a job: its `slurm` table (settings' defaults are
-- merged in by the job file) and its timeout.
local function resources(job, args, grace)
  local s = job.slurm or {}
  local function add(flag, v)
    if v ~= nil then args[#args + 1] = flag .. "=" .. tostring(v) end
  end
  add("--partition", s.partition)
  add("--account", s.account)
  add("--qos", s.qos)
  add("--constraint", s.constraint)
  add("--cpus-per-task", s.cpus)
  add("--gpus", s.gpus)
  if type(s.mem) == "number" then add("--mem", math.ceil(s.mem) .. "M") else add("--mem", s.mem) end
  if s.time ~= nil then
    add("--time", type(s.time) == "number" and minutes(s.time) or s.time)
  elseif job.timeout then
    add("--time", minutes(job.timeout + (job.kill_grace or grace or 5) + 1))
  end
  for _, a in ipairs(s.extra or {}) do args[#args + 1] = a end
end

local function stream(spec, default)
  if spec == "prefix" or spec == "inherit" then return default end
  if spec == "null" then return "/dev/null" end
  return spec
end

-- opts: run_id, out_dir, grace, dependency ("afterok:1:2,afterany:3"), array (N:
-- the job's N instances as one array job, named after the job, not the unit)
function M.argv(unit, opts)
  local job = unit.job
  local out_dir = opts.out_dir
  local id = opts.array and "%A_%a" or "%j"
  local args = { "sbatch", "--parsable",
    "--job-name=" .. (opts.array and job.name or unit.name),
    "--comment=lrun:" .. opts.run_id, "--chdir=" .. job.dir,
    "--output=" .. stream(job.stdout, out_dir .. "/%x-" .. id .. ".out"),
    "--error=" .. stream(job.stderr, out_dir .. "/%x-" .. id .. ".err") }
  if opts.array then args[#args + 1] = "--array=0-" .. (opts.array - 1) end
  if job.stdin ~= "null" and job.stdin ~= "inherit" then
    args[#args + 1] = "--input=" .. job.stdin
  end
  if opts.dependency then
    args[#args + 1] = "--dependency=" .. opts.dependency
    args[#args + 1] = "--kill-on-invalid-dep=yes"
  end
  resources(job, args, opts.grace)
  args[#args + 1] = "--wrap=" .. M.script(job, unit.instance, opts.run_id, opts.array)
  return args
end

-- Where a job's followed output is, once its id ("123", or "123_4" for a task of an
-- array job) is known (nil: not followed).
function M.out_paths(unit, out_dir, id, array)
  local job = unit.job
  local base = out_dir .. "/" .. (array and job.name or unit.name) .. "-" .. id
  return (job.stdout == "prefix" or job.stdout == "inherit") and base .. ".out" or nil,
    (job.stderr == "prefix" or job.stderr == "inherit") and base .. ".err" or nil
end

function M.command_line(argv)
  local words = {}
  for i, a in ipairs(argv) do words[i] = M.quote(a) end
  return table.concat(words, " ")
end

return M
