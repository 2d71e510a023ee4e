--- lrun.resume: --resume and --retry-failed -- what an earlier run's --joblog says is
-- done already, so a run can pick up after a crash, a ^C or a reboot.
--
--   local rows, err = resume.read(path)          -- { [unit name] = last row } ({} if none)
--   resume.apply(s, spec, rows, "resume" | "retry-failed")   -- before s:run()
--
-- The joblog keys rows by unit name (its Host column, as lrun writes it); the last
-- row of a name wins. A row "succeeded" when its Exitval is one of the job's
-- success_codes, its Signal is 0, and its Command is the job's command today (a job
-- whose command changed is run again).
--   resume:        units that succeeded are not run; everything else runs.
--   retry-failed:  only the units whose last row failed, and what needs them
--                  (transitively); the others are not run (succeeded: ok; never
--                  run: skipped, which does not fail the run).
-- Services always run: they are not a piece of work that can be done already.
local graph = require "lrun.graph"
local report = require "lrun.report"

local M = {}

local function split(line)
  local f = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
  if #f > 9 then f[9] = table.concat(f, "\t", 9) end   -- a command may hold tabs
  return f
end

--- read(path) -> { [name] = { exitval =, signal =, command = } } | nil, message
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then
    if err and err:find("No such file", 1, true) then return {} end
    return nil, err
  end
  local rows = {}
  for line in f:lines() do
    local c = split(line)
    if c[1] ~= "Seq" and #c >= 9 and tonumber(c[7]) then
      rows[c[2]] = { exitval = tonumber(c[7]), signal = tonumber(c[8]) or 0, command = c[9] }
    end
  end
  f:close()
  return rows
end

local function succeeded(row, job)
  return row.signal == 0 and job.success_codes[row.exitval] == true
    and row.command == report.joblog_command(job.argv or job.cmd)
end

-- Names of every job that needs one of `names`, transitively.
local function blocked_by(spec, names)
  local deps, seen, stack = graph.dependents(spec), {}, {}
  for name in pairs(names) do stack[#stack + 1] = name end
  while #stack > 0 do
    local name = table.remove(stack)
    for _, d in ipairs(deps[name] or {}) do
      if not seen[d] then
        seen[d] = true
        stack[#stack + 1] = d
      end
    end
  end
  return seen
end

-- Each unit of the run with its row and job -> list
local function each_unit(s)
  local list = {}
  for _, name in ipairs(s:job_names()) do
    for _, u in ipairs(assert(s:find_units(name))) do list[#list + 1] = u end
  end
  return list
end

--- apply(s, spec, rows, mode) -> { done = n, rerun = n, left = n }
function M.apply(s, spec, rows, mode)
  local list = each_unit(s)
  local failed_jobs = {}
  for _, u in ipairs(list) do
    local row = rows[u.name]
    if row and not succeeded(row, u.job) then failed_jobs[u.job.name] = true end
  end
  local blocked = mode == "retry-failed" and blocked_by(spec, failed_jobs) or {}
  local n = { done = 0, rerun = 0, left = 0 }
  for _, u in ipairs(list) do
    local row = rows[u.name]
    if u.service then
      n.rerun = n.rerun + 1
    elseif row and succeeded(row, u.job) and not blocked[u.job.name] then
      s:preset(u, "ok", "done in an earlier run (joblog)")
      n.done = n.done + 1
    elseif mode == "retry-failed" and not row and not blocked[u.job.name] then
      s:preset(u, "skipped", "not failed in the joblog (--retry-failed)", true)
      n.left = n.left + 1
    else
      n.rerun = n.rerun + 1
    end
  end
  return n
end

return M
