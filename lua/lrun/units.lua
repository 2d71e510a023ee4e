--- lrun.units: the scheduler's units (one per job instance), their states, and what
-- the rest of lrun reads off them: whether a need is met, the end-of-run rows, the
-- per-unit lines of `--status`, the counts of the status line.
--
--   local units = require "lrun.units"
--   local list, by_job = units.build(spec, order)     -- in plan order
--   units.need_state(by_job[name], "success")          -- "met" | "never" | "wait"
--   units.need_edges(spec, by_job); units.is_met(u, k); units.set_met(u, k, yes)
--   units.results(list), units.states(list), units.counts(list)
--
-- States: waiting -> queued -> running [-> ready] -> one of the ends
--   ok | failed | timeout | gave up | skipped | stopped
-- and, between the runs of a unit that is run again, backoff (services) or retrying.
local M = {}

M.ENDED = { ok = true, failed = true, timeout = true, ["gave up"] = true,
  skipped = true, stopped = true }
M.FAILED = { failed = true, timeout = true, ["gave up"] = true }
M.LIVE = { running = true, ready = true }
local ENDED, FAILED, LIVE = M.ENDED, M.FAILED, M.LIVE

--- build(spec, order) -> units (array), by_job (name -> its units)
function M.build(spec, order)
  local list, by_job = {}, {}
  for _, name in ipairs(order) do
    local job = spec.by_name[name]
    local mine = {}
    for i = 0, job.instances - 1 do
      -- The fields a run sets later are named, so the table is made at its size.
      local u = {
        name = job.instances > 1 and (name .. "." .. i) or name,
        job = job, instance = i, state = "waiting", attempt = 0, restarts = 0,
        service = job.kind == "service",
        met = nil, unmet = nil, started = nil, ready_at = nil, handle = nil, pid = nil,
        status = nil, runtime = nil, bytes = nil,
      }
      mine[#mine + 1] = u
      list[#list + 1] = u
    end
    by_job[name] = mine
  end
  return list, by_job
end

-- Whether one unit meets `cond`, and whether it never can any more.
local function meets(v, cond)
  local s = v.state
  if cond == "success" then
    return s == "ok", ENDED[s] and s ~= "ok"
  elseif cond == "done" then
    return ENDED[s], false
  elseif cond == "started" then
    return v.pid ~= nil, s == "skipped"
  elseif cond == "ready" then
    local met = v.ready_at ~= nil or (not v.service and s == "ok")
    return met, ENDED[s] and not met
  elseif cond == "failure" then
    return FAILED[s], s == "ok" or s == "skipped" or s == "stopped"
  end
  return false, false
end

--- need_state(units, cond) -> "met" | "never" (can no longer be met) | "wait"
function M.need_state(list, cond)
  local all = true
  for _, v in ipairs(list) do
    local met, never = meets(v, cond)
    if never then return "never" end
    all = all and met
  end
  return all and "met" or "wait"
end

--- need_edges(spec, by_job) -> { [needed job name] = { dependent job, need index, ... } }
-- the edges of the selected graph, for counting unmet needs (lrun.scheduler).
function M.need_edges(spec, by_job)
  local edges = {}
  for _, job in ipairs(spec.jobs) do
    if by_job[job.name] then
      for k, need in ipairs(job.needs) do
        local list = edges[need.name]
        if not list then list = {}; edges[need.name] = list end
        list[#list + 1] = job
        list[#list + 1] = k
      end
    end
  end
  return edges
end

--- is_met(u, k), set_met(u, k, yes): need k of unit u, in u.met (a bit set, or a
-- table past 62 needs).
function M.is_met(u, k)
  local m = u.met
  if m == 0 then return false end
  if math.type(m) == "integer" then return (m >> (k - 1)) & 1 == 1 end
  return m[k] == true
end

function M.set_met(u, k, yes)
  local m = u.met
  if math.type(m) == "integer" then
    local bit = 1 << (k - 1)
    u.met = yes and (m | bit) or (m & ~bit)
  else
    m[k] = yes
  end
end

--- results(units) -> rows for lrun.report.summary
-- cpu: the last run's; maxrss: the largest of every run's.
function M.results(list)
  local rows = {}
  for _, u in ipairs(list) do
    local st = u.status
    local ru = st and st.rusage
    rows[#rows + 1] = {
      name = u.name, result = u.state, code = st and st.how == "exit" and st.code or nil,
      signame = st and st.how == "signal" and st.signame or nil,
      duration = u.runtime, cpu = ru and (ru.utime + ru.stime) or nil,
      maxrss = ru and math.max(u.maxrss or 0, ru.maxrss) or u.maxrss, attempts = u.attempt,
    }
  end
  return rows
end

--- states(units) -> one entry per unit, for --status
function M.states(list)
  local out = {}
  for _, u in ipairs(list) do
    out[#out + 1] = { name = u.name, state = u.state, pid = LIVE[u.state] and u.pid or nil,
      restarts = u.restarts, attempt = u.attempt }
  end
  return out
end

--- counts(units) -> { done =, running =, queued =, failed =, total = }
function M.counts(list)
  local c = { done = 0, running = 0, queued = 0, failed = 0 }
  for _, u in ipairs(list) do
    if LIVE[u.state] then c.running = c.running + 1
    elseif ENDED[u.state] then
      c.done = c.done + 1
      if FAILED[u.state] then c.failed = c.failed + 1 end
    else c.queued = c.queued + 1 end
  end
  c.total = #list
  return c
end

return M
