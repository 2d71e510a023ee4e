--- lrun.scheduler.ops: what an operator (lrun ctl, the status page, a policy's
-- add_job, --resume) may ask of a running scheduler. Methods of the scheduler
-- (lrun.scheduler installs them); each checks its request and answers
-- true | nil, message -- a wrong name or a bad signal is an answer, never an error.
--
--   s:find_units("web")          -- { units } of job web, or { web.1 } | nil, message
--   s:start_unit(u)              -- an ended or backing-off unit runs (again)
--   s:stop_unit(u)               -- as at shutdown: kill_signal, grace, KILL
--   s:restart_unit(u)            -- stop it, then start it again once it has ended
--   s:signal_unit(u, sig)        -- a signal to its process group
--   s:add_jobs(fragment)         -- jobs of a validated spec fragment join the graph
--   s:preset(u, result, why, benign) -- before run(): a unit ended already (--resume)
--   s:unit_info()                -- one row per unit for `lrun ctl status`
--   s:job_names()                -- every job name, for messages and add's checks
--
-- A unit stopped by hand stays stopped: its policy is not asked (as at shutdown).
-- A run of services only goes on until lrun is told to stop, whatever is done to
-- its units: stopping them all, or adding jobs, does not end it (`hold`).
local core = require "lprocess.core"
local graph = require "lrun.graph"
local units = require "lrun.units"

local M = {}
local Scheduler = {}

local ENDED, LIVE = units.ENDED, units.LIVE

local function show_names(list)
  table.sort(list)
  if #list > 12 then list = table.move(list, 1, 12, 1, {}); list[13] = "..." end
  return table.concat(list, ", ")
end

function Scheduler:job_names()
  local names = {}
  for _, job in ipairs(self.spec.jobs) do
    if self.by_job[job.name] then names[#names + 1] = job.name end
  end
  return names
end

function Scheduler:find_units(name)
  if type(name) ~= "string" or name == "" then return nil, "no job named" end
  local list = self.by_job[name]
  if list then return table.move(list, 1, #list, 1, {}) end
  for _, u in ipairs(self.units) do
    if u.name == name then return { u } end
  end
  return nil, string.format("no job or instance named '%s' (jobs: %s)", name,
    show_names(self:job_names()))
end

-- An ended unit comes back: counted as not ended, and waiting for its needs again.
function Scheduler:_reopen(u)
  u.state = "waiting"
  u.reason, u.status, u.spawn_error, u.benign = nil, nil, nil, nil
  u.restarts, u.limiter = 0, nil
  self.unended = self.unended + 1
  if not u.service then self.batch = self.batch + 1 end
  self.out:register(u.name)
end

function Scheduler:_manual(u, action)
  self:_emit("control", u, { action = action })
  if self.verbose then self:_say(string.format("job %s: %s requested", u.name, action)) end
end

function Scheduler:start_unit(u)
  if self.shutting then return nil, "lrun is stopping" end
  if LIVE[u.state] then return nil, string.format("%s is already running", u.name) end
  if u.state == "waiting" or u.state == "queued" then
    return nil, string.format("%s is %s for its needs or a slot", u.name, u.state)
  end
  self:_manual(u, "start")
  if u.again then u.again:cancel(); u.again = nil end      -- backoff/retrying: now
  if ENDED[u.state] then self:_reopen(u) else u.state = "waiting" end
  self:_evaluate(u)
  if u.state == "queued" and (self.halted or u.service) then
    -- the operator's start is not held back by an earlier failure
    for i = #self.queue, self.qhead, -1 do
      if self.queue[i] == u then table.remove(self.queue, i) end
    end
    self:_start(u)
  else
    self:_fill()
  end
  if u.state == "skipped" then return nil, string.format("%s: %s", u.name, u.reason) end
  return true
end

function Scheduler:stop_unit(u)
  if ENDED[u.state] then return nil, string.format("%s is not running (%s)", u.name, u.state) end
  self:_manual(u, "stop")
  if not self:_has_batch() then self.hold = true end
  if LIVE[u.state] then
    u.stopping = true
    self.ex:stop(u.handle, u.job.kill_signal, self:_grace(u.job))
  else
    self:_finish(u, "stopped", "stopped by request")
  end
  return true
end

function Scheduler:_has_batch()
  for _, u in ipairs(self.units) do if not u.service then return true end end
  return false
end

function Scheduler:restart_unit(u)
  if not LIVE[u.state] then return self:start_unit(u) end
  if self.shutting then return nil, "lrun is stopping" end
  u.on_end = function() self:_reopen(u); self:_evaluate(u) end
  return self:stop_unit(u)
end

-- Called by _finish once a unit has ended, before its dependents are looked at.
function Scheduler:_ended_hook(u)
  local fn = u.on_end
  u.on_end = nil
  if fn and not self.shutting then fn() end
end

function Scheduler:signal_unit(u, sig)
  if type(sig) == "string" and sig:match("^%d+$") then sig = math.tointeger(tonumber(sig)) end
  local n = core.signals[sig]
  if type(sig) == "string" and not n then
    n = core.signals[(sig:upper():gsub("^SIG", ""))]
  end
  if math.type(n) ~= "integer" then
    if math.type(sig) == "integer" and core.signals[sig] then n = sig
    else return nil, string.format("unknown signal '%s'", tostring(sig)) end
  end
  if not LIVE[u.state] or not u.handle then
    return nil, string.format("%s is not running (%s)", u.name, u.state)
  end
  self:_manual(u, "signal " .. core.signals[n])
  self.ex:signal(u.handle, n)
  return true
end

--- add_jobs(fragment) -- fragment: a spec from lrun.jobfile (its needs may name jobs
--- of this run). Names must be new. -> the names added | nil, message
function Scheduler:add_jobs(frag)
  if self.shutting then return nil, "lrun is stopping" end
  if self.halted then return nil, "no job starts any more after a failure (without -k)" end
  local spec = self.spec
  for _, job in ipairs(frag.jobs) do
    if spec.by_name[job.name] then
      return nil, string.format("%s: job '%s' exists already", job.where, job.name)
    end
  end
  for name, fn in pairs(frag.policies or {}) do
    if spec.policies[name] and spec.policies[name] ~= fn then
      return nil, string.format("policy '%s' exists already", name)
    end
  end
  -- jobs added to a run of services only leave it one: it goes on once they end
  if not self:_has_batch() then self.hold = true end
  for name, fn in pairs(frag.policies or {}) do spec.policies[name] = fn end
  for _, job in ipairs(frag.jobs) do
    spec.jobs[#spec.jobs + 1] = job
    spec.by_name[job.name] = job
  end
  local list, by_job = units.build(frag, assert(graph.order(frag)))
  local added = {}
  for _, job in ipairs(frag.jobs) do added[#added + 1] = job.name end
  for name, l in pairs(by_job) do self.by_job[name] = l end
  self:_index_needs()   -- needs counted per unit: the new jobs' edges join the index
  for _, u in ipairs(list) do
    self.units[#self.units + 1] = u
    self.unended = self.unended + 1
    if not u.service then self.batch = self.batch + 1 end
    self.out:register(u.name)
    self:_emit("add", u, {})
  end
  for _, u in ipairs(list) do self:_evaluate(u) end
  self:_fill()
  return added
end

function Scheduler:preset(u, result, reason, benign)
  if ENDED[u.state] then return end
  u.state, u.reason, u.benign = result, reason, benign
  u.preset = true
  self.unended = self.unended - 1
  if not u.service then self.batch = self.batch - 1 end
end

-- CPU seconds and RSS (KiB) of a live process, from /proc.
local function proc_usage(pid)
  local f = pid and io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local rest = s:match("%) (.*)$")
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- after "pid (comm) ": state is field 1, utime 12, stime 13, rss 22 (pages)
  local hz = 100
  local cpu = ((tonumber(fields[12]) or 0) + (tonumber(fields[13]) or 0)) / hz
  return cpu, (tonumber(fields[22]) or 0) * 4
end

function Scheduler:unit_info()
  local rows, now, wall = {}, core.now(), core.realtime()
  for _, u in ipairs(self.units) do
    local live = LIVE[u.state]
    local cpu, rss = u.cpu, u.maxrss
    if live then cpu, rss = proc_usage(u.pid) end
    local st = u.status
    rows[#rows + 1] = {
      name = u.name, job = u.job.name, kind = u.job.kind,
      state = u.state == "backoff" and "backing-off" or u.state,
      pid = live and u.pid or nil, attempt = u.attempt, restarts = u.restarts,
      started = u.started and (wall - (now - u.started)) or nil,
      duration = live and u.started and (now - u.started) or u.runtime,
      cpu = cpu, rss = rss,
      last_exit = (st or u.spawn_error) and M.describe(u) or nil,
      exit_code = st and st.how == "exit" and st.code or nil,
      reason = u.reason,
      needs = (function()
        local n = {}
        for _, need in ipairs(u.job.needs) do n[#n + 1] = need.name end
        return n
      end)(),
    }
  end
  return rows
end

function M.install(class, describe)
  M.describe = describe
  for k, fn in pairs(Scheduler) do class[k] = fn end
end

return M
