-- lrun.jobfile.schema: the job-file language -- which keys a job and the settings
-- take, their defaults, and which check applies to each. Checks run in the order
-- below (the first error of a job is the message the user sees); an absent key
-- takes its default without a call.
--
--   local schema = require "lrun.jobfile.schema"
--   local settings = schema.settings(raw)              -- validated settings table
--   local policies, names = schema.policies(raw)       -- { name = fn }, { names }
--   local job = schema.job(entry, ctx)   -- ctx = { errors =, dir =, policy_names =, settings = }
--   schema.valid_name(name)              --> true | false, why
--
-- The validated job's shape is in lrun.jobfile's header. Lists named *_KEYS here
-- are the language (spec/examples_cli_spec.lua checks README names each key).
local D = require "lrun.jobfile.diagnostics"
local F = require "lrun.jobfile.fields"
local checker = require "lrun.jobfile.checker"

local show, tick, suggest = D.show, D.tick, D.suggest

local M = {}

local JOB_KEYS = { "name", "service", "cmd", "needs", "success_codes", "dir", "env",
  "env_file", "stdin", "stdout", "stderr", "timeout", "kill_signal", "kill_grace",
  "retries", "retry_delay", "restart", "backoff", "max_restarts", "ready",
  "ready_timeout", "on_exit", "policy", "instances", "user", "group", "umask", "limits",
  "executor", "slurm" }
local SETTINGS_KEYS = { "jobs", "keep_going", "exit_on_failure", "grace", "log_dir",
  "executor", "slurm" }
M.TOP_KEYS = { "settings", "jobs", "services", "policies" }
M.DSL_NAMES = { "job", "service", "policy", "settings" }
M.JOB_KEYS, M.SETTINGS_KEYS = JOB_KEYS, SETTINGS_KEYS
local JOB_SET, SETTINGS_SET = checker.set(JOB_KEYS), checker.set(SETTINGS_KEYS)

local RESTARTS = { "no", "on-failure", "always" }
local BUILTIN_POLICIES = { "no", "on-failure", "always" }
local IS_BUILTIN = checker.set(BUILTIN_POLICIES)
local EXECUTORS = { "local", "slurm" }

-- Option tables of the checks, made once (validation runs them per job).
local ABOVE0, MIN0 = { above = 0 }, { min = 0 }
local INT_MIN0, INT_MIN1 = { int = true, min = 0 }, { int = true, min = 1 }
local STDIN_WORDS, STREAM_WORDS = { "null", "inherit" }, { "prefix", "inherit", "null" }
-- Defaults shared by every job that does not set the key (a 100 000-job file would
-- otherwise hold 400 000 copies of them): read, never written.
local SHARED_BACKOFF = { min = 0.5, max = 30, factor = 2 }
local SHARED_MAX_RESTARTS = { count = 5, within = 10 }
local SHARED_CODES = { [0] = true }
local SHARED_ENV = {}
local BACKOFF = { keys = { "min", "max", "factor" },
  fresh = function() return { min = 0.5, max = 30, factor = 2 } end,
  rules = { min = MIN0, max = MIN0, factor = { min = 1 } } }
BACKOFF.set = checker.set(BACKOFF.keys)
local MAX_RESTARTS = { keys = { "count", "within" },
  fresh = function() return { count = 5, within = 10 } end,
  rules = { count = INT_MIN0, within = ABOVE0 } }
MAX_RESTARTS.set = checker.set(MAX_RESTARTS.keys)

function M.valid_name(name)
  if type(name) ~= "string" then return false, "name must be a string, got " .. type(name) end
  if name == "" then return false, "name must not be empty" end
  if name:find("[%s|]") then return false, "name must not contain whitespace or '|'" end
  return true
end

-- argv (the array part of t) or cmd, exactly one.
local function check_command(c, t, job)
  local array
  for k, v in next, t do
    if math.type(k) == "integer" then
      array = array or {}
      array[k] = v
    end
  end
  if array and t.cmd ~= nil then
    c:fail("cmd", "give an argv list or cmd, not both")
  elseif array then
    job.argv = c:command("argv", array, false, true)
  elseif t.cmd ~= nil then
    local cmd = c:command("cmd", t.cmd, true)
    if type(cmd) == "table" then job.argv = cmd else job.cmd = cmd end
  elseif not c.failed then
    c:fail(nil, 'no command: give an argv list or cmd = "..."')
  end
end

-- needs .. stderr: what the process starts with. A key left out is not set: the
-- job's metatable gives its default (see M.job).
local function check_process(c, t, job, dir)
  local v = t.needs
  if v ~= nil then job.needs = F.needs(c, v) end
  v = t.success_codes
  if v ~= nil then job.success_codes = F.success_codes(c, v) end
  v = t.dir
  if v ~= nil then job.dir = c:path("dir", v, dir) or dir end
  v = t.env_file
  if t.env ~= nil then job.env = F.env(c, t.env) elseif v ~= nil then job.env = {} end
  if v ~= nil then
    job.env_file = c:path("env_file", v, dir)
    local from_file, err = nil, nil
    if job.env_file then from_file, err = F.parse_env_file(job.env_file) end
    if err then c:fail("env_file", "%s", err) end
    for k, x in pairs(from_file or {}) do
      if job.env[k] == nil then job.env[k] = x end
    end
  end
  v = t.stdin
  if v ~= nil then job.stdin = c:path("stdin", v, dir, STDIN_WORDS) or "null" end
  v = t.stdout
  if v ~= nil then job.stdout = c:path("stdout", v, dir, STREAM_WORDS) or "prefix" end
  v = t.stderr
  if v ~= nil then job.stderr = c:path("stderr", v, dir, STREAM_WORDS) or "prefix" end
end

local function check_policy_name(c, name, ctx)
  if not c:typed("policy", name, "a policy name", "string") then return nil end
  if IS_BUILTIN[name] or ctx.policy_set[name] then return name end
  local names = {}
  for _, p in ipairs(BUILTIN_POLICIES) do names[#names + 1] = p end
  for _, p in ipairs(ctx.policy_names) do names[#names + 1] = p end
  c:fail("policy", "unknown policy %s%s", tick(name), suggest(name, names))
  return nil
end

-- timeout .. policy: how the job ends, restarts and is seen ready.
local function check_lifecycle(c, t, job, ctx)
  local v = t.timeout
  if v ~= nil then job.timeout = c:number("timeout", v, ABOVE0) end
  v = t.kill_signal
  if v ~= nil then job.kill_signal = F.signal(c, v) end
  v = t.kill_grace
  if v ~= nil then job.kill_grace = c:number("kill_grace", v, MIN0) end
  v = t.retries
  if v ~= nil then job.retries = c:number("retries", v, INT_MIN0) or 0 end
  v = t.retry_delay
  if v ~= nil then job.retry_delay = c:number("retry_delay", v, MIN0) or 0 end
  v = t.restart
  if v ~= nil then
    job.restart = c:enum("restart", v, RESTARTS, job.kind == "service" and "on-failure" or "no")
  end
  v = t.backoff
  if v ~= nil then
    local b = F.numbers(c, "backoff", v, BACKOFF)
    job.backoff = b
    if b.max < b.min then
      c:fail("backoff", "key 'backoff.max' (%s) is less than 'backoff.min' (%s)", b.max, b.min)
    end
  end
  v = t.max_restarts
  if v ~= nil then job.max_restarts = F.numbers(c, "max_restarts", v, MAX_RESTARTS) end
  v = t.ready
  if v ~= nil then job.ready = F.ready(c, v, ctx.dir) end
  v = t.ready_timeout
  if v ~= nil then job.ready_timeout = c:number("ready_timeout", v, ABOVE0) end
  v = t.on_exit
  if v ~= nil and c:typed("on_exit", v, "a function", "function") then job.on_exit = v end
  v = t.policy
  if v ~= nil then job.policy = check_policy_name(c, v, ctx) end
  if job.on_exit and job.policy then
    c:fail("on_exit", "give on_exit or policy, not both")
  end
end

-- The slurm table of a job over the settings' one, key by key.
local function merged(base, over)
  if not base then return over end
  local out = {}
  for k, x in pairs(base) do out[k] = x end
  for k, x in pairs(over or {}) do out[k] = x end
  return out
end

-- instances .. slurm: who runs the job, how many, within which bounds, where.
local function check_placement(c, t, job, settings)
  local v = t.instances
  if v ~= nil then job.instances = c:number("instances", v, INT_MIN1) or 1 end
  v = t.user
  if v ~= nil then job.user = F.id(c, "user", v) end
  v = t.group
  if v ~= nil then job.group = F.id(c, "group", v) end
  v = t.umask
  if v ~= nil then job.umask = F.umask(c, v) end
  v = t.limits
  if v ~= nil then job.limits = F.limits(c, v) end
  -- nil unless the job says: the run's executor (settings, or --executor) decides then
  v = t.executor
  if v ~= nil then job.executor = c:enum("executor", v, EXECUTORS) end
  v = t.slurm
  if v ~= nil then job.slurm = merged(settings.slurm, F.slurm(c, "slurm", v)) end
end

-- What a job that leaves a key out has, shared by the jobs of one file and kind
-- through their metatable: a 100 000-job file holds one copy, not 100 000 (a job's
-- own table then has ~6 fields: 8 hash slots instead of 32). pairs(job) lists them
-- too, as if they were the job's own.
local EMPTY_NEEDS = setmetatable({}, { __newindex = function()
  error("a job's default needs list is shared: give the job a list of its own", 2)
end })

local function job_pairs(job)
  local all = {}
  for k, v in next, getmetatable(job).__index do all[k] = v end
  for k, v in next, job do all[k] = v end
  return next, all, nil
end

local function defaults(ctx, kind)
  local key = kind == "service" and "service_mt" or "job_mt"
  local mt = ctx[key]
  if not mt then
    mt = { __pairs = job_pairs, __index = {
      needs = EMPTY_NEEDS, success_codes = SHARED_CODES, dir = ctx.dir, env = SHARED_ENV,
      stdin = "null", stdout = "prefix", stderr = "prefix", kill_signal = "TERM",
      retries = 0, retry_delay = 0, restart = kind == "service" and "on-failure" or "no",
      backoff = SHARED_BACKOFF, max_restarts = SHARED_MAX_RESTARTS, instances = 1,
      slurm = ctx.settings.slurm } }
    ctx[key] = mt
  end
  return mt
end

-- Validate one raw definition into a job (still without resolved needs).
function M.job(entry, ctx)
  local t = entry.t
  local c = checker.job(ctx.errors, entry.kind, entry.name, entry.where, entry.key_where,
    ctx.checker)
  ctx.checker = c
  local known = c:unknown_keys(t, JOB_SET, JOB_KEYS, nil, true)
  if t.name ~= nil and t.name ~= entry.name then
    c:fail("name", "key 'name' is %s but the job is named %s", show(t.name), show(entry.name))
  end
  local kind = entry.kind
  if c:bool("service", t.service) ~= nil then kind = t.service and "service" or "job" end
  -- The fields most jobs have, named so the table is made at its size (8 slots).
  local job = setmetatable({ name = entry.name, kind = kind, where = entry.where,
    argv = nil, cmd = nil, needs = nil }, defaults(ctx, kind))
  check_command(c, t, job)
  -- The usual job sets nothing but its command and needs: the other checks would
  -- only find every key absent (a key plan of one count, ~50 lines a job fewer). Not
  -- for a table with a metatable: its __index may give keys next() does not list.
  local others = known - (t.needs ~= nil and 1 or 0) - (t.name ~= nil and 1 or 0)
    - (t.cmd ~= nil and 1 or 0)
  if others == 0 and debug.getmetatable(t) == nil then
    if t.needs ~= nil then job.needs = F.needs(c, t.needs) end
    return job
  end
  check_process(c, t, job, ctx.dir)
  check_lifecycle(c, t, job, ctx)
  check_placement(c, t, job, ctx.settings)
  return job
end

-- Every settings call or table, later ones over earlier ones.
function M.settings(raw)
  local out = { keep_going = false, exit_on_failure = false, executor = "local" }
  for _, s in ipairs(raw.settings) do
    local c = checker.new(raw.errors, "settings", s.where, s.key_where)
    local t = s.t
    c:unknown_keys(t, SETTINGS_SET, SETTINGS_KEYS)
    if t.jobs ~= nil then out.jobs = c:number("jobs", t.jobs, INT_MIN1) end
    out.keep_going = c:bool("keep_going", t.keep_going, out.keep_going)
    out.exit_on_failure = c:bool("exit_on_failure", t.exit_on_failure, out.exit_on_failure)
    if t.grace ~= nil then out.grace = c:number("grace", t.grace, MIN0) end
    if t.log_dir ~= nil then out.log_dir = c:path("log_dir", t.log_dir, raw.dir) end
    out.executor = c:enum("executor", t.executor, EXECUTORS, out.executor)
    if t.slurm ~= nil then out.slurm = merged(out.slurm, F.slurm(c, "slurm", t.slurm)) end
  end
  return out
end

function M.policies(raw)
  local policies, names, first = {}, {}, {}
  for _, p in ipairs(raw.policies) do
    local at = ("%s: policy %s: "):format(p.where, show(p.name))
    local ok, why = M.valid_name(p.name)
    if not ok then
      D.add_error(raw, "%s%s", at, why)
    elseif IS_BUILTIN[p.name] then
      D.add_error(raw, "%sthe name is taken by a built-in policy", at)
    elseif first[p.name] then
      D.add_error(raw, "%sdefined twice (first at %s)", at, first[p.name])
    elseif type(p.fn) ~= "function" then
      D.add_error(raw, "%smust be a function, got %s", at, type(p.fn))
    else
      first[p.name] = p.where
      policies[p.name] = p.fn
      names[#names + 1] = p.name
    end
  end
  return policies, names
end

return M
