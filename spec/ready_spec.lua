-- lrun.ready: every kind of readiness check against a real child, inside a real
-- event loop. A child writes the wall-clock time at which it makes its condition true
-- (`date +%s.%N` / time.time()) just before doing so; the probe must report ready at
-- or after that instant, never before.
local lprocess = require "lprocess"
local core = require "lprocess.core"
local looplib = require "lprocess.loop"
local ready = require "lrun.ready"

local tmpfiles = {}
local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local slurp = require("helper").slurp

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

after_each(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
  tmpfiles = {}
end)

-- The descriptors open in this process, as /proc lists them, without the listing's
-- own pipe: both of its ends, as popen may not have closed the write end yet when ls
-- looks.
local function open_fds()
  collectgarbage()   -- what garbage holds must not come and go between two looks
  collectgarbage()
  local f = assert(io.popen("ls -l /proc/" .. core.getpid() .. "/fd"))
  local mine = tostring(core.fileno(f))
  local t, targets = {}, {}
  for fd, target in f:read("a"):gmatch(" (%d+) %-> ([^\n]*)") do
    targets[fd] = target
    t[#t + 1] = { tonumber(fd), fd, target }
  end
  f:close()
  table.sort(t, function(a, b) return a[1] < b[1] end)
  local out = {}
  for _, x in ipairs(t) do
    if x[3] ~= targets[mine] then out[#out + 1] = x[2] .. "=" .. x[3] end
  end
  return table.concat(out, " ")
end

local function free_port()
  local r = lprocess.run { "python3", "-c",
    "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" }
  return assert(math.tointeger(tonumber(r.stdout)), "no free port: " .. tostring(r.stderr))
end

-- busted keeps one `finally` per test, so a test with several worlds collects their
-- teardowns here and runs them all, last first.
local teardowns = {}
local function run_teardowns()
  local list = teardowns
  teardowns = {}
  for i = #list, 1, -1 do list[i]() end
end
local function defer(fn)
  teardowns[#teardowns + 1] = fn
  finally(run_teardowns)
end

-- A test's world: a loop, the children it spawns and the probe. Everything is torn
-- down at the end of the test: the probe cancelled, children killed and reaped, the
-- loop closed.
local function world()
  local w = { loop = looplib.new(), procs = {} }
  defer(function()
    if w.probe then w.probe:cancel() end
    for _, p in ipairs(w.procs) do
      if not p.status then core.killpg(p.pid, "KILL") end
    end
    local deadline = core.now() + 5
    local function pending()
      if next(w.loop.children) then return true end
      for _, p in ipairs(w.procs) do if not p.status then return true end end
      return false
    end
    while pending() and core.now() < deadline do w.loop:step(0.05) end
    w.loop:close()
    for _, p in ipairs(w.procs) do
      if not p.status then p:wait() end
      if p.stdout then pcall(io.close, p.stdout) end
    end
  end)

  -- The service: `sh -c script` (or an argv table) with the probe's fds and env.
  function w.spawn(cmd, opts)
    local o = w.probe and w.probe:spawn_opts() or { fds = {}, setenv = {} }
    local t = type(cmd) == "table" and { table.unpack(cmd) } or { "/bin/sh", "-c", cmd }
    t.stdin, t.stdout, t.stderr = "null", opts and opts.stdout or "null", "null"
    t.fds, t.setenv, t.pgid = o.fds, o.setenv, 0
    local p = assert(lprocess.spawn(t))
    w.procs[#w.procs + 1] = p
    if w.probe then w.probe:after_spawn() end
    return p
  end

  function w.new(job, hooks)
    job.name = job.name or "svc"
    w.probe = ready.new(job, w.loop, hooks)
    return w.probe
  end

  -- Start the probe on p and run the loop until it settles (or `limit` s pass), then
  -- on for `linger` s more to see that nothing else is called.
  function w.run(p, limit, linger)
    local res = { calls = 0 }
    w.probe:start(p.pid, function(elapsed)
      res.calls = res.calls + 1
      res.ready_at, res.elapsed = core.realtime(), elapsed
    end, function(msg)
      res.calls = res.calls + 1
      res.failed_at, res.msg = core.realtime(), msg
    end)
    local t0 = core.now()
    limit = limit or 15       -- generous: a loaded CI machine can stall us for seconds
    local guard = w.loop:timer(limit, function() end)   -- so the loop wakes up
    w.loop:run(function() return res.calls > 0 or core.now() - t0 > limit end)
    guard:cancel()
    if linger then
      local t1 = core.now()
      local g = w.loop:timer(linger, function() end)
      w.loop:run(function() return core.now() - t1 >= linger end)
      g:cancel()
    end
    return res
  end

  return w
end

-- Reads p's stdout in the loop and hands each line to the watchers, as the runner's
-- output layer does; returns the hooks for ready.new.
local function output_hooks(w)
  local watchers, buf = {}, ""
  local hooks = {}
  function hooks.watch_output(fn)
    watchers[fn] = true
    return function() watchers[fn] = nil end
  end
  function hooks.attach(p)
    local fd = core.fileno(p.stdout)
    core.setnonblock(fd, true)
    w.loop:watch(fd, "r", function()
      while true do
        local data = core.read(fd, 4096)
        if data == false then return end
        if not data or data == "" then return w.loop:unwatch(fd) end
        buf = buf .. data
        for line in buf:gmatch("([^\n]*)\n") do
          for fn in pairs(watchers) do fn(line, "stdout") end
        end
        buf = buf:match("[^\n]*$")
      end
    end)
  end
  hooks.watchers = watchers
  return hooks
end

-- Ready at or after the child's timestamp, and soon after it.
local function assert_gated(res, ts_path)
  assert.equal(1, res.calls)
  assert.is_nil(res.msg)
  local ts = tonumber(slurp(ts_path))
  assert.is_number(ts, "the child wrote no timestamp")
  assert.is_true(res.ready_at >= ts, ("ready %.6f before the condition %.6f"):format(res.ready_at, ts))
  assert.is_true(res.ready_at - ts < 5, ("ready %.3f s late"):format(res.ready_at - ts))
  assert.is_true(res.elapsed >= 0.25, "ready after only " .. res.elapsed .. " s")
end

describe("readiness gates on", function()
  it("tcp: a connect succeeds only once the child listens", function()
    local w = world()
    local port, ts = free_port(), tmpname()
    w.new { ready = { tcp = port, host = "127.0.0.1" }, ready_timeout = 5 }
    local p = w.spawn { "python3", "-c", [[
import socket, sys, time
time.sleep(0.3)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").write(repr(time.time()))
s.listen(8)
time.sleep(30)
]], tostring(port), ts }
    local res = w.run(p, nil, 0.2)
    assert_gated(res, ts)
    assert.is_true(w.probe.attempts > 1)
  end)

  it("file: the path exists", function()
    local w = world()
    local flag, ts = tmpname(), tmpname()
    w.new { ready = { file = flag } }
    local p = w.spawn(("sleep 0.3; date +%%s.%%N > %s; : > %s; sleep 30"):format(ts, flag))
    assert_gated(w.run(p, nil, 0.1), ts)
  end)

  it("log: a line of output matches the pattern, earlier lines do not", function()
    local w = world()
    local ts = tmpname()
    local hooks = output_hooks(w)
    w.new({ ready = { log = "listening on %d+" } }, hooks)
    local p = w.spawn(("echo starting; echo listening on nothing; sleep 0.3; " ..
      "date +%%s.%%N > %s; echo 'now listening on 8080'; sleep 30"):format(ts), { stdout = "pipe" })
    hooks.attach(p)
    assert_gated(w.run(p, nil, 0.1), ts)
    assert.is_nil(next(hooks.watchers), "the probe still watches the output")
  end)

  it("cmd: the command exits 0; it sees LRUN_PID and leaves no zombie", function()
    local w = world()
    local flag, ts, seen = tmpname(), tmpname(), tmpname()
    w.new { ready = { cmd = ('echo "$LRUN_JOB $LRUN_PID" > %s; test -e %s'):format(seen, flag) } }
    local p = w.spawn(("sleep 0.3; date +%%s.%%N > %s; : > %s; sleep 30"):format(ts, flag))
    local res = w.run(p, nil, 0.3)
    assert_gated(res, ts)
    assert.equal("svc " .. p.pid .. "\n", slurp(seen))
    assert.is_nil(next(w.loop.children), "a probe command was left unreaped")
  end)

  it("cmd as an argv list", function()
    local w = world()
    local flag, ts = tmpname(), tmpname()
    w.new { ready = { cmd = { "test", "-e", flag } } }
    local p = w.spawn(("sleep 0.3; date +%%s.%%N > %s; : > %s; sleep 30"):format(ts, flag))
    assert_gated(w.run(p, nil, 0.1), ts)
  end)

  it("fn: the function returns true", function()
    local w = world()
    local flag, ts = tmpname(), tmpname()
    local infos = {}
    w.new { ready = function(info)
      infos[#infos + 1] = info
      return exists(flag)
    end }
    local p = w.spawn(("sleep 0.3; date +%%s.%%N > %s; : > %s; sleep 30"):format(ts, flag))
    assert_gated(w.run(p, nil, 0.1), ts)
    assert.is_true(#infos > 1)
    assert.equal(p.pid, infos[1].pid)
    assert.equal("svc", infos[1].job)
    assert.equal(#infos, infos[#infos].attempt)
  end)

  it("notify fd: a newline on LRUN_NOTIFY_FD, not bytes before it", function()
    local w = world()
    local ts = tmpname()
    w.new { ready = { notify = "fd" } }
    local p = w.spawn(("test \"$LRUN_NOTIFY_FD\" = 3 || exit 9; printf half >&3; sleep 0.3; " ..
      "date +%%s.%%N > %s; printf ' ready\\n' >&3; sleep 30"):format(ts))
    assert_gated(w.run(p, nil, 0.1), ts)
  end)

  it("notify systemd: a datagram with READY=1, not STATUS alone", function()
    local w = world()
    local ts = tmpname()
    w.new { ready = { notify = "systemd" } }
    local path = w.probe:spawn_opts().setenv.NOTIFY_SOCKET
    local p = w.spawn { "python3", "-c", [[
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = os.environ["NOTIFY_SOCKET"]
s.sendto(b"STATUS=booting", addr)
time.sleep(0.3)
open(sys.argv[1], "w").write(repr(time.time()))
s.sendto(b"STATUS=up\nMAINPID=%d\nREADY=1\n" % os.getpid(), addr)
time.sleep(30)
]], ts }
    assert_gated(w.run(p, nil, 0.1), ts)
    assert.is_false(exists(path), "the socket file was left behind")
  end)

  it("nothing: ready at once, but not inside start()", function()
    local w = world()
    w.new {}
    local p = w.spawn("sleep 30")
    local called = false
    w.probe:start(p.pid, function() called = true end, function() end)
    assert.is_false(called)
    w.loop:run(function() return called end)
    assert.is_true(called)
  end)
end)

describe("ready_timeout", function()
  -- Kinds whose condition never comes true, with the reason the message gives.
  local cases = {
    { "tcp", function() return { tcp = free_port() } end, "sleep 30", "refused" },
    { "file", function() return { file = tmpname() } end, "sleep 30", "does not exist" },
    { "log", function() return { log = "^never$" } end, "echo nope; sleep 30", "no output line" },
    { "cmd", function() return { cmd = { "false" } } end, "sleep 30", "exited with code 1" },
    { "fn", function() return { fn = function() return false end } end, "sleep 30", "not yet" },
    { "notify fd", function() return { notify = "fd" } end, "sleep 30", "no newline" },
    { "notify fd closed", function() return { notify = "fd" } end,
      "exec 3>&-; : > $MARK; sleep 30", "closed without a newline" },
    { "notify systemd", function() return { notify = "systemd" } end, "sleep 30", "READY=1" },
  }
  for _, c in ipairs(cases) do
    it("fails a " .. c[1] .. " check once, with the reason", function()
      local w = world()
      local hooks = output_hooks(w)
      w.new({ ready = c[2](), ready_timeout = 0.4 }, hooks)
      local mark = tmpname()
      local p = w.spawn("MARK=" .. mark .. "; " .. c[3], { stdout = c[1] == "log" and "pipe" or "null" })
      if c[1] == "log" then hooks.attach(p) end
      if c[3]:find("MARK") then
        -- the probe's clock starts once the child has done its part, however slow
        -- a loaded machine makes it
        local t0 = core.now()
        while not exists(mark) and core.now() - t0 < 15 do core.sleep(0.01) end
      end
      local t0 = core.now()
      local res = w.run(p, nil, 0.3)
      assert.equal(1, res.calls)
      assert.is_nil(res.ready_at)
      assert.matches("^not ready after 0.4 s", res.msg)
      assert.matches(c[4], res.msg, 1, true)
      assert.is_true(core.now() - t0 < 15)
    end)
  end

  it("does not fire once the service is ready", function()
    local w = world()
    w.new { ready = { file = "/" }, ready_timeout = 0.2 }
    local p = w.spawn("sleep 30")
    local res = w.run(p, nil, 0.4)
    assert.equal(1, res.calls)
    assert.is_not_nil(res.ready_at)
  end)
end)

describe("failing checks", function()
  it("a ready function that raises fails with its file:line", function()
    local w = world()
    local function bad() error("cannot tell") end
    w.new { ready = { fn = bad } }
    local res = w.run(w.spawn("sleep 30"))
    assert.equal(1, res.calls)
    assert.matches("ready_spec.lua:" .. debug.getinfo(bad, "S").linedefined, res.msg, 1, true)
    assert.matches("cannot tell", res.msg, 1, true)
  end)

  it("a ready function that returns garbage, or loops, fails", function()
    local w = world()
    w.new { ready = function() return "yes" end }
    local res = w.run(w.spawn("sleep 30"))
    assert.matches('returned "yes"', res.msg, 1, true)
    local saved = ready.FN_TIMEOUT
    ready.FN_TIMEOUT = 0.1
    local w2 = world()
    w2.new { ready = function() while true do end end }
    local ok, res2 = pcall(w2.run, w2.spawn("sleep 30"))
    ready.FN_TIMEOUT = saved
    assert(ok, res2)
    assert.matches("ran longer than 0.1 s", res2.msg, 1, true)
  end)

  it("a cmd check whose program does not exist fails at once", function()
    local w = world()
    w.new { ready = { cmd = { "/nonexistent/probe" } }, ready_timeout = 5 }
    local res = w.run(w.spawn("sleep 30"))
    -- at once: not the ready_timeout's "not ready after 5 s"
    assert.matches("^ready.cmd: .*No such file", res.msg)
  end)

  it("a hung cmd check is killed and run again", function()
    local w = world()
    local saved = ready.CMD_TIMEOUT
    ready.CMD_TIMEOUT = 0.2
    local count = tmpname()
    w.new { ready = { cmd = ("echo x >> %s; sleep 30"):format(count) }, ready_timeout = 1.5 }
    local ok, res = pcall(w.run, w.spawn("sleep 30"))
    ready.CMD_TIMEOUT = saved
    assert(ok, res)
    assert.matches("killed by SIGKILL", res.msg, 1, true)
    local runs = select(2, slurp(count):gsub("\n", ""))
    assert.is_true(runs >= 2, runs .. " runs")
  end)
end)

describe("a probe in the loop", function()
  it("does not block it: a ticking timer keeps going during a slow cmd check", function()
    local w = world()
    w.new { ready = { cmd = "sleep 0.6" } }
    -- A probe that waited for its command would let no tick through until it ended.
    local ticks, last, worst = 0, core.now(), 0
    local function tick()
      local now = core.now()
      worst = math.max(worst, now - last)
      last, ticks = now, ticks + 1
      w.ticker = w.loop:timer(0.02, tick)
    end
    w.ticker = w.loop:timer(0.02, tick)
    local res = w.run(w.spawn("sleep 30"))
    w.ticker:cancel()
    assert.is_not_nil(res.ready_at)
    assert.is_true(ticks >= 5, ("%d ticks, longest gap %.3f s"):format(ticks, worst))
  end)

  it("cancel: no callback afterwards, no descriptor left, probe commands reaped", function()
    local kinds = {
      { tcp = 1 }, { file = "/nonexistent/x" }, { log = "x" }, { cmd = "sleep 30" },
      { fn = function() return false end }, { notify = "fd" }, { notify = "systemd" },
    }
    for _, spec in ipairs(kinds) do
      local w = world()
      local hooks = output_hooks(w)
      local before = open_fds()
      local probe = w.new({ ready = spec, ready_timeout = 0.3 }, hooks)
      local path = probe:spawn_opts().setenv.NOTIFY_SOCKET
      local p = w.spawn("sleep 30")
      local cancelled, late = false, false
      local function cb() late = late or cancelled end
      probe:start(p.pid, cb, cb)
      local t0 = core.now()
      local g = w.loop:timer(0.15, function() end)
      w.loop:run(function() return core.now() - t0 >= 0.15 end)
      g:cancel()
      probe:cancel()
      cancelled = true
      probe:cancel()   -- twice is fine
      -- run past the ready_timeout: nothing may be called now
      local g2 = w.loop:timer(0.4, function() end)
      w.loop:run(function() return core.now() - t0 >= 0.55 end)
      g2:cancel()
      assert.is_false(late, next(spec))
      assert.is_nil(next(w.loop.children), "probe command left: " .. tostring(next(spec)))
      assert.is_nil(next(w.loop.fds), "fd still watched: " .. tostring(next(spec)))
      assert.equal(before, open_fds(), "fds after " .. tostring(next(spec)))
      assert.is_nil(next(hooks.watchers))
      if path then assert.is_false(exists(path)) end
    end
  end)

  it("settling releases everything too", function()
    local w = world()
    local before = open_fds()
    w.new { ready = { notify = "fd" }, ready_timeout = 0.2 }
    local res = w.run(w.spawn("sleep 30"))
    assert.is_not_nil(res.msg)
    assert.equal(before, open_fds())
  end)

  it("the service gets only its notify descriptor", function()
    local w = world()
    local out = tmpname()
    w.new { ready = { notify = "fd" } }
    local p = w.spawn(("ls /proc/$$/fd > %s; echo >&3"):format(out))
    local res = w.run(p)
    assert.is_not_nil(res.ready_at)
    local fds = {}
    for fd in slurp(out):gmatch("%d+") do fds[#fds + 1] = tonumber(fd) end
    table.sort(fds)
    -- 0-2, 3 (notify) and the one ls reads the directory through
    assert.is_true(#fds <= 5, table.concat(fds, " "))
    assert.same({ 0, 1, 2, 3 }, { fds[1], fds[2], fds[3], fds[4] })
  end)

  it("the notify socket is private to our user", function()
    local w = world()
    w.new { ready = { notify = "systemd" } }
    local path = w.probe:spawn_opts().setenv.NOTIFY_SOCKET
    local r = lprocess.run { "stat", "-c", "%A", path }
    assert.equal("srwx------\n", r.stdout)
  end)
end)
