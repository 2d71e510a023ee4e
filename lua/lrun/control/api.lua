--- lrun.control.api: the `lrun` table that operator Lua sees -- `lrun ctl eval` (with
-- --control-lua) and add_job{} in a policy or on_exit of the job file.
--
--   local api = require "lrun.control.api"
--   api.attach(ctx)                 -- the running lrun (ctx as lrun.control.commands)
--   api.eval(ctx, code)             -- -> { value =, output = } | nil, message
--   api.add_job(def, where)         -- what the job file's add_job{} calls
--
-- The table (README, "Working with a running lrun"):
--   lrun.jobs()                  names of the jobs, in definition order
--   lrun.states()                one row per unit: name, state, pid, attempt, ...
--   lrun.state(name)             a unit's state ("running", "ok", ...) | nil
--   lrun.start(name), lrun.stop(name), lrun.restart(name), lrun.signal(name, sig)
--                                true | nil, message
--   lrun.add(path | { name =, kind =, ...job keys }) names added | nil, message
--   lrun.tail(name [, n])        its newest lines
--   lrun.shutdown()              stop the whole run
local guard = require "lprocess.guard"
local jobfile = require "lrun.jobfile"

local M = {}

M.TIMEOUT = 5      -- seconds an eval may run
M.MAX_OUTPUT = 65536

local current        -- the ctx of the running lrun (one per process)

function M.attach(ctx) current = ctx end

local function known(s)
  local k = {}
  for _, job in ipairs(s.spec.jobs) do k[job.name] = job.kind end
  return k
end

-- A job definition as add_job{} or lrun.add{} take it -> a spec fragment | nil, message
function M.fragment(ctx, def, where)
  if type(def) ~= "table" then return nil, "add_job needs a table { name = ..., ... }" end
  local t = {}
  for k, v in pairs(def) do t[k] = v end
  local name, kind = t.name, t.kind or "job"
  t.name, t.kind = nil, nil
  if type(name) ~= "string" then return nil, "add_job: the table needs name = \"...\"" end
  if kind ~= "job" and kind ~= "service" then
    return nil, "add_job: kind must be \"job\" or \"service\""
  end
  local s = ctx.scheduler
  return jobfile.define({ { name = name, kind = kind, t = t, where = where } },
    { known = known(s), settings = s.spec.settings, where = where, dir = s.spec.dir })
end

--- load_file(ctx, path) -> fragment | nil, message (for `lrun ctl add FILE`)
function M.load_file(ctx, path)
  local s = ctx.scheduler
  return jobfile.load(path, { known = known(s), settings = s.spec.settings })
end

local function add(ctx, what, where)
  local frag, err
  if type(what) == "string" then frag, err = M.load_file(ctx, what)
  else frag, err = M.fragment(ctx, what, where) end
  if not frag then return nil, err end
  return ctx.scheduler:add_jobs(frag)
end

local function by_name(ctx, method)
  return function(name, ...)
    local s = ctx.scheduler
    local list, err = s:find_units(name)
    if not list then return nil, err end
    for _, u in ipairs(list) do
      local ok, uerr = s[method](s, u, ...)
      if not ok then return nil, uerr end
    end
    return true
  end
end

function M.new(ctx)
  local s = ctx.scheduler
  return {
    jobs = function() return s:job_names() end,
    states = function() return s:unit_info() end,
    state = function(name)
      local list = s:find_units(name)
      return list and list[1].state or nil
    end,
    start = by_name(ctx, "start_unit"), stop = by_name(ctx, "stop_unit"),
    restart = by_name(ctx, "restart_unit"), signal = by_name(ctx, "signal_unit"),
    add = function(what) return add(ctx, what, "eval") end,
    tail = function(name, n) return ctx.bus:last_lines(name, n or 10) end,
    shutdown = function() s:shutdown(nil, "stop requested by eval, stopping jobs") end,
  }
end

--- add_job(def, where): for the job file's add_job{}; raises (the policy's error)
function M.add_job(def, where)
  if not current then
    error(where .. ": add_job: only while lrun runs the graph (from a policy or on_exit)", 0)
  end
  local names, err = add(current, def, where)
  if not names then error("add_job: " .. tostring(err), 0) end
  return names
end

local function show(v)
  if type(v) == "table" then
    local ok, s = pcall(require("lrun.report")._encode, v)
    return ok and s or tostring(v)
  end
  return tostring(v)
end

function M.eval(ctx, code)
  local output = {}
  local size = 0
  local function print_(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = show(parts[i]) end
    local line = table.concat(parts, "\t", 1, parts.n) .. "\n"
    size = size + #line
    if size <= M.MAX_OUTPUT then output[#output + 1] = line end
  end
  local env = setmetatable({ lrun = M.new(ctx), print = print_ }, { __index = _G })
  local chunk, err = load(code, "=eval", "t", env)
  if not chunk then return nil, err end
  local res = table.pack(guard.call(chunk, { timeout = M.TIMEOUT, name = "eval" }))
  if not res[1] then return nil, tostring(res[2]) end
  local values = {}
  for i = 2, res.n do values[#values + 1] = show(res[i]) end
  return { values = values, output = table.concat(output) }
end

return M
