-- lprocess.core: every primitive against the real kernel -- real processes, real
-- signals, /proc. Each test names what would make it fail. Tests tagged #novalgrind
-- see valgrind's emulation rather than the kernel (its own signal mask, no pidfd, a
-- nofile limit it keeps for itself): `make valgrind` leaves them out.
local H = require "helper"
local core = H.core
local lp = H.lp

local function sorted(t)
  table.sort(t)
  return t
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local zombie_set, new_zombies = H.zombie_set, H.new_zombies

-- fdinfo flags (octal) of one of our descriptors
local function fd_flags(fd)
  local s = H.slurp("/proc/self/fdinfo/" .. fd)
  return tonumber(s:match("flags:%s*(%d+)"), 8)
end
local O_CLOEXEC, O_NONBLOCK, O_APPEND = 8 ^ 6 * 2 // 1, 8 ^ 3 * 4 // 1, 8 ^ 3 * 2 // 1

-- Run argv through raw core.spawn with stdout on a pipe; returns output, status.
local function capture(opts)
  local r, w = assert(core.pipe())
  opts.fds = opts.fds or {}
  opts.fds[1] = w
  local pid, err, errno = core.spawn(opts)
  core.close(w)
  if not pid then
    core.close(r)
    return nil, err, errno
  end
  local out = {}
  while true do
    local s = core.read(r)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  core.close(r)
  return table.concat(out), lp.wait(pid)
end

-- A cat whose stdin and stdout are pipes, that has echoed a line back: past the
-- dynamic loader's startup, so its descriptor table holds what it will keep.
local function ready_cat(t, opts)
  local ir, iw = assert(core.pipe())
  local or_, ow = assert(core.pipe())
  opts.argv = { "cat" }
  opts.fds = opts.fds or {}
  opts.fds[0], opts.fds[1] = ir, ow
  local pid = t:cspawn(opts)
  core.close(ir)
  core.close(ow)
  t:defer(function() core.close(iw); core.close(or_) end)
  assert.equal(2, core.write(iw, "x\n"))
  assert.equal("r", core.poll({ [or_] = "r" }, 30)[or_])
  assert.equal("x\n", core.read(or_))
  return pid
end

describe("lprocess.core", function()
  describe("spawn", function()
    for _, method in ipairs { "vfork", "fork" } do
      describe("(method " .. method .. ")", function()
        it("runs a program and reports its exit code", function()
          local out, st = capture { argv = { "sh", "-c", "echo hello; exit 3" }, method = method }
          assert.equal("hello\n", out)
          assert.exited(3, st)
        end)

        it("treats a program that really exits 127 as a normal exit 127", function()
          local before = zombie_set()
          local pid = assert(core.spawn { argv = { "sh", "-c", "exit 127" }, method = method })
          assert.exited(127, H.wait_pid(pid))
          assert.same({}, new_zombies(before))
        end)

        describe("reports exec failure as an error, with the child reaped", function()
          local dir
          setup(function() dir = H.tmpdir() end)
          teardown(function() H.rm_rf(dir) end)

          local function fails(errname, pattern, opts)
            opts.method = method
            local before = zombie_set()
            local pid, msg, errno = core.spawn(opts)
            assert.oserror(errname, pid, msg, errno)
            assert.matches(pattern, msg)
            -- the failed child is reaped before spawn returns: nothing new under us
            assert.same({}, new_zombies(before))
            for _, k in ipairs(H.children_of()) do
              local st = H.stat(k)
              assert.is_false(st and st.comm == "lua5.4" and not before[k] and st.state == "Z")
            end
          end

          it("ENOENT for a missing path", function()
            fails("ENOENT", "^/nonexistent/prog: No such file or directory$",
              { argv = { "/nonexistent/prog" } })
          end)

          it("ENOENT for a name not found in PATH", function()
            fails("ENOENT", "^no%-such%-program%-xyz: No such file", { argv = { "no-such-program-xyz" } })
          end)

          it("ENOENT when PATH comes from env and lacks the program", function()
            fails("ENOENT", "^sh: No such file", { argv = { "sh", "-c", "true" }, env = { "PATH=/nonexistent" } })
          end)

          it("EACCES for a file without execute permission", function()
            local f = H.spit(dir .. "/noexec", "#!/bin/sh\necho hi\n", 420)  -- 0644
            fails("EACCES", "noexec: Permission denied$", { argv = { f } })
          end)

          it("ENOEXEC for an executable file in no known format", function()
            local f = H.spit(dir .. "/garbage", "\0\1\2\3 not a program\n", 493)  -- 0755
            fails("ENOEXEC", "garbage: Exec format error$", { argv = { f } })
          end)

          it("a bad cwd", function()
            fails("ENOENT", "^spawn true: chdir /nope: No such file or directory$",
              { argv = { "true" }, cwd = "/nope" })
          end)

          it("a descriptor in fds that cannot be mapped", function()
            fails("EBADF", "^spawn true: dup2 fd 999 to fd 5: Bad file descriptor$",
              { argv = { "true" }, fds = { [5] = 999 } })
            fails("EBADF", "^spawn true: dup2 fd 9999 to fd 7: Bad file descriptor$",
              { argv = { "true" }, fds = { [7] = 9999 } })
          end)

          it("a limit that cannot be set", function()
            local _, hard = core.getrlimit("nofile")
            if H.core.getuid() == 0 then
              -- root may raise the hard limit; above the kernel's nr_open it still fails
              hard = tonumber(H.slurp("/proc/sys/fs/nr_open"))
            end
            fails("EPERM", "^spawn true: setrlimit nofile: ",
              { argv = { "true" }, limits = { nofile = { 16, hard + 1 } } })
          end)
        end)

        it("leaves the child only 0, 1, 2 and what fds maps (close_fds)", function()
          local t = H.track(finally)
          -- inheritable descriptors at high numbers, as a careless parent would leave
          local r, w = assert(core.pipe())
          t:defer(function() core.close(r); core.close(w); core.close(210); core.close(211) end)
          assert(core.dup2(r, 210))
          assert(core.dup2(w, 211))
          assert.equal(0, fd_flags(211) & O_CLOEXEC)
          local pid = ready_cat(t, { fds = { [5] = w }, method = method })
          assert.same({ 0, 1, 2, 5 }, H.fds_of(pid))
          -- and the check can fail: without close_fds the high descriptors do leak
          local leaky = ready_cat(t, { close_fds = false, method = method })
          local fds = set_of(H.fds_of(leaky))
          assert.is_true(fds[210] and fds[211])
        end)

        it("starts with an empty signal mask and default dispositions", function()
          local t = H.track(finally)
          local oldmask = core.sigmask("block", { "USR1", "USR2", "TERM" })
          local oldhup = core.sigaction("HUP", "ignore")
          local oldint = core.sigaction("INT", "ignore")
          t:defer(function()
            core.sigmask("set", oldmask)
            core.sigaction("HUP", oldhup == "ignore" and "ignore" or "default")
            core.sigaction("INT", oldint == "ignore" and "ignore" or "default")
          end)
          -- a watcher blocks its signals here
          local watch <close> = core.sigwatch { "CHLD", "WINCH" }  -- luacheck: ignore
          local mine = H.status_fields(H.mypid)
          assert.is_true(H.sigset(mine.SigBlk)[core.signals.USR1])
          assert.is_true(H.sigset(mine.SigBlk)[core.signals.CHLD])
          assert.is_true(H.sigset(mine.SigIgn)[core.signals.HUP])
          local pid = t:cspawn { argv = { "sleep", "30" }, method = method }
          local st = H.status_fields(pid)
          assert.equal(0, tonumber(st.SigBlk, 16))
          assert.is_nil(H.sigset(st.SigIgn)[core.signals.HUP])
          assert.is_nil(H.sigset(st.SigIgn)[core.signals.INT])
        end)

        it("maps descriptors that swap places", function()
          local t = H.track(finally)
          local ra, wa = assert(core.pipe())
          local rb, wb = assert(core.pipe())
          -- put the write ends at 300 and 301 and ask for them crossed over
          assert(core.dup2(wa, 300))
          assert(core.dup2(wb, 301))
          t:defer(function()
            for _, fd in ipairs { ra, wa, rb, wb, 300, 301 } do core.close(fd) end
          end)
          local code = "local c = require 'lprocess.core' c.write(300, 'to300') c.write(301, 'to301')"
            .. " c.write(3, 'to3') c.write(4, 'to4')"
          local pid = t:cspawn { argv = H.lua(code), method = method,
            fds = { [300] = 301, [301] = 300, [3] = wb, [4] = wa }, env = H.lua_env() }
          assert.exited(0, H.wait_pid(pid))
          core.close(wa); core.close(wb); core.close(300); core.close(301)
          local function all(fd)
            local s = {}
            repeat local x = core.read(fd) s[#s + 1] = x until not x or x == ""
            return table.concat(s)
          end
          -- child 300 was parent 301 (pipe b), child 301 was parent 300 (pipe a)
          assert.equal("to301to4", all(ra))
          assert.equal("to300to3", all(rb))
        end)

        it("honours path, argv[0], env, cwd and umask", function()
          local out, st = capture { argv = { "mysh", "-c", 'echo "$0 $FOO $(pwd) $(umask)"' },
            path = "/bin/sh", env = { FOO = "bar", PATH = "/usr/bin:/bin" }, cwd = "/tmp",
            umask = 23, method = method }  -- 027
          assert.exited(0, st)
          assert.equal("mysh bar /tmp 0027\n", out)
          out = capture { argv = { "sh", "-c", "echo $A$B" }, env = { "A=1", "B=2", "PATH=/bin" },
            method = method }
          assert.equal("12\n", out)
        end)

        it("sets limits #novalgrind", function()
          local out, st = capture { argv = { "sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -c" },
            limits = { nofile = { 100, 200 }, core = 0 }, method = method }
          assert.exited(0, st)
          assert.equal("100\n200\n0\n", out)
          -- (no LD_PRELOAD: an ASan runtime preloaded there zeroes RLIMIT_CORE at start)
          out = capture { argv = { "sh", "-c", "ulimit -c" }, limits = { core = "unlimited" },
            method = method, env = H.lua_env { LD_PRELOAD = false } }
          assert.equal("unlimited\n", out)
        end)

        it("starts a session (setsid) or a process group (pgid)", function()
          local t = H.track(finally)
          local mysid = H.stat(H.mypid).session
          local a = t:cspawn { argv = { "sleep", "30" }, setsid = true, method = method }
          local sa = H.stat(a)
          assert.same({ a, a }, { sa.session, sa.pgrp })
          local b = t:cspawn { argv = { "sleep", "30" }, pgid = 0, method = method }
          local sb = H.stat(b)
          assert.same({ mysid, b }, { sb.session, sb.pgrp })
          local c = t:cspawn { argv = { "sleep", "30" }, pgid = b, method = method }
          assert.equal(b, H.stat(c).pgrp)
          local d = t:cspawn { argv = { "sleep", "30" }, method = method }
          assert.equal(H.stat(H.mypid).pgrp, H.stat(d).pgrp)
        end)

        it("changes user and group when root", function()
          if core.geteuid() ~= 0 then
            pending("needs root")
            return
          end
          local out, st = capture { argv = { "sh", "-c", "id -u; id -g; id -G" },
            uid = 65534, gid = 65534, groups = { 65534 }, method = method }
          assert.exited(0, st)
          assert.equal("65534\n65534\n65534\n", out)
        end)

        it("returns a pidfd when asked #novalgrind", function()
          local t = H.track(finally)
          local r, w = assert(core.pipe())
          t:defer(function() core.close(r) end)
          local pid, pidfd = t:cspawn { argv = { "cat" }, fds = { [0] = r }, pidfd = true,
            method = method }
          assert.is_number(pidfd)
          assert.same({}, core.poll({ [pidfd] = "r" }, 0))
          core.close(w)
          assert.equal("r", core.poll({ [pidfd] = "r" }, 10)[pidfd])
          assert.exited(0, lp.wait(pid))
        end)
      end)
    end

    describe("signal state and terminal of the new program", function()
      local S = core.signals
      local function set_of_sigs(list)
        local r = {}
        for _, sig in ipairs(list) do r[type(sig) == "string" and S[sig] or sig] = true end
        return r
      end

      -- Our own state changed for one test: USR1 blocked, HUP ignored.
      local function disturb(t)
        local oldmask = core.sigmask("block", { "USR1" })
        local oldhup = core.sigaction("HUP", "ignore")
        t:defer(function()
          core.sigmask("set", oldmask)
          core.sigaction("HUP", oldhup == "ignore" and "ignore" or "default")
        end)
      end

      for _, method in ipairs { "vfork", "fork" } do
        it("sigmask and sigignore are the mask and ignored set it starts with (" .. method .. ")",
          function()
            local t = H.track(finally)
            disturb(t)
            local pid = t:cspawn { argv = { "sleep", "30" }, method = method,
              sigmask = { "TERM", "SIGUSR2", 10 }, sigignore = { "INT", "PIPE" } }
            local st = H.status_fields(pid)
            assert.same(set_of_sigs { "TERM", "USR2", "USR1" }, H.sigset(st.SigBlk))
            assert.same(set_of_sigs { "INT", "PIPE" }, H.sigset(st.SigIgn))
            -- without them: empty mask, nothing ignored, whatever we had
            local q = t:cspawn { argv = { "sleep", "30" }, method = method }
            local sq = H.status_fields(q)
            assert.same({}, H.sigset(sq.SigBlk))
            assert.same({}, H.sigset(sq.SigIgn))
          end)
      end

      it("sigstate gives our mask and ignored set, which spawn hands on unchanged #novalgrind",
        function()
        local t = H.track(finally)
        disturb(t)
        local mask, ignored = core.sigstate()
        local mine = H.status_fields(H.mypid)
        -- 32 and 33 are the C library's own: sigaction refuses them, spawn resets them
        local function proc_set(hex)
          local set = H.sigset(hex)
          set[32], set[33] = nil, nil
          return set
        end
        assert.same(proc_set(mine.SigBlk), set_of_sigs(mask))
        assert.same(proc_set(mine.SigIgn), set_of_sigs(ignored))
        assert.is_true(set_of_sigs(mask)[S.USR1])
        assert.is_true(set_of_sigs(ignored)[S.HUP])
        local pid = t:cspawn { argv = { "sleep", "30" }, sigmask = mask, sigignore = ignored }
        local st = H.status_fields(pid)
        assert.same(proc_set(mine.SigBlk), H.sigset(st.SigBlk))
        assert.same(proc_set(mine.SigIgn), H.sigset(st.SigIgn))
      end)

      it("raises on a bad signal, on ignoring KILL or STOP, on foreground without a group",
        function()
          local bad = {
            { { argv = { "true" }, sigmask = { "NOPE" } }, "unknown signal 'NOPE'" },
            { { argv = { "true" }, sigignore = { "KILL" } }, "KILL and STOP cannot be ignored" },
            { { argv = { "true" }, sigignore = "STOP" }, "KILL and STOP cannot be ignored" },
            { { argv = { "true" }, foreground = 0 }, "foreground needs setsid or pgid" },
            { { argv = { "true" }, foreground = -1, pgid = 0 }, "foreground: bad descriptor" },
            { { argv = { "true" }, foreground = "x", pgid = 0 }, "must be an integer" },
          }
          for i, c in ipairs(bad) do
            local ok, err = pcall(core.spawn, c[1])
            assert.is_false(ok, "case " .. i)
            assert.truthy(tostring(err):find(c[2], 1, true), "case " .. i .. ": " .. tostring(err))
          end
        end)

      it("foreground on a descriptor that is no terminal fails, naming the step", function()
        local r, w = assert(core.pipe())
        finally(function() core.close(r); core.close(w) end)
        local z = zombie_set()
        local pid, err, errno = core.spawn { argv = { "true" }, pgid = 0, foreground = r }
        assert.oserror("ENOTTY", pid, err, errno)
        assert.equal("spawn true: tcsetpgrp " .. r .. ": " .. core.strerror(errno), err)
        assert.same({}, new_zombies(z))
      end)

      -- A Lua child on a pseudo-terminal made by python3's pty module (core has no
      -- posix_openpt): tpgid in /proc/PID/stat is the terminal's foreground group.
      -- With ctty, the Lua child leads a session whose controlling terminal it is.
      local function on_pty(code, ctty)
        local probe = io.popen("command -v python3")
        local py = probe:read("l")
        probe:close()
        if not py then return nil end
        local lua = H.lua(code)
        local script = "import os, pty, sys\n"
          .. "m, s = pty.openpty()\n"
          .. "os.set_inheritable(s, True)\n"
          .. "pid = os.fork()\n"
          .. "if pid == 0:\n"
          .. "    os.close(m)\n"
          .. (ctty and "    import fcntl, termios\n    os.setsid()\n"
            .. "    fcntl.ioctl(s, termios.TIOCSCTTY, 0)\n" or "")
          .. "    os.environ['PTY'] = str(s)\n"
          .. "    os.execvp(sys.argv[1], sys.argv[1:])\n"
          .. "os.close(s)\n"
          .. "_, st = os.waitpid(pid, 0)\n"
          .. "sys.exit(os.waitstatus_to_exitcode(st))\n"
        local argv = { py, "-c", script }
        for _, a in ipairs(lua) do argv[#argv + 1] = a end
        return capture { argv = argv, env = H.lua_env() }
      end

      for _, how in ipairs { "pgid", "setsid" } do
        it("foreground = fd makes its group the terminal's foreground group (" .. how .. ")",
          function()
            local out, st = on_pty([[
              local core = require "lprocess.core"
              local tty = tonumber(os.getenv("PTY"))
              local r, w = core.pipe()
              local opts = { argv = { "sh", "-c", "cat /proc/$$/stat" }, fds = { [1] = w },
                foreground = tty, ]] .. (how == "pgid" and "pgid = 0" or "setsid = true") .. [[ }
              local pid, err = core.spawn(opts)
              if not pid then print("ERR " .. err) os.exit(1) end
              core.close(w)
              local stat = core.read(r)
              core.wait(pid)
              local f = {}
              for x in stat:match("%) (.*)"):gmatch("%S+") do f[#f + 1] = x end
              -- state ppid pgrp session tty_nr tpgid
              print(pid, f[3], f[4], f[5] ~= "0", f[6], core.getpgid(0))
            ]], how == "pgid")
            if out == nil then
              pending("python3 is not available to make a pseudo-terminal")
              return
            end
            assert.exited(0, st, out)
            local pid, pgrp, sid, has_tty, tpgid, ours = out:match(
              "^(%d+)\t(%d+)\t(%d+)\t(%a+)\t(%-?%d+)\t(%d+)\n$")
            assert.truthy(pid, out)
            assert.equal(pid, pgrp)
            assert.equal(pid, tpgid)
            assert.equal("true", has_tty)
            assert.not_equal(ours, tpgid)
            if how == "setsid" then assert.equal(pid, sid) end
          end)
      end
    end)

    it("gives the same results with method = \"fork\" and \"vfork\"", function()
      local dir = H.tmpdir()
      finally(function() H.rm_rf(dir) end)
      local cases = {
        { argv = { "sh", "-c", 'echo "$0 $X $(pwd) $(umask) $(ulimit -n)"; exit 5' },
          env = { X = "y", PATH = "/bin:/usr/bin" }, cwd = dir, umask = 63,
          limits = { nofile = 77 } },
        { argv = { "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '" }, fds = { [6] = 2 } },
        { argv = { "sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status" } },
        { argv = { "/nonexistent" } },
        { argv = { "true" }, cwd = dir .. "/missing" },
        { argv = { "true" }, fds = { [4] = 4242 } },
      }
      for i, c in ipairs(cases) do
        local res = {}
        for _, m in ipairs { "vfork", "fork" } do
          local copy = {}
          for k, v in pairs(c) do copy[k] = v end
          copy.fds = {}
          for k, v in pairs(c.fds or {}) do copy.fds[k] = v end
          copy.method = m
          local out, st, errno = capture(copy)
          if type(st) == "table" then st = H.describe(st) end
          res[m] = { out, st, errno }
        end
        assert.same(res.vfork, res.fork, "case " .. i)
      end
    end)

    describe("checks its options", function()
      it("raises on unknown keys", function()
        assert.has_error(function() core.spawn { argv = { "true" }, bogus = 1 } end,
          "spawn: unknown option 'bogus'")
      end)

      it("raises on wrong types", function()
        local bad = {
          { argv = "true" }, { argv = {} }, { argv = { 1 } }, { argv = { "true" }, cwd = 5 },
          { argv = { "true" }, env = "PATH=/bin" }, { argv = { "true" }, fds = { a = 1 } },
          { argv = { "true" }, fds = 3 }, { argv = { "true" }, limits = { bogus = 1 } },
          { argv = { "true" }, limits = { nofile = -1 } }, { argv = { "true" }, method = "posix" },
          { argv = { "true" }, pdeathsig = "NOPE" }, { argv = { "true" }, pgid = "x" },
          { argv = { "true" }, umask = "x" }, { argv = { "true" }, env = { X = {} } },
        }
        for i, opts in ipairs(bad) do
          local ok, err = pcall(core.spawn, opts)
          assert.is_false(ok, "case " .. i)
          assert.is_string(err)
        end
        assert.has_error(function() core.spawn("true") end)
        assert.has_error(function() core.wait(1, { hang = true }) end, "wait: unknown option 'hang'")
        assert.has_error(function() core.pipe { nonblocking = true } end,
          "pipe: unknown option 'nonblocking'")
        assert.has_error(function() core.sigwatch({ "USR1" }, { pipe = true }) end,
          "sigwatch: unknown option 'pipe'")
      end)
    end)
  end)

  describe("fork, exec and _exit", function()
    it("fork returns 0 in the child and the pid in the parent", function()
      local r, w = assert(core.pipe())
      local pid = assert(core.fork())
      if pid == 0 then
        core.write(w, tostring(core.getpid()))
        core._exit(7)
      end
      core.close(w)
      local said = core.read(r)
      core.close(r)
      assert.equal(tostring(pid), said)
      assert.exited(7, H.wait_pid(pid))
    end)

    it("exec replaces the process; _exit(true) is 0, _exit(false) is 1", function()
      local code = [[
        local core = require "lprocess.core"
        local pid = core.fork()
        if pid == 0 then core.exec("sh", { "sh", "-c", "exit $N" }, { N = "9", PATH = "/bin" }) core._exit(99) end
        local a = core.wait(pid)
        pid = core.fork()
        if pid == 0 then core._exit(true) end
        local b = core.wait(pid)
        pid = core.fork()
        if pid == 0 then core._exit(false) end
        local c = core.wait(pid)
        io.write(a.code, " ", b.code, " ", c.code)
      ]]
      local out, st = capture { argv = H.lua(code), env = H.lua_env() }
      assert.exited(0, st)
      assert.equal("9 0 1", out)
    end)

    it("exec returns nil, message, errno when it fails", function()
      assert.oserror("ENOENT", core.exec("/nonexistent/prog", { "prog" }))
      assert.oserror("ENOENT", core.exec("no-such-program-xyz", { "x" }, { "PATH=/bin" }))
      local pid, msg = core.exec("/nonexistent/prog", { "prog" })
      assert.is_nil(pid)
      assert.equal("/nonexistent/prog: No such file or directory", msg)
    end)
  end)

  describe("wait", function()
    it("reports exit, signal, stop and continue", function()
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sleep", "30" } }
      assert.is_false(core.wait(pid, { nohang = true }))
      assert(core.kill(pid, "STOP"))
      local st = core.wait(pid, { untraced = true })
      assert.same({ pid, "stop", 19, "STOP" }, { st.pid, st.how, st.signal, st.signame })
      assert(core.kill(pid, "CONT"))
      st = core.wait(pid, { continued = true })
      assert.same({ pid, "continue" }, { st.pid, st.how })
      assert(core.kill(pid, "KILL"))
      st = core.wait(pid)
      assert.signaled("KILL", st)
      assert.same({ 9, "KILL", false }, { st.signal, st.signame, st.core })
      assert.is_nil(st.code)
      local _, st2 = capture { argv = { "sh", "-c", "exit 42" } }
      assert.exited(42, st2)
      assert.is_nil(st2.signal)
    end)

    it("reports a core dump from a child that aborts under ulimit -c unlimited", function()
      local pattern = H.slurp("/proc/sys/kernel/core_pattern") or ""
      if pattern:sub(1, 1) == "|" then
        pending("core_pattern pipes cores to a handler (" .. pattern:gsub("%s+$", "")
          .. "): whether a core is written is up to it")
        return
      end
      local dir = H.tmpdir()
      finally(function() H.rm_rf(dir) end)
      local pid = assert(core.spawn { argv = { "sh", "-c", "ulimit -c unlimited; kill -ABRT $$" },
        cwd = dir })
      local st = H.wait_pid(pid)
      assert.signaled("ABRT", st)
      assert.is_true(st.core)
    end)

    it("reports rusage; maxrss of a child touching 50 MB is at least 50000 KiB", function()
      local pid = assert(core.spawn { argv = H.lua("local s = string.rep('x', 50 * 1024 * 1024) "
        .. "local t = os.clock() while os.clock() - t < 0.05 do end"), env = H.lua_env() })
      local st = H.wait_pid(pid)
      assert.exited(0, st)
      local ru = st.rusage
      assert.is_true(ru.maxrss >= 50000, "maxrss " .. ru.maxrss)
      assert.is_true(ru.utime + ru.stime > 0)
      assert.is_true(ru.minflt > 12000, "minflt " .. ru.minflt)
      for _, k in ipairs { "majflt", "nvcsw", "nivcsw" } do
        assert.is_true(math.type(ru[k]) == "integer" and ru[k] >= 0, k)
      end
    end)

    it("builds rusage on first access: the same table every time, and pairs lists it", function()
      local pid = assert(core.spawn { argv = { "/bin/true" } })
      local st = H.wait_pid(pid)
      assert.is_nil(rawget(st, "rusage"))      -- not built yet
      assert.is_nil(st.signal)                 -- absent keys stay nil
      local keys = {}
      for k, v in pairs(st) do keys[#keys + 1] = k .. "=" .. type(v) end
      table.sort(keys)
      assert.are.same({ "code=number", "core=boolean", "how=string", "pid=number",
        "rusage=table" }, keys)
      local ru = rawget(st, "rusage")
      assert.are.equal(ru, st.rusage)
      assert.is_true(ru.maxrss > 0)
    end)

    it("fails with ECHILD for a process that is not our child", function()
      assert.oserror("ECHILD", core.wait(1))
      assert.oserror("ECHILD", core.wait(1, { nohang = true }))
    end)
  end)

  describe("reap", function()
    it("returns an empty array when nothing has ended, and honours max #novalgrind", function()
      local t = H.track(finally)
      lp.reap()
      local sleeper = t:cspawn { argv = { "sleep", "30" } }
      assert.same({}, core.reap())
      assert.is_true(H.alive(sleeper))
      local pids = {}
      for i = 1, 3 do pids[i] = t:cspawn { argv = { "true" }, pidfd = false } end
      for _, pid in ipairs(pids) do
        local fd = core.pidfd_open(pid)
        core.poll({ [fd] = "r" }, 10)
        core.close(fd)
      end
      local first = core.reap(1)
      assert.equal(1, #first)
      local got = {}
      for _, st in ipairs(first) do got[st.pid] = st end
      for _, st in ipairs(lp.reap()) do got[st.pid] = st end
      for _, pid in ipairs(pids) do assert.exited(0, got[pid]) end
      assert.zombiefree(pids)
    end)

    local N = 500

    -- N children blocked on one pipe: closing its write end ends them all at once.
    local function herd(t, opts)
      local r, w = assert(core.pipe())
      local null = assert(core.open("/dev/null", "w"))
      local pids, pidfds = {}, {}
      for i = 1, N do
        local o = { argv = { "cat" }, fds = { [0] = r, [1] = null } }
        for k, v in pairs(opts or {}) do o[k] = v end
        pids[i], pidfds[i] = t:cspawn(o)
      end
      core.close(r)
      core.close(null)
      return pids, pidfds, w
    end

    it(N .. " children exiting at once are all reaped from sigwatch wake-ups", function()
      local t = H.track(finally)
      local watch <close> = assert(core.sigwatch { "CHLD" })
      local pids, _, w = herd(t)
      local mine = set_of(pids)
      core.close(w)
      local got, wakeups = 0, 0
      local deadline = core.now() + 60
      while got < N and core.now() < deadline do
        local ready = core.poll({ [watch:fd()] = "r" }, deadline - core.now())
        if ready[watch:fd()] then
          wakeups = wakeups + 1
          assert.is_true(#watch:read() >= 1)
          for _, st in ipairs(lp.reap()) do
            if mine[st.pid] then
              assert.exited(0, st)
              got = got + 1
            end
          end
        end
      end
      assert.equal(N, got)
      assert.is_true(wakeups <= N)
      assert.zombiefree(pids)
    end)

    it("drains " .. N .. " ended children in one reap() call #novalgrind", function()
      local t = H.track(finally)
      local pids, pidfds, w = herd(t, { pidfd = true })
      core.close(w)
      -- wait, event-driven, until every one of them is a zombie
      local waiting = {}
      for _, fd in ipairs(pidfds) do waiting[fd] = "r" end
      local deadline = core.now() + 60
      while next(waiting) and core.now() < deadline do
        for fd in pairs(core.poll(waiting, deadline - core.now())) do waiting[fd] = nil end
      end
      assert.is_nil(next(waiting))
      assert.equal(N, #H.zombies_of(nil, set_of(pids)))
      local got = {}
      for _, st in ipairs(lp.reap()) do got[st.pid] = st end
      for _, pid in ipairs(pids) do assert.exited(0, got[pid]) end
      assert.zombiefree(pids)
    end)
  end)

  describe("kill and killpg", function()
    it("takes a signal as 15, \"TERM\" or \"SIGTERM\"", function()
      local t = H.track(finally)
      for _, sig in ipairs { 15, "TERM", "SIGTERM", "sigterm" } do
        local pid = t:cspawn { argv = { "sleep", "30" } }
        assert.is_true(core.kill(pid, sig))
        assert.signaled("TERM", H.wait_pid(pid))
      end
      local pid = t:cspawn { argv = { "sleep", "30" } }
      assert.is_true(core.kill(pid))   -- TERM by default
      assert.signaled(15, H.wait_pid(pid))
    end)

    it("fails with ESRCH for no such process and raises on a bad signal", function()
      assert.oserror("ESRCH", core.kill(2 ^ 30 // 1, 0))
      assert.has_error(function() core.kill(H.mypid, "NOPE") end)
      assert.has_error(function() core.kill(H.mypid, {}) end)
      assert.has_error(function() core.kill(H.mypid, 999) end)
    end)

    it("killpg signals every member of a group and refuses groups 0 and 1", function()
      local t = H.track(finally)
      local a = t:cspawn { argv = { "sleep", "30" }, pgid = 0 }
      local b = t:cspawn { argv = { "sleep", "30" }, pgid = a }
      assert.is_true(core.killpg(a, "USR1"))
      assert.signaled("USR1", H.wait_pid(a))
      assert.signaled("USR1", H.wait_pid(b))
      assert.has_error(function() core.killpg(1, "TERM") end)
      assert.has_error(function() core.killpg(0, "TERM") end)
      assert.oserror("ESRCH", core.killpg(2 ^ 30 // 1, 0))
    end)
  end)

  describe("pidfd", function()
    it("pidfd_open and pidfd_send_signal", function()
      if not core.features.pidfd then
        pending("no pidfd on this kernel")
        return
      end
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sleep", "30" } }
      local fd = assert(core.pidfd_open(pid))
      t:defer(function() core.close(fd) end)
      assert.is_true(fd_flags(fd) & O_CLOEXEC ~= 0)
      assert.same({}, core.poll({ [fd] = "r" }, 0.05))
      assert.is_true(core.pidfd_send_signal(fd, "SIGUSR2"))
      assert.equal("r", core.poll({ [fd] = "r" }, 10)[fd])
      assert.signaled("USR2", lp.wait(pid))
      -- the pidfd still names the reaped process: signalling it is refused, not misdirected
      assert.oserror("ESRCH", core.pidfd_send_signal(fd, 0))
      assert.oserror("ESRCH", core.pidfd_open(2 ^ 30 // 1))
    end)
  end)

  describe("sigwatch", function()
    for _, variant in ipairs { "signalfd", "selfpipe" } do
      local opts = variant == "selfpipe" and { selfpipe = true } or nil

      it("delivers signals on a descriptor (" .. variant .. ") #novalgrind", function()
        local w = assert(core.sigwatch({ "USR1", "SIGUSR2" }, opts))
        finally(function() w:close() end)
        assert.matches(variant == "selfpipe" and "self%-pipe" or "^sigwatch %(fd %d+%)$", tostring(w))
        assert.same({}, w:read())
        local mine = H.status_fields(H.mypid)
        if variant == "signalfd" then
          assert.is_true(H.sigset(mine.SigBlk)[core.signals.USR1])
        else
          assert.is_true(H.sigset(mine.SigCgt)[core.signals.USR1])
        end
        assert.is_true(core.raise("USR1"))
        assert.equal("r", core.poll({ [w:fd()] = "r" }, 5)[w:fd()])
        assert.same({ core.signals.USR1 }, w:read())
        assert.same({}, w:read())
        -- from another process, too
        local pid = assert(core.spawn { argv = { "kill", "-USR2", tostring(H.mypid) } })
        assert.exited(0, H.wait_pid(pid))
        assert.equal("r", core.poll({ [w:fd()] = "r" }, 5)[w:fd()])
        local got = w:read()
        assert.same({ core.signals.USR2 }, got)
        w:close()
        mine = H.status_fields(H.mypid)
        assert.is_nil(H.sigset(mine.SigBlk)[core.signals.USR1])
        assert.is_nil(H.sigset(mine.SigCgt)[core.signals.USR1])
        assert.has_error(function() w:read() end, "sigwatch is closed")
        w:close()   -- twice is harmless
      end)

      it("wakes on SIGCHLD when a child ends (" .. variant .. ")", function()
        local w <close> = assert(core.sigwatch("CHLD", opts))
        local pid = assert(core.spawn { argv = { "true" } })
        assert.equal("r", core.poll({ [w:fd()] = "r" }, 10)[w:fd()])
        assert.same({ core.signals.CHLD }, w:read())
        assert.exited(0, lp.wait(pid))
      end)
    end

    it("unblocks on <close>, and only when the last watcher of a signal closes", function()
      do
        local a <close> = assert(core.sigwatch { "USR1" })  -- luacheck: ignore
        do
          local b <close> = assert(core.sigwatch { "USR1" })  -- luacheck: ignore
        end
        assert.is_true(H.sigset(H.status_fields(H.mypid).SigBlk)[core.signals.USR1])
      end
      assert.is_nil(H.sigset(H.status_fields(H.mypid).SigBlk)[core.signals.USR1])
    end)

    it("refuses KILL, STOP, unknown signals and a second self-pipe for one signal", function()
      assert.has_error(function() core.sigwatch { "KILL" } end)
      assert.has_error(function() core.sigwatch { "STOP" } end)
      assert.has_error(function() core.sigwatch { "NOPE" } end)
      local w <close> = assert(core.sigwatch({ "USR1" }, { selfpipe = true }))  -- luacheck: ignore
      assert.has_error(function() core.sigwatch({ "USR1" }, { selfpipe = true }) end)
    end)
  end)

  describe("sigmask and sigaction", function()
    it("sigmask blocks, unblocks and sets, returning the previous mask", function()
      local old = core.sigmask("block", { "USR2", 28 })
      finally(function() core.sigmask("set", old) end)
      local blk = H.sigset(H.status_fields(H.mypid).SigBlk)
      assert.is_true(blk[core.signals.USR2] and blk[28])
      local prev = core.sigmask("unblock", "USR2")
      assert.is_true(set_of(prev)[core.signals.USR2])
      assert.is_nil(H.sigset(H.status_fields(H.mypid).SigBlk)[core.signals.USR2])
      core.sigmask("set", old)
      assert.same(sorted(old), sorted(core.sigmask("block", {})))
      assert.has_error(function() core.sigmask("toggle", {}) end)
    end)

    it("sigaction sets default or ignore and returns the previous disposition", function()
      local first = core.sigaction("URG", "ignore")
      finally(function() core.sigaction("URG", first == "ignore" and "ignore" or "default") end)
      assert.equal("default", first)
      assert.is_true(H.sigset(H.status_fields(H.mypid).SigIgn)[core.signals.URG])
      assert.equal("ignore", core.sigaction("URG"))          -- query only
      assert.equal("ignore", core.sigaction("SIGURG", "default"))
      assert.is_nil(H.sigset(H.status_fields(H.mypid).SigIgn)[core.signals.URG])
      local w <close> = assert(core.sigwatch({ "USR1" }, { selfpipe = true }))  -- luacheck: ignore
      assert.equal("handler", core.sigaction("USR1"))
      assert.has_error(function() core.sigaction("URG", "catch") end)
    end)
  end)

  describe("tables", function()
    it("signals and errno map names to numbers and back", function()
      assert.same({ 15, "TERM", 9, "KILL", 17, "CHLD" },
        { core.signals.TERM, core.signals[15], core.signals.KILL, core.signals[9],
          core.signals.CHLD, core.signals[17] })
      for name, n in pairs(core.signals) do
        if type(name) == "string" then assert.equal(name, core.signals[n]) end
      end
      assert.same({ 2, "ENOENT", 11, "EAGAIN", 10, "ECHILD" },
        { core.errno.ENOENT, core.errno[2], core.errno.EAGAIN, core.errno[11],
          core.errno.ECHILD, core.errno[10] })
      assert.equal(core.errno.EAGAIN, core.errno.EWOULDBLOCK)
      assert.equal("No such file or directory", core.strerror(2))
      assert.equal(lp.signals, core.signals)
      assert.equal(lp.errno, core.errno)
    end)

    it("features says what this kernel offers", function()
      local f = core.features
      for _, k in ipairs { "signalfd", "pidfd", "clone_pidfd", "close_range", "subreaper" } do
        assert.is_boolean(f[k], k)
      end
      local fd = core.pidfd_open(H.mypid)
      assert.equal(fd ~= nil, f.pidfd)
      if fd then core.close(fd) end
    end)
  end)

  describe("descriptors", function()
    local dir
    setup(function() dir = H.tmpdir() end)
    teardown(function() H.rm_rf(dir) end)

    it("pipe makes close-on-exec ends, nonblocking on request", function()
      local r, w = assert(core.pipe())
      local nr, nw = assert(core.pipe { nonblock = true })
      finally(function() for _, fd in ipairs { r, w, nr, nw } do core.close(fd) end end)
      assert.is_true(fd_flags(r) & O_CLOEXEC ~= 0 and fd_flags(w) & O_CLOEXEC ~= 0)
      assert.equal(0, fd_flags(r) & O_NONBLOCK)
      assert.is_true(fd_flags(nr) & O_NONBLOCK ~= 0 and fd_flags(nw) & O_NONBLOCK ~= 0)
    end)

    it("read and write return false on EAGAIN, read returns \"\" at EOF", function()
      local r, w = assert(core.pipe { nonblock = true })
      finally(function() core.close(r) end)
      assert.is_false(core.read(r, 10))
      local chunk = string.rep("z", 65536)
      local total = 0
      while true do
        local n = core.write(w, chunk)
        if n == false then break end
        assert.is_number(n)
        total = total + n
        assert.is_true(total <= 16 * 1024 * 1024)
      end
      assert.is_true(total >= 4096)
      core.close(w)
      local got = 0
      while true do
        local s = core.read(r, 1 << 20)
        assert.is_string(s)
        if s == "" then break end
        got = got + #s
      end
      assert.is_true(got >= total)
      assert.oserror("EBADF", core.read(w, 1))
      assert.oserror("EBADF", core.write(w, "x"))
      assert.has_error(function() core.read(r, 0) end)
      assert.has_error(function() core.write(r, "abc", 5) end)
    end)

    it("write starts at an offset", function()
      local r, w = assert(core.pipe())
      finally(function() core.close(r); core.close(w) end)
      assert.equal(3, core.write(w, "abcdef", 4))
      assert.equal(0, core.write(w, "abc", 4))
      assert.equal("def", core.read(r, 100))
    end)

    it("dup is close-on-exec, dup2's result is inheritable", function()
      local r, w = assert(core.pipe())
      local d = assert(core.dup(w))
      local d10 = assert(core.dup(w, 100))
      finally(function() for _, fd in ipairs { r, w, d, d10, 220 } do core.close(fd) end end)
      assert.is_true(d10 >= 100)
      assert.is_true(fd_flags(d) & O_CLOEXEC ~= 0)
      assert.equal(220, core.dup2(w, 220))
      assert.equal(0, fd_flags(220) & O_CLOEXEC)
      assert.oserror("EBADF", core.dup2(9999, 221))
      assert.oserror("EBADF", core.dup(9999))
      assert.is_true(core.close(220))
      assert.oserror("EBADF", core.close(220))
      assert.has_error(function() core.close(-1) end)
    end)

    it("setnonblock and setcloexec toggle the flags", function()
      local r, w = assert(core.pipe())
      finally(function() core.close(r); core.close(w) end)
      assert.is_true(core.setnonblock(r, true))
      assert.is_true(fd_flags(r) & O_NONBLOCK ~= 0)
      assert.is_true(core.setnonblock(r, false))
      assert.equal(0, fd_flags(r) & O_NONBLOCK)
      assert.is_true(core.setcloexec(w, false))
      assert.equal(0, fd_flags(w) & O_CLOEXEC)
      assert.is_true(core.setcloexec(w))
      assert.is_true(fd_flags(w) & O_CLOEXEC ~= 0)
      assert.oserror("EBADF", core.setnonblock(9999, true))
    end)

    it("open takes flags r w a c t x n f d and a mode", function()
      local p = dir .. "/f"
      local fd = assert(core.open(p, "wcx", tonumber("600", 8)))
      assert.is_true(fd_flags(fd) & O_CLOEXEC ~= 0)
      core.write(fd, "hello")
      core.close(fd)
      local mode = io.popen("stat -c %a " .. p):read("l")
      assert.equal("600", mode)
      assert.oserror("EEXIST", core.open(p, "wcx"))
      fd = assert(core.open(p, "a"))
      assert.is_true(fd_flags(fd) & O_APPEND ~= 0)
      core.write(fd, " world")
      core.close(fd)
      assert.equal("hello world", H.slurp(p))
      fd = assert(core.open(p, "rw"))
      assert.equal("hello", core.read(fd, 5))
      core.close(fd)
      fd = assert(core.open(p, "wt"))
      core.close(fd)
      assert.equal("", H.slurp(p))
      fd = assert(core.open(p, "rn"))
      assert.is_true(fd_flags(fd) & O_NONBLOCK ~= 0)
      core.close(fd)
      assert.oserror("ENOTDIR", core.open(p, "rd"))
      fd = assert(core.open(dir, "rd"))
      core.close(fd)
      os.execute("ln -s f " .. dir .. "/link")
      assert.oserror("ELOOP", core.open(dir .. "/link", "rf"))
      assert.oserror("ENOENT", core.open(dir .. "/missing"))
      local _, msg = core.open(dir .. "/missing")
      assert.equal("open " .. dir .. "/missing: No such file or directory", msg)
      assert.has_error(function() core.open(p, "q") end)
    end)

    it("fdopen gives a Lua file that owns the descriptor; fileno gives it back", function()
      local r, w = assert(core.pipe())
      local f = assert(core.fdopen(w, "w"))
      assert.equal("file", io.type(f))
      assert.equal(w, core.fileno(f))
      f:write("line one\nline two\n")
      f:close()
      local g = assert(core.fdopen(r, "r"))
      local lines = {}
      for l in g:lines() do lines[#lines + 1] = l end
      g:close()
      assert.same({ "line one", "line two" }, lines)
      assert.has_error(function() core.fileno(g) end)
      assert.oserror("EBADF", core.fdopen(9999, "r"))
    end)

    it("flock excludes another open file description", function()
      local p = H.spit(dir .. "/lock", "")
      local a = assert(core.open(p, "r"))
      local b = assert(core.open(p, "r"))
      finally(function() core.close(a); core.close(b) end)
      assert.is_true(core.flock(a, "ex", true))
      assert.is_false(core.flock(b, "ex", true))
      assert.is_false(core.flock(b, "sh", true))
      -- and another process sees the lock too
      local pid = assert(core.spawn { argv = { "flock", "-n", p, "true" } })
      assert.exited(1, H.wait_pid(pid))
      assert.is_true(core.flock(a, "un"))
      assert.is_true(core.flock(b, "sh", true))
      assert.is_true(core.flock(a, "sh", true))
      assert.oserror("EBADF", core.flock(9999, "ex"))
    end)

    it("poll reports r, w, h and e, and {} on timeout", function()
      local r, w = assert(core.pipe())
      finally(function() core.close(r) end)
      local t0 = core.now()
      assert.same({}, core.poll({ [r] = "r" }, 0.1))
      assert.is_true(core.now() - t0 >= 0.1)
      assert.same({ [w] = "w" }, core.poll({ [r] = "r", [w] = "w" }, 1))
      core.write(w, "x")
      assert.same({ [r] = "r", [w] = "w" }, core.poll({ [r] = "r", [w] = "w" }, 1))
      core.close(w)
      assert.matches("h", core.poll({ [r] = "r" }, 1)[r])
      assert.equal("e", core.poll({ [9999] = "r" }, 1)[9999])
      assert.same({}, core.poll({}, 0))
      assert.has_error(function() core.poll({ [r] = "x" }, 0) end)
      assert.has_error(function() core.poll({ a = "r" }, 0) end)
    end)

    it("epoll adds, modifies, deletes and waits", function()
      local r, w = assert(core.pipe())
      local ep = assert(core.epoll())
      finally(function() core.close(r); core.close(w); ep:close() end)
      assert.is_true(fd_flags(ep:fd()) & O_CLOEXEC ~= 0)
      assert.is_true(ep:add(r, "r"))
      assert.oserror("EEXIST", ep:add(r, "r"))
      assert.same({}, ep:wait(0.05))
      core.write(w, "x")
      assert.same({ r, "r" }, ep:wait(1))
      assert.is_true(ep:add(w, "w"))
      local got = ep:wait(1)
      local evs = {}
      for i = 1, #got, 2 do evs[got[i]] = got[i + 1] end
      assert.same({ [r] = "r", [w] = "w" }, evs)
      assert.is_true(ep:mod(w, "r"))       -- a write end is never readable
      assert.same({ r, "r" }, ep:wait(1))
      assert.is_true(ep:del(r))
      assert.oserror("ENOENT", ep:del(r))
      assert.same({}, ep:wait(0))
      core.close(w)
      w = assert(core.pipe())   -- keep finally's close harmless
      local r2, w2 = assert(core.pipe())
      ep:add(r2, "r")
      core.close(w2)
      assert.matches("h", ep:wait(1)[2])
      core.close(r2)
      ep:close()
      assert.has_error(function() ep:wait(0) end, "poller is closed")
    end)
  end)

  describe("the process's own attributes", function()
    it("getpid, getppid and getpgid agree with /proc", function()
      local st = H.stat(H.mypid)
      assert.equal(st.pid, core.getpid())
      assert.equal(st.ppid, core.getppid())
      assert.equal(st.pgrp, core.getpgid())
      assert.equal(st.pgrp, core.getpgid(0))
      assert.oserror("ESRCH", core.getpgid(2 ^ 30 // 1))
    end)

    it("setpgid moves a child into a group; setsid starts a session in a child", function()
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sleep", "30" } }
      -- a child that has exec'd can no longer be moved (EACCES)
      assert.oserror("EACCES", core.setpgid(pid, pid))
      local code = [[
        local core = require "lprocess.core"
        local a = core.setpgid(0, 0) and core.getpgid() == core.getpid()
        local sid = core.setsid()   -- a group leader may not start a session: EPERM
        local pid = core.fork()
        if pid == 0 then
          core._exit(core.setsid() == core.getpid() and core.getpgid() == core.getpid() and 0 or 1)
        end
        io.write(tostring(a), " ", tostring(sid), " ", core.wait(pid).code)
      ]]
      local out, st = capture { argv = H.lua(code), env = H.lua_env() }
      assert.exited(0, st)
      assert.equal("true nil 0", out)
    end)

    it("subreaper: an orphaned grandchild is re-parented to us", function()
      local t = H.track(finally)
      assert.is_true(core.getsubreaper())
      local p = t:spawn { "sh", "-c", "sleep 30 & echo $!", stdout = "pipe" }
      local gc = tonumber(H.read_line(p.stdout))
      t:add(gc)
      assert.exited(0, p:wait())
      assert.equal(H.mypid, H.stat(gc).ppid)
      core.kill(gc, "KILL")
      assert.signaled("KILL", H.wait_pid(gc))
    end)

    it("subreaper(false) lets orphans go to init", function()
      local code = [[
        local core = require "lprocess.core"
        core.subreaper(false)
        local on = core.getsubreaper()
        local r, w = core.pipe()
        local pid = core.spawn { argv = { "sh", "-c", "sleep 5 & echo $!" }, fds = { [1] = w } }
        core.close(w)
        core.wait(pid)
        local gc = tonumber(core.read(r))
        local ppid = io.open("/proc/" .. gc .. "/stat"):read("a"):match("^%d+ %(.-%) %a (%d+)")
        core.kill(gc, "KILL")
        io.write(tostring(on), " ", ppid == tostring(core.getpid()) and "mine" or "elsewhere")
      ]]
      local out, st = capture { argv = H.lua(code), env = H.lua_env() }
      assert.exited(0, st)
      assert.equal("false elsewhere", out)
    end)

    it("chdir, getcwd and umask", function()
      local code = [[
        local core = require "lprocess.core"
        local ok = core.chdir("/tmp")
        local _, msg, e = core.chdir("/nope")
        local old = core.umask(tonumber("077", 8))
        local now = core.umask()
        io.write(tostring(ok), " ", core.getcwd(), " ", msg, " ", e, " ",
          string.format("%o %o %o", old, now, core.umask()))
      ]]
      local out, st = capture { argv = H.lua(code), env = H.lua_env(), umask = 18 }
      assert.exited(0, st)
      assert.equal("true /tmp chdir /nope: No such file or directory 2 22 77 77", out)
    end)

    it("now is monotonic, realtime is the wall clock", function()
      local a, b = core.now(), core.now()
      assert.is_true(b >= a)
      assert.is_true(math.abs(core.realtime() - os.time()) < 2)
    end)

    it("sleep lasts its whole duration even when a signal interrupts it", function()
      local t = H.track(finally)
      local w = assert(core.sigwatch({ "USR1" }, { selfpipe = true }))  -- a real handler
      t:defer(function() w:close() end)   -- only once the child below is dead: USR1 kills
      -- a child that keeps interrupting us, every 50 ms, until it is killed
      t:cspawn { argv = { "sh", "-c", "while kill -USR1 " .. H.mypid .. "; do sleep 0.05; done" } }
      assert.equal("r", core.poll({ [w:fd()] = "r" }, 30)[w:fd()])   -- it has started
      w:read()
      local t0 = core.now()
      core.sleep(0.5)
      local slept = core.now() - t0
      assert.is_true(#w:read() >= 1)                 -- signals did arrive meanwhile
      assert.is_true(slept >= 0.5, "slept " .. slept)
      core.sleep(0)
      core.sleep(-1)
    end)

    it("getrlimit and setrlimit", function()
      local soft, hard = core.getrlimit("core")
      finally(function() core.setrlimit("core", soft, hard) end)
      assert.is_true(core.setrlimit("core", 0))
      assert.equal(0, (core.getrlimit("core")))
      local out = capture { argv = { "sh", "-c", "ulimit -c" } }
      assert.equal("0\n", out)       -- inherited by children
      assert.has_error(function() core.getrlimit("bogus") end)
      assert.has_error(function() core.setrlimit("core", -5) end)
      local s2 = core.getrlimit("nofile")
      assert.is_true(s2 == "unlimited" or math.type(s2) == "integer")
    end)

    it("names every limit once, both ways, in core.rlimits", function()
      local n = 0
      for name, res in pairs(core.rlimits) do
        if type(name) == "string" then
          n = n + 1
          assert.equal(name, core.rlimits[res])
          assert.is_not_nil(core.getrlimit(name))     -- each name is one getrlimit takes
        end
      end
      assert.is_true(n >= 15)
      assert.is_nil(core.rlimits.rttime)              -- not one the core can set
    end)
  end)

  describe("sockets", function()
    local dir
    setup(function() dir = H.tmpdir() end)
    teardown(function() H.rm_rf(dir) end)

    local function recv_all(fd, n, timeout)
      local got = {}
      local deadline = core.now() + (timeout or 5)
      local len = 0
      while len < n and core.now() < deadline do
        core.poll({ [fd] = "r" }, deadline - core.now())
        local s = core.recv(fd, n - len)
        if s == "" then break end
        if s then got[#got + 1] = s; len = len + #s end
      end
      return table.concat(got)
    end

    for _, name in ipairs { "path", "abstract" } do
      it("unix_listen, unix_connect, accept, send and recv (" .. name .. ")", function()
        local path = name == "path" and dir .. "/sock" or "@lprocess-test-" .. H.mypid
        local l = assert(core.unix_listen(path))
        local fds = { l }
        finally(function() for _, fd in ipairs(fds) do core.close(fd) end end)
        assert.is_true(fd_flags(l) & O_NONBLOCK ~= 0 and fd_flags(l) & O_CLOEXEC ~= 0)
        assert.is_false(core.accept(l))
        local c = assert(core.unix_connect(path))
        fds[#fds + 1] = c
        assert.equal("r", core.poll({ [l] = "r" }, 5)[l])
        local s = assert(core.accept(l))
        fds[#fds + 1] = s
        assert.is_false(core.recv(s, 10))
        assert.equal(5, core.send(c, "hello"))
        assert.equal("hello", recv_all(s, 5))
        assert.equal(2, core.send(s, "hi"))
        assert.equal("hi", recv_all(c, 2))
        core.close(c)
        fds[2] = assert(core.open("/dev/null"))
        assert.equal("", core.recv(s, 10))
        assert.is_nil((core.unix_listen(path)))   -- EADDRINUSE
      end)
    end

    it("dgram sockets and errors", function()
      local l = assert(core.unix_listen(dir .. "/dg", "dgram"))
      finally(function() core.close(l) end)
      local c = assert(core.unix_connect(dir .. "/dg", "dgram"))
      assert.equal(3, core.send(c, "abc"))
      core.poll({ [l] = "r" }, 5)
      assert.equal("abc", core.recv(l, 100))
      core.close(c)
      assert.oserror("ENOENT", core.unix_connect(dir .. "/none"))
      assert.has_error(function() core.unix_listen(("x"):rep(200)) end)
      assert.has_error(function() core.unix_listen(dir .. "/x", "seqpacket") end)
    end)

    it("tcp_connect on loopback: refused, then accepted by a listener", function()
      -- a closed port: find one by binding nothing; 1 is privileged and unused here
      local fd = core.tcp_connect("127.0.0.1", 1)
      if fd then
        core.poll({ [fd] = "w" }, 5)
        assert.equal(core.errno.ECONNREFUSED, core.sockerror(fd))
        core.close(fd)
      else
        assert.is_not_nil(fd)
      end
      assert.has_error(function() core.tcp_connect("127.0.0.1", 0) end)
      local bad, msg = core.tcp_connect("no-such-host.invalid", 80)
      assert.is_nil(bad)
      assert.matches("^connect no%-such%-host%.invalid:80: ", msg)
      -- a real listener: perl, which any Debian has
      local perl = io.popen("command -v perl"):read("l")
      if not perl then
        pending("no perl for a TCP listener")
        return
      end
      local t = H.track(finally)
      local srv = t:spawn { "perl", "-MIO::Socket::INET", "-e", [[
        $| = 1;
        my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5, ReuseAddr => 1) or die;
        print $l->sockport, "\n";
        my $c = $l->accept; my $buf; $c->recv($buf, 100); $c->send("echo:$buf"); close $c;
      ]], stdout = "pipe" }
      local port = tonumber(H.read_line(srv.stdout))
      assert.is_number(port)
      local c = assert(core.tcp_connect("127.0.0.1", port))
      t:defer(function() core.close(c) end)
      assert.equal("w", core.poll({ [c] = "w" }, 5)[c])
      assert.equal(0, core.sockerror(c))
      assert.equal(4, core.send(c, "ping"))
      assert.equal("echo:ping", recv_all(c, 9))
      assert.exited(0, srv:wait())
    end)
  end)
end)
