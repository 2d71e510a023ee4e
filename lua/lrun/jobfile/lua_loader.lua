-- lrun.jobfile.lua_loader: run a Lua job file and collect what it defines into
-- `raw` (see lrun.jobfile.collect). The file runs in lrun.jobfile.sandbox's
-- environment; the caller runs this within sandbox.bounded.
--
--   local lua_loader = require "lrun.jobfile.lua_loader"
--   local ok, message = lua_loader.read(raw, text)   -- true | nil, "jobs.lua:3: ..."
--
-- Definition order is the order the job/service calls ran; a returned table adds
-- its `jobs` then `services` after them. A Lua error stops loading and is the only
-- error: its message names file and line ("jobs.lua:3: attempt to index ..."), and a
-- call of a misspelt DSL name gets "did you mean".
local D = require "lrun.jobfile.diagnostics"
local collect = require "lrun.jobfile.collect"
local sandbox = require "lrun.jobfile.sandbox"
local schema = require "lrun.jobfile.schema"
local lrun_text = require "lrun.text"

local show, caller_line = D.show, lrun_text.caller_line

local M = {}

-- "jobs.lua:12": the line of the job file the DSL function was called from.
-- Level 3: the caller of the DSL function that called site.
local function site(raw, chunkname)
  local line = caller_line(chunkname, 3)
  return line and raw.base .. ":" .. line or raw.base
end

-- The entry of a definition; `entry` is complete once its table has come (a curried
-- call's entry waits for it). Called twice, a curried definer defines twice.
local function define(raw, entry, def)
  if type(def) ~= "table" then
    error(("%s: %s %s needs a table, got %s (write %s %s { ... })"):format(
      entry.where, entry.kind, show(entry.name), type(def), entry.kind, show(entry.name)), 0)
  end
  if entry.t ~= nil then
    entry = { name = entry.name, kind = entry.kind, t = nil, where = entry.where }
  end
  entry.t = def
  raw.entries[#raw.entries + 1] = entry
end

-- job "name" { ... }, job("name", { ... }). A curried call's entry waits in
-- pending.open until the next definition; one still without its table then goes to
-- the pending list (the file may complete it later). One closure per curried call:
-- a 100 000-job file makes no other garbage here.
local function definer(raw, chunkname, pending, kind)
  return function(name, t)
    local where = site(raw, chunkname)
    if type(name) ~= "string" then
      error(('%s: %s name must be a string, got %s (write %s "name" { ... })'):format(
        where, kind, type(name), kind), 0)
    end
    local open = pending.open
    if open and open.t == nil then pending[#pending + 1] = open end
    local entry = { name = name, kind = kind, t = nil, where = where }
    if t ~= nil then
      pending.open = nil
      return define(raw, entry, t)
    end
    pending.open = entry
    return function(def) return define(raw, entry, def) end
  end
end

local function dsl(raw, chunkname, pending)
  return {
    job = definer(raw, chunkname, pending, "job"),
    service = definer(raw, chunkname, pending, "service"),
    settings = function(t)
      local where = site(raw, chunkname)
      if type(t) ~= "table" then
        error(("%s: settings needs a table, got %s"):format(where, type(t)), 0)
      end
      raw.settings[#raw.settings + 1] = { t = t, where = where }
    end,
    -- Called later, from a policy or on_exit, while lrun runs the graph.
    add_job = function(def)
      return require("lrun.control.api").add_job(def, site(raw, chunkname))
    end,
    policy = function(name, fn)
      local where = site(raw, chunkname)
      local function define_policy(f)
        raw.policies[#raw.policies + 1] = { name = name, fn = f, where = where }
      end
      if fn ~= nil then return define_policy(fn) end
      return define_policy   -- policy "name" (function(ev) ... end)
    end,
  }
end

-- The message of an error the file raised: one line, naming the file.
local function error_message(raw, err)
  local msg = D.line(D.error_text(err))
  if msg:sub(1, #raw.base + 1) ~= raw.base .. ":" then msg = raw.base .. ": " .. msg end
  local global = msg:match("attempt to call a nil value %(global '([%w_]+)'%)")
  if global then msg = msg .. D.suggest(global, schema.DSL_NAMES) end
  return msg
end

function M.read(raw, text)
  local chunkname = "@" .. raw.base
  -- `load` does not skip a "#!" line the way lua(1) does; keep its newline for line numbers.
  text = text:gsub("^#[^\n]*", "")
  local pending = {}
  local chunk, err = load(text, chunkname, "t", sandbox.env(dsl(raw, chunkname, pending)))
  if not chunk then return nil, D.line(err) end
  local ok, result = pcall(chunk)
  if not ok then return nil, error_message(raw, result) end
  pending[#pending + 1] = pending.open
  for _, token in ipairs(pending) do
    if token.t == nil then
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
    collect.table(raw, result, { line = function() return nil end,
      order = function() return nil end })
  end
  return true
end

return M
