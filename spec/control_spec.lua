-- Working with a running lrun (issue 13): `lrun ctl` and the JSON-lines protocol of
-- the control socket, add_job{} from a policy, the core's peercred (bad input:
-- spec/control_input_spec.lua). Every lrun here is a real process on a job file the
-- test writes, driven over its socket.
local H = require "helper"
local C = require "support.ctl"
local core = H.core

local SERVICES = [[
service "web" { cmd = "echo web up; trap 'echo got USR1' USR1; while :; do sleep 0.1; done" }
service "pair" { cmd = "sleep 300 & sleep 300; wait", instances = 2 }
]]

local LIVE = { running = true, ready = true }

describe("core.peercred, tcp_listen, sockname", function()
  it("peercred names the process at the other end of a Unix socket", function()
    local dir = H.tmpdir()
    finally(function() H.rm_rf(dir) end)
    local l = assert(core.unix_listen(dir .. "/p.sock"))
    local c = assert(core.unix_connect(dir .. "/p.sock"))
    local a
    assert.truthy(H.wait_until(function() a = core.accept(l) return a end, 5))
    local pid, uid, gid = core.peercred(a)
    assert.equal(core.getpid(), pid)
    assert.equal(core.getuid(), uid)
    assert.equal(core.getgid(), gid)
    for _, fd in ipairs { a, c, l } do core.close(fd) end
    local r, w = assert(core.pipe())
    local ok, err, errno = core.peercred(r)
    assert.is_nil(ok)
    assert.matches("SO_PEERCRED", err)
    assert.equal(core.errno.ENOTSOCK, errno)
    core.close(r); core.close(w)
  end)

  it("tcp_listen on port 0 gets a free port that sockname tells", function()
    local fd = assert(core.tcp_listen("127.0.0.1", 0))
    local host, port = core.sockname(fd)
    assert.equal("127.0.0.1", host)
    assert.truthy(port > 0)
    local c = assert(core.tcp_connect("127.0.0.1", port))
    core.close(c); core.close(fd)
    local none, err = core.tcp_listen("no-such-host.invalid", 0)
    assert.is_nil(none)
    assert.matches("listen no%-such%-host", err)
    assert.has_error(function() core.tcp_listen("127.0.0.1", 70000) end)
  end)
end)

describe("lrun ctl", function()
  local t, T, p, sock
  before_each(function()
    t = H.track()   -- cleaned up in after_each: a finally here would not run
    T = H.tmpdir()
    t:defer(function() H.rm_rf(T) end)
  end)
  after_each(function() t:cleanup() end)

  local function run(text, extra)
    p, sock = C.start(t, T, C.jobfile(T, text), extra)
    assert.truthy(C.wait_state(sock, "web", { ready = true }))
  end

  it("status: one line per unit with state, pid, attempt, started, duration, CPU, RSS", function()
    run(SERVICES)
    local r = C.ctl(sock, "status")
    assert.equal(0, r.code, r.stderr)
    local lines = H.lines_of(r.stdout)
    assert.matches("^job%s+state%s+pid%s+attempt%s+started%s+duration%s+CPU%s+RSS%s+last exit$", lines[1])
    assert.matches("^web%s+ready%s+%d+%s+1%s+%d%d:%d%d:%d%d%s+%S+s%s+%S+s%s+[%d.]+ [KM]iB%s+%-$", lines[2])
    assert.matches("^pair%.0%s+ready", lines[3])
    assert.matches("^pair%.1%s+ready", lines[4])
    local j = C.ctl(sock, "--json", "status")
    assert.equal(0, j.code)
    local rows = require("cjson").decode(j.stdout)
    assert.equal("web", rows[1].name)
    assert.equal(1, rows[1].attempt)
    assert.truthy(rows[1].pid > 0 and rows[1].started > 0 and rows[1].duration >= 0)
    assert.equal(0, C.finish(p, sock))
  end)

  it("stop, start, restart one unit or every instance, stopping the whole group", function()
    run(SERVICES)
    local pair0 = C.state(sock, "pair.0")
    local members = H.children_of(pair0.pid)
    assert.truthy(#members >= 1)                    -- its sleeps, in its group
    local r = C.ctl(sock, "stop", "pair.0")
    assert.equal(0, r.code, r.stderr)
    assert.equal("stop: pair.0\n", r.stdout)
    -- it answers once the unit has stopped and its whole group is gone
    assert.equal("stopped", C.state(sock, "pair.0").state)
    for _, m in ipairs(members) do assert.falsy(H.alive(m)) end
    assert.truthy(LIVE[C.state(sock, "pair.1").state])
    assert.truthy(LIVE[C.state(sock, "web").state])
    r = C.ctl(sock, "start", "pair.0")
    assert.equal(0, r.code, r.stderr)
    local back = C.wait_state(sock, "pair.0", LIVE)
    assert.equal(2, back.attempt)
    local before = { C.state(sock, "pair.0").pid, C.state(sock, "pair.1").pid }
    r = C.ctl(sock, "restart", "pair")
    assert.equal("restart: pair.0, pair.1\n", r.stdout)
    for i, name in ipairs { "pair.0", "pair.1" } do   -- up again when it answers
      local u = C.state(sock, name)
      assert.truthy(LIVE[u.state])
      assert.are_not.equal(before[i], u.pid)
      assert.falsy(H.alive(before[i]))
    end
    -- a run of services only stays up when every unit was stopped by hand
    assert.equal(0, C.ctl(sock, "stop", "pair").code)
    assert.equal(0, C.ctl(sock, "stop", "web").code)
    assert.truthy(C.wait_state(sock, "web", { stopped = true }))
    assert.equal(0, C.ctl(sock, "start", "web").code)
    assert.truthy(C.wait_state(sock, "web", LIVE))
    assert.equal(0, C.finish(p, sock))
  end)

  it("stop waits out the grace of a job that ignores its kill_signal, then KILLs", function()
    run(SERVICES .. [[
service "stubborn" { cmd = "trap '' TERM; echo trapped; while :; do sleep 0.1; done",
  kill_grace = 0.5, ready = { log = "trapped" } }
]])
    -- ready once its trap is set: a TERM before that would end it at once
    local TRAPPED = { ready = true }
    local pid = assert(C.wait_state(sock, "stubborn", TRAPPED)).pid
    local t0 = H.core.now()
    local r = C.ctl(sock, "stop", "stubborn")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(H.core.now() - t0 >= 0.5)
    assert.falsy(H.alive(pid))
    local u = C.state(sock, "stubborn")
    assert.equal("stopped", u.state)
    assert.equal("killed by SIGKILL", u.last_exit)
    -- "wait": false answers at once
    assert.equal(0, C.ctl(sock, "start", "stubborn").code)
    assert.truthy(C.wait_state(sock, "stubborn", TRAPPED))
    local reply = C.req(sock, { cmd = "stop", job = "stubborn", wait = false })
    assert.is_true(reply.ok)
    assert.truthy(LIVE[C.state(sock, "stubborn").state])
    assert.truthy(C.wait_state(sock, "stubborn", { stopped = true }))
    assert.equal(0, C.finish(p, sock))
  end)

  it("signal JOB SIG reaches the job; a bad signal or job is an error, nothing else", function()
    run(SERVICES)
    local r = C.ctl(sock, "signal", "web", "USR1")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(H.wait_until(function() return (H.slurp(T .. "/out") or ""):find("web%s+| got USR1") end, 10))
    r = C.ctl(sock, "signal", "web", "BOGUS")
    assert.equal(1, r.code)
    assert.equal("lrun ctl: unknown signal 'BOGUS'\n", r.stderr)
    r = C.ctl(sock, "signal", "web", tostring(core.signals.USR1))   -- by number
    assert.equal(0, r.code, r.stderr)
    assert.truthy(H.wait_until(function()
      return select(2, (H.slurp(T .. "/out") or ""):gsub("got USR1", "")) == 2
    end, 10))
    r = C.ctl(sock, "signal", "web", "99")
    assert.equal(1, r.code)
    assert.matches("unknown signal '99'", r.stderr)
    assert.equal("1", tostring(math.tointeger(C.state(sock, "web").attempt)))
    assert.truthy(LIVE[C.state(sock, "web").state])
    assert.equal(0, C.finish(p, sock))
  end)

  it("tail shows the last lines; tail -f follows until the job ends", function()
    run(SERVICES .. [[
service "talker" { cmd = "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); sleep 0.02; done" }
]])
    local r = C.ctl(sock, "tail", "-n", "1", "web")
    assert.equal("web up\n", r.stdout)
    r = C.ctl(sock, "tail", "-f", "talker")
    assert.equal(0, r.code, r.stderr)
    local lines = H.lines_of(r.stdout)
    assert.equal("line 99", lines[#lines])   -- followed to its end
    assert.truthy(#lines >= 10)
    -- an ended unit still has its last lines
    assert.truthy(C.wait_state(sock, "talker", { ["gave up"] = true, failed = true, ok = true,
      ["backing-off"] = true }))
    r = C.ctl(sock, "tail", "-n", "2", "talker")
    assert.equal("line 98\nline 99\n", r.stdout)
    assert.equal(1, C.ctl(sock, "tail", "pair").code)   -- two instances: say which
    C.finish(p, sock)
  end)

  it("add FILE loads jobs into the running graph; their needs may name running jobs", function()
    run(SERVICES)
    C.jobfile(T, 'job "late" { cmd = "echo late ran > ' .. T .. '/late.txt", needs = { "web" } }\n',
      "more.lua")
    local r = C.ctl(sock, "add", T .. "/more.lua")
    assert.equal(0, r.code, r.stderr)
    assert.equal("added: late\n", r.stdout)
    assert.truthy(H.wait_until(function() return H.slurp(T .. "/late.txt") end, 10))
    -- the same names again, an unknown key, a cycle: refused with file and line
    r = C.ctl(sock, "add", T .. "/more.lua")
    assert.equal(1, r.code)
    assert.matches("more.lua:1: job 'late' exists already", r.stderr)
    C.jobfile(T, 'job "x" { cmd = "true", neds = { "web" } }\n', "bad.lua")
    r = C.ctl(sock, "add", T .. "/bad.lua")
    assert.equal(1, r.code)
    assert.matches("bad.lua:1: job \"x\": unknown key 'neds' %(did you mean 'needs'%?%)", r.stderr)
    C.jobfile(T, 'job "c1" { cmd = "true", needs = { "c2" } }\njob "c2" { cmd = "true", needs = { "c1" } }\n',
      "cycle.lua")
    r = C.ctl(sock, "add", T .. "/cycle.lua")
    assert.equal(1, r.code)
    assert.matches("dependency cycle: c1 %-> c2 %-> c1", r.stderr)
    assert.equal(1, C.ctl(sock, "add", T .. "/none.lua").code)
    assert.truthy(LIVE[C.state(sock, "web").state])
    assert.equal(0, C.finish(p, sock))
  end)

  it("after a failure (without -k) nothing is added or started but by hand", function()
    p, sock = C.start(t, T, C.jobfile(T, string.format([[
job "long" { cmd = "while [ ! -e %s/end ]; do sleep 0.05; done" }
job "bad" { cmd = "false" }
job "later" { cmd = "true", needs = { "bad" } }
]], T)))
    assert.truthy(C.wait_state(sock, "bad", { failed = true }))
    C.jobfile(T, 'job "x" { cmd = "true" }\n', "more.lua")
    local r = C.ctl(sock, "add", T .. "/more.lua")
    assert.equal(1, r.code)
    assert.equal("lrun ctl: no job starts any more after a failure (without -k)\n", r.stderr)
    assert.equal("skipped", C.state(sock, "later").state)
    H.spit(T .. "/end", "")
    assert.equal(1, H.lp.exit_code(assert(H.wait_pid(p.pid, 20))))
  end)

  it("eval is off unless lrun was started with --control-lua", function()
    run(SERVICES)
    local r = C.ctl(sock, "eval", "return 1")
    assert.equal(1, r.code)
    assert.equal("lrun ctl: eval is off: start lrun with --control-lua to allow it\n", r.stderr)
    C.finish(p, sock)
  end)

  it("eval runs Lua inside lrun with the lrun API (states, stop, add)", function()
    run(SERVICES, { "--control-lua" })
    local r = C.ctl(sock, "eval", [[
      local n = 0
      for _, u in ipairs(lrun.states()) do n = n + 1 end
      print("units", n)
      assert(lrun.stop("pair.1"))
      local ok, err = lrun.stop("nope")
      assert(not ok and err:find("no job or instance named 'nope'"))
      return lrun.state("web"), table.concat(lrun.jobs(), ",")]])
    assert.equal(0, r.code, r.stderr)
    assert.equal("units\t3\nready\nweb,pair\n", r.stdout)
    assert.truthy(C.wait_state(sock, "pair.1", { stopped = true }))
    r = C.ctl(sock, "eval", "while true do end")
    assert.equal(1, r.code)
    assert.matches("eval", r.stderr)
    r = C.ctl(sock, "eval", "error('boom')")
    assert.matches("boom", r.stderr)
    r = C.ctl(sock, "eval", "return lrun.add { name = 'e1', cmd = 'true', needs = { 'web' } }")
    assert.equal(0, r.code, r.stderr)
    assert.truthy(C.wait_state(sock, "e1", { ok = true }))
    assert.truthy(LIVE[C.state(sock, "web").state])
    C.finish(p, sock)
  end)
end)

describe("lrun.control.bus", function()
  it("fans events out, and keeps the last lines of only the units that ended last", function()
    local bus = require "lrun.control.bus"
    local keep = bus.KEEP_UNITS
    finally(function() bus.KEEP_UNITS = keep end)
    bus.KEEP_UNITS = 3
    local out = { tail = function(_, name) return { name .. " said" } end }
    local seen = {}
    local b = bus.new(nil, out)
    local off = b:listen(function(kind, f) seen[#seen + 1] = kind .. " " .. f.job end)
    b:listen(function() error("a listener that fails harms nobody") end)
    out.message = function() end
    for i = 1, 5 do b:emit("exit", { job = "u" .. i }) end
    off()
    b:emit("start", { job = "u6" })
    assert.same({ "exit u1", "exit u2", "exit u3", "exit u4", "exit u5" }, seen)
    out.tail = function() return {} end     -- lrun.output let them go
    assert.same({}, b:last_lines("u2"))
    assert.same({ "u3 said" }, b:last_lines("u3"))
    assert.same({ "u5 said" }, b:last_lines("u5", 1))
  end)
end)

describe("where lrun ctl finds the socket", function()
  local t, T
  before_each(function()
    t = H.track()
    T = H.tmpdir()
  end)
  after_each(function()
    t:cleanup()
    H.rm_rf(T)
  end)

  local function ctl(cwd, ...)
    local argv = { C.LRUN, "ctl", ... }
    argv.cwd, argv.timeout = cwd, 30
    argv.setenv = { LPROCESS_CPATH = H.cpath, XDG_RUNTIME_DIR = T .. "/run" }
    local r = assert(H.lp.run(argv))
    r.code = H.lp.exit_code(r.status)
    return r
  end

  it("beside the job file: one socket per job file under $XDG_RUNTIME_DIR", function()
    assert(os.execute("mkdir -m 700 " .. T .. "/run " .. T .. "/proj"))
    C.jobfile(T .. "/proj", SERVICES)
    local p = t:spawn { C.LRUN, "jobs.lua", cwd = T .. "/proj", stdout = "null", stderr = "null",
      setenv = { LPROCESS_CPATH = H.cpath, XDG_RUNTIME_DIR = T .. "/run" } }
    local r
    assert.truthy(H.wait_until(function()
      r = ctl(T .. "/proj", "status")
      return r.code == 0 and r.stdout:find("web%s+ready")
    end, 20), r and r.stderr)
    local socks = {}
    for name in io.popen("ls " .. T .. "/run"):lines() do socks[#socks + 1] = name end
    assert.equal(1, #socks)
    assert.matches("^lrun%-%x+%.sock$", socks[1])
    -- elsewhere, with no job file: where to look is said
    r = ctl(T, "status")
    assert.equal(3, r.code)
    assert.matches("no job file.*%-%-control PATH or %-%-pidfile FILE", r.stderr)
    assert.equal(0, ctl(T, "--file", T .. "/proj/jobs.lua", "shutdown").code)
    H.wait_pid(p.pid, 20)
    p.status = true
    assert.equal(3, ctl(T .. "/proj", "status").code)   -- gone, and so is its socket
    assert.is_nil(io.open(T .. "/run/" .. socks[1]))
  end)

  it("with -d: PIDFILE.sock, through --pidfile", function()
    C.jobfile(T, SERVICES)
    local pidfile = T .. "/lrun.pid"
    local r = assert(H.lp.run { C.LRUN, "-d", "--pidfile", pidfile, T .. "/jobs.lua",
      setenv = { LPROCESS_CPATH = H.cpath }, timeout = 30 })
    assert.equal(0, H.lp.exit_code(r.status), r.stderr)
    local pid = tonumber(H.slurp(pidfile))
    t:defer(function() if H.alive(pid) then H.core.kill(pid, "KILL") end end)
    assert.truthy(H.wait_until(function()
      return ctl(T, "--pidfile", pidfile, "status").stdout:find("web%s+ready")
    end, 20))
    r = ctl(T, "--pidfile", pidfile, "restart", "web")
    assert.equal(0, r.code, r.stderr)
    assert.equal(2, math.tointeger(C.state(pidfile .. ".sock", "web").attempt))
    r = assert(H.lp.run { C.LRUN, "--stop", "--pidfile", pidfile,
      setenv = { LPROCESS_CPATH = H.cpath }, timeout = 30 })
    assert.equal(0, H.lp.exit_code(r.status), r.stderr)
    assert.falsy(H.alive(pid))
  end)
end)

describe("add_job{} from a policy", function()
  it("grows the graph from on_exit; a bad job is reported like a policy error", function()
    local t = H.track(finally)
    local T = H.tmpdir()
    t:defer(function() H.rm_rf(T) end)
    C.jobfile(T, string.format([[
job "split" { cmd = "echo 3 > %s/n", on_exit = function(ev)
  local f = io.open("%s/n"); local n = tonumber(f:read("l")); f:close()
  for i = 1, n do
    add_job { name = "part" .. i, cmd = "echo part$LRUN_JOB > %s/$LRUN_JOB", needs = { "split" } }
  end
end }
job "bad" { cmd = "true", on_exit = function() add_job { name = "oops", cmd = "true", neds = {} } end }
job "loop" { cmd = "true", on_exit = function()
  add_job { name = "l1", cmd = "true", needs = { "l1" } }
end }
]], T, T, T))
    local argv = { C.LRUN, "-k", T .. "/jobs.lua", setenv = { LPROCESS_CPATH = H.cpath },
      timeout = 60 }
    local r = assert(H.lp.run(argv))
    local code = H.lp.exit_code(r.status)
    for i = 1, 3 do assert.equal("part" .. "part" .. i .. "\n", H.slurp(T .. "/part" .. i)) end
    assert.equal(1, code)   -- bad and loop failed
    assert.matches("job bad: policy: .*add_job: jobs.lua:7: job \"oops\": unknown key 'neds'", r.stderr)
    assert.matches("job loop: policy: .*add_job: .*dependency cycle: l1 %-> l1", r.stderr)
    assert.matches("part3%s+ok", r.stderr)
  end)

  it("outside a run, add_job is an error naming the line", function()
    local T = H.tmpdir()
    finally(function() H.rm_rf(T) end)
    C.jobfile(T, 'job "a" { cmd = "true" }\nadd_job { name = "b", cmd = "true" }\n')
    local r = assert(H.lp.run { C.LRUN, "-n", T .. "/jobs.lua", setenv = { LPROCESS_CPATH = H.cpath } })
    assert.equal(2, H.lp.exit_code(r.status))
    assert.matches("jobs.lua:2: add_job: only while lrun runs the graph", r.stderr)
  end)
end)
