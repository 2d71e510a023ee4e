-- lprocess.daemon, lrun.control and `lrun -d / --status / --stop`, on real processes:
-- what the daemon is is read from /proc, and every daemon a test starts is killed
-- and reaped in `finally` (busted is a subreaper, so daemons end up its children).
local U = dofile("spec/fixtures/d_util.lua")
local core = U.core
local daemon = require "lprocess.daemon"
local control = require "lrun.control"

local function pidfile_pid(path)
  local s = U.slurp(path)
  return s and tonumber(s:match("^(%d+)\n$"))
end

-- Start the driver daemon; -> result of the launcher, daemon pid (from the pidfile)
local function start(args, opts)
  local res = U.run(U.driver(table.unpack(args)), opts)
  local pidfile
  for i, a in ipairs(args) do if a == "--pidfile" then pidfile = args[i + 1] end end
  return res, pidfile and pidfile_pid(pidfile)
end

-- What a test started, killed and reaped at its end, pass or fail.
-- (busted keeps one `finally` per test, so every cleanup goes through this one)
local function tracker()
  local t = { pids = {}, dirs = {}, after = {} }
  finally(function()
    for _, pid in ipairs(t.pids) do U.kill(pid) end
    for _, d in ipairs(t.dirs) do U.rm_rf(d) end
    for _, fn in ipairs(t.after) do pcall(fn) end
    U.reap_all()
  end)
  function t.defer(fn) t.after[#t.after + 1] = fn end
  function t.pid(pid) if pid then t.pids[#t.pids + 1] = pid end return pid end
  function t.dir()
    local d = U.tmpdir()
    t.dirs[#t.dirs + 1] = d
    return d
  end
  return t
end

local function has_cli()
  return U.slurp(U.root .. "/lua/lrun/cli.lua") ~= nil
end

describe("lprocess.daemon.daemonize", function()
  it("detaches: no session leader, no terminal, cwd /, umask 022, stdio on /dev/null", function()
    local t = tracker()
    local dir = t.dir()
    local pidfile = dir .. "/d.pid"
    -- The launcher runs on a pseudo-terminal (its controlling terminal), with an
    -- extra inherited pipe on fd 5 whose reader must see EOF once the launcher is gone.
    local r, w = assert(core.pipe())
    local cmd = string.format("tty; exec lua5.4 %s/d_daemon.lua --pidfile %s 5>&%d",
      U.fixtures, pidfile, 9)
    local res = U.run({ "script", "-qec", cmd, "/dev/null" }, { fds = { [9] = w } })
    core.close(w)
    local pid = t.pid(pidfile_pid(pidfile))
    assert.equal(0, res.code, res.stderr)
    assert.matches("/dev/pts/", res.stdout, 1, true)   -- the launcher had a terminal
    assert.truthy(pid, "no pidfile")
    assert.is_true(U.alive(pid))
    local st = U.stat(pid)
    assert.are_not.equal(pid, st.session)          -- not a session leader...
    assert.are_not.equal(pid, st.pgrp)
    assert.equal(0, st.tty_nr)                     -- ...and without a terminal
    assert.equal("/", core.readlink("/proc/" .. pid .. "/cwd"))
    assert.equal("0022", U.umask(pid))
    local fds = U.fds(pid)
    for fd = 0, 2 do assert.equal("/dev/null", fds[fd]) end
    -- Nothing inherited survives: beyond 0-2 only the pidfile lock, the event loop's
    -- descriptors and the control socket.
    local pipe = "pipe:[" .. core.fstat(r).ino .. "]"
    for fd, target in pairs(fds) do
      assert.are_not.equal(pipe, target)
      if fd > 2 then
        assert.truthy(target == pidfile or target:match("^anon_inode:") or target:match("^socket:"),
          "unexpected descriptor " .. fd .. " -> " .. target)
      end
    end
    local names = core.listdir(dir)
    table.sort(names)
    assert.same({ "d.pid", "d.pid.sock" }, names)   -- no temp file left behind
    -- The inherited pipe's reader sees EOF: no process holds the writer any more.
    core.setnonblock(r, true)
    assert.truthy(next(core.poll({ [r] = "r" }, 5)))
    assert.equal("", core.read(r, 10))
    core.close(r)
  end)

  it("applies umask, chdir, logs and keep_fds", function()
    local t = tracker()
    local dir = t.dir()
    local pidfile, log = dir .. "/d.pid", dir .. "/out.log"
    local r, w = assert(core.pipe())
    t.defer(function() core.close(r) core.close(w) end)
    local res, pid = start({ "--pidfile", pidfile, "--umask", "077", "--chdir", dir,
      "--stdout", log, "--keep", "7" }, { fds = { [7] = w } })
    t.pid(pid)
    assert.equal(0, res.code, res.stderr)
    assert.equal("0077", U.umask(pid))
    assert.equal(dir, core.readlink("/proc/" .. pid .. "/cwd"))
    local fds = U.fds(pid)
    assert.equal(log, fds[1])
    assert.equal("/dev/null", fds[2])
    assert.matches("^pipe:", fds[7])
    -- (the driver writes this line just after d:ready(), so it may come a moment later)
    assert.truthy(U.wait_until(function() return U.slurp(log) == "ready " .. pid .. "\n" end, 5))
    -- the pidfile follows the daemon's umask
    assert.equal(tonumber("600", 8), core.stat(pidfile).mode)
  end)

  it("exits 0 only once the daemon is ready: pidfile written, socket answering", function()
    local t = tracker()
    local dir = t.dir()
    local pidfile = dir .. "/d.pid"
    local res, pid = start { "--pidfile", pidfile }
    t.pid(pid)
    assert.equal(0, res.code, res.stderr)
    assert.equal("", res.stderr)
    assert.equal(pid .. "\n", U.slurp(pidfile))
    assert.equal(pid .. "\n", control.query(pidfile .. ".sock", "pid", 5))
    -- the launcher and its intermediate child are gone; the daemon is adopted by the
    -- nearest subreaper (busted) and leads nothing
    assert.are_not.equal(res.status.pid, U.stat(pid).ppid)
  end)

  describe("launcher exit codes", function()
    -- (a refused daemon may still be on its way out when its launcher has exited)
    local function no_daemon(pidfile)
      assert.truthy(U.wait_until(function() return #U.pids_with(pidfile) == 0 end, 5))
    end

    it("d:fail(msg): the launcher prints it and exits 1; no pidfile is left", function()
      local t = tracker()
      local pidfile = t.dir() .. "/d.pid"
      local res = start { "--pidfile", pidfile, "--fail", "bad config: line 3" }
      assert.equal(1, res.code)
      assert.equal("lrun: bad config: line 3\n", res.stderr)
      assert.is_nil(U.slurp(pidfile))
      no_daemon(pidfile)
    end)

    it("a daemon dying before ready: exit 1 and a message; its pidfile is removed", function()
      local t = tracker()
      local pidfile = t.dir() .. "/d.pid"
      for _, mode in ipairs { "--die", "--error" } do
        local res = start { "--pidfile", pidfile, mode }
        assert.equal(1, res.code)
        assert.equal("lrun: the daemon exited before it was ready\n", res.stderr)
        assert.is_nil(U.slurp(pidfile))
        no_daemon(pidfile)
      end
    end)

    it("an unwritable log: exit 1 naming it; no pidfile is left", function()
      local t = tracker()
      local dir = t.dir()
      local pidfile = dir .. "/d.pid"
      local res = start { "--pidfile", pidfile, "--stdout", dir .. "/no/such/dir/x.log" }
      assert.equal(1, res.code)
      assert.equal("lrun: log open " .. dir .. "/no/such/dir/x.log: No such file or directory\n",
        res.stderr)
      assert.is_nil(U.slurp(pidfile))
      no_daemon(pidfile)
    end)

    it("a bad chdir: exit 1", function()
      local t = tracker()
      local pidfile = t.dir() .. "/d.pid"
      local res = start { "--pidfile", pidfile, "--chdir", "/no/such/dir" }
      assert.equal(1, res.code)
      assert.equal("lrun: chdir /no/such/dir: No such file or directory\n", res.stderr)
      no_daemon(pidfile)
    end)

    it("a missing pidfile directory: a clear error, before anything is forked", function()
      local t = tracker()
      local dir = t.dir()
      local res = start { "--pidfile", dir .. "/nope/d.pid" }
      assert.equal(1, res.code)
      assert.equal("lrun: pidfile directory " .. dir .. "/nope does not exist\n", res.stderr)
      local d, err = daemon.daemonize { pidfile = dir .. "/nope/d.pid" }   -- returns here
      assert.is_nil(d)
      assert.equal("pidfile directory " .. dir .. "/nope does not exist", err)
    end)

    it("a pidfile that is a symlink is never followed; one that is a directory refused", function()
      local t = tracker()
      local dir = t.dir()
      local target = U.spit(dir .. "/target", "precious\n")
      assert(os.execute(string.format("ln -s %s %s/link.pid", target, dir)))
      local res = start { "--pidfile", dir .. "/link.pid" }
      assert.equal(1, res.code)
      assert.equal("lrun: pidfile " .. dir .. "/link.pid is a symbolic link; refusing to follow it\n",
        res.stderr)
      assert.equal("precious\n", U.slurp(target))
      assert.equal("link", core.lstat(dir .. "/link.pid").type)
      assert(os.execute("mkdir " .. dir .. "/dir.pid"))
      res = start { "--pidfile", dir .. "/dir.pid" }
      assert.equal(1, res.code)
      assert.equal("lrun: pidfile " .. dir .. "/dir.pid is not a regular file\n", res.stderr)
    end)
  end)

  it("refuses a second start: 'already running (pid N)', the live pidfile untouched", function()
    local t = tracker()
    local pidfile = t.dir() .. "/d.pid"
    local res, pid = start { "--pidfile", pidfile }
    t.pid(pid)
    assert.equal(0, res.code, res.stderr)
    local before = core.lstat(pidfile)
    local res2 = start { "--pidfile", pidfile }
    assert.equal(1, res2.code)
    assert.equal("lrun: already running (pid " .. pid .. ")\n", res2.stderr)
    local after = core.lstat(pidfile)
    assert.equal(before.ino, after.ino)
    assert.equal(before.mtime, after.mtime)
    assert.equal(pid .. "\n", U.slurp(pidfile))
    assert.is_true(U.alive(pid))
    assert.same({ pid }, U.pids_with(pidfile))
    -- the lock is really held: nobody can take it
    local fd = assert(core.open(pidfile, "r"))
    assert.is_false(core.flock(fd, "ex", true))
    core.close(fd)
    local d, err = daemon.daemonize { pidfile = pidfile }
    assert.is_nil(d)
    assert.equal("already running (pid " .. pid .. ")", err)
  end)

  describe("stale pidfiles", function()
    -- Each kind of leftover; none is locked, so none may block a start.
    local cases = {
      { "empty", function() return "" end },
      { "garbage", function() return "not a pid\n\0\1" end },
      { "a dead pid", function()
        local res = U.run { "true" }
        return res.status.pid .. "\n"
      end },
    }
    for _, case in ipairs(cases) do
      it("does not block a start: " .. case[1], function()
        local t = tracker()
        local pidfile = U.spit(t.dir() .. "/d.pid", case[2]())
        assert.same({ nil, "not running" }, { daemon.status(pidfile) })
        local res, pid = start { "--pidfile", pidfile }
        t.pid(pid)
        assert.equal(0, res.code, res.stderr)
        assert.equal(pid, daemon.status(pidfile))
        assert.is_true(U.alive(pid))
      end)
    end

    it("left by a daemon killed with SIGKILL: not running, and a new start works", function()
      local t = tracker()
      local pidfile = t.dir() .. "/d.pid"
      local _, pid = start { "--pidfile", pidfile }
      t.pid(pid)
      core.kill(pid, "KILL")
      assert.is_true(U.wait_gone(pid, 5))
      assert.equal(pid .. "\n", U.slurp(pidfile))   -- still there, but nobody's
      assert.same({ nil, "not running" }, { daemon.status(pidfile) })
      local res, pid2 = start { "--pidfile", pidfile }
      t.pid(pid2)
      assert.equal(0, res.code, res.stderr)
      assert.are_not.equal(pid, pid2)
      assert.equal(pid2, daemon.status(pidfile))
    end)

    it("naming a pid reused by an unrelated process: never trusted, never signalled", function()
      local t = tracker()
      local dir = t.dir()
      local other = U.spawn({ "sleep", "300" })
      t.pid(other.pid)
      local pidfile = U.spit(dir .. "/d.pid", other.pid .. "\n")
      assert.same({ nil, "not running" }, { daemon.status(pidfile) })
      assert.same({ nil, "not running" }, { daemon.stop(pidfile, 1) })
      local res, pid = start { "--pidfile", pidfile }
      t.pid(pid)
      assert.equal(0, res.code, res.stderr)
      assert.are_not.equal(other.pid, pid)
      assert.is_true(daemon.stop(pidfile, 10))
      assert.is_false(U.alive(pid))
      assert.is_true(U.alive(other.pid))
      assert.is_false(other:poll())
    end)
  end)

  describe("five racing launchers leave exactly one daemon", function()
    local function race(pidfile, t)
      -- Every launcher blocks on a shared pipe until the test closes it, so all
      -- five hit daemonize together.
      local r, w = assert(core.pipe())
      local procs, errs = {}, {}
      for i = 1, 5 do
        errs[i] = pidfile .. ".err" .. i
        procs[i] = U.spawn(U.driver("--pidfile", pidfile, "--gate", "3"),
          { fds = { [3] = r }, stderr = errs[i] })
      end
      core.close(r)
      core.close(w)
      local ok, refused = 0, 0
      for i = 1, 5 do
        local st = procs[i]:wait()
        if st.code == 0 then ok = ok + 1 else refused = refused + 1 end
      end
      local pid = t.pid(pidfile_pid(pidfile))
      assert.equal(1, ok)
      assert.equal(4, refused)
      assert.truthy(pid)
      for i = 1, 5 do
        local e = U.slurp(errs[i])
        if e ~= "" then assert.equal("lrun: already running (pid " .. pid .. ")\n", e) end
        os.remove(errs[i])
      end
      -- the refused daemons exit right after their launchers heard why
      assert.truthy(U.wait_until(function() return #U.pids_with(pidfile) == 1 end, 5))
      assert.same({ pid }, U.pids_with(pidfile))
      assert.equal(pid, daemon.status(pidfile))
      assert.is_true(daemon.stop(pidfile, 10))
      U.reap_all()
    end

    it("with no pidfile", function()
      local t = tracker()
      local dir = t.dir()
      for round = 1, 3 do race(dir .. "/d" .. round .. ".pid", t) end
    end)

    it("over a stale pidfile", function()
      local t = tracker()
      local dir = t.dir()
      for round = 1, 3 do
        race(U.spit(dir .. "/d" .. round .. ".pid", round == 1 and "garbage" or "1\n"), t)
      end
    end)
  end)

  it("reopens its logs on SIGUSR2 (logrotate)", function()
    local t = tracker()
    local dir = t.dir()
    local log = dir .. "/d.log"
    local _, pid = start { "--pidfile", dir .. "/d.pid", "--stdout", log, "--stderr", log }
    t.pid(pid)
    core.kill(pid, "USR1")
    assert.truthy(U.wait_until(function() return (U.slurp(log) or ""):find("tock 1") end, 5))
    assert(os.rename(log, log .. ".1"))
    core.kill(pid, "USR2")
    -- (signals pending together are read lowest number first: let USR2 land alone)
    assert.truthy(U.wait_until(function() return U.slurp(log) end, 5))
    core.kill(pid, "USR1")
    assert.truthy(U.wait_until(function() return (U.slurp(log) or ""):find("tock 2") end, 5))
    assert.equal("tick 2\ntock 2\n", U.slurp(log))
    assert.equal("ready " .. pid .. "\ntick 1\ntock 1\n", U.slurp(log .. ".1"))
  end)

  it("removes its pidfile and socket at clean exit, also through the finalizer", function()
    local t = tracker()
    local dir = t.dir()
    for _, extra in ipairs { {}, { "--gc-cleanup" } } do
      local pidfile = dir .. "/d.pid"
      local _, pid = start { "--pidfile", pidfile, table.unpack(extra) }
      t.pid(pid)
      core.kill(pid, "TERM")
      assert.is_true(U.wait_gone(pid, 10))
      assert.is_nil(U.slurp(pidfile))
      assert.is_nil(core.lstat(pidfile .. ".sock"))
      assert.same({}, core.listdir(dir))
    end
  end)
end)

describe("lprocess.daemon.status / stop", function()
  it("status: the pid while running, nil once gone", function()
    local t = tracker()
    local pidfile = t.dir() .. "/d.pid"
    assert.same({ nil, "not running" }, { daemon.status(pidfile) })
    local _, pid = start { "--pidfile", pidfile }
    t.pid(pid)
    assert.equal(pid, daemon.status(pidfile))
    -- a relative path works too
    local rel = pidfile:gsub("^/", "")
    local cwd = core.getcwd()
    core.chdir("/")
    local ok, got = pcall(daemon.status, rel)
    core.chdir(cwd)
    assert.is_true(ok)
    assert.equal(pid, got)
  end)

  it("stop: SIGTERM, returns once the process is gone", function()
    local t = tracker()
    local pidfile = t.dir() .. "/d.pid"
    local _, pid = start { "--pidfile", pidfile }
    t.pid(pid)
    assert.is_true(daemon.stop(pidfile, 10))
    -- gone means gone: at most a zombie waiting for its parent (busted)
    assert.is_false(U.alive(pid))
    assert.same({ nil, "not running" }, { daemon.status(pidfile) })
    assert.same({ nil, "not running" }, { daemon.stop(pidfile, 1) })
  end)

  it("stop: a daemon that ignores SIGTERM is reported after the timeout", function()
    local t = tracker()
    local pidfile = t.dir() .. "/d.pid"
    local _, pid = start { "--pidfile", pidfile, "--ignore-term" }
    t.pid(pid)
    local t0 = core.now()
    local ok, err = daemon.stop(pidfile, 0.3)
    assert.is_nil(ok)
    assert.equal("still running after 0.3s (pid " .. pid .. ")", err)
    assert.is_true(core.now() - t0 >= 0.29)
    assert.is_true(U.alive(pid))
    -- "stop" on the control socket still ends it
    assert.equal("stopping\n", control.query(pidfile .. ".sock", "stop", 5))
    assert.is_true(U.wait_gone(pid, 10))
  end)
end)

describe("lrun.control", function()
  it("serves status over a 0600 socket beside the pidfile", function()
    local t = tracker()
    local pidfile = t.dir() .. "/d.pid"
    local _, pid = start { "--pidfile", pidfile }
    t.pid(pid)
    local st = core.lstat(pidfile .. ".sock")
    assert.equal("socket", st.type)
    assert.equal(tonumber("600", 8), st.mode)
    assert.equal("web    running  pid " .. pid .. "  restarts 2\nsetup  ok\n",
      control.query(pidfile .. ".sock", "status", 5))
    assert.equal("error: unknown command 'dance'\n",
      control.query(pidfile .. ".sock", "dance", 5))
    -- a client that connects and says nothing holds nobody up
    local idle = assert(core.unix_connect(pidfile .. ".sock"))
    assert.equal(pid .. "\n", control.query(pidfile .. ".sock", "pid", 5))
    core.close(idle)
  end)

  it("query: an error, not a hang, when nobody serves", function()
    local t = tracker()
    local dir = t.dir()
    local reply, err = control.query(dir .. "/none.sock", "status", 1)
    assert.is_nil(reply)
    assert.matches("No such file or directory", err)
    local reply2, err2 = control.query(dir .. "/" .. string.rep("x", 120), "status", 1)
    assert.is_nil(reply2)
    assert.matches("too long", err2)
  end)

  it("serve: replaces a stale socket file, refuses anything else at the path", function()
    local t = tracker()
    local dir = t.dir()
    local loop = require("lprocess.loop").new()
    t.defer(function() loop:close() end)
    local stale = assert(core.unix_listen(dir .. "/s.sock"))
    core.close(stale)                            -- the file stays, nobody listens
    local server = assert(control.serve(loop, dir .. "/s.sock", function(cmd)
      return "got " .. cmd .. "\n"
    end))
    -- answer one query from a child while our loop serves it
    local p = U.spawn({ "lua5.4", "-e", string.format(
      "io.write(require('lrun.control').query(%q, 'hello', 5) or 'nil')", dir .. "/s.sock") },
      { stdout = "pipe" })
    loop:child(p.pid, function() loop:stop() end)
    loop:run(function() return false end)
    assert.equal("got hello\n", p.stdout:read("a"))
    p:close_pipes()
    server:close()
    assert.is_nil(core.lstat(dir .. "/s.sock"))
    U.spit(dir .. "/f.sock", "a file\n")
    local s2, err = control.serve(loop, dir .. "/f.sock", function() end)
    assert.is_nil(s2)
    assert.equal("control socket " .. dir .. "/f.sock exists and is not a socket", err)
    assert.equal("a file\n", U.slurp(dir .. "/f.sock"))
  end)
end)

describe("lrun -d / --status / --stop", function()
  local function lrun(args, opts)
    return U.run({ U.lrun, table.unpack(args) }, opts)
  end

  it("runs a job file detached; --status reports it and its jobs; --stop ends it all", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    local pidfile, log = dir .. "/lrun.pid", dir .. "/lrun.log"
    local res = lrun { "-d", "--pidfile", pidfile, "--log", log, U.fixtures .. "/d_service.lua" }
    local pid = t.pid(pidfile_pid(pidfile))
    assert.equal(0, res.code, res.stderr)
    assert.truthy(pid)
    local st = U.stat(pid)
    assert.are_not.equal(pid, st.session)
    assert.equal(0, st.tty_nr)
    assert.equal("/", core.readlink("/proc/" .. pid .. "/cwd"))

    local status
    assert.truthy(U.wait_until(function()
      status = lrun { "--status", "--pidfile", pidfile }
      return status.stdout:find("web%s+ready") and status.stdout:find("worker%s+ready")
    end, 10), status and status.stdout)
    assert.equal(0, status.code)
    assert.matches("^running %(pid " .. pid .. "%)\n", status.stdout)
    local job_pids = {}
    for p in status.stdout:gmatch("pid (%d+)") do
      if tonumber(p) ~= pid then job_pids[#job_pids + 1] = t.pid(tonumber(p)) end
    end
    assert.equal(2, #job_pids)
    assert.truthy(U.wait_until(function() return (U.slurp(log) or ""):find("web up") end, 5))

    local again = lrun { "-d", "--pidfile", pidfile, U.fixtures .. "/d_service.lua" }
    assert.equal(1, again.code)
    assert.equal("lrun: already running (pid " .. pid .. ")\n", again.stderr)

    -- logrotate: move the log, SIGUSR2, and what lrun writes next (the summary at
    -- the end) goes to a new file of that name
    assert(os.rename(log, log .. ".1"))
    core.kill(pid, "USR2")
    assert.truthy(U.wait_until(function() return U.slurp(log) end, 5))

    local stop = lrun { "--stop", "--pidfile", pidfile }
    assert.equal(0, stop.code, stop.stderr)
    assert.is_false(U.alive(pid))                 -- --stop returned only once it was gone
    assert.matches("web up", U.slurp(log .. ".1"), 1, true)
    assert.matches("worker%s+stopped", U.slurp(log))
    for _, jp in ipairs(job_pids) do assert.is_false(U.alive(jp)) end
    assert.is_nil(U.slurp(pidfile))
    local after = lrun { "--status", "--pidfile", pidfile }
    assert.equal(3, after.code)
    local stop2 = lrun { "--stop", "--pidfile", pidfile }
    assert.are_not.equal(0, stop2.code)
  end)

  it("started with fds 0, 1 and 2 closed: -d exits 0, --stop stops it (hardening 12)", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    local pidfile = dir .. "/lrun.pid"
    for _, prog in ipairs { U.lrun, U.lrun_bin } do
      local res = U.run { "sh", "-c", string.format(
        "exec %s -d --pidfile %s %s <&- >&- 2>&-; echo never", prog, pidfile,
        U.fixtures .. "/d_service.lua") }
      assert.equal(0, res.code, prog)
      local pid = t.pid(pidfile_pid(pidfile))
      assert.truthy(pid, prog)
      -- the daemon's stdio is /dev/null, not one of lrun's own descriptors
      for fd = 0, 2 do
        assert.equal("/dev/null", core.readlink("/proc/" .. pid .. "/fd/" .. fd))
      end
      local stop = U.run { U.lrun, "--stop", "--pidfile", pidfile }
      assert.equal(0, stop.code, stop.stderr)
      assert.is_false(U.alive(pid))
    end
  end)

  it("with fds 0..2 closed, a run's jobs write to /dev/null, not into lrun's fds", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    U.spit(dir .. "/j.lua", [[job "w" { "sh", "-c", "o=$(readlink /proc/$$/fd/1); ]]
      .. [[e=$(readlink /proc/$$/fd/2); echo $o $e > ]] .. dir .. [[/fds.txt",
      stdout = "inherit", stderr = "inherit" }]])
    local res = U.run { "sh", "-c", "exec " .. U.lrun .. " -q " .. dir .. "/j.lua <&- >&- 2>&-" }
    assert.equal(0, res.code)
    local fds = U.slurp(dir .. "/fds.txt")
    assert.equal("/dev/null /dev/null\n", fds)
  end)

  it("validates the job file before detaching: exit 2, nothing started", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    local pidfile = dir .. "/lrun.pid"
    local res = lrun { "-d", "--pidfile", pidfile, U.fixtures .. "/jf_syntax.lua" }
    assert.equal(2, res.code)
    assert.matches("^lrun: ", res.stderr)
    assert.same({}, core.listdir(dir))
    assert.same({}, U.pids_with(pidfile))
  end)

  it("resolves the job file's relative paths against its directory, not /", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    local sub = dir .. "/proj"
    assert(os.execute("mkdir " .. sub))
    U.spit(sub .. "/jobs.lua", [[
service "here" { "sh", "-c", "pwd; exec sleep 1000", stdout = "where.txt" }
]])
    -- launched from the parent directory with a relative file name
    local res = U.run({ "sh", "-c", "cd " .. dir .. " && exec " .. U.lrun
      .. " -d --pidfile run.pid proj/jobs.lua" })
    local pid = t.pid(pidfile_pid(dir .. "/run.pid"))
    assert.equal(0, res.code, res.stderr)
    assert.truthy(U.wait_until(function() return U.slurp(sub .. "/where.txt") == sub .. "\n" end, 5),
      U.slurp(sub .. "/where.txt"))
    assert.is_true(daemon.stop(dir .. "/run.pid", 20))
    assert.is_false(U.alive(pid))
  end)

  it("five racing `lrun -d` leave exactly one daemon", function()
    if not has_cli() then pending("lrun.cli is not on main yet") return end
    local t = tracker()
    local dir = t.dir()
    local pidfile = dir .. "/lrun.pid"
    local procs = {}
    for i = 1, 5 do
      procs[i] = U.spawn({ U.lrun, "-d", "--pidfile", pidfile, U.fixtures .. "/d_service.lua" },
        { stderr = dir .. "/err" .. i })
    end
    local ok = 0
    for i = 1, 5 do
      if procs[i]:wait().code == 0 then ok = ok + 1 end
    end
    local pid = t.pid(pidfile_pid(pidfile))
    assert.equal(1, ok)
    for i = 1, 5 do
      local e = U.slurp(dir .. "/err" .. i)
      assert.truthy(e == "" or e == "lrun: already running (pid " .. pid .. ")\n", e)
    end
    assert.truthy(U.wait_until(function() return #U.pids_with(pidfile) == 1 end, 5))
    assert.same({ pid }, U.pids_with(pidfile))
    local stop = lrun { "--stop", "--pidfile", pidfile }
    assert.equal(0, stop.code, stop.stderr)
  end)
end)
