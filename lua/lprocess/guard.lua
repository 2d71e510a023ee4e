--- lprocess.guard: run a Lua function that may misbehave -- raise, loop forever,
-- yield -- with a deadline, and get a message instead of a stuck or dead caller.
--
--   local guard = require "lprocess.guard"
--   local ok, a, b = guard.call(fn, { timeout = 1, name = "hook" }, arg1, arg2)
--   -- ok false: `a` says what went wrong, with the function's file:line
--   guard.where(fn)   --> "jobs.lua:12" ("[C]" for a C function)
--
-- Caveats
-- * fn runs in a coroutine of its own with a count hook that checks the clock, so the
--   caller's hooks (a coverage tool's, a debugger's) stay untouched. Past the deadline
--   the hook raises on every instruction: a loop that swallows the error with pcall is
--   caught when it next runs an instruction of its own outside that pcall.
-- * A single C call (a huge string.rep, a pathological pattern) is not interrupted,
--   and coroutines that fn creates itself are not watched.
local core = require "lprocess.core"

local M = {}

M.TIMEOUT = 1   -- seconds, when opts.timeout is not given

-- Instructions between two looks at the clock. A look costs a Lua call and a
-- clock_gettime; every 1000 instructions keeps that well under 1% of the run time
-- and a runaway loop is caught within microseconds of its deadline.
local COUNT = 1000

local function basename(p) return (p:match("([^/]*)$")) end

local function source_of(info)
  return info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
end

function M.where(fn)
  local info = debug.getinfo(fn, "S")
  if info.what == "C" then return "[C]" end
  return basename(source_of(info)) .. ":" .. info.linedefined
end

--- call(fn, opts, ...) -> true, results... | false, message
-- opts: timeout (seconds, default guard.TIMEOUT), name (for messages, default
-- "function at file:line").
function M.call(fn, opts, ...)
  opts = opts or {}
  local limit = opts.timeout or M.TIMEOUT
  local label = opts.name or ("function at " .. M.where(fn))
  local co = coroutine.create(fn)
  local deadline = core.now() + limit
  local expired, at = false, nil
  local function hook()
    if not expired then
      if core.now() < deadline then return end
      expired = true
      local info = debug.getinfo(2, "Sl")
      if info and info.currentline and info.currentline > 0 then
        at = basename(source_of(info)) .. ":" .. info.currentline
      end
      debug.sethook(co, hook, "", 1)
    end
    error("deadline", 0)
  end
  debug.sethook(co, hook, "", COUNT)
  local res = table.pack(coroutine.resume(co, ...))
  debug.sethook(co)
  if expired then
    return false, string.format("%s ran longer than %g s%s", label, limit,
      at and (" (stopped at " .. at .. ")") or "")
  end
  if not res[1] then return false, string.format("%s failed: %s", label, tostring(res[2])) end
  if coroutine.status(co) ~= "dead" then
    return false, label .. " yielded; it must return a value"
  end
  return true, table.unpack(res, 2, res.n)
end

return M
