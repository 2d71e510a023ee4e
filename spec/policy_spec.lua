-- lrun.policy over lprocess.guard and lprocess.restart: built-in and user policies,
-- the guard around user code, backoff and the start limit. Exit statuses come from
-- real processes.
local lprocess = require "lprocess"
local policy = require "lrun.policy"
local restart = require "lprocess.restart"

-- The wait status of `sh -c script`.
local function status_of(script)
  local p = assert(lprocess.spawn { "/bin/sh", "-c", script })
  return assert(p:wait())
end

local EXIT0 = status_of("exit 0")
local EXIT3 = status_of("exit 3")
local SEGV = status_of("kill -SEGV $$")
local TERM = status_of("kill -TERM $$")

local function service(t)
  local job = { name = "svc", kind = "service", restart = "on-failure", retries = 0,
    retry_delay = 0, success_codes = { [0] = true }, kill_signal = "TERM",
    backoff = { min = 0.5, max = 30, factor = 2 }, max_restarts = { count = 5, within = 10 } }
  for k, v in pairs(t or {}) do job[k] = v end
  return job
end

local function job(t)
  local j = service { name = "build", kind = "job", restart = "no" }
  for k, v in pairs(t or {}) do j[k] = v end
  return j
end

-- An event as the runner builds it.
local function event(j, st, t)
  local ev = { job = j.name, instance = 0, pid = st.pid, status = st,
    success = policy.success(j, st, t and t.stopping), stopping = false, kind = j.kind,
    attempt = 1, retries = j.retries, restarts = 0, runtime = 2, last_lines = {},
    restart = j.restart }
  for k, v in pairs(t or {}) do ev[k] = v end
  return ev
end

local function line_of(fn)
  return "policy_spec.lua:" .. debug.getinfo(fn, "S").linedefined
end

describe("policy.success and describe", function()
  it("counts success codes, and stop signals only while stopping", function()
    local j = service { success_codes = { [0] = true, [3] = true } }
    assert.is_true(policy.success(j, EXIT0, false))
    assert.is_true(policy.success(j, EXIT3, false))
    assert.is_false(policy.success(service(), EXIT3, false))
    assert.is_false(policy.success(j, TERM, false))
    assert.is_true(policy.success(j, TERM, true))
    assert.is_false(policy.success(j, SEGV, true))
    assert.is_false(policy.success(j, nil, false))
  end)

  it("takes the job's kill_signal as a clean stop too", function()
    local usr1 = status_of("kill -USR1 $$")
    assert.is_false(policy.success(service(), usr1, true))
    assert.is_true(policy.success(service { kill_signal = "USR1" }, usr1, true))
  end)

  it("describes statuses in words", function()
    assert.equal("exited with code 3", policy.describe(EXIT3))
    assert.matches("^killed by SIGSEGV", policy.describe(SEGV))
    assert.equal("did not start", policy.describe(nil))
  end)
end)

describe("built-in policies", function()
  local B = policy.builtin

  it("'no': done on success, retries while attempts are left, then fail", function()
    local j = job { retries = 2 }
    assert.equal("done", B["no"](event(j, EXIT0)))
    assert.equal("retry", B["no"](event(j, EXIT3, { attempt = 1 })))
    assert.equal("retry", B["no"](event(j, EXIT3, { attempt = 2 })))
    assert.equal("fail", B["no"](event(j, EXIT3, { attempt = 3 })))
    assert.equal("fail", B["no"](event(job(), SEGV)))
    assert.equal("fail", B["no"](event(j, EXIT3, { stopping = true })))
  end)

  it("'on-failure': restarts failures, not successes nor what is being stopped", function()
    local s = service()
    assert.equal("done", B["on-failure"](event(s, EXIT0)))
    assert.equal("restart", B["on-failure"](event(s, EXIT3)))
    assert.equal("restart", B["on-failure"](event(s, SEGV)))
    assert.equal("done", B["on-failure"](event(s, TERM, { stopping = true })))
    assert.equal("fail", B["on-failure"](event(s, SEGV, { stopping = true })))
    -- a job's retries come first
    assert.equal("retry", B["on-failure"](event(job { retries = 1 }, EXIT3)))
  end)

  it("'always': restarts every exit, until lrun stops it", function()
    local s = service { restart = "always" }
    assert.equal("restart", B["always"](event(s, EXIT0)))
    assert.equal("restart", B["always"](event(s, EXIT3)))
    assert.equal("done", B["always"](event(s, TERM, { stopping = true })))
    assert.equal("fail", B["always"](event(s, EXIT3, { stopping = true })))
  end)

  it("is the default decide falls back to, by job.restart", function()
    assert.same({ action = "restart" }, policy.decide(service(), event(service(), EXIT3)))
    assert.same({ action = "done" }, policy.decide(service(), event(service(), EXIT0)))
    local s = service { restart = "always" }
    assert.same({ action = "restart" }, policy.decide(s, event(s, EXIT0)))
    local n = service { restart = "no" }
    assert.same({ action = "fail" }, policy.decide(n, event(n, EXIT3)))
    local j = job { retries = 1 }
    assert.same({ action = "retry" }, policy.decide(j, event(j, EXIT3)))
    assert.same({ action = "fail" }, policy.decide(j, event(j, EXIT3, { attempt = 2 })))
  end)
end)

describe("user policies through decide", function()
  -- The doc/design.md example: restart on a crash, otherwise the default.
  local function crash_only(ev)
    if ev.status.how == "signal" then return "restart" end
    return nil
  end

  it("a policy that restarts only on signals", function()
    local s = service { restart = "no", policy = "crash_only" }
    assert.same({ action = "restart" }, policy.decide(s, event(s, SEGV), crash_only))
    -- nil falls back to restart = "no"
    assert.same({ action = "fail" }, policy.decide(s, event(s, EXIT3), crash_only))
    assert.same({ action = "done" }, policy.decide(s, event(s, EXIT0), crash_only))
  end)

  it("keeps a delay, and leaves it nil for the runner's default otherwise", function()
    local s = service()
    local d = policy.decide(s, event(s, EXIT3), function() return { action = "restart", delay = 2.5 } end)
    assert.same({ action = "restart", delay = 2.5 }, d)
    assert.is_nil(policy.decide(s, event(s, EXIT3), function() return "retry" end).delay)
  end)

  it("never brings anything back up while lrun is stopping it", function()
    local s = service()
    local always = function() return "restart" end
    assert.same({ action = "done" }, policy.decide(s, event(s, TERM, { stopping = true }), always))
    assert.same({ action = "fail" }, policy.decide(s, event(s, SEGV, { stopping = true }), always))
    assert.same({ action = "stop" },
      policy.decide(s, event(s, SEGV, { stopping = true }), function() return "stop" end))
  end)

  it("passes the event through untouched", function()
    local s = service()
    local seen
    policy.decide(s, event(s, SEGV, { last_lines = { "a", "b" }, since_ready = 4 }),
      function(ev) seen = ev end)
    assert.equal("SEGV", seen.status.signame)
    assert.same({ "a", "b" }, seen.last_lines)
    assert.equal(4, seen.since_ready)
    assert.equal("svc", seen.job)
  end)

  it("an error is 'fail' with a message naming the policy's file:line", function()
    local s = service { policy = "boom" }
    local function boom(ev) return ev.status.nope.deeper end
    local d, err = policy.decide(s, event(s, EXIT3), boom)
    assert.same({ action = "fail" }, d)
    assert.matches("policy 'boom' of svc", err, 1, true)
    assert.matches(line_of(boom), err, 1, true)
    assert.matches("attempt to index", err, 1, true)
  end)

  it("names on_exit functions as such", function()
    local function handler() error("no thanks") end
    local s = service { on_exit = handler }
    local _, err = policy.decide(s, event(s, EXIT3), handler)
    assert.matches("on_exit of svc (" .. line_of(handler) .. ")", err, 1, true)
    assert.matches("no thanks", err, 1, true)
  end)

  it("a policy that loops forever is stopped at its deadline", function()
    local s = service { policy = "spin" }
    local function spin() while true do end end
    local t0 = lprocess.now()
    local d, err = policy.decide(s, event(s, EXIT3), spin)
    local took = lprocess.now() - t0
    assert.same({ action = "fail" }, d)
    assert.matches("ran longer than 1 s", err, 1, true)
    assert.matches(line_of(spin), err, 1, true)
    assert.is_true(took >= 0.9 and took < 10, "took " .. took)
  end)

  it("returning garbage is an error that shows what came back", function()
    local s = service { policy = "junk" }
    local cases = {
      { function() return "foo" end, '"foo"' },
      { function() return 42 end, "42" },
      { function() return true end, "true" },
      { function() return { action = "explode" } end, "without a valid action" },
      { function() return { delay = 3 } end, "without a valid action" },
      { function() return { action = "restart", delay = -1 } end, "bad delay" },
      { function() return { action = "restart", delay = "soon" } end, "bad delay" },
      { function() return print end, "function" },
      -- read outside the guard: its metamethods must not run (they would end lrun)
      { function()
          return setmetatable({}, { __index = function() error("__index ran") end,
            __pairs = function() error("__pairs ran") end })
        end, "without a valid action" },
      { function()
          return setmetatable({ action = "restart" }, { __index = function() error("__index ran") end })
        end, nil },
    }
    for _, c in ipairs(cases) do
      local d, err = policy.decide(s, event(s, EXIT3), c[1])
      if c[2] == nil then   -- a valid action in a table with hostile metamethods
        assert.same({ action = "restart" }, d)
        assert.is_nil(err)
        goto next
      end
      assert.same({ action = "fail" }, d)
      assert.matches("returned", err, 1, true)
      assert.matches(c[2], err, 1, true)
      assert.matches(line_of(c[1]), err, 1, true)
      ::next::
    end
  end)
end)

describe("policy.call and guard", function()
  it("returns the action, or nil for no opinion", function()
    assert.equal("restart", policy.call(function() return "restart" end, {}))
    local a, err = policy.call(function() end, {})
    assert.is_nil(a)
    assert.is_nil(err)
    assert.same({ action = "retry", delay = 0 },
      policy.call(function() return { action = "retry", delay = 0 } end, {}))
  end)

  it("honours a shorter deadline", function()
    local t0 = lprocess.now()
    local a, err = policy.call(function() while true do end end, {}, { timeout = 0.1, name = "quick" })
    assert.is_nil(a)
    assert.matches("^quick ran longer than 0.1 s", err)
    assert.is_true(lprocess.now() - t0 < 5)
  end)

  it("stops a loop that swallows the deadline with pcall", function()
    local function stubborn()
      while true do pcall(function() while true do end end) end
    end
    local t0 = lprocess.now()
    local a, err = policy.call(stubborn, {}, { timeout = 0.2 })
    assert.is_nil(a)
    assert.matches("ran longer than 0.2 s", err, 1, true)
    assert.is_true(lprocess.now() - t0 < 5)
  end)

  it("refuses a policy that yields", function()
    local a, err = policy.call(function() coroutine.yield("restart") end, {})
    assert.is_nil(a)
    assert.matches("yielded", err, 1, true)
  end)

  it("leaves the caller's own debug hook alone", function()
    local calls = 0
    local function mine() calls = calls + 1 end
    debug.sethook(mine, "", 100000)
    local ok = pcall(policy.call, function() while true do end end, {}, { timeout = 0.05 })
    local h = debug.gethook()
    debug.sethook()
    assert.is_true(ok)
    assert.equal(mine, h)
  end)

  it("guard passes arguments and every result", function()
    local ok, a, b = policy.guard(function(x, y) return x + y, "two" end, nil, 2, 3)
    assert.is_true(ok)
    assert.equal(5, a)
    assert.equal("two", b)
  end)
end)

describe("policy.backoff", function()
  it("grows by factor from min and is capped at max", function()
    local j = service { backoff = { min = 0.5, max = 30, factor = 2 } }
    local got = {}
    for n = 1, 9 do got[n] = policy.backoff(j, n, 0.5) end   -- 0.5: no jitter
    assert.same({ 0.5, 1, 2, 4, 8, 16, 30, 30, 30 }, got)
  end)

  it("jitters by at most 10% either way, the cap included", function()
    local j = service { backoff = { min = 1, max = 4, factor = 3 } }
    assert.near(0.9, policy.backoff(j, 1, 0), 1e-9)
    assert.near(1.1, policy.backoff(j, 1, 1 - 1e-12), 1e-9)
    assert.near(3.6, policy.backoff(j, 5, 0), 1e-9)
    local seen = {}
    for _ = 1, 200 do
      local d = policy.backoff(j, 2)
      assert.is_true(d >= 2.7 and d <= 3.3, d)
      seen[d] = true
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(distinct > 100)
  end)

  it("handles min = 0, huge n, n < 1 and defaults", function()
    assert.equal(0, policy.backoff(service { backoff = { min = 0, max = 5, factor = 2 } }, 3000, 0.5))
    assert.equal(30, policy.backoff(service(), 100000, 0.5))
    assert.equal(0.5, policy.backoff(service(), 0, 0.5))
    assert.equal(1, policy.backoff({}, 2, 0.5))
  end)

  it("a stable period of 10 s, or backoff.max when longer", function()
    assert.equal(10, policy.stable_period(service { backoff = { min = 0.1, max = 2, factor = 2 } }))
    assert.equal(30, policy.stable_period(service()))
    assert.equal(restart.STABLE, 10)
  end)
end)

describe("policy.limiter", function()
  it("gives up after count failed starts in a row, whatever the backoff", function()
    local lim = policy.limiter(service())
    local now = 0
    for n = 1, 5 do
      now = now + policy.backoff(service(), n, 0.5)    -- 0.5, 1, 2, 4, 8: past 10 s
      assert.is_true(lim:record(now, 0.01), "restart " .. n)
    end
    assert.is_false(lim:record(now + 16, 0.01))
    assert.equal("6 failed starts in a row, each dying within 1 s (max_restarts = 5 in 10 s)",
      lim:reason())
  end)

  it("gives up after more than count restarts within the window", function()
    local lim = policy.limiter(service { max_restarts = { count = 3, within = 10 } })
    assert.is_true(lim:record(0, 2))
    assert.is_true(lim:record(3, 2))
    assert.is_true(lim:record(6, 2))
    assert.is_false(lim:record(9, 2))
    assert.equal("4 restarts within 10 s (max_restarts = 3 in 10 s)", lim:reason())
  end)

  it("forgets restarts older than the window", function()
    local lim = policy.limiter(service { max_restarts = { count = 3, within = 10 } })
    for i = 0, 20 do
      assert.is_true(lim:record(i * 4, 3), "restart at " .. i * 4)
    end
  end)

  it("a run longer than a second breaks the failed-start streak", function()
    local lim = policy.limiter(service { max_restarts = { count = 2, within = 1 } })
    local t = 0
    for _ = 1, 10 do
      assert.is_true(lim:record(t, 0.1)); t = t + 5
      assert.is_true(lim:record(t, 0.1)); t = t + 5
      assert.is_true(lim:record(t, 1.5)); t = t + 5
    end
    lim:record(t, 0.1); lim:record(t + 5, 0.1)
    assert.is_false(lim:record(t + 10, 0.1))
    lim:reset()
    assert.is_true(lim:record(t + 15, 0.1))
  end)

  it("count = 0 allows no restart", function()
    local lim = policy.limiter(service { max_restarts = { count = 0, within = 10 } })
    assert.is_false(lim:record(0, 5))
    assert.matches("restarts are off", lim:reason(), 1, true)
  end)

  it("defaults to 5 in 10 s", function()
    local lim = policy.limiter({})
    for i = 1, 5 do assert.is_true(lim:record(i, 2)) end
    assert.is_false(lim:record(6, 2))
  end)
end)
