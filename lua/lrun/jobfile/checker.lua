-- lrun.jobfile.checker: the generic checks of one table of a job file (a job, the
-- settings). A checker knows its subject ('job "build"', "settings") and where each
-- key was written, collects errors, and turns raw values into validated ones.
--
--   local checker = require "lrun.jobfile.checker"
--   local c = checker.new(raw.errors, "settings", "jobs.lua:3", key_where)
--   local c = checker.job(raw.errors, "job", "x", "jobs.lua:3", key_where) -- 'job "x"'
--   c = checker.job(raw.errors, "job", "y", "jobs.lua:4", nil, c)  -- the same table, reset

--   c:unknown_keys(t, known_set, known_list)  -- "unknown key 'tmeout' (did you mean ...)"
--                                             -- -> number of known keys t has
--   local n = c:number("timeout", t.timeout, { above = 0 })   -- nil when absent or bad
--   c:bool(k, v, default)  c:enum(k, v, choices, default)  c:path(k, v, base, words)
--   c:command(k, v, allow_string)  c:string(k, v)  c:fail(k, fmt, ...)  c.failed
--
-- Every check takes nil as "absent" and returns nil (or the default) for it, so a
-- caller can skip absent keys before calling. `key_where(top_key)` gives the
-- "file:line" of a key when the loader knows it (YAML), else errors use `where`.
local D = require "lrun.jobfile.diagnostics"
local P = require "lrun.jobfile.paths"

local show, tick, suggest = D.show, D.tick, D.suggest

local M = {}
local Checker = {}
Checker.__index = Checker

function M.new(errors, subject, where, key_where)
  return setmetatable({ errors = errors, subject = subject, where = where,
    key_where = key_where, failed = false }, Checker)
end

-- A checker for a job: its subject ('job "x"') is worded only when an error needs it.
-- `reuse`: a job checker done with its job, set up for this one (no table a job).
function M.job(errors, kind, name, where, key_where, reuse)
  if reuse then
    reuse.errors, reuse.kind, reuse.name, reuse.where = errors, kind, name, where
    reuse.key_where, reuse.failed = key_where, false
    return reuse
  end
  return setmetatable({ errors = errors, kind = kind, name = name, where = where,
    key_where = key_where, failed = false }, Checker)
end

-- A set of a list, for unknown_keys.
function M.set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

function Checker:fail(key, fmt, ...)
  -- "ready.tcp" was written on the line of "ready".
  local top = key and key:match("^[^.%[]+")
  local where = top and self.key_where and self.key_where(top) or self.where
  local subject = self.subject or (self.kind .. " " .. show(self.name))
  self.errors[#self.errors + 1] = ("%s: %s: " .. fmt):format(where, subject, ...)
  self.failed = true
end

-- `within` names the table for nested keys ("backoff"); `allow_ints` lets the array
-- part through (a job's argv). Returns how many known keys t has.
function Checker:unknown_keys(t, known_set, known, within, allow_ints)
  local bad, n = nil, 0
  for k in next, t do
    if known_set[k] == true then
      n = n + 1
    elseif not (allow_ints and math.type(k) == "integer") then
      bad = bad or {}
      bad[#bad + 1] = k
    end
  end
  if not bad then return n end
  table.sort(bad, D.by_text)
  for _, k in ipairs(bad) do
    if type(k) ~= "string" then
      self:fail(nil, "unexpected key [%s]", show(k))
    elseif within then
      self:fail(within, "unknown key %s in '%s'%s", tick(k), within, suggest(k, known))
    else
      self:fail(k, "unknown key %s%s", tick(k), suggest(k, known))
    end
  end
  return n
end

function Checker:typed(key, v, want, t1, t2)
  local t = type(v)
  if t == t1 or (t2 and t == t2) then return true end
  self:fail(key, "key '%s' must be %s, got %s", key, want, t)
  return false
end

-- A non-empty string.
function Checker:string(key, v)
  if v == nil then return nil end
  if not self:typed(key, v, "a string", "string") then return nil end
  if v == "" then
    self:fail(key, "key '%s' must not be empty", key)
    return nil
  end
  return v
end

-- Numbers: opts.int wants an integer (2.0 is taken as 2); opts.min / opts.above
-- bound it from below (at least / strictly more than), opts.max from above.
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
  v = self:string(key, v)
  if v == nil then return nil end
  if words then
    for _, w in ipairs(words) do
      if v == w then return v end
    end
  end
  return P.resolve(base, v)
end

-- The array of a plain list (keys 1..#v only), or nil after an error.
function Checker:list(key, v)
  local n = #v
  if math.type(n) ~= "integer" then
    self:fail(key, "key '%s' must be a plain list", key)
    return nil
  end
  for k in next, v do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      self:fail(key, "key '%s' must be a plain list, has key [%s]", key, show(k))
      return nil
    end
  end
  return n
end

-- An argv list (strings; numbers are turned into strings) or a shell string. `own`:
-- v is a table the caller made (not the file's): it is checked and returned as it is.
function Checker:command(key, v, allow_string, own)
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
  local n = self:list(key, v)
  if not n then return nil end
  local argv = own and v or {}
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

return M
