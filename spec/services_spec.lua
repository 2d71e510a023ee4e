-- Services through the lrun command: backoff and the start limit measured from the
-- event log, readiness gating checked by timestamps the processes write, reaper
-- policies written in the job file, stop order, and what a stop must kill.
local H = require "helper"
local lp, core = H.lp, H.core
local cjson = require "cjson"

local LRUN = H.root .. "/scripts/lrun"
local FIX = H.root .. "/spec/fixtures/"

local function lrun(args, env, timeout)
  local argv = { LRUN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.setenv = env or {}
  argv.setenv.LPROCESS_CPATH = H.cpath
  argv.timeout = timeout or 120
  local res = assert(lp.run(argv))
  res.code = lp.exit_code(res.status)
  return res
end

local function events(path)
  local list = {}
  for line in (H.slurp(path) or ""):gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
  return list
end

local function num(path)
  return tonumber((H.slurp(path) or ""):match("[%d.]+"))
end

local function free_port()
  -- a port nobody listens on now: bind to 0 through python, read what it got
  local r = assert(lp.run { "python3", "-c",
    "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])" })
  return tonumber(r.stdout)
end

describe("services", function()
  local T
  before_each(function() T = H.tmpdir() end)
  after_each(function() H.rm_rf(T) end)

  it("count crashes after an earlier ready run as a crash loop (no stale readiness)", function()
    local r = lrun({ "--events", T .. "/ev", FIX .. "svc_stale_ready.lua" }, { T = T }, 60)
    assert.are.equal(1, r.code, r.stderr)
    assert.truthy(r.stderr:find("job flaky: gave up:", 1, true), r.stderr)
    local starts = 0
    for _, ev in ipairs(events(T .. "/ev")) do
      if ev.event == "start" and ev.job == "flaky" then starts = starts + 1 end
    end
    assert.are.equal(4, starts)   -- the ready run, then max_restarts.count restarts
  end)

  it("back off between restarts of a crash loop and give up at the start limit", function()
    local r = lrun({ "--events", T .. "/ev", FIX .. "svc_crash.lua" })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("job crashy: gave up:", 1, true), r.stderr)
    assert.truthy(r.stderr:find("last exit: exited with code 1", 1, true))
    local starts = {}
    for _, ev in ipairs(events(T .. "/ev")) do
      if ev.event == "start" and ev.job == "crashy" then starts[#starts + 1] = ev.time end
    end
    assert.are.equal(4, #starts)   -- the first start and max_restarts.count = 3 restarts
    -- backoff min 0.2, factor 2, +-10% jitter: gaps of about 0.2, 0.4, 0.8 s
    for i, want in ipairs { 0.2, 0.4, 0.8 } do
      local gap = starts[i + 1] - starts[i]
      assert.truthy(gap >= want * 0.85, string.format("gap %d: %.3f < %.3f", i, gap, want))
      assert.truthy(gap < want + 2, string.format("gap %d: %.3f", i, gap))
    end
    assert.truthy(r.stderr:match("\nsteady%s+stopped"))
  end)

  for _, kind in ipairs { "log", "file", "tcp", "cmd", "fn", "notify_fd", "systemd" } do
    it("gate dependents on readiness: " .. kind, function()
      local r = lrun({ "-q", FIX .. "svc_ready.lua" }, { T = T, KIND = kind,
        PORT = tostring(free_port()) })
      assert.are.equal(0, r.code, r.stderr)
      local ready_at, client_at = num(T .. "/svc-ready"), num(T .. "/client-start")
      assert.truthy(ready_at and client_at, "timestamps missing")
      assert.truthy(client_at >= ready_at, string.format("client started %.3f s before the"
        .. " service was ready", ready_at - client_at))
    end)
  end

  it("fail readiness after ready_timeout and skip what needs it", function()
    local spec = T .. "/jobs.lua"
    H.spit(spec, [[
service "never" { cmd = "exec sleep 100", ready = { file = "/nonexistent/flag" },
  ready_timeout = 0.5, restart = "no" }
job "client" { cmd = "echo must not run", needs = { "never" } }
]])
    local r = lrun({ spec })
    assert.are.equal(1, r.code)
    assert.truthy(r.stderr:find("job never: not ready", 1, true), r.stderr)
    assert.falsy(r.stdout:find("must not run", 1, true))
  end)

  it("follow a custom policy in Lua; a broken policy fails only its own job", function()
    local r = lrun({ "-k", "-j8", FIX .. "svc_policy.lua" }, { T = T })
    assert.are.equal(1, r.code)
    -- restarted twice after SIGKILL, then exit 4 is not restarted
    assert.are.equal(3, num(T .. "/n"))
    assert.truthy(r.stderr:match("\nsig%s+failed[^\n]*%s4%s"), r.stderr)
    assert.truthy(r.stderr:find("svc_policy.lua:7", 1, true), r.stderr)      -- throws
    assert.truthy(r.stderr:find("policy blew up", 1, true))
    assert.truthy(r.stderr:find("svc_policy.lua:8", 1, true), r.stderr)      -- spins
    assert.truthy(r.stderr:find("frobnicate", 1, true), r.stderr)            -- garbage
    assert.truthy(r.stdout:match("fine%s+| still fine"), r.stdout)
    assert.truthy(r.stderr:match("\nfine%s+ok"))
    assert.truthy(r.stderr:match("\ngarbage%s+failed"))
  end)

  it("stop in reverse dependency order", function()
    local t = H.track(finally)
    local p = t:spawn { LRUN, FIX .. "svc_order.lua", setenv = { T = T, LPROCESS_CPATH = H.cpath },
      stdout = T .. "/out", stderr = T .. "/err" }
    assert.truthy(H.wait_until(function()
      return H.slurp(T .. "/up-a") and H.slurp(T .. "/up-b") and H.slurp(T .. "/up-c")
    end, 30))
    p:kill("TERM")
    assert.exited(143, H.wait_pid(p.pid, 60))
    local a, b, c = num(T .. "/stop-a"), num(T .. "/stop-b"), num(T .. "/stop-c")
    assert.truthy(a and b and c, H.slurp(T .. "/err"))
    assert.truthy(c < b and b < a, string.format("stop times a %.3f b %.3f c %.3f", a, b, c))
  end)

  it("kill a member of the group that ignores TERM after its leader exited", function()
    local t = H.track(finally)
    local p = t:spawn { LRUN, FIX .. "svc_grandchild.lua", setenv = { T = T, LPROCESS_CPATH = H.cpath },
      stdout = T .. "/out", stderr = T .. "/err" }
    local gc
    H.wait_until(function() gc = num(T .. "/gc.pid") return gc end, 30)
    assert.truthy(gc)
    p:kill("TERM")
    assert.exited(143, H.wait_pid(p.pid, 60))
    assert.falsy(H.alive(gc))
  end)

  it("run instances with their own names and LRUN_INSTANCE", function()
    local spec = T .. "/jobs.lua"
    H.spit(spec, 'job "w" { cmd = "echo i=$LRUN_INSTANCE", instances = 3 }\n')
    local r = lrun({ "-q", spec })
    assert.are.equal(0, r.code)
    for i = 0, 2 do
      assert.truthy(r.stdout:find("w." .. i .. " | i=" .. i, 1, true), r.stdout)
    end
  end)

  it("apply umask and limits, and drop privileges to nobody when root", function()
    local r = lrun({ "-q", "-j1", FIX .. "svc_user.lua" })
    assert.truthy(r.stdout:find("mask | 0027", 1, true), r.stdout)
    assert.truthy(r.stdout:find("lim  | 77", 1, true), r.stdout)
    if core.geteuid() ~= 0 then
      assert.truthy(r.stderr:find("job who", 1, true))
      return
    end
    assert.are.equal(0, r.code, r.stderr)
    local nobody = assert(core.getpwnam("nobody"))
    assert.truthy(r.stdout:find("who  | " .. nobody.uid .. "\n", 1, true), r.stdout)
    assert.truthy(r.stdout:find("who  | " .. nobody.gid .. "\n", 1, true), r.stdout)
  end)
end)

describe("service examples", function()
  local function port()
    local r = assert(lp.run { "python3", "-c",
      "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])" })
    return r.stdout:match("%d+")
  end

  it("examples/services.lua runs its services, the client, and stops cleanly", function()
    local r = lrun({ H.root .. "/examples/services.lua" }, { ECHO_PORT = port(), ROUNDS = "3" })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stderr:match("\nclient%s+ok"), r.stderr)
    assert.truthy(r.stderr:match("\necho%s+stopped"), r.stderr)
    assert.truthy(r.stderr:match("\nworker%s+stopped"), r.stderr)
  end)

  it("examples/reaping-policies.lua measures both reapers", function()
    local r = lrun({ H.root .. "/examples/reaping-policies.lua" }, { INTERVAL = "0.2", RUNS = "3" })
    assert.are.equal(0, r.code, r.stderr)
    assert.truthy(r.stdout:find("signal_driven", 1, true), r.stdout)
    assert.truthy(r.stdout:find("polling", 1, true), r.stdout)
  end)
end)

describe("README.md", function()
  it("has a Services section naming the service examples", function()
    local text = H.slurp(H.root .. "/README.md")
    local section = text:match("\n## Services\n(.-)\n## ")
    assert.truthy(section, "no '## Services' section")
    assert.truthy(section:find("examples/services.lua", 1, true))
    assert.truthy(section:find("examples/reaping-policies.lua", 1, true))
  end)
end)
