-- lprocess.core against hostile input, odd environments and privileges: one describe
-- per item of the hardening issue (9), each test failing on the code before its fix.
-- What could crash the interpreter runs in a Lua child; what Lua cannot set up (threads,
-- a seccomp filter, a fork behind core's back) runs through the programs that
-- `make testprogs` builds from spec/support/.
local H = require "helper"
local core = H.core
local lp = H.lp

local root = core.geteuid() == 0

-- stdout and stderr of argv (one pipe), and its status.
local function run(argv, env)
  local r, w = assert(core.pipe())
  local pid, err = core.spawn { argv = argv, env = env or H.lua_env(), fds = { [1] = w, [2] = w } }
  core.close(w)
  if not pid then
    core.close(r)
    error(err)
  end
  local out = {}
  while core.poll({ [r] = "r" }, 60)[r] do
    local s = core.read(r)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  core.close(r)
  return table.concat(out), lp.wait(pid)
end

-- Lua code in a child lua5.4 with this checkout's modules (prefix: a wrapper argv).
local function run_lua(code, prefix)
  local argv = {}
  for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
  for _, a in ipairs(H.lua("local core = require 'lprocess.core' " .. code)) do
    argv[#argv + 1] = a
  end
  return run(argv)
end

-- A program of spec/support/, built by `make testprogs` (built here when missing).
local function testprog(name)
  local out = H.cpath:gsub("/%?%.so$", "")
  local path = out .. "/test/" .. name
  if not core.stat(path) then
    os.execute(string.format("make -s --no-print-directory OUT='%s' testprogs >/dev/null", out))
  end
  assert(core.stat(path), "missing " .. path .. " (make testprogs)")
  return path
end

local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
end

describe("hardening (issue 9)", function()
  describe("item 1: lengths are bounded before they size a buffer", function()
    it("an argv whose __len is huge fails with E2BIG, no overflow", function()
      local out, st = run_lua [[
        local argv = setmetatable({}, { __len = function() return 1 << 61 end,
          __index = function() return "x" end })
        print(core.spawn { argv = argv })
      ]]
      assert.exited(0, st)
      assert.equal("nil\tspawn: argv: Argument list too long\t" .. core.errno.E2BIG .. "\n", out)
    end)

    it("groups whose __len is huge raise, no overflow", function()
      local out, st = run_lua [[
        local g = setmetatable({}, { __len = function() return 1 << 62 end,
          __index = function() return 0 end })
        print(pcall(core.spawn, { argv = { "true" }, groups = g }))
      ]]
      assert.exited(0, st)
      assert.matches("^false\t.*groups: more than 65536 entries\n$", out)
    end)

    it("a signal set whose __len is huge raises at once", function()
      local sigs = setmetatable({}, { __len = function() return 1 << 62 end,
        __index = function() return "TERM" end })
      raises("too many signals", core.spawn, { argv = { "true" }, sigmask = sigs })
      raises("too many signals", core.sigmask, "block", sigs)
    end)

    it("exec bounds argv the same way", function()
      local out, st = run_lua [[
        local argv = setmetatable({}, { __len = function() return 1 << 61 end,
          __index = function() return "x" end })
        print(core.exec("true", argv))
      ]]
      assert.exited(0, st)
      assert.equal("nil\ttrue: Argument list too long\t" .. core.errno.E2BIG .. "\n", out)
    end)
  end)

  describe("item 2: argv strings stay referenced until exec", function()
    it("strings made by __index survive collections made meanwhile", function()
      -- Each __index call collects, then allocates strings of the same size: a string
      -- handed out before and no longer referenced would be freed and overwritten.
      local out, st = run_lua [[
        local junk = {}
        local argv = setmetatable({}, { __len = function() return 6 end,
          __index = function(_, i)
            collectgarbage()
            for k = 1, 50 do junk[k] = string.rep("Z", 40) .. k end
            if i == 1 then return "echo" end
            return string.rep(string.char(96 + i), 40) .. i
          end })
        local r, w = core.pipe()
        local pid = assert(core.spawn { argv = argv, fds = { [1] = w } })
        core.close(w)
        io.write(core.read(r))
        core.wait(pid)
      ]]
      assert.exited(0, st)
      local want = {}
      for i = 2, 6 do want[#want + 1] = string.rep(string.char(96 + i), 40) .. i end
      assert.equal(table.concat(want, " ") .. "\n", out)
    end)

    it("env strings stay referenced while other options run Lua code", function()
      local out, st = run_lua [[
        local env = { "A=" .. string.rep("a", 40), "B=" .. string.rep("b", 40) }
        local junk = {}
        local mask = setmetatable({}, { __len = function()
          env[1], env[2] = nil, nil
          collectgarbage()
          for k = 1, 50 do junk[k] = "Z=" .. string.rep("z", 39) .. (k % 10) end
          return 0
        end })
        local r, w = core.pipe()
        local pid = assert(core.spawn { argv = { "/usr/bin/env" }, env = env, sigmask = mask,
          fds = { [1] = w } })
        core.close(w)
        io.write(core.read(r))
        core.wait(pid)
      ]]
      assert.exited(0, st)
      assert.equal("A=" .. string.rep("a", 40) .. "\nB=" .. string.rep("b", 40) .. "\n", out)
    end)
  end)

  describe("item 3: ids are range-checked", function()
    it("uid, gid and groups outside [0, 2^32 - 2] raise", function()
      for _, bad in ipairs {
        { uid = -1 }, { uid = 1 << 32 }, { uid = 0xffffffff }, { gid = -1 },
        { gid = 1 << 32 }, { groups = { -1 } }, { groups = { 1 << 32 } }, { uid = "x" },
      } do
        bad.argv = { "true" }
        raises("spawn: ", core.spawn, bad)
      end
      raises("out of range", core.spawn, { argv = { "true" }, uid = -1 })
    end)

    it("a change of ids that did not take fails the spawn with EPERM", function()
      if not root then
        pending("needs root to change ids")
        return
      end
      -- setresuid and setresgid made to return 0 without doing anything
      for _, c in ipairs { { "setresuid=0", "uid = 65534", "setuid 65534" },
                           { "setresgid=0", "gid = 65534", "setgid 65534" } } do
        local out, st = run_lua(string.format([[
          print(core.spawn { argv = { "true" }, %s })
        ]], c[2]), { testprog("seccomp-enosys"), c[1] })
        if st.how == "exit" and st.code == 77 then
          pending("no seccomp filter here: " .. out)
          return
        end
        assert.exited(0, st, out)
        assert.equal("nil\tspawn true: " .. c[3] .. ": Operation not permitted\t"
          .. core.errno.EPERM .. "\n", out)
      end
    end)

    it("the largest id is taken as it is", function()
      if not root then
        pending("needs root to change ids")
        return
      end
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sleep", "30" }, uid = 0xfffffffe, gid = 0xfffffffe }
      local f = H.status_fields(pid)
      assert.matches("^4294967294%s+4294967294%s+4294967294%s+4294967294$", f.Uid)
      assert.matches("^4294967294%s+4294967294%s+4294967294%s+4294967294$", f.Gid)
    end)
  end)

  describe("item 4: dropping to a uid as root drops root's groups", function()
    -- A root Lua child with supplementary groups 1 2 3 runs `code`, which spawns a grep
    -- of its status as another user.
    local function with_groups(code)
      local argv = H.lua("local core = require 'lprocess.core' " .. code)
      local r, w = assert(core.pipe())
      local pid = assert(core.spawn { argv = argv, env = H.lua_env(), groups = { 1, 2, 3 },
        fds = { [1] = w, [2] = w } })
      core.close(w)
      local out = {}
      repeat
        local s = core.read(r)
        out[#out + 1] = s or ""
      until not s or s == ""
      core.close(r)
      return table.concat(out), lp.wait(pid)
    end
    local code = [[
      local r, w = core.pipe()
      local pid, err = core.spawn { argv = { "grep", "-E", "^(Uid|Gid|Groups)", "/proc/self/status" },
        fds = { [1] = w }, %s }
      core.close(w)
      if not pid then print(err) os.exit(1) end
      io.write(core.read(r))
      core.wait(pid)
    ]]

    local function fields(out)
      local f = {}
      for k, v in out:gmatch("(%a+):[ \t]*([^\n]*)") do f[k] = v:gsub("%s+$", "") end
      return f
    end

    it("a bare uid leaves only the current gid as supplementary group", function()
      if not root then
        pending("needs root to change ids")
        return
      end
      local out, st = with_groups(code:format("uid = 65534"))
      assert.exited(0, st, out)
      local f = fields(out)
      assert.matches("^65534%s+65534%s+65534%s+65534$", f.Uid)
      assert.matches("^0%s+0%s+0%s+0$", f.Gid)
      assert.equal("0", f.Groups)
    end)

    it("uid and gid leave the target gid alone; explicit groups are kept", function()
      if not root then
        pending("needs root to change ids")
        return
      end
      local out, st = with_groups(code:format("uid = 65534, gid = 65533"))
      assert.exited(0, st, out)
      assert.equal("65533", fields(out).Groups)
      out, st = with_groups(code:format("uid = 65534, gid = 65533, groups = { 7, 8 }"))
      assert.exited(0, st, out)
      assert.equal("7 8", fields(out).Groups)
      out, st = with_groups(code:format("uid = 65534, groups = {}"))
      assert.exited(0, st, out)
      assert.equal("", fields(out).Groups)
    end)
  end)

  describe("item 5: 32-bit ids reach the kernel whole", function()
    it("a uid and gid above 65535 are set as they are", function()
      if not root then
        pending("needs root to change ids")
        return
      end
      -- on i386 and armhf the plain setresuid takes 16-bit ids: 70000 would be 4464
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sleep", "30" }, uid = 70000, gid = 70001,
        groups = { 70002 } }
      local f = H.status_fields(pid)
      assert.matches("^70000%s", f.Uid)
      assert.matches("^70001%s", f.Gid)
      assert.matches("^70002%s*$", f.Groups)
    end)
  end)

  describe("item 6: pids are range-checked", function()
    it("kill, killpg, wait and pidfd_open refuse values beyond int32", function()
      raises("pid out of range", core.kill, 4294967295, 0)   -- would be kill(-1, 0)
      raises("pid out of range", core.kill, 1 << 32, 0)       -- would be kill(0, 0)
      raises("pid out of range", core.kill, -(1 << 31), 0)
      raises("pid out of range", core.wait, (1 << 32) - 1)
      raises("pid out of range", core.pidfd_open, (1 << 32) + H.mypid)
      raises("pid out of range", core.pidfd_open, 0)
      raises("process group must be > 1", core.killpg, 1)
      raises("pid out of range", core.killpg, (1 << 32) + 5)
      raises("pid out of range", core.getpgid, 1 << 32)
      raises("out of range", core.spawn, { argv = { "true" }, pgid = 1 << 32 })
    end)

    it("0 and -1 still work when given as such", function()
      assert.is_true(core.kill(0, 0))
      assert.is_true(core.kill(H.mypid, 0))
      local t = H.track(finally)
      local pid = t:cspawn { argv = { "sh", "-c", "exit 3" } }
      local st   -- wait(-1) may first reap an orphan an earlier test left to us
      repeat st = core.wait(-1) until not st or st.pid == pid
      assert.exited(3, st)
    end)
  end)

  describe("item 7: env keys are validated", function()
    it("refuses empty keys, keys with '=' or NUL, values with NUL", function()
      for _, env in ipairs {
        { ["A=B"] = "C" }, { [""] = "x" }, { ["A\0B"] = "x" }, { A = "x\0y" },
        { "=x" }, { "noequals" }, { "A=x\0y" }, { ["PATH=/evil"] = "1" },
      } do
        raises("env: ", core.spawn, { argv = { "true" }, env = env })
      end
    end)

    it("searches the first PATH=, the one the child's getenv sees", function()
      local r, w = assert(core.pipe())
      local pid = assert(core.spawn { argv = { "lua5.4", "-e", "print(os.getenv 'PATH')" },
        fds = { [1] = w },
        env = { "PATH=/usr/bin:/bin", "PATH=/nowhere" } })
      core.close(w)
      local out = core.read(r)
      core.close(r)
      assert.exited(0, lp.wait(pid))
      assert.equal("/usr/bin:/bin\n", out)
    end)
  end)

  describe("item 8: each spawn has a child stack of its own", function()
    it("two threads with their own lua_State spawn at once, every output right", function()
      local out, st = run({ testprog("spawn-host"), "threads", "2", "400" })
      assert.exited(0, st, out)
      assert.equal("", out)
    end)
  end)

  describe("item 9: without close_range, no descriptor leaks", function()
    -- fds 3000 and 3001 opened under a nofile limit of 4096, then the soft limit
    -- lowered to 1024 (open descriptors stay): the old fallback walked up to 1024.
    local code = [[
      assert(core.setrlimit("nofile", 4096))
      local r, w = core.pipe()
      assert(core.dup2(w, 3000))
      assert(core.dup2(w, 3001))
      assert(core.setrlimit("nofile", 1024))
      local pid = assert(core.spawn { argv = { "lua5.4", "-e",
        "local c = require 'lprocess.core' io.write(c.fstat(3000) and 'leaked ' or 'closed ')" } })
      core.wait(pid)
      core.closefrom(3001)
      print(core.fstat(3001) and "closefrom-left" or "closefrom-closed")
    ]]

    local function enosys(prefix)
      local argv = { testprog("seccomp-enosys"), "close_range" }
      for _, a in ipairs(prefix or {}) do table.insert(argv, #argv - 1, a) end
      return argv
    end

    it("walks /proc/self/fd (spawn's close_fds and closefrom)", function()
      local out, st = run_lua(code, enosys())
      if st.how == "exit" and st.code == 77 then
        pending("no seccomp filter here: " .. out)
        return
      end
      assert.exited(0, st, out)
      assert.equal("closed closefrom-closed\n", out)
    end)

    it("without /proc, tries every number below the hard limit", function()
      if not root then
        pending("needs root to hide /proc in a mount namespace")
        return
      end
      if H.sanitize then
        pending("the sanitizers' runtime cannot start without /proc")
        return
      end
      local inner = { testprog("seccomp-enosys"), "close_range" }
      for _, a in ipairs(H.lua("local core = require 'lprocess.core' " .. code)) do
        inner[#inner + 1] = a
      end
      for i, a in ipairs(inner) do inner[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
      local out, st = run { "unshare", "--mount", "sh", "-c",
        "mount -t tmpfs none /proc && exec " .. table.concat(inner, " ") }
      if st.how == "exit" and (st.code == 77 or out:find("unshare: ")) then
        pending("no mount namespace or seccomp here: " .. out)
        return
      end
      assert.exited(0, st, out)
      assert.equal("closed closefrom-closed\n", out)
    end)
  end)

  describe("item 10: the fds map moves only what collides", function()
    it("maps to the last descriptor the nofile limit allows", function()
      local out, st = run_lua [[
        assert(core.setrlimit("nofile", 1024))
        local r, w = core.pipe()
        local pid, err = core.spawn { argv = { "readlink", "/proc/self/fd/1023" },
          fds = { [1] = w, [1023] = w } }
        if not pid then print(err) os.exit(1) end
        core.close(w)
        io.write(core.read(r))
        core.wait(pid)
      ]]
      assert.exited(0, st, out)
      assert.matches("^pipe:%[%d+%]\n$", out)
    end)

    it("names the step and both descriptors when a mapping fails", function()
      local pid, err, errno = core.spawn { argv = { "true" }, fds = { [5] = 999 } }
      assert.oserror("EBADF", pid, err, errno)
      assert.equal("spawn true: dup2 fd 999 to fd 5: Bad file descriptor", err)
    end)

    it("a target of INT_MAX raises; INT_MAX - 1 fails, never a successful spawn", function()
      raises("bad fd in fds", core.spawn, { argv = { "true" }, fds = { [0x7fffffff] = 1 } })
      local pid, err, errno = core.spawn { argv = { "true" }, fds = { [0x7ffffffe] = 1 } }
      assert.oserror("EBADF", pid, err, errno)
      assert.equal("spawn true: dup2 fd 1 to fd 2147483646: Bad file descriptor", err)
    end)

    it("an identity mapping makes the descriptor inheritable", function()
      local r, w = assert(core.pipe())
      local pid = assert(core.spawn { argv = { "sh", "-c", "echo same >&" .. w },
        fds = { [w] = w } })
      core.close(w)
      local out = core.read(r)
      core.close(r)
      assert.exited(0, lp.wait(pid))
      assert.equal("same\n", out)
    end)
  end)

  describe("item 11: the parent's pid is asked for each spawn", function()
    it("pdeathsig works in a child forked behind core's back", function()
      local out, st = run { testprog("spawn-host"), "forked" }
      assert.exited(0, st, out)
      assert.equal("7\n", out)
    end)
  end)

  describe("item 16: small ones", function()
    it("the modules are linked with -z now (no lazy binding in the clone child)", function()
      local so = package.searchpath("lprocess.core", package.cpath)
      local out, st = run({ "readelf", "-d", so })
      if st.how == "exit" and st.code == 127 then
        pending("no readelf")
        return
      end
      assert.truthy(out:find("BIND_NOW") or out:find("Flags:.*NOW"), out)
    end)

    it("NaN is refused as a timeout or a duration", function()
      raises("NaN", core.sleep, 0 / 0)
      raises("NaN", core.poll, {}, 0 / 0)
      local ep <close> = assert(core.epoll())
      raises("NaN", ep.wait, ep, 0 / 0)
    end)

    it("path = \"\" is ENOENT, as for execvp", function()
      local pid, err, errno = core.spawn { argv = { "x" }, path = "" }
      assert.oserror("ENOENT", pid, err, errno)
      assert.oserror("ENOENT", core.exec("", { "x" }))
    end)

    it("tcp_connect tries every address of a name", function()
      if not root then
        pending("needs root for a private /etc/hosts in a mount namespace")
        return
      end
      local probe = io.popen("command -v python3")
      local py = probe:read("l")
      probe:close()
      if not py then
        pending("python3 makes the IPv4-only listener")
        return
      end
      local dir = H.tmpdir()
      finally(function() H.rm_rf(dir) end)
      -- "dual" resolves to ::1 first, where nothing listens, then to 127.0.0.1
      H.spit(dir .. "/hosts", "::1 dual\n127.0.0.1 dual\n")
      H.spit(dir .. "/listen.py", [[
import socket, sys
s = socket.socket(socket.AF_INET)
s.bind(("127.0.0.1", 0))
s.listen(1)
s.settimeout(10)
print(s.getsockname()[1], flush=True)
try:
    c, _ = s.accept()
except OSError:
    pass
]])
      local lua = H.lua([[
        local core = require "lprocess.core"
        local py = io.popen("python3 ]] .. dir .. [[/listen.py")
        local port = tonumber(py:read("l"))
        local fd, err = core.tcp_connect("dual", port)
        if not fd then print(err) os.exit(1) end
        core.poll({ [fd] = "w" }, 10)
        print(core.sockerror(fd))
        py:close()
      ]])
      for i, a in ipairs(lua) do lua[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
      local out, st = run { "unshare", "--mount", "sh", "-c",
        "mount --bind " .. dir .. "/hosts /etc/hosts && exec " .. table.concat(lua, " ") }
      if out:find("unshare: ") then
        pending("no mount namespace here: " .. out)
        return
      end
      assert.exited(0, st, out)
      assert.equal("0\n", out)
    end)
  end)
end)
