-- lrun.jobfile.fields: the checks of the job keys whose values have a shape of their
-- own (needs, success_codes, env, env_file, kill_signal, backoff-like tables, ready,
-- user/group, umask, limits, slurm). Each takes a checker and the raw value (never
-- nil: callers take the default for an absent key) and returns the validated value,
-- or nil after reporting through the checker.
--
--   local F = require "lrun.jobfile.fields"
--   job.needs = F.needs(c, t.needs)          -- { { name =, cond = nil|"success"|... } }
--   job.kill_signal = F.signal(c, "TERM")    -- "TERM"
--   job.limits = F.limits(c, { nofile = 1024 })
--
-- Signal and rlimit names come from lprocess.core (core.signals, core.rlimits): the
-- names the spawn accepts are the names the job file may use.
local core = require "lprocess.core"
local D = require "lrun.jobfile.diagnostics"
local checker = require "lrun.jobfile.checker"

local show, suggest = D.show, D.suggest

local M = {}

M.CONDS = { "success", "done", "started", "ready", "failure" }
local IS_COND = checker.set(M.CONDS)
M.READY_KINDS = { "tcp", "file", "log", "cmd", "fn", "notify" }
local READY_KEYS = { "host", "tcp", "file", "log", "cmd", "fn", "notify" }
local READY_SET = checker.set(READY_KEYS)
M.SLURM_KEYS = { "partition", "time", "mem", "cpus", "gpus", "account", "qos",
  "constraint", "extra" }
local SLURM_SET = checker.set(M.SLURM_KEYS)

-- The names of a core table {NAME = n, [n] = "NAME"}, ordered by number (the order
-- suggestions are tried in).
local function names_of(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and math.type(v) == "integer" then names[#names + 1] = k end
  end
  table.sort(names, function(a, b) return t[a] < t[b] end)
  return names
end
local SIGNALS, SIGNAL_NAMES = core.signals, names_of(core.signals)
local RLIMIT_NAMES = names_of(core.rlimits)
local RLIMIT_SET = {}
for _, n in ipairs(RLIMIT_NAMES) do RLIMIT_SET[n] = true end
table.sort(RLIMIT_NAMES)

-- seen: the names met so far, or nil while they are the names in `needs` (most jobs
-- have a need or two and no error: a set each would be garbage). -> seen
local function add_need(c, needs, seen, name, cond)
  if type(name) ~= "string" or name == "" then
    c:fail("needs", "needs entries must be job names, got %s", show(name))
    return seen
  end
  local again = seen and seen[name]
  if not seen then
    for i = 1, #needs do
      if needs[i].name == name then again = true end
    end
  end
  if again then
    c:fail("needs", "needs %s more than once", show(name))
    return seen
  end
  if cond ~= nil and (type(cond) ~= "string" or not IS_COND[cond]) then
    c:fail("needs", "need %s: unknown condition %s%s; use one of %s", show(name), show(cond),
      suggest(cond, M.CONDS), table.concat(M.CONDS, ", "))
    -- met all the same: naming it again is one more error
    if not seen then
      seen = {}
      for i = 1, #needs do seen[needs[i].name] = true end
    end
    seen[name] = true
    return seen
  end
  if seen then seen[name] = true end
  needs[#needs + 1] = { name = name, cond = cond }   -- cond nil: default, set later
  return seen
end

function M.needs(c, v)
  local needs = {}
  if type(v) == "string" then
    add_need(c, needs, nil, v)
    return needs
  end
  if type(v) ~= "table" then
    c:fail("needs", "key 'needs' must be a name or a list, got %s", type(v))
    return needs
  end
  local n, keyed = #v, nil
  if math.type(n) ~= "integer" then n = 0 end
  for k in next, v do
    if type(k) == "string" then
      keyed = keyed or {}
      keyed[#keyed + 1] = k
    elseif math.type(k) ~= "integer" or k < 1 or k > n then
      c:fail("needs", "key 'needs' has an unexpected key [%s]", show(k))
    end
  end
  local seen = n + (keyed and #keyed or 0) > 8 and {} or nil
  for i = 1, n do
    local e = v[i]
    -- A one-pair table is YAML's way to write a keyed need inside a list.
    local k, cond
    if type(e) == "table" then k, cond = next(e) end
    if k ~= nil and next(e, k) == nil then
      seen = add_need(c, needs, seen, k, cond)
    else
      seen = add_need(c, needs, seen, e)
    end
    -- A hole ends the list: a __len of 2^62 must not make 2^62 errors.
    if e == nil then break end
  end
  if not keyed then return needs end
  table.sort(keyed)
  for _, k in ipairs(keyed) do seen = add_need(c, needs, seen, k, v[k]) end
  return needs
end

local CODE = { int = true, min = 0, max = 255 }
function M.success_codes(c, v)
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
  for k, code in next, v do
    if math.type(k) ~= "integer" then
      c:fail("success_codes", "key 'success_codes' must be a list of exit codes")
      return nil
    end
    code = c:number("success_codes", code, CODE)
    if code == nil then return nil end
    set[code] = true
  end
  return set
end

function M.env(c, v)
  local env = {}
  if not c:typed("env", v, "a table", "table") then return env end
  for k, val in next, v do
    if type(k) ~= "string" or k == "" or k:find("[=%c]") then
      c:fail("env", "env name %s is not a valid variable name", show(k))
    elseif type(val) == "number" or type(val) == "string" then
      env[k] = tostring(val)
    else
      c:fail("env", "env %s must be a string or a number, got %s", D.line(k), type(val))
    end
  end
  return env
end

-- KEY=VALUE lines ("export " and quotes allowed, # comments) of an env file.
function M.parse_env_file(path)
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
        return nil, ("env_file %s:%d: expected KEY=VALUE, got %s"):format(
          path:match("[^/]*$"), n, show(line))
      end
      local q = v:sub(1, 1)
      if (q == '"' or q == "'") and #v >= 2 and v:sub(-1) == q then v = v:sub(2, -2) end
      env[k] = v
    end
  end
  return env
end

function M.signal(c, v)
  if type(v) == "string" then
    local name = v:upper():gsub("^SIG", "")
    if math.type(SIGNALS[name]) == "integer" then return name end
    if math.tointeger(tonumber(v)) then v = math.tointeger(tonumber(v)) end
  end
  if math.type(v) == "integer" and type(SIGNALS[v]) == "string" then return SIGNALS[v] end
  c:fail("kill_signal", "key 'kill_signal' must be a signal name or number, got %s%s", show(v),
    type(v) == "string" and suggest((v:upper():gsub("^SIG", "")), SIGNAL_NAMES) or "")
  return nil
end

-- A table of numbers with defaults (backoff, max_restarts): plan = { keys =, set =,
-- fresh = fn -> a new table of the defaults, rules = }.
function M.numbers(c, key, v, plan)
  local out = plan.fresh()
  if not c:typed(key, v, "a table", "table") then return out end
  c:unknown_keys(v, plan.set, plan.keys, key)
  for _, k in ipairs(plan.keys) do
    if v[k] ~= nil then
      local n = c:number(key .. "." .. k, v[k], plan.rules[k])
      if n ~= nil then out[k] = n end
    end
  end
  return out
end

local PORT = { int = true, min = 1, max = 65535 }
local NOTIFY = { "fd", "systemd" }
local function ready_kind(c, kind, val, v, base)
  if kind == "tcp" then
    local port = c:number("ready.tcp", val, PORT)
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
  end
  local n = c:enum("ready.notify", val, NOTIFY)
  return n and { notify = n }
end

function M.ready(c, v, base)
  if type(v) == "function" then return { fn = v } end
  if not c:typed("ready", v, "a table or a function", "table") then return nil end
  c:unknown_keys(v, READY_SET, READY_KEYS, "ready")
  local kind, count = nil, 0
  for _, k in ipairs(M.READY_KINDS) do
    if v[k] ~= nil then kind, count = k, count + 1 end
  end
  if count ~= 1 then
    c:fail("ready", "key 'ready' needs exactly one of %s", table.concat(M.READY_KINDS, ", "))
    return nil
  end
  if v.host ~= nil and kind ~= "tcp" then
    c:fail("ready", "key 'ready.host' goes only with 'ready.tcp'")
    return nil
  end
  return ready_kind(c, kind, v[kind], v, base)
end

function M.id(c, key, v)
  if type(v) == "string" and v ~= "" then return v end
  if math.type(v) == "integer" and v >= 0 then return v end
  c:fail(key, "key '%s' must be a name or a number >= 0, got %s", key, show(v))
  return nil
end

local UMASK = { int = true, min = 0, max = 511 }
function M.umask(c, v)
  if type(v) == "string" then
    local digits = v:match("^0?o?([0-7]+)$")
    local n = digits and tonumber(digits, 8)
    if n and n <= 511 then return n end
    c:fail("umask", "key 'umask' must be an octal string like \"022\" or 0-511, got %s", show(v))
    return nil
  end
  return c:number("umask", v, UMASK)
end

local function one_limit(x)
  return x == "unlimited" or x == "infinity" or (math.type(x) == "integer" and x >= 0)
end

function M.limits(c, v)
  if not c:typed("limits", v, "a table", "table") then return nil end
  c:unknown_keys(v, RLIMIT_SET, RLIMIT_NAMES, "limits")
  local out = {}
  for name, lim in next, v do
    if RLIMIT_SET[name] then
      if type(lim) == "table" and #lim == 2 and one_limit(lim[1]) and one_limit(lim[2]) then
        out[name] = { lim[1], lim[2] }
      elseif one_limit(lim) then
        out[name] = lim
      else
        c:fail("limits", "limit '%s' must be a number >= 0, \"unlimited\" or {soft, hard}, got %s",
          name, show(lim))
      end
    end
  end
  return out
end

-- A string, or a number checked by `rules`; `what` words the number for messages.
local function string_or_number(c, key, v, rules, what)
  if type(v) == "string" then return c:string(key, v) end
  if type(v) == "number" then return c:number(key, v, rules) end
  c:fail(key, "key '%s' must be a string or %s, got %s", key, what, type(v))
  return nil
end

local SLURM_CHECKS = {
  time = function(c, k, v) return string_or_number(c, k, v, { above = 0 }, "a number of seconds") end,
  mem = function(c, k, v) return string_or_number(c, k, v, { int = true, min = 1 }, "an integer (MB)") end,
  cpus = function(c, k, v) return c:number(k, v, { int = true, min = 1 }) end,
  gpus = function(c, k, v) return string_or_number(c, k, v, { int = true, min = 0 }, "an integer") end,
  extra = function(c, k, v)
    if not c:typed(k, v, "a list of strings", "table") then return nil end
    local n = c:list(k, v)
    if not n then return nil end
    local out = {}
    for i = 1, n do
      if type(v[i]) ~= "string" then
        c:fail(k, "%s[%d] must be a string, got %s", k, i, type(v[i]))
        return nil
      end
      out[i] = v[i]
    end
    return out
  end,
}

-- The slurm table (a job's or the settings'): a copy with every given key checked.
-- `key` is "slurm".
function M.slurm(c, key, v)
  if not c:typed(key, v, "a table", "table") then return nil end
  c:unknown_keys(v, SLURM_SET, M.SLURM_KEYS, key)
  local out = {}
  for _, k in ipairs(M.SLURM_KEYS) do
    local x = v[k]
    if x ~= nil then
      local check = SLURM_CHECKS[k]
      if check then out[k] = check(c, key .. "." .. k, x)
      else out[k] = c:string(key .. "." .. k, x) end
    end
  end
  return out
end

return M
