--- lrun.jobfile: load a job file (Lua or YAML) and validate it into the spec that the
-- scheduler runs. Nothing here starts a process.
--
--   jobfile.load(path)  -> spec | nil, message, errors
--   jobfile.find(dir)   -> path of dir/jobs.lua, dir/jobs.yaml or dir/jobs.yml | nil, message
--   jobfile.load(path, { known =, settings = })        -- jobs to add to a running
--   jobfile.define(entries, { known =, settings =, where = })  -- graph (lrun ctl add,
--                                    -- add_job{}): needs may name `known` jobs
--                                    -- ({ name = kind }); settings: the run's
--
-- On failure `message` is the first error, one line ("jobs.lua:12: job "build":
-- unknown key 'neds' (did you mean 'needs'?)"), and `errors` holds every error found
-- (settings, then policies, then jobs in definition order, then their needs); the
-- caller prints message with an "lrun: " prefix and exits 2. A Lua error or a YAML
-- syntax error stops loading, so it is the only one. Dependency cycles are looked for
-- only in an otherwise valid file.
--
-- Definition order: a Lua file's job/service calls in the order they ran; a returned
-- table's `jobs` then `services`, each array part in order and then its named
-- entries sorted by name (Lua forgets a table's order); YAML sections keep the
-- order of the document. Key names near a known one (edit distance <= 2, a swap of
-- neighbours counting 1) get "did you mean".
--
-- The validated spec (every default filled in, every path absolute; a job holds the
-- keys it set, and reads its defaults through a metatable shared by the file's jobs
-- of one kind -- pairs(job) lists them too):
--
--   spec = { file = abs path, dir = abs dir of the file, format = "lua"|"yaml",
--     settings = { jobs = int|nil, keep_going = bool, exit_on_failure = bool,
--                  grace = number|nil, log_dir = abs path|nil,
--                  executor = "local"|"slurm", slurm = nil | (as a job's) },
--     jobs = { job1, job2, ... },        -- definition order, services included
--     by_name = { [name] = job },
--     policies = { [name] = function } } -- user policies defined in the file
--
--   job = { name =, kind = "job"|"service",
--     where = "jobs.lua:12"              -- basename:line of the definition, or the
--                                        -- basename alone when the line is unknown
--     argv = { "prog", "arg" } | nil, cmd = "shell string" | nil,  -- exactly one
--     needs = { { name =, cond = "success"|"done"|"started"|"ready"|"failure" }, ... },
--     success_codes = { [0] = true },    -- a set
--     dir = abs path, env = { K = "V" }, env_file = abs path|nil,
--     stdin = "null"|"inherit"|abs path,
--     stdout = "prefix"|"inherit"|"null"|abs path, stderr = (same),
--     timeout = number|nil, kill_signal = "TERM", kill_grace = number|nil,
--     retries = int, retry_delay = number, restart = "no"|"on-failure"|"always",
--     backoff = { min =, max =, factor = }, max_restarts = { count =, within = },
--     ready = nil | { tcp = port, host = "127.0.0.1" } | { file = abs path }
--           | { log = "lua pattern" } | { cmd = argv list | string } | { fn = function }
--           | { notify = "fd"|"systemd" },
--     ready_timeout = number|nil, on_exit = function|nil, policy = name|nil,
--     instances = int >= 1, user = string|int|nil, group = string|int|nil,
--     umask = int|nil, limits = { name = n | "unlimited" | { soft, hard } } | nil,
--     executor = "local"|"slurm",        -- the job's, else settings.executor
--     slurm = nil | { partition =, time =, mem =, cpus =, gpus =, account =, qos =,
--                     constraint =, extra = { "--flag", ... } } }
--                                        -- settings.slurm under the job's own keys;
--                                        -- shared between jobs: read, never write
--
-- Modules: schema (the keys, defaults, which check applies), fields (checks of keys
-- with a shape of their own), checker (generic checks), diagnostics (wording),
-- collect (raw definitions), lua_loader + sandbox (Lua files), yaml_loader, paths.
-- Loading runs within sandbox.bounded, and so does validating unless what the file
-- defined is inert (no metatables, no userdata, the standard library untouched): a
-- job file that loops, eats memory or calls os.exit gets a "jobs.lua:N: ..." error,
-- never a hang or an exit.
local D = require "lrun.jobfile.diagnostics"
local P = require "lrun.jobfile.paths"
local graph = require "lrun.graph"
local lua_loader = require "lrun.jobfile.lua_loader"
local sandbox = require "lrun.jobfile.sandbox"
local schema = require "lrun.jobfile.schema"
local yaml_loader = require "lrun.jobfile.yaml_loader"

local show, add_error = D.show, D.add_error
-- The directory of lrun's own modules as error positions name it.
local HERE = debug.getinfo(1, "S").source:match("^@(.*/)[^/]*$") or "\0"

local M = {}

-- Each need gets its default condition, or an error when it names no job.
-- known: { name = kind } of jobs defined before (a running graph's), or nil.
local function resolve_needs(raw, spec, known)
  local names
  local by_name = spec.by_name
  for _, job in ipairs(spec.jobs) do
    for _, need in ipairs(job.needs) do
      local other = by_name[need.name]
      local kind = other and other.kind or known and known[need.name]
      if not kind then
        if not names then
          names = {}
          for i, j in ipairs(spec.jobs) do names[i] = j.name end
        end
        add_error(raw, "%s: %s %s: needs unknown job %s%s", job.where, job.kind,
          show(job.name), show(need.name), D.suggest(need.name, names))
      elseif need.cond == nil then
        need.cond = kind == "service" and "ready" or "success"
      end
    end
  end
end

local function validate(raw, opts)
  local spec = { file = raw.file, dir = raw.dir, format = raw.format,
    jobs = {}, by_name = {} }
  spec.settings = opts and opts.settings and #raw.settings == 0 and opts.settings
    or schema.settings(raw)
  local policies, policy_names = schema.policies(raw)
  spec.policies = policies
  local policy_set = {}
  for _, p in ipairs(policy_names) do policy_set[p] = true end

  local ctx = { errors = raw.errors, dir = raw.dir, policy_names = policy_names,
    policy_set = policy_set, settings = spec.settings }
  -- by_name is the one table keyed by name here: at 100 000 jobs each such table is
  -- megabytes that every lookup misses in the cache.
  local jobs, by_name = spec.jobs, spec.by_name
  for _, entry in ipairs(raw.entries) do
    local ok, why = schema.valid_name(entry.name)
    local first = ok and by_name[entry.name]
    if not ok then
      add_error(raw, "%s: %s %s: %s", entry.where, entry.kind, show(entry.name), why)
    elseif first then
      add_error(raw, "%s: %s %s: duplicate name (first defined at %s)", entry.where,
        entry.kind, show(entry.name), first.where)
    else
      local job = schema.job(entry, ctx)
      jobs[#jobs + 1] = job
      by_name[job.name] = job
    end
  end
  resolve_needs(raw, spec, opts and opts.known)

  if #raw.errors == 0 and #spec.jobs == 0 then
    raw.errors[1] = raw.base .. ": no jobs defined"
  end
  if #raw.errors == 0 then
    local cycle = graph.cycle(spec)
    if cycle then
      raw.errors[1] = ("%s: dependency cycle: %s"):format(
        spec.by_name[cycle[1]].where, table.concat(cycle, " -> "))
    end
  end
  if #raw.errors > 0 then return nil, raw.errors[1], raw.errors end
  return spec
end

-- Read the file into raw; runs within sandbox.bounded.
local function read(raw, text)
  local reader = raw.format == "yaml" and yaml_loader.read or lua_loader.read
  local ok, msg = reader(raw, text)
  if not ok then return nil, msg end
  return true
end

local function read_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, ("%s: %s"):format(path, rerr) end
  return text
end

-- fn(...) within sandbox.bounded -> true, fn's results | false, message naming the file
local function bounded(raw, fn, ...)
  local res = table.pack(sandbox.bounded(fn, ...))
  if res[1] then return true, table.unpack(res, 2, res.n) end
  -- The file's code, or a metamethod of its tables, ran too long or raised.
  local msg = D.line(res[2])
  local data_error = msg:sub(1, #HERE) == HERE and msg:match("^[^:]*:%d+: (.*)$")
  if data_error and (data_error:find("chain too long") or data_error:find("stack overflow")
      or data_error:find("not enough memory")) then
    -- Raised while we read the file's tables (an __index loop): not our line to give.
    msg = ("%s: reading the file's tables: %s"):format(raw.base, data_error)
  elseif res[3] then
    msg = ("%s: loading %s (stopped at %s)"):format(raw.base, msg, res[3])
  elseif msg:sub(1, #raw.base + 1) ~= raw.base .. ":" then
    msg = raw.base .. ": " .. msg
  end
  return false, msg
end

function M.load(path, opts)
  if type(path) ~= "string" or path == "" then return nil, "no job file given" end
  local text, err = read_file(path)
  if not text then return nil, err end
  local cwd, cerr = P.cwd()
  if not cwd then return nil, cerr end
  local file = P.resolve(cwd, path)
  local raw = { file = file, dir = file:match("^(.*)/[^/]*$"), base = P.basename(file),
    format = path:lower():match("%.ya?ml$") and "yaml" or "lua",
    entries = {}, settings = {}, policies = {}, errors = {} }
  if raw.dir == "" then raw.dir = "/" end
  local ok, done, msg = bounded(raw, read, raw, text)
  if not ok then return nil, done, { done } end
  if not done then return nil, msg, { msg } end
  -- What the file defined is read (types, keys, metamethods) by validation: bounded,
  -- unless no code of the file can run then.
  if sandbox.inert(raw.entries, "t") and sandbox.inert(raw.settings, "t")
      and sandbox.inert(raw.policies, "name") then
    return validate(raw, opts)
  end
  local vok, spec, vmsg, errors = bounded(raw, validate, raw, opts)
  if not vok then return nil, spec, { spec } end
  return spec, vmsg, errors
end

-- entries: { { name =, kind = "job"|"service", t = { key = value }, where = } }
function M.define(entries, opts)
  local where = opts.where or "add_job"
  local raw = { file = opts.file or where, dir = opts.dir or assert(P.cwd()),
    base = where, format = "lua", entries = entries, settings = {}, policies = {},
    errors = {} }
  if sandbox.inert(entries, "t") and sandbox.inert(entries, "name") then
    return validate(raw, opts)
  end
  local ok, spec, msg = sandbox.bounded(validate, raw, opts)
  if not ok then return nil, where .. ": " .. D.line(spec) end
  return spec, msg
end

function M.find(dir)
  dir = dir or "."
  for _, name in ipairs({ "jobs.lua", "jobs.yaml", "jobs.yml" }) do
    local path = dir:gsub("/+$", "") .. "/" .. name
    local f = io.open(path, "r")
    if f then
      f:close()
      return path
    end
  end
  return nil, ("no job file: found none of jobs.lua, jobs.yaml, jobs.yml in %s"):format(dir)
end

return M
