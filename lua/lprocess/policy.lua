--- lprocess.policy: what an exit means -- reaper policies, restart backoff and the
-- start limit. Pure Lua over lprocess.core.now(); nothing here spawns or waits.
--
-- A policy is a function `fn(ev) -> action`. The runner builds `ev` at each exit of a
-- job or service process:
--
--   ev = { job = "name", instance = 0,          -- instance index (0 for a single one)
--     pid = 1234,
--     status = { how = "exit"|"signal", code =, signal =, signame = "TERM",
--                core = bool, rusage = { utime =, stime =, maxrss =, ... } },
--                                              -- nil when the spawn itself failed
--     success = bool,     -- code in success_codes, or death by HUP/INT/TERM/PIPE (or
--                         -- the job's kill_signal) while lrun was stopping it
--     stopping = bool,    -- lrun was stopping it (shutdown, timeout, not ready)
--     kind = "job"|"service",
--     attempt = 1,        -- 1-based: which run of it this was
--     retries = n,        -- job.retries
--     restarts = n,       -- restarts so far (the backoff counter)
--     runtime = seconds,  -- since this run started
--     since_ready = seconds | nil,              -- nil when it never became ready
--     last_lines = { "...", ... },              -- its last lines of output
--     restart = "no"|"on-failure"|"always" }    -- job.restart
--
-- Actions a policy returns:
--   "restart"  run it again after the backoff (policy.backoff), within the start limit
--   "retry"    run it again after job.retry_delay (a job's retries use this)
--   "done"     it is finished, and that counts as success (a policy may accept an exit
--              code that success_codes does not)
--   "fail"     it is finished and failed
--   "stop"     shut everything down (as if lrun got SIGTERM)
--   nil        no opinion: the job's default, policy.builtin[job.restart]
--   { action = one of the above, delay = seconds }   -- a re-run after `delay`
--
-- The built-in policies below are written with this same API and double as examples.
-- A user policy runs under policy.call: an error, a return value that is not an
-- action, or running past a deadline (default 1 s) is reported with the policy's
-- file:line, and that job is treated as failed; lrun and the other jobs carry on.
local core = require "lprocess.core"

local M = {}

M.TIMEOUT = 1          -- seconds a policy may run before it is stopped
M.STABLE = 10          -- seconds up (and ready) after which the backoff starts afresh
M.FAILED_START = 1     -- dying within this many seconds of the start is a failed start
M.JITTER = 0.1         -- backoff delays are spread by +-10% so that services that
                       -- fell together do not all come back in the same instant

-- The defaults of lrun.jobfile, for jobs built by hand.
local DEFAULT_BACKOFF = { min = 0.5, max = 30, factor = 2 }
local DEFAULT_LIMIT = { count = 5, within = 10 }

local ACTIONS = { restart = true, retry = true, done = true, fail = true, stop = true }
M.ACTIONS = { "restart", "retry", "done", "fail", "stop" }

-- Deaths that are the normal answer to being told to stop.
local STOP_SIGNALS = { HUP = true, INT = true, TERM = true, PIPE = true }

---------------------------------------------------------------------------------------
-- Built-in policies: what `restart = "..."` means. Each one first spends a job's
-- retries (attempt counts from 1, so `retries = 2` allows attempts 1, 2 and 3), and
-- none re-runs anything that lrun is stopping.

local function retry_left(ev)
  return not ev.success and not ev.stopping and ev.attempt <= (ev.retries or 0)
end

M.builtin = {}

M.builtin["no"] = function(ev)
  if ev.success then return "done" end
  if retry_left(ev) then return "retry" end
  return "fail"
end

M.builtin["on-failure"] = function(ev)
  if ev.success then return "done" end
  if ev.stopping then return "fail" end
  if retry_left(ev) then return "retry" end
  return "restart"
end

M.builtin["always"] = function(ev)
  if ev.stopping then return ev.success and "done" or "fail" end
  if retry_left(ev) then return "retry" end
  return "restart"
end

-- The built-ins as shipped (a user may replace entries of M.builtin).
local BUILTIN = {}
for k, v in pairs(M.builtin) do BUILTIN[k] = v end

---------------------------------------------------------------------------------------
-- Helpers for the runner and for policies.

--- success(job, status, stopping) -> bool: ev.success as defined above.
function M.success(job, status, stopping)
  if not status then return false end
  if status.how == "exit" then
    local codes = job.success_codes or { [0] = true }
    if codes[status.code] == true then return true end
    for _, c in ipairs(codes) do        -- a plain list works too
      if c == status.code then return true end
    end
    return false
  end
  if status.how == "signal" and stopping then
    return STOP_SIGNALS[status.signame] == true or status.signame == job.kill_signal
  end
  return false
end

--- describe(status) -> "exited with code 1" | "killed by SIGSEGV (core dumped)"
function M.describe(status)
  if not status then return "did not start" end
  if status.how == "exit" then return "exited with code " .. tostring(status.code) end
  local name = status.signame and ("SIG" .. status.signame) or ("signal " .. tostring(status.signal))
  if status.how == "signal" then
    return "killed by " .. name .. (status.core and " (core dumped)" or "")
  end
  return status.how .. " by " .. name
end

local function basename(p) return (p:match("([^/]*)$")) end

--- where(fn) -> "jobs.lua:12": where a Lua function was defined ("[C]" for C).
function M.where(fn)
  local info = debug.getinfo(fn, "S")
  if info.what == "C" then return "[C]" end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return basename(src) .. ":" .. info.linedefined
end

-- A value as a message shows it: strings quoted, tables by their keys.
local function show(v)
  if type(v) == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k, x in pairs(v) do
    keys[#keys + 1] = tostring(k) .. "=" .. (type(x) == "string" and string.format("%q", x) or tostring(x))
    if #keys == 4 then keys[#keys + 1] = "..." break end
  end
  table.sort(keys)
  return "{" .. table.concat(keys, ", ") .. "}"
end

---------------------------------------------------------------------------------------
-- Protected calls with a deadline.

-- Instructions between two looks at the clock. A look costs a Lua call and a
-- clock_gettime; every 1000 instructions keeps that well under 1% of the run time
-- and a runaway loop is caught within microseconds of its deadline.
local COUNT = 1000

--- guard(fn, opts, ...) -> true, results... | false, message
-- Runs fn(...) in a coroutine of its own with a count hook that checks the clock, so
-- the caller's hooks (a coverage tool's, a debugger's) stay untouched. Past the
-- deadline the hook raises on every instruction: a loop that swallows the error with
-- pcall is caught when it next runs an instruction of its own outside that pcall.
-- Limits: a single C call (a huge string.rep, a pathological pattern) is not
-- interrupted, and coroutines the function creates itself are not watched.
-- opts: timeout (seconds, default policy.TIMEOUT), name (for messages, default
-- "function at file:line").
function M.guard(fn, opts, ...)
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
        local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
        at = basename(src) .. ":" .. info.currentline
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

-- Is `a` an action? Returns it, or nil and why not.
local function check_action(a)
  if a == nil or (type(a) == "string" and ACTIONS[a]) then return a end
  if type(a) == "table" then
    if not ACTIONS[a.action] then
      return nil, "a table without a valid action"
    end
    local d = a.delay
    if d ~= nil and (type(d) ~= "number" or d ~= d or d < 0 or d == math.huge) then
      return nil, "a table with a bad delay"
    end
    return a
  end
  return nil, nil
end

local EXPECTED = '(expected "restart", "retry", "done", "fail", "stop", nil or {action=, delay=})'

--- call(fn, ev, opts) -> action | nil (no opinion) | nil, message
-- opts as for guard.
function M.call(fn, ev, opts)
  opts = opts or {}
  local label = opts.name or ("policy at " .. M.where(fn))
  local ok, a = M.guard(fn, { timeout = opts.timeout, name = label }, ev)
  if not ok then return nil, a end
  local action, why = check_action(a)
  if action == nil and a ~= nil then
    return nil, string.format("%s returned %s%s %s", label, why and (why .. " ") or "",
      show(a), EXPECTED)
  end
  return action
end

-- The name messages give a job's policy: "policy 'crash_only' (jobs.lua:12)".
local function policy_label(job, fn)
  local what
  if job.on_exit == fn then what = "on_exit"
  elseif job.policy then what = "policy '" .. job.policy .. "'"
  else what = "policy" end
  return string.format("%s of %s (%s)", what, tostring(job.name or "?"), M.where(fn))
end

--- decide(job, ev, user_fn) -> { action =, delay = } [, message]
-- user_fn is the job's on_exit, or the function its `policy` names (nil: none). Its
-- answer, or when it has none (nil) the default, policy.builtin[job.restart], becomes
-- a table: `action` is always one of the five actions, `delay` is what the policy
-- asked for or nil -- the runner then waits its own default (policy.backoff for a
-- restart, job.retry_delay for a retry). While lrun is stopping the job (ev.stopping)
-- a restart or retry turns into "done"/"fail" by ev.success: nothing comes back up
-- during a shutdown. When the user policy failed, the result is { action = "fail" }
-- and the second value says why (with the policy's file:line).
function M.decide(job, ev, user_fn)
  local action, err
  if user_fn then
    action, err = M.call(user_fn, ev, { name = policy_label(job, user_fn) })
    if err then return { action = "fail" }, err end
  end
  if action == nil then
    local name = job.restart or (job.kind == "service" and "on-failure" or "no")
    local fn = M.builtin[name] or M.builtin["no"]
    if fn == BUILTIN[name] then
      -- Our own code, on every exit: no coroutine, hook or deadline needed.
      action = fn(ev)
    else
      action, err = M.call(fn, ev, { name = "built-in policy '" .. name .. "'" })
      if err then return { action = "fail" }, err end
    end
    -- Only a replaced built-in could have no opinion; then nothing is run again.
    if action == nil then action = ev.success and "done" or "fail" end
  end
  local out
  if type(action) == "table" then
    out = { action = action.action, delay = action.delay }
  else
    out = { action = action }
  end
  if ev.stopping and (out.action == "restart" or out.action == "retry") then
    out = { action = ev.success and "done" or "fail" }
  end
  return out
end

---------------------------------------------------------------------------------------
-- Backoff and the start limit.

--- backoff(job, n [, rand]) -> seconds to wait before restart number n (1-based):
-- min * factor^(n-1), capped at max, then spread by +-JITTER (so a capped delay is
-- max +-10%). `rand` (a number in [0, 1)) replaces math.random, for tests.
function M.backoff(job, n, rand)
  local b = job.backoff or DEFAULT_BACKOFF
  local min, max, factor = b.min or DEFAULT_BACKOFF.min, b.max or DEFAULT_BACKOFF.max,
    b.factor or DEFAULT_BACKOFF.factor
  n = math.max(1, math.tointeger(n) or math.floor(n or 1))
  local d = 0
  if min > 0 then
    d = min * factor ^ (n - 1)
    if d ~= d or d > max then d = max end      -- also an overflow to inf
  end
  local r = rand or math.random()
  return d * (1 + (2 * r - 1) * M.JITTER)
end

--- stable_period(job) -> seconds a service must stay up and ready before its backoff
-- counter goes back to 1: policy.STABLE, or backoff.max when that is longer -- a
-- service that dies every backoff.max seconds is still crash-looping, only slowly.
function M.stable_period(job)
  local max = job.backoff and job.backoff.max or DEFAULT_BACKOFF.max
  return math.max(M.STABLE, max)
end
M.stable = M.stable_period

local Limiter = {}
Limiter.__index = Limiter

--- limiter(job) -> a start limit for one job (or instance), from
-- job.max_restarts = { count =, within = } (default 5 in 10 s). Call
-- `lim:record(now, runtime [, status])` each time a restart is about to happen; it
-- returns false when the restart would break the limit, which is either of:
--   * more than `count` restarts within the last `within` seconds;
--   * more than `count` failed starts in a row (each dying within policy.FAILED_START
--     of its start, whatever time the backoff put between them) -- without this a
--     crash loop would never hit the limit, since the backoff spreads its restarts
--     out of any window (0.5+1+2+4+8 s > 10 s);
-- so `count = 5` allows the first start and 5 restarts. count = 0 allows none.
-- `lim:reason()` says which limit was hit, for the give-up message.
function M.limiter(job)
  local mr = job.max_restarts or DEFAULT_LIMIT
  return setmetatable({
    count = mr.count or DEFAULT_LIMIT.count,
    within = mr.within or DEFAULT_LIMIT.within,
    times = {},          -- restart times inside the window, oldest first
    failed = 0,          -- failed starts in a row
    records = 0,
  }, Limiter)
end

function Limiter:record(now, runtime, status)
  self.records = self.records + 1
  self.last = { now = now, runtime = runtime, status = status }
  if runtime < M.FAILED_START then
    self.failed = self.failed + 1
  else
    self.failed = 0
  end
  local t, cut = {}, now - self.within
  for _, at in ipairs(self.times) do
    if at > cut then t[#t + 1] = at end
  end
  t[#t + 1] = now
  self.times = t
  if self.failed > self.count then
    self.why = "failed"
    return false
  end
  if #t > self.count then
    self.why = "window"
    return false
  end
  self.why = nil
  return true
end

function Limiter:reset()
  self.times, self.failed, self.why = {}, 0, nil
end

function Limiter:reason()
  local limit = string.format("max_restarts = %d in %g s", self.count, self.within)
  if self.count == 0 then
    return "restarts are off (" .. limit .. ")"
  elseif self.why == "failed" then
    return string.format("%d failed starts in a row, each dying within %g s (%s)",
      self.failed, M.FAILED_START, limit)
  elseif self.why == "window" then
    return string.format("%d restarts within %g s (%s)", #self.times, self.within, limit)
  end
  return "within its start limit (" .. limit .. ")"
end

return M
