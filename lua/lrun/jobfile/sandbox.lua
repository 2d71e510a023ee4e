-- lrun.jobfile.sandbox: what a Lua job file's code runs with and within -- its
-- environment (the DSL over the normal globals, with os.exit and finalizers taken
-- away) and a bounded run (a deadline and a memory ceiling) for loading.
--
--   local sandbox = require "lrun.jobfile.sandbox"
--   local env = sandbox.env(dsl)    -- dsl = { job =, service =, settings =, policy = }
--   local ok, a, b = sandbox.bounded(fn, ...)   -- true, results | false, message
--   sandbox.TIMEOUT, sandbox.MEMORY             -- seconds, MiB (tests lower them)
--   sandbox.inert(list, field)  -- true: reading each list[i][field] (types, keys,
--                               -- values) runs none of the file's code
--
-- A job file, and every function it defines (on_exit, a policy, a ready fn, called
-- later by lrun), must never end lrun: os.exit raises an error instead ("jobs.lua:3:
-- os.exit is not allowed in a job file"), caught as a load error or, at run time,
-- by lprocess.policy.guard as a policy error. Finalizers (__gc) are refused: they
-- would run at any later moment, outside every guard. This is a guard against
-- accidents, not a security boundary: a job file runs commands of its choice.
--
-- bounded() runs fn in a coroutine with a count hook: past the deadline or the
-- memory ceiling the hook raises on every instruction, so even a loop that swallows
-- errors with pcall stops. Coroutines the file creates while loading get the same
-- hook. A single long C call (a huge string.rep, os.execute) is not interrupted.
local core = require "lprocess.core"
local D = require "lrun.jobfile.diagnostics"
local inert_tables = require("lrun.text").inert

local M = {}

M.TIMEOUT = 10     -- seconds for running the file and validating what it defined
M.MEMORY = 1024    -- MiB of Lua heap while loading

local COUNT = 1000   -- instructions between two looks at the clock
local active         -- the bounded run in progress: { deadline =, kb =, stop =, at = }

local function hook()
  local run = active
  if not run then return end
  if not run.stop then
    if core.now() < run.deadline and collectgarbage("count") < run.kb then return end
    run.stop = core.now() >= run.deadline and ("ran longer than %g s"):format(M.TIMEOUT)
      or ("used more than %d MiB of memory"):format(M.MEMORY)
    local info = debug.getinfo(2, "Sl")
    if info and info.currentline and info.currentline > 0 and info.source:sub(1, 1) == "@" then
      run.at = info.source:sub(2) .. ":" .. info.currentline
    end
    debug.sethook(hook, "", 1)
  end
  error(run.stop, 0)
end

local function watch(co)
  if active then debug.sethook(co, hook, "", active.stop and 1 or COUNT) end
  return co
end

-- fn(...) within M.TIMEOUT and M.MEMORY. Returns true and fn's results, or false,
-- why ("ran longer than 10 s", "used more than 1024 MiB of memory", "yielded
-- outside a coroutine", or the text of the error fn raised) and the file:line it was
-- stopped at (nil when unknown).
function M.bounded(fn, ...)
  local outer = active
  local run = { deadline = core.now() + M.TIMEOUT, kb = M.MEMORY * 1024 }
  active = run
  local co = watch(coroutine.create(fn))
  local res = table.pack(coroutine.resume(co, ...))
  debug.sethook(co)
  active = outer
  if run.stop then return false, run.stop, run.at end
  if not res[1] then return false, D.error_text(res[2]) end
  if coroutine.status(co) ~= "dead" then return false, "yielded outside a coroutine" end
  return true, table.unpack(res, 2, res.n)
end

-- The standard functions as lrun started with them. A job file can reach and replace
-- them (require "string", getmetatable("").__index); lrun's validation calls them.
local STD = {}
for _, lib in ipairs { "_G", "string", "table", "math", "io", "os", "utf8" } do
  local t = _G[lib]
  for k, v in pairs(t) do
    if type(v) == "function" then STD[#STD + 1] = { t, k, v } end
  end
end
local STRING_MT, STRING_INDEX = debug.getmetatable(""), debug.getmetatable("").__index

local function pristine()
  if debug.getmetatable("") ~= STRING_MT or rawget(STRING_MT, "__index") ~= STRING_INDEX then
    return false
  end
  for i = 1, #STD do
    local e = STD[i]
    if rawget(e[1], e[2]) ~= e[3] then return false end
  end
  return true
end

-- Validation of inert tables runs outside bounded: the count hook there makes every
-- VM instruction trap (about a fifth of a big file's load). Its time is then the
-- size of what the file defined, which the file made within the bounds. Inert: no
-- metatable at any depth (a metamethod is the file's code), no userdata (its
-- __tostring and __name), no deeper than 8 tables; functions and coroutines are only
-- type-checked by validation, never called. The walk is C (lrun.text.inert): in Lua
-- it was ~30 lines a job.
-- list: raw definitions ({ t = table, name = ... }); field: the key of each to check
function M.inert(list, field)
  return pristine() and inert_tables(list, field)
end

local function refuse(what)
  return function() error(what .. " is not allowed in a job file", 2) end
end

local function copy(t, over)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(over) do c[k] = v end
  return c
end

local safe_os = copy(os, { exit = refuse("os.exit") })
local safe_debug = copy(debug, { sethook = refuse("debug.sethook"),
  setmetatable = refuse("debug.setmetatable") })
local safe_coroutine = copy(coroutine, {
  create = function(f) return watch(coroutine.create(f)) end,
  wrap = function(f)
    local co = watch(coroutine.create(f))
    return function(...)
      local res = table.pack(coroutine.resume(co, ...))
      if not res[1] then error(res[2], 0) end
      return table.unpack(res, 2, res.n)
    end
  end,
})

local function safe_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc is not allowed in a job file (a finalizer runs outside lrun's guard)", 2)
  end
  return setmetatable(t, mt)
end

-- The environment of a job file: the DSL functions, the normal globals read
-- through __index (writes stay in the file's own table), and the guarded stand-ins.
function M.env(dsl)
  local env = setmetatable({}, { __index = _G })
  for k, v in pairs(dsl) do env[k] = v end
  local libs = { os = safe_os, debug = safe_debug, coroutine = safe_coroutine }
  env.os, env.debug, env.coroutine, env.setmetatable = safe_os, safe_debug, safe_coroutine,
    safe_setmetatable
  env._G = env
  env.require = function(name)
    local lib = libs[name]
    if lib then return lib end
    local ok, mod = pcall(require, name)
    -- A failure names the file's line, and only the first line of require's list.
    if not ok then error(D.error_text(mod):match("^[^\n]*"), 2) end
    return mod
  end
  -- Chunks loaded by the file see its environment, and only as text (a malformed
  -- binary chunk can crash the interpreter).
  env.load = function(chunk, name, _, e)
    if e == nil then e = env end
    return load(chunk, name, "t", e)
  end
  env.loadfile = function(name, _, e)
    if e == nil then e = env end
    return loadfile(name, "t", e)
  end
  env.dofile = function(name)
    return assert(loadfile(name, "t", env))()
  end
  return env
end

return M
