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

-- job "name" { ... }, job("name", { ... }); a curried call leaves a pending token
-- until its table comes.
local function definer(raw, chunkname, pending, kind)
  return function(name, t)
    local where = site(raw, chunkname)
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
      local function define(f)
        raw.policies[#raw.policies + 1] = { name = name, fn = f, where = where }
      end
      if fn ~= nil then return define(fn) end
      return define   -- policy "name" (function(ev) ... end)
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
    collect.table(raw, result, { line = function() return nil end,
      order = function() return nil end })
  end
  return true
end

return M
