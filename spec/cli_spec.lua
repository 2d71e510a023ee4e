-- The lrun command, driven as a user drives it: scripts/lrun as a subprocess over the
-- job files in spec/fixtures/cli_*, checked through exit codes, output bytes, the
-- files its jobs write, and /proc afterwards.
local H = require "helper"
local lp, core = H.lp, H.core

local LRUN = H.root .. "/scripts/lrun"
local FIX = H.root .. "/spec/fixtures/"

-- Run lrun to the end; returns {code=, stdout=, stderr=, status=}.
local function lrun(args, opts)
  opts = opts or {}
  local argv = { LRUN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.setenv = opts.env or {}
  argv.setenv.LPROCESS_CPATH = H.cpath
  argv.cwd = opts.cwd
  argv.timeout = opts.timeout or 120
  argv.input = opts.input
  local res = assert(lp.run(argv))
  res.code = lp.exit_code(res.status)
  return res
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]*") do if l ~= "" then t[#t + 1] = l end end
  return t
end

-- Start lrun in the background with stdout/stderr in files; returns the Process.
local function lrun_bg(t, args, env)
  local argv = { LRUN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.setenv = env or {}
  argv.setenv.LPROCESS_CPATH = H.cpath
  argv.stdout = env.T .. "/out"
  argv.stderr = env.T .. "/err"
  return t:spawn(argv)
end

local function read_pid(path, timeout)
  local pid
  H.wait_until(function()
    local s = H.slurp(path)
    pid = s and tonumber(s:match("%d+"))
    return pid
  end, timeout or 20)
  return pid
end

describe("lrun", function()
  local T
  before_each(function() T = H.tmpdir() end)
  after_each(function() H.rm_rf(T) end)

  describe("exit status", function()
    it("is 0 when every job succeeds and runs dependents after their needs", function()
      local r = lrun({ FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      local out = r.stdout
      for _, name in ipairs { "a", "b", "c", "d", "f" } do
        assert.truthy(out:find(name .. " | " .. name .. "%-"), name .. " did not print")
      end
      assert.truthy(out:find("a | a-out", 1, true) < out:find("b | b-out", 1, true))
      assert.truthy(out:find("c | c-out", 1, true) < out:find("d | d-out", 1, true))
      assert.falsy(out:find("e-ran", 1, true))   -- needs c to fail
      assert.truthy(r.stderr:find("a | a-err", 1, true))
      assert.truthy(exists(T .. "/g-ran"))
    end)

    it("is 1 on a failure, skips what needs it transitively, runs failure/done needs", function()
      local r = lrun({ "-k", FIX .. "cli_basic.lua" }, { env = { T = T, C_EXIT = "3" } })
      assert.are.equal(1, r.code)
      assert.falsy(r.stdout:find("d-out", 1, true))
      assert.truthy(r.stdout:find("e | e-ran", 1, true))
      assert.truthy(r.stdout:find("f | f-ran", 1, true))   -- f needs d "done": skipped is done
      assert.truthy(r.stderr:find("job c: failed (exited with code 3)", 1, true))
      assert.truthy(r.stderr:match("\nd%s+skipped"))
    end)

    it("is 2 for an invalid file, naming file, line, job and key, starting nothing", function()
      local r = lrun({ FIX .. "cli_bad_key.lua" })
      assert.are.equal(2, r.code)
      assert.truthy(r.stderr:find("^lrun: cli_bad_key.lua:1: job \"build\": unknown key 'neds'"))
      assert.truthy(r.stderr:find("did you mean 'needs'", 1, true))
    end)

    it("prints a dependency cycle as its path and starts nothing", function()
      local r = lrun({ FIX .. "cli_bad_cycle.lua" }, { env = { T = T } })
      assert.are.equal(2, r.code)
      assert.truthy(r.stderr:find("a -> c -> b -> a", 1, true), r.stderr)
      assert.falsy(exists(T .. "/must-not-run"))
    end)

    it("is 2 for unknown options and unknown targets", function()
      assert.are.equal(2, lrun({ "--frobnicate", FIX .. "cli_basic.lua" }).code)
      local r = lrun({ FIX .. "cli_basic.lua", "nosuch" }, { env = { T = T } })
      assert.are.equal(2, r.code)
      assert.truthy(r.stderr:find('unknown target "nosuch"', 1, true))
    end)

    it("reports an exec failure with its reason, distinct from a job exiting 127", function()
      local r = lrun({ "-k", FIX .. "cli_exec.lua" })
      assert.are.equal(1, r.code)
      assert.truthy(r.stderr:find("job missing: /nonexistent/program: No such file or directory",
        1, true), r.stderr)
      assert.truthy(r.stderr:find("job e127: failed (exited with code 127)", 1, true), r.stderr)
    end)
  end)

  describe("scheduling", function()
    it("never runs more than -j jobs at once (timestamps written by the jobs)", function()
      for _, j in ipairs { 1, 3 } do
        os.remove(T .. "/ts")
        assert.are.equal(0, lrun({ "-q", "-j", tostring(j), FIX .. "cli_bound.lua" },
          { env = { T = T } }).code)
        local ev = {}
        for kind, ts in H.slurp(T .. "/ts"):gmatch("(%a+) ([%d.]+)") do
          ev[#ev + 1] = { tonumber(ts), kind == "start" and 1 or -1 }
        end
        assert.are.equal(16, #ev)
        table.sort(ev, function(a, b)
          if a[1] ~= b[1] then return a[1] < b[1] end
          return a[2] < b[2]   -- an end and a start at the same instant: end first
        end)
        local n, max = 0, 0
        for _, e in ipairs(ev) do
          n = n + e[2]
          max = math.max(max, n)
        end
        assert.are.equal(j, max)
      end
    end)

    it("without -k stops new starts after a failure and lets running jobs finish", function()
      local r = lrun({ FIX .. "cli_halt.lua" }, { env = { T = T } })
      assert.are.equal(1, r.code)
      assert.truthy(exists(T .. "/slow-finished"))
      assert.falsy(exists(T .. "/later-ran"))
      assert.falsy(exists(T .. "/indep-ran"))
    end)

    it("with -k keeps starting independent jobs", function()
      local r = lrun({ "-k", FIX .. "cli_halt.lua" }, { env = { T = T } })
      assert.are.equal(1, r.code)
      assert.truthy(exists(T .. "/indep-ran"))
      assert.truthy(exists(T .. "/later-ran"))   -- needs bad "done"
    end)

    it("runs only the TARGETs and what they need", function()
      local r = lrun({ FIX .. "cli_basic.lua", "d" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      assert.truthy(r.stdout:find("d | d-out", 1, true))
      assert.truthy(r.stdout:find("a | a-out", 1, true))
      assert.falsy(r.stdout:find("b-out", 1, true))
      assert.falsy(exists(T .. "/g-ran"))
    end)

    it("retries a failing job and honours success_codes", function()
      local r = lrun({ FIX .. "cli_retry.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("3", H.slurp(T .. "/count"):match("%d+"))
      os.remove(T .. "/count")
      r = lrun({ FIX .. "cli_retry.lua" }, { env = { T = T, RETRIES = "1" } })
      assert.are.equal(1, r.code)
      assert.are.equal("2", H.slurp(T .. "/count"):match("%d+"))
    end)

    it("times a job out: kill_signal to its group, KILL after kill_grace", function()
      local t0 = core.now()
      local r = lrun({ "-k", FIX .. "cli_timeout.lua" }, { env = { T = T } })
      assert.are.equal(1, r.code)
      assert.truthy(core.now() - t0 < 30)
      assert.truthy(r.stderr:match("\nsleepy%s+timeout%s+SIGTERM"), r.stderr)
      assert.truthy(r.stderr:match("\nstubborn%s+timeout%s+SIGKILL"), r.stderr)
    end)

    it("accounts for 400 jobs ending at the same instant", function()
      local r = lrun({ "-q", FIX .. "cli_many.lua" }, { env = { T = T }, timeout = 120 })
      assert.are.equal(0, r.code, r.stderr)
      assert.zombiefree()
    end)

    it("gives every job LRUN_JOB, LRUN_INSTANCE, LRUN_RUN_ID and its env", function()
      local r = lrun({ "-j1", FIX .. "cli_env.lua" })
      assert.are.equal(0, r.code)
      local run0 = r.stdout:match("web%.0 | job=web inst=0 run=(%S+) foo=bar")
      local run1 = r.stdout:match("web%.1 | job=web inst=1 run=(%S+) foo=bar")
      assert.truthy(run0 and run0 ~= "", r.stdout)
      assert.are.equal(run0, run1)
    end)

    it("leaks no descriptor into a job beyond 0, 1, 2", function()
      local r = lrun({ FIX .. "cli_fds.lua" })
      assert.are.equal(0, r.code)
      local fds = {}
      for fd in r.stdout:gmatch("fds | (%d+)") do fds[#fds + 1] = tonumber(fd) end
      -- ls itself opens one descriptor for /proc/self/fd: the highest listed
      table.sort(fds)
      table.remove(fds)
      assert.are.same({ 0, 1, 2 }, fds)
    end)
  end)

  describe("output", function()
    it("prefixes lines with padded names and never loses a partial line or odd bytes", function()
      local r = lrun({ "-q", "-j1", FIX .. "cli_output.lua" })
      assert.are.equal(0, r.code)
      assert.are.equal("x           | one\nx           | two\nx           | no-newline\n"
        .. "longer_name | a\0b\r\nlonger_name | \255\254\n", r.stdout)
      assert.are.equal("longer_name | err-line\n", r.stderr)
    end)

    it("-o raw passes bytes exactly as written", function()
      local r = lrun({ "-q", "-j1", "-o", "raw", FIX .. "cli_output.lua" })
      assert.are.equal("one\ntwo\nno-newlinea\0b\r\n\255\254\n", r.stdout)
    end)

    it("-o group prints each job's output at once", function()
      local r = lrun({ "-q", "-o", "group", FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      assert.truthy(r.stdout:find("x-out", 1, true) == nil)
      assert.truthy(r.stdout:find("a | a-out\n", 1, true))
    end)

    it("moves 100 MB without a lost byte or a torn line, next to another job", function()
      local r = lrun({ "-q", FIX .. "cli_big.lua" }, { timeout = 300 })
      assert.are.equal(0, r.code)
      -- 100 000 000 x's in lines of 99: 1 010 102 lines (the last of 1 x)
      local big_lines, small_lines, bad = 0, 0, 0
      local xs = 0
      for line in r.stdout:gmatch("([^\n]*)\n") do
        local name, body = line:match("^(%S+)%s*| (.*)$")
        if name == "big" and body:match("^x+$") then
          big_lines = big_lines + 1
          xs = xs + #body
        elseif name == "small" and body:match("^line%-%d+$") then
          small_lines = small_lines + 1
        else
          bad = bad + 1
        end
      end
      assert.are.equal(0, bad)
      assert.are.equal(100000000, xs)
      assert.are.equal(1010102, big_lines)
      assert.are.equal(1000, small_lines)
    end)

    it("does not hang when a grandchild keeps the job's pipe open", function()
      local t0 = core.now()
      local r = lrun({ "-q", FIX .. "cli_linger.lua" }, { timeout = 60 })
      assert.are.equal(0, r.code)
      assert.truthy(core.now() - t0 < 20)
      assert.truthy(r.stdout:find("linger | before\nlinger | after\n", 1, true))
    end)

    it("writes --log-dir files, a GNU parallel --joblog and --events JSON lines", function()
      local r = lrun({ "-q", "--log-dir", T .. "/logs", "--joblog", T .. "/joblog",
        "--events", T .. "/events", FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      assert.are.equal("a-out\na-err\n", H.slurp(T .. "/logs/a.log"))
      local jl = lines_of(H.slurp(T .. "/joblog"))
      assert.are.equal("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand",
        jl[1])
      assert.are.equal(7, #jl)   -- header + a b c d f g (e is skipped)
      local cols = {}
      for c in (jl[2] .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
      assert.are.equal(9, #cols)
      assert.are.equal("0", cols[7])
      local cjson = require "cjson"
      local kinds = {}
      for line in H.slurp(T .. "/events"):gmatch("[^\n]+") do
        local ev = cjson.decode(line)
        kinds[ev.event] = (kinds[ev.event] or 0) + 1
      end
      assert.are.equal(6, kinds.start)
      assert.are.equal(6, kinds.exit)
      assert.are.equal(1, kinds.skip)
    end)
  end)

  describe("plans", function()
    it("-n prints the plan in start order and starts nothing", function()
      local r = lrun({ "-n", FIX .. "cli_bad_cycle.lua" }, { env = { T = T } })
      assert.are.equal(2, r.code)
      r = lrun({ "-n", FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      assert.falsy(exists(T .. "/g-ran"))
      local names = {}
      for name in r.stdout:gmatch("%d+%. (%S+)") do names[#names + 1] = name end
      assert.are.same({ "a", "b", "c", "d", "e", "f", "g" }, names)
    end)

    it("--graph prints DOT and -l lists jobs", function()
      local r = lrun({ "--graph", FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.truthy(r.stdout:find("^digraph"))
      assert.truthy(r.stdout:find('"a" -> "b"', 1, true))
      r = lrun({ "-l", FIX .. "cli_basic.lua" }, { env = { T = T } })
      assert.are.equal(7, #lines_of(r.stdout))
    end)

    it("gives the same plan for the YAML and Lua forms of a file", function()
      local a = lrun({ "-n", FIX .. "cli_same.lua" })
      local b = lrun({ "-n", FIX .. "cli_same.yaml" })
      assert.are.equal(0, a.code)
      assert.are.equal(a.stdout, b.stdout)
      assert.are.equal(lrun({ FIX .. "cli_same.lua" }).stdout, lrun({ FIX .. "cli_same.yaml" }).stdout)
    end)
  end)

  describe("stopping", function()
    it("SIGTERM stops every job within the grace, KILLs the stubborn, exits 143", function()
      local t = H.track(finally)
      local p = lrun_bg(t, { "--grace", "1", FIX .. "cli_signal.lua" }, { T = T })
      local stubborn = read_pid(T .. "/stubborn.pid")
      local polite = read_pid(T .. "/polite.pid")
      assert.truthy(stubborn and polite)
      p:kill("TERM")
      local st = assert(H.wait_pid(p.pid, 30))
      assert.exited(143, st)
      assert.falsy(H.alive(stubborn))
      assert.falsy(H.alive(polite))
      local err = H.slurp(T .. "/err")
      assert.truthy(err:match("\nstubborn%s+stopped%s+SIGKILL"), err)
      assert.truthy(err:match("\npolite%s+stopped%s+SIGTERM"), err)
    end)

    it("a second SIGINT skips the grace period", function()
      local t = H.track(finally)
      local p = lrun_bg(t, { "--grace", "60", FIX .. "cli_signal.lua" }, { T = T })
      local stubborn = read_pid(T .. "/stubborn.pid")
      assert.truthy(read_pid(T .. "/polite.pid"))
      local t0 = core.now()
      p:kill("INT")
      H.wait_until(function() return (H.slurp(T .. "/err") or ""):find("stopping jobs") end, 10)
      p:kill("INT")
      local st = assert(H.wait_pid(p.pid, 30))
      assert.exited(130, st)
      assert.truthy(core.now() - t0 < 30)
      assert.falsy(H.alive(stubborn))
    end)

    it("leaves nothing running after kill -9 of lrun, even escaped grandchildren", function()
      local t = H.track(finally)
      local p = lrun_bg(t, { "-j4", FIX .. "cli_escape.lua" }, { T = T })
      local dfork = read_pid(T .. "/dfork.pid")
      local setsid = read_pid(T .. "/setsid.pid")
      -- without the run's tag: only its job's process group reaches it
      local untagged = read_pid(T .. "/untagged.pid")
      assert.truthy(dfork and setsid and untagged)
      assert.truthy(H.wait_until(function() return exists(T .. "/started") end, 20))
      assert.alive(setsid)
      assert.alive(untagged)
      p:kill("KILL")
      assert.signaled("KILL", p:wait())
      local gone = H.wait_until(function()
        core.reap()
        return not H.alive(dfork) and not H.alive(setsid) and not H.alive(untagged)
      end, 20)
      assert.truthy(gone, "a job's process survived kill -9 of lrun")
      -- nothing at all carries the run's tag any more
      local left = H.wait_until(function()
        local h = io.popen("grep -l LRUN_RUN_ID /proc/[0-9]*/environ 2>/dev/null | wc -l")
        local n = tonumber(h:read("a"))
        h:close()
        return n == 0
      end, 20)
      assert.truthy(left)
    end)

    it("stops every job and fails when its watchdog dies", function()
      local t = H.track(finally)
      local p = lrun_bg(t, { "-j4", FIX .. "cli_escape.lua" }, { T = T })
      local untagged = read_pid(T .. "/untagged.pid")
      assert.truthy(H.wait_until(function() return exists(T .. "/started") end, 20))
      -- the watchdog: lrun's child running lrun's own command line
      local wd
      for _, k in ipairs(H.children_of(p.pid)) do
        if (H.slurp("/proc/" .. k .. "/cmdline") or ""):find("lrun", 1, true) then wd = k end
      end
      assert.truthy(wd, "no watchdog among lrun's children")
      core.kill(wd, "KILL")
      local st = assert(H.wait_pid(p.pid, 30))
      assert.exited(1, st)
      assert.matches("watchdog: killed by SIGKILL; stopping every job", H.slurp(T .. "/err"), 1, true)
      assert.falsy(H.alive(untagged))
    end)

    it("stops and reports what is left of a job's group after its main process ends", function()
      local r = lrun({ FIX .. "cli_leftover.lua" }, { env = { T = T } })
      assert.are.equal(0, r.code)
      local pid = tonumber(H.slurp(T .. "/left.pid"))
      assert.truthy(r.stderr:find("outlived it; stopping it", 1, true), r.stderr)
      assert.falsy(H.alive(pid))
    end)

    it("leaves no zombie while it runs, nor after", function()
      local t = H.track(finally)
      local p = lrun_bg(t, { "-j4", FIX .. "cli_churn.lua" }, { T = T })
      local worst = 0
      H.wait_until(function()
        -- zombies whose parent is lrun, while 400 jobs come and go
        local z = #H.zombies_of(p.pid)
        worst = math.max(worst, z)
        return p:poll()
      end, 120)
      assert.exited(0, p:wait())
      -- a zombie may exist between an exit and its reaping: never an accumulation
      assert.truthy(worst < 10, "zombies accumulated: " .. worst)
      assert.zombiefree({ p.pid })
    end)
  end)
end)
