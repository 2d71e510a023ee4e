-- `lrun --init -- CMD` (lrun.initmode): exit codes, exec failures, signal forwarding,
-- orphan reaping, leftovers, terminals and PID 1, on real processes through
-- scripts/lrun. Every process a test starts is killed and reaped in `finally`.
local U = dofile("spec/fixtures/d_util.lua")
local core = U.core

-- Shell: start a sleeper that ignores SIGTERM, print its pid, and go on only once
-- it ignores it (it has exec'd sleep), so CMD's exit cannot overtake the trap.
local IGNORER = "(trap '' TERM; exec sleep 302) & echo $!; "
  .. "until [ \"$(cat /proc/$!/comm 2>/dev/null)\" = sleep ]; do :; done; "

local function init(args, opts)
  return U.run({ U.lrun, "--init", table.unpack(args) }, opts)
end

-- Start `lrun --init ARGS` in the background; -> Process (stdout/stderr pipes)
local function start(t, args)
  local p = U.spawn({ U.lrun, "--init", table.unpack(args) }, { stdout = "pipe", stderr = "pipe" })
  t[#t + 1] = p
  return p, U.reader(p.stdout), U.reader(p.stderr)
end

local function tracker()
  local t = { pids = {} }
  finally(function()
    for _, p in ipairs(t) do
      if not p.status then
        core.kill(p.pid, "KILL")
        p:wait()
      end
      p:close_pipes()
    end
    for _, pid in ipairs(t.pids) do U.kill(pid) end
    U.reap_all()
  end)
  return t
end

local function has_init()
  return U.slurp(U.root .. "/lua/lrun/cli.lua") ~= nil
end

describe("lrun --init", function()
  before_each(function()
    if not has_init() then pending("lrun.cli is not on main yet") end
  end)

  it("exits with CMD's code, 0..255 sampled", function()
    for _, code in ipairs { 0, 1, 2, 3, 42, 99, 125, 126, 127, 128, 129, 200, 254, 255 } do
      local res = init { "--", "sh", "-c", "exit " .. code }
      assert.equal(code, res.code)
      assert.equal("", res.stderr)
    end
  end)

  it("exits 128+N when CMD is killed by signal N", function()
    for sig, n in pairs { TERM = 15, KILL = 9, SEGV = 11, INT = 2, HUP = 1 } do
      -- (env -u: under `make sanitize` ASan's handler would turn SEGV into an abort)
      local res = init { "--", "env", "-u", "LD_PRELOAD", "sh", "-c", "ulimit -c 0; kill -" .. sig .. " $$" }
      assert.equal(128 + n, res.code, sig)
    end
  end)

  it("maps -e codes to success, as tini does", function()
    assert.equal(0, init({ "-e", "3", "-e", "4", "--", "sh", "-c", "exit 3" }).code)
    assert.equal(0, init({ "-e", "3", "-e", "4", "--", "sh", "-c", "exit 4" }).code)
    assert.equal(5, init({ "-e", "3", "--", "sh", "-c", "exit 5" }).code)
    assert.equal(0, init({ "-e", "3", "--", "true" }).code)
  end)

  it("reports exec failure with a message: 127 not found, 126 not executable", function()
    local res = init { "--", "no-such-program-xyz", "arg" }
    assert.equal(127, res.code)
    assert.equal("lrun: no-such-program-xyz: No such file or directory\n", res.stderr)
    res = init { "--", "/etc/passwd" }
    assert.equal(126, res.code)
    assert.equal("lrun: /etc/passwd: Permission denied\n", res.stderr)
    -- ...distinct from a CMD that itself exits 127
    res = init { "--", "sh", "-c", "exit 127" }
    assert.equal(127, res.code)
    assert.equal("", res.stderr)
  end)

  it("runs CMD in its own process group, as a child of lrun", function()
    local t = tracker()
    local p, out = start(t, { "--", "lua5.4", U.fixtures .. "/d_sigcatch.lua" })
    local line = assert(out.line(10))
    local pid, pgid = line:match("^ready (%d+) (%d+)$")
    pid, pgid = tonumber(pid), tonumber(pgid)
    assert.equal(pid, pgid)
    assert.are_not.equal(U.stat(p.pid).pgrp, pgid)
    assert.equal(p.pid, U.stat(pid).ppid)
    core.kill(p.pid, "TERM")
    assert.equal(0, p:wait().code)
  end)

  it("forwards every catchable signal to CMD, once each", function()
    local t = tracker()
    local p, out = start(t, { "--", "lua5.4", U.fixtures .. "/d_sigcatch.lua" })
    assert.matches("^ready ", assert(out.line(10)))
    local sent = { "HUP", "INT", "QUIT", "USR1", "USR2", "WINCH", "ALRM", "URG", "CONT",
      "TSTP", "PWR", 40 }
    for _, sig in ipairs(sent) do
      assert.is_true(core.kill(p.pid, sig))
      assert.equal(tostring(sig), out.line(10))   -- arrived before the next one goes
    end
    core.kill(p.pid, "TERM")
    assert.equal("TERM", out.line(10))
    assert.same({}, out.rest(10))                  -- nothing arrived twice
    local st = p:wait()
    assert.equal(0, st.code)
  end)

  it("reaps every orphan as it ends: 100 orphaned sleepers leave no zombie", function()
    local t = tracker()
    local p, out = start(t, { "--", "sh", "-c",
      "for i in $(seq 100); do (sleep 300 &); done; echo spawned; exec sleep 300" })
    assert.equal("spawned", out.line(30))
    -- the orphans come to lrun (the subreaper)...
    local kids
    assert.truthy(U.wait_until(function()
      kids = U.children(p.pid)
      return #kids >= 101
    end, 30), "orphans re-parented to lrun: " .. #U.children(p.pid))
    local cmd
    for _, k in ipairs(kids) do
      if U.stat(k).pgrp ~= k then t.pids[#t.pids + 1] = k else cmd = k end
    end
    assert.truthy(cmd)
    -- ...and when they all die at once, every one is reaped: only CMD is left
    for _, k in ipairs(t.pids) do core.kill(k, "KILL") end
    assert.truthy(U.wait_until(function() return #U.children(p.pid) == 1 end, 10),
      "children of lrun left: " .. #U.children(p.pid))
    assert.same({ cmd }, U.children(p.pid))
    core.kill(p.pid, "TERM")                        -- forwarded to CMD (sleep)
    assert.equal(143, U.lp.exit_code(p:wait()))
  end)

  it("stops what CMD leaves behind: TERM, then KILL after the grace", function()
    local t = tracker()
    local t0 = core.now()
    local res = init { "--grace", "1", "--", "sh", "-c",
      "sleep 300 & echo $!; setsid sleep 301 & echo $!; " .. IGNORER .. "exit 5" }
    local took = core.now() - t0
    for pid in res.stdout:gmatch("%d+") do t.pids[#t.pids + 1] = tonumber(pid) end
    assert.equal(5, res.code)
    assert.equal(3, #t.pids)
    for _, pid in ipairs(t.pids) do assert.is_false(U.alive(pid), "left running: " .. pid) end
    assert.is_true(took >= 0.9 and took < 5, "took " .. took)   -- one sleeper ignored TERM
    -- nothing left: no waiting for a grace at all
    t0 = core.now()
    assert.equal(0, init({ "--grace", "5", "--", "true" }).code)
    assert.is_true(core.now() - t0 < 2)
  end)

  it("a TERM while stopping the leftovers skips the rest of the grace", function()
    local t = tracker()
    local p, out, err = start(t, { "-v", "--grace", "60", "--", "sh", "-c",
      IGNORER .. "exit 3" })
    local left = tonumber(out.line(10))
    t.pids[#t.pids + 1] = left
    repeat
      local l = assert(err.line(10))
    until l:find("stopping what", 1, true)
    local t0 = core.now()
    core.kill(p.pid, "TERM")
    assert.equal(3, p:wait().code)
    assert.is_true(core.now() - t0 < 5)
    assert.is_false(U.alive(left))
  end)

  it("takes CMD with it when lrun is killed by SIGKILL", function()
    local t = tracker()
    local p, out = start(t, { "--", "sh", "-c", "echo $$; exec sleep 300" })
    local cmd = tonumber(out.line(10))
    t.pids[#t.pids + 1] = cmd
    core.kill(p.pid, "KILL")
    p:wait()
    assert.truthy(U.wait_until(function() return not U.alive(cmd) end, 5))
  end)

  it("makes CMD the terminal's foreground group before it runs, and takes it back", function()
    -- script(1) gives the shell and lrun a pseudo-terminal as controlling terminal;
    -- CMD looks at once whether its group is the terminal's foreground one, and the
    -- shell looks again after lrun has returned.
    local check = [[read -r pid comm state ppid pgrp sid tty tpgid rest < /proc/self/stat; ]]
      .. [[[ "$pgrp" = "$tpgid" ] && echo %s=yes || echo %s=no]]
    local inner = check:format("cmd", "cmd") .. "; exit 6"
    local cmd = string.format("%s --init -- sh -c '%s'; echo code=$?; %s", U.lrun,
      inner:gsub("'", "'\\''"), check:format("after", "after"))
    for _ = 1, 5 do   -- a race would show in some runs, not all
      local res = U.run { "script", "-qec", cmd, "/dev/null" }
      assert.matches("cmd=yes", res.stdout)
      assert.matches("code=6", res.stdout)
      assert.matches("after=yes", res.stdout)
    end
    -- a CMD that cannot be executed had the terminal for a moment: lrun takes it back
    cmd = string.format("%s --init -- no-such-program-xyz; echo code=$?; %s", U.lrun,
      check:format("after", "after"))
    local res = U.run { "script", "-qec", cmd, "/dev/null" }
    assert.matches("code=127", res.stdout)
    assert.matches("after=yes", res.stdout)
  end)

  it("passes the descriptors it was given on to CMD, as tini does", function()
    local t = tracker()
    local r, w = assert(core.pipe())
    local p = U.spawn({ U.lrun, "--init", "--", "sh", "-c", "echo through >&5" }, { fds = { [5] = w } })
    t[#t + 1] = p
    core.close(w)
    assert.equal(0, p:wait().code)
    assert.equal("through\n", core.read(r, 100))
    core.close(r)
  end)

  describe("as PID 1", function()
    local function can_unshare()
      return U.run({ "unshare", "--pid", "--fork", "--mount-proc", "true" }).code == 0
    end

    it("reaps orphans, returns CMD's code, stops the rest (unshare --pid)", function()
      if not can_unshare() then
        pending("unshare --pid --fork --mount-proc is not permitted here (needs root or user namespaces)")
        return
      end
      local script = [[
echo "me=$$ parent=$PPID"
for i in $(seq 20); do (sleep 0.1 &); done
sleep 0.5
z=0; for f in /proc/[0-9]*/stat; do read -r p c s rest < "$f" 2>/dev/null; [ "$s" = Z ] && z=$((z+1)); done
echo "zombies=$z"
sleep 300 &
exit 7]]
      local t0 = core.now()
      local res = U.run { "unshare", "--pid", "--fork", "--mount-proc", U.lrun, "--init", "--grace", "2",
        "--", "sh", "-c", script }
      assert.equal(7, res.code, res.stderr)
      assert.matches("parent=1\n", res.stdout)     -- lrun is PID 1, CMD its child
      assert.matches("zombies=0\n", res.stdout)
      assert.is_true(core.now() - t0 < 2, "the leftover sleeper was not stopped at once")
    end)

    it("forwards signals as PID 1, where unhandled signals would be dropped", function()
      if not can_unshare() then
        pending("unshare --pid --fork --mount-proc is not permitted here (needs root or user namespaces)")
        return
      end
      local t = tracker()
      local p = U.spawn({ "unshare", "--pid", "--fork", "--mount-proc", U.lrun, "--init", "--",
        "lua5.4", U.fixtures .. "/d_sigcatch.lua" }, { stdout = "pipe" })
      t[#t + 1] = p
      local out = U.reader(p.stdout)
      assert.equal("ready 2 2", out.line(10))       -- CMD is PID 2 in the namespace
      local inner = U.children(p.pid)[1]             -- lrun, PID 1 inside
      assert.truthy(inner)
      core.kill(inner, "USR1")
      assert.equal("USR1", out.line(10))
      core.kill(inner, "TERM")
      assert.equal("TERM", out.line(10))
      assert.equal(0, p:wait().code)
    end)
  end)

  describe("signal configuration (as tini: CMD gets what lrun was given)", function()
    local IGN, BLK = { "TTOU", "SEGV", "INT" }, { "TTIN", "ILL", "TERM" }
    local function set_of(names)
      local set = {}
      for _, n in ipairs(names) do set[core.signals[n]] = true end
      return set
    end
    -- Run argv as a launcher would that ignores IGN and blocks BLK; -> result
    local function launched(argv, extra)
      -- under make sanitize, ASan's own SIGSEGV handler would replace the ignored one
      local env = U.env { ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":handle_segv=0" }
      local spec = { setenv = env, timeout = 30, stdin = "null", sigignore = IGN,
        sigmask = BLK }
      for k, v in pairs(extra or {}) do spec[k] = v end
      for i, a in ipairs(argv) do spec[i] = a end
      local res = assert(U.lp.run(spec))
      res.code = U.lp.exit_code(res.status)
      return res
    end
    local function check(out)
      local blk, ign = out:match("SigBlk:%s*(%x+)"), out:match("SigIgn:%s*(%x+)")
      assert.truthy(blk and ign, out)
      local H = require "helper"
      assert.same(set_of(BLK), H.sigset(blk))
      assert.same(set_of(IGN), H.sigset(ign))
    end

    it("CMD starts with the mask and the ignored set lrun started with", function()
      local res = launched { U.lrun_bin, "--init", "--", "cat", "/proc/self/status" }
      assert.equal(0, res.code, res.stderr)
      check(res.stdout)
    end)

    it("so do a job file's jobs", function()
      local dir = U.tmpdir()
      finally(function() U.rm_rf(dir) end)
      U.spit(dir .. "/j.lua", 'job "s" { "cat", "/proc/self/status" }\n')
      local res = launched { U.lrun_bin, "-q", "-o", "raw", dir .. "/j.lua" }
      assert.equal(0, res.code, res.stderr)
      check(res.stdout)
    end)

    it("as PID 1 too (unshare --pid)", function()
      if U.run({ "unshare", "--pid", "--fork", "--mount-proc", "true" }).code ~= 0 then
        pending("unshare --pid --fork --mount-proc is not permitted here")
        return
      end
      local res = launched { "unshare", "--pid", "--fork", "--mount-proc", U.lrun_bin, "--init",
        "--", "cat", "/proc/self/status" }
      assert.equal(0, res.code, res.stderr)
      check(res.stdout)
    end)

    it("a forwarded signal that CMD has blocked stays pending in CMD, as with tini", function()
      local t = tracker()
      local p = U.lp.spawn { U.lrun_bin, "--init", "--", "sh", "-c", "echo $$; exec sleep 60",
        setenv = U.env(), stdout = "pipe", stdin = "null", sigmask = { "USR1" } }
      t[#t + 1] = p
      local cmd = tonumber(U.reader(p.stdout).line(10))
      assert.truthy(cmd)
      assert.truthy(require("helper").wait_until(function()
        return (U.slurp("/proc/" .. cmd .. "/comm") or "") == "sleep\n"
      end, 10))
      core.kill(p.pid, "USR1")
      local usr1 = core.signals.USR1
      local H = require "helper"
      assert.truthy(require("helper").wait_until(function()
        local f = H.status_fields(cmd)
        return f and H.sigset(f.ShdPnd)[usr1]
      end, 10), "USR1 did not reach CMD")
      assert.is_true(U.lp.core.kill(cmd, 0) == true)   -- blocked: pending, not fatal
      core.kill(p.pid, "TERM")
      assert.equal(143, U.lp.exit_code(p:wait()))
    end)
  end)
end)
