--- lrun.policy: what the exit of a job or service means -- success, the built-in and
-- user reaper policies, and the job's backoff and start limit (over lprocess.restart).
-- Nothing here spawns or waits.
--
--   local d, err = policy.decide(job, ev, user_fn)   -- { action =, delay = } [, why]
--   policy.success(job, status, stopping)            -- ev.success
--   policy.backoff(job, n), policy.limiter(job), policy.stable_period(job)
--
-- A policy is a function `fn(ev) -> action`. The scheduler builds `ev` at each exit of
-- a job or service process:
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
-- A user policy runs under policy.call (lprocess.guard): an error, a return value that
-- is not an action, or running past a deadline (default 1 s) is reported with the
-- policy's file:line, and that job is treated as failed; lrun and the other jobs
-- carry on.
local guard = require "lprocess.guard"
local restart = require "lprocess.restart"
local status_mod = require "lprocess.status"

local M = {}

M.TIMEOUT = guard.TIMEOUT   -- seconds a policy may run before it is stopped

local ACTIONS = { restart = true, retry = true, done = true, fail = true, stop = true }
M.ACTIONS = { "restart", "retry", "done", "fail", "stop" }

-- Deaths that are the normal answer to being told to stop.
M.STOP_SIGNALS = { HUP = true, INT = true, TERM = true, PIPE = true }

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

--- success(job, status, stopping) -> bool: ev.success as defined above. The one
-- definition: the scheduler, the policies and the summary all ask this.
function M.success(job, status, stopping)
  if not status then return false end
  if status.how == "exit" then return status_mod.ok(status, job.success_codes) end
  if status.how == "signal" and stopping then
    return M.STOP_SIGNALS[status.signame] == true or status.signame == job.kill_signal
  end
  return false
end

M.describe = status_mod.describe
M.where = guard.where
M.guard = guard.call

-- A plain value as a message shows it, without running any of its metamethods.
local function plain(v)
  local t = type(v)
  if t == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return t
end

-- A value a policy returned, as a message shows it: strings quoted, tables by their
-- keys (raw: a policy's table may carry hostile metamethods, run outside the guard).
local function show(v)
  if type(v) ~= "table" then return plain(v) end
  local keys = {}
  for k, x in next, v do
    keys[#keys + 1] = plain(k):gsub('^"(.*)"$', "%1") .. "=" .. plain(x)
    if #keys == 4 then keys[#keys + 1] = "..." break end
  end
  table.sort(keys)
  return "{" .. table.concat(keys, ", ") .. "}"
end

-- Is `a` an action? Returns it (a table as a fresh { action =, delay = }), or nil and
-- why not. Tables are read raw: this runs outside the guard.
local function check_action(a)
  if a == nil or (type(a) == "string" and ACTIONS[a]) then return a end
  if type(a) == "table" then
    local action, d = rawget(a, "action"), rawget(a, "delay")
    if not ACTIONS[action] then
      return nil, "a table without a valid action"
    end
    if d ~= nil and (type(d) ~= "number" or d ~= d or d < 0 or d == math.huge) then
      return nil, "a table with a bad delay"
    end
    return { action = action, delay = d }
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

--- quick(job, success, stopping, attempt) -> action | nil
-- The built-in `restart = "no"` on a plain job (no on_exit, no policy, not replaced):
-- decide's answer, asked of the built-in with a reused event of the four fields it
-- reads instead of the whole event table. nil: ask decide (a retry, or another policy).
local QUICK = { done = { action = "done" }, fail = { action = "fail" } }
local quick_ev = { success = false, stopping = false, attempt = 0, retries = 0 }
function M.quick(job, success, stopping, attempt)
  if job.on_exit or job.policy or job.kind == "service" or job.restart ~= "no"
      or M.builtin["no"] ~= BUILTIN["no"] then
    return nil
  end
  quick_ev.success, quick_ev.stopping = success, stopping or false
  quick_ev.attempt, quick_ev.retries = attempt, job.retries
  return QUICK[BUILTIN["no"](quick_ev)]
end

---------------------------------------------------------------------------------------
-- A job's backoff and start limit (lprocess.restart, with the job-file keys).

--- backoff(job, n [, rand]) -> seconds before restart number n (job.backoff).
function M.backoff(job, n, rand)
  return restart.backoff(job.backoff, n, rand)
end

--- stable_period(job) -> seconds a service must stay up and ready before its backoff
-- counter goes back to 1.
function M.stable_period(job)
  return restart.stable_period(job.backoff)
end

--- limiter(job) -> lprocess.restart's start limit from job.max_restarts.
function M.limiter(job)
  local mr = job.max_restarts or restart.LIMIT
  return restart.limiter { count = mr.count, within = mr.within, name = "max_restarts" }
end

return M
