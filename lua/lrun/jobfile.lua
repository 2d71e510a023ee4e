--- lrun.jobfile: load a job file (Lua or YAML) and validate it into the spec that the
-- scheduler runs. Nothing here starts a process.
--
--   jobfile.load(path)  -> spec | nil, message, errors
--   jobfile.find(dir)   -> path of dir/jobs.lua, dir/jobs.yaml or dir/jobs.yml | nil, message
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
-- The validated spec (every default filled in, every path absolute):
--
--   spec = { file = abs path, dir = abs dir of the file, format = "lua"|"yaml",
--     settings = { jobs = int|nil, keep_going = bool, exit_on_failure = bool,
--                  grace = number|nil, log_dir = abs path|nil },
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
--     umask = int|nil, limits = { name = n | "unlimited" | { soft, hard } } | nil }

local graph = require "lrun.graph"

local M = {}

local CONDS = { "success", "done", "started", "ready", "failure" }
local RESTARTS = { "no", "on-failure", "always" }
local BUILTIN_POLICIES = { "no", "on-failure", "always" }
local TOP_KEYS = { "settings", "jobs", "services", "policies" }
local SETTINGS_KEYS = { "jobs", "keep_going", "exit_on_failure", "grace", "log_dir",
  "executor", "slurm" }
local JOB_KEYS = { "name", "service", "cmd", "needs", "success_codes", "dir", "env",
  "env_file", "stdin", "stdout", "stderr", "timeout", "kill_signal", "kill_grace",
  "retries", "retry_delay", "restart", "backoff", "max_restarts", "ready",
  "ready_timeout", "on_exit", "policy", "instances", "user", "group", "umask", "limits",
  "executor", "slurm" }
local READY_KINDS = { "tcp", "file", "log", "cmd", "fn", "notify" }
local RLIMITS = { "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
  "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack" }
-- Linux numbering; kept here so validation stays pure Lua (no C module needed).
local SIGNALS = { "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL",
  "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP",
  "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",
  "PWR", "SYS" }
local DSL_NAMES = { "job", "service", "policy", "settings" }

-- Sets of the constant key lists, made once per list (validation asks per job).
local sets = setmetatable({}, { __mode = "k" })
local function set_of(list)
  local s = sets[list]
  if s then return s end
  s = {}
  for _, v in ipairs(list) do s[v] = true end
  sets[list] = s
  return s
end
local IS_COND, IS_SIGNAL = set_of(CONDS), set_of(SIGNALS)

-- Paths ------------------------------------------------------------------------

local function basename(p) return (p:match("([^/]*)/*$")) end

-- Lexical clean-up of an absolute path ("." and ".." segments, doubled slashes).
local function normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

local function resolve(base, p)
  if p:sub(1, 1) == "/" then return normalize(p) end
  return normalize(base .. "/" .. p)
end

local function getcwd()
  local ok, core = pcall(require, "lprocess.core")
  if ok and type(core) == "table" and core.getcwd then
    local d = core.getcwd()
    if d then return d end
  end
  local okl, lfs = pcall(require, "lfs")
  if okl and type(lfs) == "table" and lfs.currentdir then
    local d = lfs.currentdir()
    if d then return d end
  end
  return os.getenv("PWD") or "/"
end

-- Messages ---------------------------------------------------------------------

-- Edit distance counting a swap of two neighbours as one edit ("TREM" is one from
-- "TERM"), since that is the commonest typo.
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

-- " (did you mean 'x'?)" for the closest candidate within two edits, else "".
local function suggest(word, candidates)
  if type(word) ~= "string" then return "" end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if d <= 2 and d < #word and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

-- A string in double quotes with control characters escaped, so that a message
-- stays on one line whatever a name contains.
local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\%d"):format(c:byte())
  end) .. '"'
end

local function show(v)
  if type(v) == "string" then return quote(v) end
  return tostring(v)
end

-- A key or a policy name in single quotes, as messages print them, unless it holds
-- something that needs escaping.
local function tick(s)
  if s:find("[%c'\\]") then return quote(s) end
  return "'" .. s .. "'"
end

local function add_error(raw, fmt, ...)
  raw.errors[#raw.errors + 1] = fmt:format(...)
end

-- Per-table checking -----------------------------------------------------------
-- A checker knows the subject ('job "build"', "settings") and where each key was
-- written, collects errors, and turns raw values into validated ones.

local Checker = {}
Checker.__index = Checker

local function checker(errors, subject, where, key_where)
  return setmetatable({ errors = errors, subject = subject, where = where,
    key_where = key_where, failed = false }, Checker)
end

function Checker:fail(key, fmt, ...)
  -- "ready.tcp" was written on the line of "ready".
  local top = key and key:match("^[^.%[]+")
  local where = top and self.key_where and self.key_where(top) or self.where
  self.errors[#self.errors + 1] = ("%s: %s: " .. fmt):format(where, self.subject, ...)
  self.failed = true
end

-- `within` names the table for nested keys ("backoff"); `allow_ints` lets the array
-- part through (a job's argv).
function Checker:unknown_keys(t, known, within, allow_ints)
  local known_set, bad = set_of(known), {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      if not (allow_ints and math.type(k) == "integer") then bad[#bad + 1] = k end
    elseif not known_set[k] then
      bad[#bad + 1] = k
    end
  end
  table.sort(bad, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(bad) do
    if type(k) ~= "string" then
      self:fail(nil, "unexpected key [%s]", show(k))
    elseif within then
      self:fail(within, "unknown key %s in '%s'%s", tick(k), within, suggest(k, known))
    else
      self:fail(k, "unknown key %s%s", tick(k), suggest(k, known))
    end
  end
end

function Checker:typed(key, v, want, ...)
  for _, t in ipairs({ ... }) do
    if type(v) == t then return true end
  end
  self:fail(key, "key '%s' must be %s, got %s", key, want, type(v))
  return false
end

-- Numbers: opts.int wants an integer (2.0 is taken as 2); opts.min / opts.above
-- bound it from below (at least / strictly more than).
function Checker:number(key, v, opts)
  if v == nil then return nil end
  opts = opts or {}
  local what = opts.int and "an integer" or "a number"
  if type(v) ~= "number" or v ~= v then
    self:fail(key, "key '%s' must be %s, got %s", key, what, v ~= v and "nan" or type(v))
    return nil
  end
  if opts.int then
    local i = math.tointeger(v)
    if not i then
      self:fail(key, "key '%s' must be %s, got %s", key, what, show(v))
      return nil
    end
    v = i
  end
  if opts.min and v < opts.min then
    self:fail(key, "key '%s' must be at least %s, got %s", key, opts.min, show(v))
    return nil
  end
  if opts.above and v <= opts.above then
    self:fail(key, "key '%s' must be greater than %s, got %s", key, opts.above, show(v))
    return nil
  end
  if opts.max and v > opts.max then
    self:fail(key, "key '%s' must be at most %s, got %s", key, opts.max, show(v))
    return nil
  end
  return v
end

function Checker:bool(key, v, default)
  if v == nil then return default end
  if self:typed(key, v, "true or false", "boolean") then return v end
  return default
end

function Checker:enum(key, v, choices, default)
  if v == nil then return default end
  if not self:typed(key, v, "a string", "string") then return default end
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  self:fail(key, "key '%s' must be one of %s, got %s%s", key,
    table.concat(choices, ", "), show(v), suggest(v, choices))
  return default
end

-- A path relative to the job file's directory; `words` are reserved values
-- ("null", "inherit", ...) passed through as they are.
function Checker:path(key, v, base, words)
  if v == nil then return nil end
  if not self:typed(key, v, "a string", "string") then return nil end
  if v == "" then
    self:fail(key, "key '%s' must not be empty", key)
    return nil
  end
  for _, w in ipairs(words or {}) do
    if v == w then return v end
  end
  return resolve(base, v)
end

-- An argv list (strings; numbers are turned into strings) or a shell string.
function Checker:command(key, v, allow_string)
  if allow_string and type(v) == "string" then
    if not v:find("%S") then
      self:fail(key, "empty command")
      return nil
    end
    return v
  end
  if type(v) ~= "table" then
    self:fail(key, "key '%s' must be %s, got %s", key,
      allow_string and "a list or a string" or "a list", type(v))
    return nil
  end
  local argv, n = {}, #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      self:fail(key, "key '%s' must be a plain list, has key [%s]", key, show(k))
      return nil
    end
  end
  for i = 1, n do
    local w = v[i]
    if type(w) == "number" then w = tostring(w) end
    if type(w) ~= "string" then
      self:fail(key, "%s[%d] must be a string, got %s", key, i, type(w))
      return nil
    end
    argv[i] = w
  end
  if n == 0 or argv[1] == "" then
    self:fail(key, "empty command")
    return nil
  end
  return argv
end

-- Job fields -------------------------------------------------------------------

local function valid_name(name)
  if type(name) ~= "string" then return false, "name must be a string, got " .. type(name) end
  if name == "" then return false, "name must not be empty" end
  if name:find("[%s|]") then return false, "name must not contain whitespace or '|'" end
  return true
end

local function parse_env_file(path)
  local f, err = io.open(path, "r")
  if not f then return nil, "cannot read env_file " .. err end
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, ("cannot read env_file %s: %s"):format(path, rerr) end
  local env, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", ""):match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local k, v = line:gsub("^export%s+", ""):match("^([%a_][%w_]*)%s*=%s*(.*)$")
      if not k then
        return nil, ("env_file %s:%d: expected KEY=VALUE, got %s"):format(basename(path), n, show(line))
      end
      local q = v:sub(1, 1)
      if (q == '"' or q == "'") and #v >= 2 and v:sub(-1) == q then v = v:sub(2, -2) end
      env[k] = v
    end
  end
  return env
end

local function check_needs(c, v)
  local needs, seen = {}, {}
  local function add(name, cond)
    if type(name) ~= "string" or name == "" then
      c:fail("needs", "needs entries must be job names, got %s", show(name))
      return
    end
    if seen[name] then
      c:fail("needs", "needs %s more than once", show(name))
      return
    end
    seen[name] = true
    if cond ~= nil then
      if type(cond) ~= "string" or not IS_COND[cond] then
        c:fail("needs", "need %s: unknown condition %s%s; use one of %s", show(name), show(cond),
          suggest(cond, CONDS), table.concat(CONDS, ", "))
        return
      end
    end
    needs[#needs + 1] = { name = name, cond = cond }   -- cond nil: default, set later
  end
  if v == nil then return needs end
  if type(v) == "string" then
    add(v)
    return needs
  end
  if type(v) ~= "table" then
    c:fail("needs", "key 'needs' must be a name or a list, got %s", type(v))
    return needs
  end
  local keyed = {}
  for k in pairs(v) do
    if type(k) == "string" then keyed[#keyed + 1] = k
    elseif math.type(k) ~= "integer" or k < 1 or k > #v then
      c:fail("needs", "key 'needs' has an unexpected key [%s]", show(k))
    end
  end
  for i = 1, #v do
    local e = v[i]
    -- A one-pair table is YAML's way to write a keyed need inside a list.
    local k, cond
    if type(e) == "table" then k, cond = next(e) end
    if k ~= nil and next(e, k) == nil then
      add(k, cond)
    else
      add(e)
    end
  end
  table.sort(keyed)
  for _, k in ipairs(keyed) do add(k, v[k]) end
  return needs
end

local function check_success_codes(c, v)
  if v == nil then return { [0] = true } end
  if math.type(v) == "integer" then v = { v } end
  if type(v) ~= "table" then
    c:fail("success_codes", "key 'success_codes' must be a list of exit codes, got %s", type(v))
    return nil
  end
  if next(v) == nil then
    c:fail("success_codes", "key 'success_codes' must not be empty")
    return nil
  end
  local set = {}
  for k, code in pairs(v) do
    if math.type(k) ~= "integer" then
      c:fail("success_codes", "key 'success_codes' must be a list of exit codes")
      return nil
    end
    code = c:number("success_codes", code, { int = true, min = 0, max = 255 })
    if code == nil then return nil end
    set[code] = true
  end
  return set
end

local function check_env(c, v)
  local env = {}
  if v == nil then return env end
  if not c:typed("env", v, "a table", "table") then return env end
  for k, val in pairs(v) do
    if type(k) ~= "string" or k == "" or k:find("[=%c]") then
      c:fail("env", "env name %s is not a valid variable name", show(k))
    elseif type(val) == "number" or type(val) == "string" then
      env[k] = tostring(val)
    else
      c:fail("env", "env %s must be a string or a number, got %s", k, type(val))
    end
  end
  return env
end

local function check_signal(c, v)
  if v == nil then return "TERM" end
  if type(v) == "string" then
    local name = v:upper():gsub("^SIG", "")
    if IS_SIGNAL[name] then return name end
    if math.tointeger(tonumber(v)) then v = math.tointeger(tonumber(v)) end
  end
  if math.type(v) == "integer" and SIGNALS[v] then return SIGNALS[v] end
  c:fail("kill_signal", "key 'kill_signal' must be a signal name or number, got %s%s", show(v),
    type(v) == "string" and suggest((v:upper():gsub("^SIG", "")), SIGNALS) or "")
  return nil
end

local function check_table(c, key, v, known, defaults, rules)
  local out = {}
  for k, d in pairs(defaults) do out[k] = d end
  if v == nil then return out end
  if not c:typed(key, v, "a table", "table") then return out end
  c:unknown_keys(v, known, key)
  for _, k in ipairs(known) do
    if v[k] ~= nil then
      local n = c:number(key .. "." .. k, v[k], rules[k])
      if n ~= nil then out[k] = n end
    end
  end
  return out
end

local function check_ready(c, v, base)
  if v == nil then return nil end
  if type(v) == "function" then return { fn = v } end
  if not c:typed("ready", v, "a table or a function", "table") then return nil end
  local known = { "host" }
  table.move(READY_KINDS, 1, #READY_KINDS, 2, known)
  c:unknown_keys(v, known, "ready")
  local kinds = {}
  for _, k in ipairs(READY_KINDS) do
    if v[k] ~= nil then kinds[#kinds + 1] = k end
  end
  if #kinds ~= 1 then
    c:fail("ready", "key 'ready' needs exactly one of %s", table.concat(READY_KINDS, ", "))
    return nil
  end
  local kind, val = kinds[1], v[kinds[1]]
  if v.host ~= nil and kind ~= "tcp" then
    c:fail("ready", "key 'ready.host' goes only with 'ready.tcp'")
    return nil
  end
  if kind == "tcp" then
    local port = c:number("ready.tcp", val, { int = true, min = 1, max = 65535 })
    local host = v.host or "127.0.0.1"
    if type(host) ~= "string" or host == "" then
      c:fail("ready", "key 'ready.host' must be a host name or address, got %s", show(host))
      return nil
    end
    return port and { tcp = port, host = host }
  elseif kind == "file" then
    local p = c:path("ready.file", val, base)
    return p and { file = p }
  elseif kind == "log" then
    if not c:typed("ready.log", val, "a string", "string") then return nil end
    local ok, err = pcall(string.find, "", val)
    if not ok then
      c:fail("ready", "key 'ready.log' is not a valid Lua pattern: %s", (err:gsub("^.-:%d+: ", "")))
      return nil
    end
    return { log = val }
  elseif kind == "cmd" then
    local cmd = c:command("ready.cmd", val, true)
    return cmd and { cmd = cmd }
  elseif kind == "fn" then
    return c:typed("ready.fn", val, "a function", "function") and { fn = val } or nil
  else
    local n = c:enum("ready.notify", val, { "fd", "systemd" })
    return n and { notify = n }
  end
end

local function check_id(c, key, v)
  if v == nil then return nil end
  if type(v) == "string" and v ~= "" then return v end
  if math.type(v) == "integer" and v >= 0 then return v end
  c:fail(key, "key '%s' must be a name or a number >= 0, got %s", key, show(v))
  return nil
end

local function check_umask(c, v)
  if type(v) == "string" then
    local digits = v:match("^0?o?([0-7]+)$")
    local n = digits and tonumber(digits, 8)
    if n and n <= 511 then return n end
    c:fail("umask", "key 'umask' must be an octal string like \"022\" or 0-511, got %s", show(v))
    return nil
  end
  return c:number("umask", v, { int = true, min = 0, max = 511 })
end

local function check_limits(c, v)
  if v == nil then return nil end
  if not c:typed("limits", v, "a table", "table") then return nil end
  c:unknown_keys(v, RLIMITS, "limits")
  local function one(x)
    return x == "unlimited" or x == "infinity" or (math.type(x) == "integer" and x >= 0)
  end
  local out = {}
  for name, lim in pairs(v) do
    if type(lim) == "table" and #lim == 2 and one(lim[1]) and one(lim[2]) then
      out[name] = { lim[1], lim[2] }
    elseif one(lim) then
      out[name] = lim
    elseif type(name) == "string" then
      c:fail("limits", "limit '%s' must be a number >= 0, \"unlimited\" or {soft, hard}, got %s",
        name, show(lim))
    end
  end
  return out
end

-- Validate one raw definition into a job (still without resolved needs).
-- Option tables of the checks below, made once (validation runs them per job).
local ABOVE0, MIN0 = { above = 0 }, { min = 0 }
local INT_MIN0, INT_MIN1 = { int = true, min = 0 }, { int = true, min = 1 }
local STDIN_WORDS, STREAM_WORDS = { "null", "inherit" }, { "prefix", "inherit", "null" }
local BACKOFF_KEYS, BACKOFF_DEFAULTS = { "min", "max", "factor" }, { min = 0.5, max = 30, factor = 2 }
local BACKOFF_RULES = { min = MIN0, max = MIN0, factor = { min = 1 } }
local LIMIT_KEYS, LIMIT_DEFAULTS = { "count", "within" }, { count = 5, within = 10 }
local LIMIT_RULES = { count = INT_MIN0, within = ABOVE0 }

-- executor = "local"|"slurm", slurm = { partition=, time=, ... } (lrun.slurm.sbatch
-- turns them into options). `defaults` (settings' slurm) fill what a job leaves out.
local EXECUTORS = { "local", "slurm" }
local SLURM_KEYS = { "partition", "time", "mem", "cpus", "gpus", "account", "qos",
  "constraint", "extra" }
local SLURM_STRINGS = { partition = true, account = true, qos = true, constraint = true }
local function check_slurm(c, v, defaults)
  local out = {}
  for k, d in pairs(defaults or {}) do out[k] = d end
  if v == nil then return next(out) and out or nil end
  if not c:typed("slurm", v, "a table", "table") then return out end
  c:unknown_keys(v, SLURM_KEYS, "slurm")
  for k, x in pairs(v) do
    local key = "slurm." .. tostring(k)
    if SLURM_STRINGS[k] then
      if c:typed(key, x, "a string", "string") then out[k] = x end
    elseif k == "time" or k == "mem" then   -- Slurm's own text, or seconds / MiB
      if type(x) == "number" then out[k] = c:number(key, x, { above = 0 })
      elseif c:typed(key, x, "a string or a number", "string") then out[k] = x end
    elseif k == "cpus" or k == "gpus" then
      out[k] = c:number(key, x, { int = true, min = 1 })
    elseif k == "extra" and c:typed(key, x, "a list of strings", "table") then
      local list = {}
      for i, a in ipairs(x) do
        if c:typed(key .. "[" .. i .. "]", a, "a string", "string") then list[i] = a end
      end
      out.extra = list
    end
  end
  return out
end

local function check_job(entry, ctx)
  local t, c = entry.t, checker(ctx.errors, entry.kind .. " " .. show(entry.name),
    entry.where, entry.key_where)
  c:unknown_keys(t, JOB_KEYS, nil, true)
  if t.name ~= nil and t.name ~= entry.name then
    c:fail("name", "key 'name' is %s but the job is named %s", show(t.name), show(entry.name))
  end
  local kind = entry.kind
  if c:bool("service", t.service) ~= nil then kind = t.service and "service" or "job" end
  local job = { name = entry.name, kind = kind, where = entry.where }

  local array = {}
  for k, v in pairs(t) do
    if math.type(k) == "integer" then array[k] = v end
  end
  if next(array) ~= nil and t.cmd ~= nil then
    c:fail("cmd", "give an argv list or cmd, not both")
  elseif next(array) ~= nil then
    job.argv = c:command("argv", array)
  elseif t.cmd ~= nil then
    local cmd = c:command("cmd", t.cmd, true)
    if type(cmd) == "table" then job.argv = cmd else job.cmd = cmd end
  elseif not c.failed then
    c:fail(nil, 'no command: give an argv list or cmd = "..."')
  end

  job.needs = check_needs(c, t.needs)
  job.success_codes = check_success_codes(c, t.success_codes)
  job.dir = c:path("dir", t.dir, ctx.dir) or ctx.dir
  job.env = check_env(c, t.env)
  job.env_file = c:path("env_file", t.env_file, ctx.dir)
  if job.env_file then
    local from_file, err = parse_env_file(job.env_file)
    if not from_file then
      c:fail("env_file", "%s", err)
    else
      for k, v in pairs(from_file) do
        if job.env[k] == nil then job.env[k] = v end
      end
    end
  end
  job.stdin = c:path("stdin", t.stdin, ctx.dir, STDIN_WORDS) or "null"
  job.stdout = c:path("stdout", t.stdout, ctx.dir, STREAM_WORDS) or "prefix"
  job.stderr = c:path("stderr", t.stderr, ctx.dir, STREAM_WORDS) or "prefix"
  job.timeout = c:number("timeout", t.timeout, ABOVE0)
  job.kill_signal = check_signal(c, t.kill_signal)
  job.kill_grace = c:number("kill_grace", t.kill_grace, MIN0)
  job.retries = c:number("retries", t.retries, INT_MIN0) or 0
  job.retry_delay = c:number("retry_delay", t.retry_delay, MIN0) or 0
  job.restart = c:enum("restart", t.restart, RESTARTS,
    kind == "service" and "on-failure" or "no")
  job.backoff = check_table(c, "backoff", t.backoff, BACKOFF_KEYS, BACKOFF_DEFAULTS,
    BACKOFF_RULES)
  if job.backoff.max < job.backoff.min then
    c:fail("backoff", "key 'backoff.max' (%s) is less than 'backoff.min' (%s)",
      job.backoff.max, job.backoff.min)
  end
  job.max_restarts = check_table(c, "max_restarts", t.max_restarts, LIMIT_KEYS,
    LIMIT_DEFAULTS, LIMIT_RULES)
  job.ready = check_ready(c, t.ready, ctx.dir)
  job.ready_timeout = c:number("ready_timeout", t.ready_timeout, ABOVE0)
  if t.on_exit ~= nil and c:typed("on_exit", t.on_exit, "a function", "function") then
    job.on_exit = t.on_exit
  end
  if t.policy ~= nil and c:typed("policy", t.policy, "a policy name", "string") then
    local names = {}
    for _, p in ipairs(BUILTIN_POLICIES) do names[#names + 1] = p end
    for _, p in ipairs(ctx.policy_names) do names[#names + 1] = p end
    if set_of(names)[t.policy] then
      job.policy = t.policy
    else
      c:fail("policy", "unknown policy %s%s", tick(t.policy), suggest(t.policy, names))
    end
  end
  if job.on_exit and job.policy then
    c:fail("on_exit", "give on_exit or policy, not both")
  end
  job.instances = c:number("instances", t.instances, INT_MIN1) or 1
  job.user = check_id(c, "user", t.user)
  job.group = check_id(c, "group", t.group)
  job.umask = check_umask(c, t.umask)
  job.limits = check_limits(c, t.limits)
  job.executor = c:enum("executor", t.executor, EXECUTORS)
  job.slurm = check_slurm(c, t.slurm, ctx.slurm)
  return job
end

-- Collecting definitions -------------------------------------------------------
-- Both loaders fill `raw`: entries = { {name, kind, t, where, key_where} },
-- settings = { {t, where, key_where} }, policies = { {name, fn, where} } and
-- errors = {}. `key_where(key)` gives "file:line" of a job's key when known (YAML).
-- A returned table or YAML document goes through collect_table with `pos`:
-- pos.line(path, key) -> "file:line" | nil, pos.order(section) -> keys in
-- document order | nil (a Lua table has neither).

-- The keys of t outside its array part (1..n as ipairs sees it; all keys when
-- `all`), sorted.
local function sorted_keys(t, all)
  local n, keys = 0, {}
  if not all then
    for i in ipairs(t) do n = i end
  end
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Add the `jobs` or `services` section of a returned table / YAML document.
local function collect_section(raw, t, section, kind, pos)
  local section_where = pos.line({ section }) or raw.base
  if type(t) ~= "table" then
    add_error(raw, "%s: '%s' must be a table of %ss, got %s", section_where, section, kind, type(t))
    return
  end
  local function add(name, def, path)
    local where = pos.line(path) or raw.base
    if type(def) ~= "table" then
      add_error(raw, "%s: %s %s: must be a table, got %s", where, kind, show(name), type(def))
      return
    end
    raw.entries[#raw.entries + 1] = { name = name, kind = kind, t = def, where = where,
      key_where = function(key) return pos.line(path, key) end }
  end
  -- The array form: { { name = "a", ... }, ... }
  for i, def in ipairs(t) do
    if type(def) == "table" and def.name == nil then
      add_error(raw, "%s: %s #%d in '%s' has no name", pos.line({ section, i }) or raw.base,
        kind, i, section)
    else
      add(type(def) == "table" and def.name or "#" .. i, def, { section, i })
    end
  end
  -- The map form: { a = { ... } }. A Lua table forgets its order, so names are
  -- sorted; YAML remembers the order of the document.
  local keys, seen = {}, {}
  for _, k in ipairs(pos.order(section) or {}) do
    if t[k] ~= nil and not seen[k] then keys[#keys + 1], seen[k] = k, true end
  end
  for _, k in ipairs(sorted_keys(t)) do
    if not seen[k] then keys[#keys + 1] = k end
  end
  for _, name in ipairs(keys) do
    if type(name) ~= "string" then
      add_error(raw, "%s: %s name %s must be a string%s", section_where, kind, show(name),
        raw.format == "yaml" and " (quote it)" or "")
    else
      add(name, t[name], { section, name })
    end
  end
end

local function collect_table(raw, top, pos)
  local is_top = set_of(TOP_KEYS)
  for _, k in ipairs(sorted_keys(top, true)) do
    if not is_top[k] then
      add_error(raw, "%s: unknown top-level key %s%s", pos.line({ k }) or raw.base,
        type(k) == "string" and tick(k) or show(k), suggest(k, TOP_KEYS))
    end
  end
  if top.settings ~= nil then
    raw.settings[#raw.settings + 1] = { t = top.settings,
      where = pos.line({ "settings" }) or raw.base,
      key_where = function(key) return pos.line({ "settings" }, key) end }
  end
  if top.jobs ~= nil then collect_section(raw, top.jobs, "jobs", "job", pos) end
  if top.services ~= nil then collect_section(raw, top.services, "services", "service", pos) end
  if top.policies ~= nil then
    local where = pos.line({ "policies" }) or raw.base
    if raw.format == "yaml" then
      add_error(raw, "%s: policies can be defined only in a Lua job file" ..
        " (YAML jobs name one with 'policy')", where)
    elseif type(top.policies) ~= "table" then
      add_error(raw, "%s: 'policies' must be a table, got %s", where, type(top.policies))
    else
      for _, name in ipairs(sorted_keys(top.policies, true)) do
        raw.policies[#raw.policies + 1] = { name = name, fn = top.policies[name], where = where }
      end
    end
  end
end

local function run_lua(raw, text)
  local chunkname = "@" .. raw.base
  -- `load` does not skip a "#!" line the way lua(1) does; keep its newline for line numbers.
  text = text:gsub("^#[^\n]*", "")
  local pending = {}

  local function site()
    for level = 3, 50 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == chunkname and info.currentline > 0 then
        return raw.base .. ":" .. info.currentline
      end
    end
    return raw.base
  end

  local function definer(kind)
    return function(name, t)
      local where = site()
      if type(name) ~= "string" then
        error(('%s: %s name must be a string, got %s (write %s "name" { ... })'):format(
          where, kind, type(name), kind), 0)
      end
      local function define(def)
        if type(def) ~= "table" then
          error(("%s: %s %s needs a table, got %s (write %s %s { ... })"):format(
            where, kind, show(name), type(def), kind, show(name)), 0)
        end
        raw.entries[#raw.entries + 1] = { name = name, kind = kind, t = def, where = where }
      end
      if t ~= nil then return define(t) end
      local token = { where = where, kind = kind, name = name }
      pending[#pending + 1] = token
      return function(def)
        token.done = true
        return define(def)
      end
    end
  end

  local env = setmetatable({
    job = definer("job"),
    service = definer("service"),
    settings = function(t)
      local where = site()
      if type(t) ~= "table" then
        error(("%s: settings needs a table, got %s"):format(where, type(t)), 0)
      end
      raw.settings[#raw.settings + 1] = { t = t, where = where }
    end,
    policy = function(name, fn)
      local where = site()
      local function define(f)
        raw.policies[#raw.policies + 1] = { name = name, fn = f, where = where }
      end
      if fn ~= nil then return define(fn) end
      return define   -- policy "name" (function(ev) ... end)
    end,
  }, { __index = _G })

  local chunk, err = load(text, chunkname, "t", env)
  if not chunk then return nil, err end
  local ok, result = pcall(chunk)
  if not ok then
    local msg = tostring(result)
    if msg:sub(1, #raw.base + 1) ~= raw.base .. ":" then msg = raw.base .. ": " .. msg end
    local global = msg:match("attempt to call a nil value %(global '([%w_]+)'%)")
    if global then msg = msg .. suggest(global, DSL_NAMES) end
    return nil, msg
  end
  for _, token in ipairs(pending) do
    if not token.done then
      raw.errors[#raw.errors + 1] = ("%s: %s %s has no definition (write %s %s { ... })"):format(
        token.where, token.kind, show(token.name), token.kind, show(token.name))
    end
  end
  if result ~= nil then
    if type(result) ~= "table" then
      return nil, ("%s: the file returned a %s; return a table or nothing"):format(
        raw.base, type(result))
    end
    -- Nothing tells the lines of a returned table's fields.
    collect_table(raw, result, { line = function() return nil end,
      order = function() return nil end })
  end
  return true
end

-- Walk libyaml's events to learn the line of every mapping key and sequence item
-- (lyaml.load drops them) and the document order of each mapping's keys.
-- Paths are keys joined by "\1"; only the first document is read, like lyaml.load.
local function yaml_positions(text)
  local yaml = require "yaml"
  local line_of, keys_of = {}, {}
  -- Frames: { path=, seq=bool, n=items seen, want="key"|"value", key=, role= }
  local stack = {}
  local function join(a, b) return a == nil and tostring(b) or a .. "\1" .. tostring(b) end
  local next_event = yaml.parser(text)
  while true do
    local ok, ev = pcall(next_event)
    if not ok then return nil, ev end
    if not ev or ev.type == "DOCUMENT_END" then break end
    local t, frame = ev.type, stack[#stack]
    if t == "MAPPING_END" or t == "SEQUENCE_END" then
      local done = table.remove(stack)
      local parent = stack[#stack]
      if parent and done.role == "value" then parent.want = "key" end
    elseif t == "SCALAR" or t == "ALIAS" or t == "MAPPING_START" or t == "SEQUENCE_START" then
      local line, path, role = ev.start_mark.line + 1, nil, "value"
      if frame and frame.seq then
        frame.n = frame.n + 1
        path = join(frame.path, frame.n)
        line_of[path] = line
      elseif frame and frame.want == "key" then
        -- A complex (non-scalar) key gets a made-up name: nothing looks it up.
        role, frame.want, frame.key = "key", "value", ev.value or "\0complex"
        line_of[join(frame.path, frame.key)] = line
        local order = keys_of[frame.path or ""]
        order[#order + 1] = frame.key
      elseif frame then
        path = join(frame.path, frame.key)
        if t == "SCALAR" or t == "ALIAS" then frame.want = "key" end
      end
      if t == "MAPPING_START" or t == "SEQUENCE_START" then
        stack[#stack + 1] = { path = path, seq = t == "SEQUENCE_START", n = 0,
          want = "key", role = role }
        if t == "MAPPING_START" then keys_of[path or ""] = {} end
      end
    end
  end
  return line_of, keys_of
end

local function read_yaml(raw, text)
  local okl, lyaml = pcall(require, "lyaml")
  if not okl then return nil, raw.base .. ": YAML job files need lyaml (Debian: lua-yaml)" end
  local line_of, keys_of = yaml_positions(text)
  if not line_of then
    -- "did not find expected key at document: 1, line: 3, column: 5\nwhile ..."
    local msg, l = keys_of:match("^(.-) at document: %d+, line: (%d+)")
    return nil, ("%s:%s: %s"):format(raw.base, l or "1", msg or keys_of:gsub("\n.*", ""))
  end
  local ok, doc = pcall(lyaml.load, text)
  if not ok then
    local l, msg = tostring(doc):match("^(%d+):%d+: (.*)")
    return nil, ("%s:%s: %s"):format(raw.base, l or "1", msg or tostring(doc))
  end
  -- lyaml gives `key:` with no value as lyaml.null; the validator wants nil.
  local seen = {}
  local function strip(v)
    if v == lyaml.null then return nil end
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do v[k] = strip(x) end
    end
    return v
  end
  doc = strip(doc)
  if doc == nil then doc = {} end
  if type(doc) ~= "table" or (#doc > 0) then
    return nil, raw.base .. ":1: the document must be a mapping (settings:, jobs:, services:)"
  end
  local pos = {
    line = function(path, key)
      local p
      for _, k in ipairs(path) do p = p == nil and tostring(k) or p .. "\1" .. tostring(k) end
      if key ~= nil then p = p .. "\1" .. tostring(key) end
      local l = line_of[p]
      return l and raw.base .. ":" .. l or nil
    end,
    order = function(section) return keys_of[section] end,
  }
  collect_table(raw, doc, pos)
  return true
end

-- Validation -------------------------------------------------------------------

local function check_settings(raw, spec_dir)
  local out = { keep_going = false, exit_on_failure = false }
  for _, s in ipairs(raw.settings) do
    local c = checker(raw.errors, "settings", s.where, s.key_where)
    c:unknown_keys(s.t, SETTINGS_KEYS)
    local t = s.t
    if t.jobs ~= nil then out.jobs = c:number("jobs", t.jobs, { int = true, min = 1 }) end
    out.keep_going = c:bool("keep_going", t.keep_going, out.keep_going)
    out.exit_on_failure = c:bool("exit_on_failure", t.exit_on_failure, out.exit_on_failure)
    if t.grace ~= nil then out.grace = c:number("grace", t.grace, { min = 0 }) end
    if t.log_dir ~= nil then out.log_dir = c:path("log_dir", t.log_dir, spec_dir) end
    out.executor = c:enum("executor", t.executor, EXECUTORS, out.executor)
    if t.slurm ~= nil then out.slurm = check_slurm(c, t.slurm, out.slurm) end
  end
  return out
end

local function check_policies(raw)
  local policies, names, first = {}, {}, {}
  local builtin = set_of(BUILTIN_POLICIES)
  for _, p in ipairs(raw.policies) do
    local at = ("%s: policy %s: "):format(p.where, show(p.name))
    local ok, why = valid_name(p.name)
    if not ok then
      add_error(raw, "%s%s", at, why)
    elseif builtin[p.name] then
      add_error(raw, "%sthe name is taken by a built-in policy", at)
    elseif first[p.name] then
      add_error(raw, "%sdefined twice (first at %s)", at, first[p.name])
    elseif type(p.fn) ~= "function" then
      add_error(raw, "%smust be a function, got %s", at, type(p.fn))
    else
      first[p.name] = p.where
      policies[p.name] = p.fn
      names[#names + 1] = p.name
    end
  end
  return policies, names
end

local function validate(raw)
  local spec = { file = raw.file, dir = raw.dir, format = raw.format,
    jobs = {}, by_name = {} }
  spec.settings = check_settings(raw, raw.dir)
  local policies, policy_names = check_policies(raw)
  spec.policies = policies

  local ctx = { errors = raw.errors, dir = raw.dir, policy_names = policy_names,
    slurm = spec.settings.slurm }
  local kind_of, first_at = {}, {}
  for _, entry in ipairs(raw.entries) do
    local at = ("%s: %s %s: "):format(entry.where, entry.kind, show(entry.name))
    local ok, why = valid_name(entry.name)
    if not ok then
      add_error(raw, "%s%s", at, why)
    elseif first_at[entry.name] then
      add_error(raw, "%sduplicate name (first defined at %s)", at, first_at[entry.name])
    else
      first_at[entry.name] = entry.where
      local job = check_job(entry, ctx)
      kind_of[job.name] = job.kind
      spec.jobs[#spec.jobs + 1] = job
      spec.by_name[job.name] = job
    end
  end

  local names = {}
  for _, job in ipairs(spec.jobs) do names[#names + 1] = job.name end
  for _, job in ipairs(spec.jobs) do
    for _, need in ipairs(job.needs) do
      if not kind_of[need.name] then
        add_error(raw, "%s: %s %s: needs unknown job %s%s", job.where, job.kind,
          show(job.name), show(need.name), suggest(need.name, names))
      elseif need.cond == nil then
        need.cond = kind_of[need.name] == "service" and "ready" or "success"
      end
    end
  end

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

-- Public -----------------------------------------------------------------------

function M.load(path)
  if type(path) ~= "string" or path == "" then return nil, "no job file given" end
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local text, rerr = f:read("a")
  f:close()
  if not text then return nil, ("%s: %s"):format(path, rerr) end

  local file = resolve(getcwd(), path)
  local raw = { file = file, dir = file:match("^(.*)/[^/]*$"), base = basename(file),
    format = path:lower():match("%.ya?ml$") and "yaml" or "lua",
    entries = {}, settings = {}, policies = {}, errors = {} }
  if raw.dir == "" then raw.dir = "/" end
  local ok, msg
  if raw.format == "yaml" then ok, msg = read_yaml(raw, text) else ok, msg = run_lua(raw, text) end
  if not ok then return nil, msg, { msg } end
  return validate(raw)
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
