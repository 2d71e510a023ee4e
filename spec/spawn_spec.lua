-- lprocess.spawn and Process objects: streams, environment, waiting, signalling,
-- <close> and __gc, with real children and /proc as the witness.
local H = require "helper"
local core = H.core
local lp = H.lp

describe("lprocess.spawn", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rm_rf(dir) end)

  it("returns a Process with pid, argv and a readable state", function()
    local t = H.track(finally)
    local p = t:spawn { "sh", "-c", "exit $0", 4 }
    assert.equal("integer", math.type(p.pid))
    assert.same({ "sh", "-c", "exit $0", "4" }, p.argv)
    assert.is_number(p.started)
    assert.matches("^process %d+ %(%a+%)$", tostring(p))
    assert.exited(4, p:wait())
    assert.equal("process " .. p.pid .. " (exit)", tostring(p))
  end)

  describe("streams", function()
    it("\"pipe\" gives real Lua file handles", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "while read l; do echo \"<$l>\"; echo \"!$l\" >&2; done",
        stdin = "pipe", stdout = "pipe", stderr = "pipe" }
      assert.equal("file", io.type(p.stdin))
      p.stdin:write("a\nb\n")
      p.stdin:close()
      local lines = {}
      for l in p.stdout:lines() do lines[#lines + 1] = l end
      assert.same({ "<a>", "<b>" }, lines)
      assert.equal("!a\n!b\n", p.stderr:read("a"))
      assert.exited(0, p:wait())
    end)

    it("\"null\" reads nothing and swallows output", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "cat; echo done; echo err >&2", stdin = "null",
        stdout = "pipe", stderr = "null" }
      assert.equal("done\n", p.stdout:read("a"))
      assert.exited(0, p:wait())
      local q = t:spawn { "sh", "-c", "ls -l /proc/self/fd/0 /proc/self/fd/2", stdin = "null",
        stdout = "pipe", stderr = "null" }
      local out = q.stdout:read("a")
      assert.matches("/proc/self/fd/0 %-> /dev/null", out)
      assert.matches("/proc/self/fd/2 %-> /dev/null", out)
      q:wait()
    end)

    it("a path: stdin reads it, stdout and stderr truncate or create it", function()
      local t = H.track(finally)
      local input = H.spit(dir .. "/in", "from a file\n")
      H.spit(dir .. "/out", string.rep("old contents ", 100))
      local p = t:spawn { "sh", "-c", "cat; echo e >&2", stdin = input, stdout = dir .. "/out",
        stderr = dir .. "/err" }
      assert.exited(0, p:wait())
      assert.equal("from a file\n", H.slurp(dir .. "/out"))
      assert.equal("e\n", H.slurp(dir .. "/err"))
    end)

    it("an fd number and a Lua file", function()
      local t = H.track(finally)
      local r, w = assert(core.pipe())
      local f = assert(io.open(dir .. "/lua-file", "w"))
      t:defer(function() core.close(r) end)
      local p = t:spawn { "sh", "-c", "echo to-fd; echo to-file >&2", stdout = w, stderr = f }
      core.close(w)
      f:close()
      assert.exited(0, p:wait())
      assert.equal("to-fd\n", core.read(r))
      assert.equal("to-file\n", H.slurp(dir .. "/lua-file"))
    end)

    it("stderr = \"stdout\" merges the two; \"inherit\" passes ours", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "echo a; echo b >&2; echo c", stdout = "pipe",
        stderr = "stdout" }
      assert.equal("a\nb\nc\n", p.stdout:read("a"))
      p:wait()
      -- inherit: the child's stderr is the very file ours is
      local q = t:spawn { "readlink", "/proc/self/fd/2", stderr = "inherit", stdout = "pipe" }
      local ours = t:spawn { "readlink", "/proc/" .. H.mypid .. "/fd/2", stdout = "pipe" }
      assert.equal(ours.stdout:read("a"), q.stdout:read("a"))
      assert.exited(0, q:wait())
      assert.exited(0, ours:wait())
    end)

    it("fds maps Lua files and numbers", function()
      local t = H.track(finally)
      local r, w = assert(core.pipe())
      t:defer(function() core.close(r) end)
      local f = assert(io.open(dir .. "/fd4", "w"))
      local p = t:spawn { "sh", "-c", "echo three >&3; echo four >&4", fds = { [3] = w, [4] = f } }
      core.close(w)
      f:close()
      assert.exited(0, p:wait())
      assert.equal("three\n", core.read(r))
      assert.equal("four\n", H.slurp(dir .. "/fd4"))
    end)

    it("a stream that cannot be opened fails spawn, leaking no descriptor", function()
      local before = H.own_fds()
      local p, msg, errno = lp.spawn { "true", stdout = "pipe", stderr = "pipe",
        stdin = dir .. "/missing" }
      assert.oserror("ENOENT", p, msg, errno)
      assert.equal("open " .. dir .. "/missing: No such file or directory", msg)
      assert.same({}, H.new_fds(before))
      assert.has_error(function() lp.spawn { "true", stdout = {} } end)
    end)
  end)

  describe("exec failure", function()
    it("returns nil, message, errno with no zombie and no descriptor left", function()
      local fds_before = H.own_fds()
      local zombies_before = H.zombie_set()
      for _, method in ipairs { "vfork", "fork" } do
        local p, msg, errno = lp.spawn { "no-such-program-xyz", stdin = "pipe", stdout = "pipe",
          stderr = "pipe", method = method }
        assert.oserror("ENOENT", p, msg, errno)
        assert.equal("no-such-program-xyz: No such file or directory", msg)
        assert.oserror("ENOENT", lp.spawn { "true", cwd = dir .. "/nope", stdout = "pipe",
          method = method })
      end
      assert.same({}, H.new_fds(fds_before))
      assert.same({}, H.new_zombies(zombies_before))
    end)
  end)

  describe("environment", function()
    it("setenv merges into ours (false removes), env replaces it", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", 'echo "$LP_A ${HOME-unset} ${LP_N}"', stdout = "pipe",
        setenv = { LP_A = "one", HOME = false, LP_N = 42 } }
      assert.equal("one unset 42\n", p.stdout:read("a"))
      p:wait()
      local q = t:spawn { "/usr/bin/env", stdout = "pipe", env = { ONLY = "this" } }
      assert.equal("ONLY=this\n", q.stdout:read("a"))
      q:wait()
      local r = t:spawn { "/usr/bin/env", stdout = "pipe", env = { A = "1" }, setenv = { B = 2 } }
      local lines = {}
      for l in r.stdout:lines() do lines[#lines + 1] = l end
      table.sort(lines)
      assert.same({ "A=1", "B=2" }, lines)
      r:wait()
    end)

    it("core.envblock: checked once, shared by spawns, an entry replaced per start", function()
      local block = core.envblock { "LP_SLOT=", "PATH=" .. dir, "LP_B=two" }
      local function env_of()
        local r, w = assert(core.pipe())
        -- "lp_env_probe" is found only through the block's PATH
        local pid = assert(core.spawn { argv = { "lp_env_probe" }, env = block, fds = { [1] = w } })
        core.close(w)
        local out = {}
        while true do
          local data = core.read(r, 4096)
          if not data or data == "" then break end
          out[#out + 1] = data
        end
        core.close(r)
        assert.exited(0, core.wait(pid))
        return table.concat(out)
      end
      local f = assert(io.open(dir .. "/lp_env_probe", "w"))
      f:write('#!/bin/sh\nprintf "%s|%s|%s" "$LP_SLOT" "$PATH" "$LP_B"\n')
      f:close()
      assert(os.execute("chmod +x " .. dir .. "/lp_env_probe"))
      block:set(1, "LP_SLOT=first")
      assert.equal("first|" .. dir .. "|two", env_of())
      block:set(1, "LP_SLOT=second")
      assert.equal("second|" .. dir .. "|two", env_of())
      assert.same({ "LP_SLOT=second", "PATH=" .. dir, "LP_B=two" }, block:list())
      -- the PATH a name is looked up in follows a replaced PATH entry
      block:set(2, "PATH=/nonexistent")
      local pid, err = core.spawn { argv = { "lp_env_probe" }, env = block }
      assert.is_nil(pid)
      assert.matches("No such file", err)
      -- misuse raises, as spawn's env table does
      assert.has_error(function() block:set(4, "A=1") end)
      assert.has_error(function() block:set(1, "no_equals") end)
      assert.has_error(function() block:set(1, "A=b\0c") end)
      assert.has_error(function() core.envblock { "A=1", 2 } end)
      assert.has_error(function() core.spawn { argv = { "true" }, env = io.stdout } end)
    end)

    it("cwd, umask and limits", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "pwd; umask; ulimit -n", stdout = "pipe", cwd = dir,
        umask = tonumber("077", 8), limits = { nofile = 64 } }
      assert.equal(dir .. "\n0077\n64\n", p.stdout:read("a"))
      assert.exited(0, p:wait())
    end)

    it("user and group by name when root", function()
      if core.geteuid() ~= 0 then
        pending("needs root")
        return
      end
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "id -un; id -u; id -G", stdout = "pipe", user = "nobody" }
      local pw = core.getpwnam("nobody")
      local want = {}
      for _, g in ipairs(core.getgrouplist("nobody", pw.gid)) do want[#want + 1] = g end
      table.sort(want)
      local out = p.stdout:read("a")
      local got = {}
      local name, uid, groups = out:match("^(%S+)\n(%d+)\n([%d ]+)\n$")
      for g in groups:gmatch("%d+") do got[#got + 1] = tonumber(g) end
      table.sort(got)
      assert.same({ "nobody", pw.uid, want }, { name, tonumber(uid), got })
      assert.exited(0, p:wait())
    end)

    it("a bare uid with a passwd entry takes its gid and groups, not root's (hardening 4)", function()
      if core.geteuid() ~= 0 then
        pending("needs root")
        return
      end
      local pw = core.getpwnam("nobody")
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "id -u; id -g; id -G", stdout = "pipe", uid = pw.uid }
      local uid, gid, groups = p.stdout:read("a"):match("^(%d+)\n(%d+)\n([%d ]+)\n$")
      assert.equal(pw.uid, tonumber(uid))
      assert.equal(pw.gid, tonumber(gid))
      for g in groups:gmatch("%d+") do assert.are_not.equal(0, tonumber(g)) end
      assert.exited(0, p:wait())
      -- lrun's user= goes through the same lprocess.credentials
      assert.same({ uid = pw.uid, gid = pw.gid, groups = core.getgrouplist("nobody", pw.gid) },
        lp.credentials { user = "nobody" })
    end)
  end)

  describe("process groups and sessions", function()
    it("setsid and pgid = 0 make the child a group leader, p.pgid says so", function()
      local t = H.track(finally)
      local a = t:spawn { "sleep", "30", setsid = true }
      local b = t:spawn { "sleep", "30", pgid = 0 }
      local c = t:spawn { "sleep", "30", pgid = b.pid }
      local d = t:spawn { "sleep", "30" }
      assert.same({ a.pid, a.pid }, { a.pgid, H.stat(a.pid).session })
      assert.same({ b.pid, b.pid }, { b.pgid, H.stat(b.pid).pgrp })
      assert.same({ b.pid, b.pid }, { c.pgid, H.stat(c.pid).pgrp })
      assert.is_nil(d.pgid)
    end)

    it("pdeathsig: the child dies when its parent is SIGKILLed", function()
      local t = H.track(finally)
      local code = [[
        local lp = require "lprocess"
        local with = lp.spawn { "sleep", "60", pdeathsig = "KILL" }
        local without = lp.spawn { "sleep", "60" }
        io.write(with.pid, " ", without.pid, "\n") io.flush()
        lp.sleep(60)
      ]]
      local argv = H.lua(code)
      argv.stdout = "pipe"
      local parent = t:spawn(argv)
      local line = assert(H.read_line(parent.stdout, 30))
      local with, without = line:match("^(%d+) (%d+)$")
      with, without = tonumber(with), tonumber(without)
      t:add(with)
      t:add(without)
      assert.alive(with)
      parent:kill("KILL")
      assert.signaled("KILL", parent:wait())
      -- both are re-parented to us (a subreaper); only the pdeathsig one dies
      assert.signaled("KILL", H.wait_pid(with, 30))
      assert.equal(H.mypid, H.stat(without).ppid)
      assert.alive(without)
    end)
  end)

  describe("Process", function()
    it("wait records the status; lprocess.wait and reap record it on the object too", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "exit 5" }
      local st = p:wait()
      assert.exited(5, st)
      assert.equal(st, p.status)
      assert.equal(st, p:wait())
      local q = t:spawn { "sh", "-c", "exit 6" }
      local raw = lp.wait(q.pid)
      assert.exited(6, raw)
      assert.equal(raw, q.status)
      assert.equal(raw, q:wait())
      local r = t:spawn { "sh", "-c", "exit 7" }
      local fd = assert(core.pidfd_open(r.pid))
      assert.equal("r", core.poll({ [fd] = "r" }, 30)[fd])
      core.close(fd)
      local list = lp.reap()
      local found
      for _, s in ipairs(list) do if s.pid == r.pid then found = s end end
      assert.exited(7, found)
      assert.equal(found, r.status)
      assert.equal(found, r:poll())
    end)

    it("wait{timeout=} returns false, \"timed out\" while it runs, the status after", function()
      local t = H.track(finally)
      local p = t:spawn { "cat", stdin = "pipe" }
      local t0 = core.now()
      assert.same({ false, "timed out" }, { p:wait { timeout = 0.2 } })
      assert.is_true(core.now() - t0 >= 0.2)
      assert.is_false(p:poll())
      p.stdin:close()
      assert.exited(0, p:wait { timeout = 30 })
      assert.exited(0, p:poll())
      assert.has_error(function() p:wait { timeot = 1 } end, "wait: unknown option 'timeot'")
      -- with a pidfd of its own
      local q = t:spawn { "cat", stdin = "pipe", pidfd = true }
      assert.is_number(q.pidfd)
      assert.is_false((q:wait { timeout = 0.05 }))
      q.stdin:close()
      assert.exited(0, q:wait { timeout = 30 })
    end)

    it("kill takes 15, \"TERM\" or \"SIGTERM\" and is refused after the reap", function()
      local t = H.track(finally)
      for _, sig in ipairs { 15, "TERM", "SIGTERM" } do
        local p = t:spawn { "sleep", "30" }
        assert.is_true(p:kill(sig))
        assert.signaled("TERM", p:wait())
        local ok, msg, errno = p:kill("KILL")
        assert.is_nil(ok)
        assert.equal("kill " .. p.pid .. ": process already reaped", msg)
        assert.equal(core.errno.ESRCH, errno)
      end
      local p = t:spawn { "sleep", "30" }
      assert.is_true(p:kill())
      assert.signaled("TERM", p:wait())
      assert.has_error(function() t:spawn { "sleep", "30" }:kill("NOSUCH") end)
    end)

    it("terminate: TERM, then KILL after the grace for a child that ignores TERM", function()
      local t = H.track(finally)
      local argv = H.lua([[
        local core = require "lprocess.core"
        core.sigaction("TERM", "ignore")
        io.write("ready\n") io.flush()
        core.sleep(60)
      ]])
      argv.stdout = "pipe"
      local p = t:spawn(argv)
      assert.equal("ready", H.read_line(p.stdout, 30))
      local t0 = core.now()
      local st = p:terminate(0.3)
      assert.signaled("KILL", st)
      assert.is_true(core.now() - t0 >= 0.3)
      assert.equal(st, p:terminate(1))     -- already reaped: just the status
      local q = t:spawn { "sleep", "30" }
      assert.signaled("TERM", q:terminate(30))
    end)

    it("terminate signals the whole group when the child leads one", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "sleep 30 & echo $!; wait", setsid = true, stdout = "pipe" }
      local gc = tonumber(H.read_line(p.stdout, 30))
      t:add(gc)
      assert.signaled("TERM", p:terminate(30))
      assert.signaled("TERM", H.wait_pid(gc, 30))
    end)

    it("killpg signals the child's group, and refuses our own", function()
      local t = H.track(finally)
      local p = t:spawn { "sh", "-c", "sleep 30 & echo $!; wait", pgid = 0, stdout = "pipe" }
      local gc = tonumber(H.read_line(p.stdout, 30))
      t:add(gc)
      assert.is_true(p:killpg("USR1"))
      assert.signaled("USR1", p:wait())
      assert.signaled("USR1", H.wait_pid(gc, 30))
      local q = t:spawn { "sleep", "30" }            -- in our group
      local ok, msg, errno = q:killpg("KILL")
      assert.is_nil(ok)
      assert.matches("in our own process group", msg)
      assert.equal(core.errno.EPERM, errno)
      assert.alive(q.pid)
      q:kill("KILL")
      q:wait()
      assert.is_nil((q:killpg("KILL")))              -- reaped, no known group
    end)

    it("<close> on an error path leaves no process and no zombie", function()
      local pid, gc
      local ok, err = pcall(function()
        local p <close> = assert(lp.spawn { "sh", "-c", "sleep 30 & echo $!; wait", setsid = true,
          stdout = "pipe" })
        pid = p.pid
        gc = tonumber(H.read_line(p.stdout, 30))
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.is_nil(H.stat(pid))                     -- reaped: not even a zombie
      -- the group went too; the grandchild was re-parented to us and is reaped here
      assert.signaled("TERM", H.wait_pid(gc, 30))
      assert.zombiefree { pid, gc }
    end)

    it("<close> on a normal exit waits, even with an unread output pipe", function()
      local keep
      do
        local p <close> = assert(lp.spawn { "sh", "-c", "exit 3" })
        keep = p
      end
      assert.exited(3, keep.status)
      -- a child writing far more than a pipe holds to a pipe nobody reads must not
      -- hang the scope's end: run it in a child Lua with a deadline
      local res = lp.run { "lua5.4", "-e", [[
        local lp = require "lprocess"
        local keep
        do
          local p <close> = lp.spawn { "head", "-c", "10000000", "/dev/zero", stdout = "pipe" }
          keep = p
        end
        io.write(keep.status.how, " ", tostring(keep.status.signame))
      ]], env = H.lua_env(), timeout = 60 }
      assert.is_false(res.timed_out)
      assert.exited(0, res.status)
      assert.equal("signal PIPE", res.stdout)
    end)

    it("__gc never blocks; the pid is reaped by a later lprocess.wait", function()
      local t = H.track(finally)
      local r, w = assert(core.pipe())
      -- in a function of its own, so that no stack slot keeps the Process alive
      local pid = (function() return lp.spawn { "cat", fds = { [0] = r } }.pid end)()
      t:add(pid)
      core.close(r)
      local t0 = core.now()
      collectgarbage()
      collectgarbage()
      assert.is_true(core.now() - t0 < 5)
      assert.alive(pid)                              -- not killed, not waited for
      core.close(w)
      local fd = assert(core.pidfd_open(pid))
      core.poll({ [fd] = "r" }, 30)
      core.close(fd)
      assert.equal("Z", H.stat(pid).state)
      local q = t:spawn { "true" }
      lp.wait(q.pid)
      assert.is_nil(H.stat(pid))                     -- the orphan was collected too
    end)

    it("close_pipes closes every pipe and the pidfd", function()
      local t = H.track(finally)
      local p = t:spawn { "cat", stdin = "pipe", stdout = "pipe", pidfd = true }
      local fds = { core.fileno(p.stdin), core.fileno(p.stdout), p.pidfd }
      p:close_pipes()
      assert.is_nil(p.pidfd)
      local open = H.own_fds()
      for _, fd in ipairs(fds) do assert.is_nil(open[fd]) end
      assert.exited(0, p:wait())
    end)
  end)

  describe("options", function()
    it("raise on unknown keys and wrong types", function()
      assert.has_error(function() lp.spawn { "true", bogus = 1 } end, "spawn: unknown option 'bogus'")
      assert.has_error(function() lp.spawn { "true", timeout = 1 } end, "spawn: unknown option 'timeout'")
      assert.has_error(function() lp.spawn "true" end, "spawn: expected a table")
      assert.has_error(function() lp.spawn {} end, "spawn: no command")
      assert.has_error(function() lp.spawn { "true", cwd = 1 } end)
      assert.has_error(function() lp.spawn { "true", method = "clone" } end)
      assert.has_error(function() lp.spawn { "true", pdeathsig = "NOPE" } end)
    end)

    it("method = \"fork\" behaves the same through the facade", function()
      local t = H.track(finally)
      local outs = {}
      for _, m in ipairs { "vfork", "fork" } do
        local p = t:spawn { "sh", "-c", "echo $X; pwd; ls /proc/self/fd | wc -l", method = m,
          setenv = { X = "x" }, cwd = "/", stdout = "pipe", stderr = "null" }
        outs[m] = { p.stdout:read("a"), H.describe(p:wait()) }
      end
      assert.same(outs.vfork, outs.fork)
    end)
  end)
end)

describe("lprocess.write", function()
  it("makes a reader that has gone EPIPE, not SIGPIPE, and leaves SIGPIPE as it was", function()
    local r, w = assert(H.core.pipe())
    H.core.close(r)
    local before = H.core.sigaction("PIPE")
    local n, err, errno = lp.write(w, "x")
    H.core.close(w)
    assert.is_nil(n)
    assert.matches("Broken pipe", err)
    assert.equal(H.core.errno.EPIPE, errno)
    assert.equal(before, H.core.sigaction("PIPE"))
  end)
end)
