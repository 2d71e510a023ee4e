-- `lrun --executor slurm` against a real single-node Slurm cluster (munged +
-- slurmctld + slurmd on 127.0.0.1, started by scripts/slurm-cluster, or reused when
-- one already answers). No mock: jobs go through sbatch, run under slurmstepd, and
-- their state comes back through squeue.
--
-- * the examples give the same exit code, skip set, joblog exit values and output
--   lines as a local run;
-- * a failing job skips its dependents; retries; a timeout; instances and the
--   variables and directory a job runs with;
-- * ^C cancels every job (squeue and ps show nothing of them), --cancel RUN_ID
--   after lrun was SIGKILLed;
-- * bad configurations (no sbatch, SLURM_CONF unset, controller down) exit 2 with
--   nothing submitted; -n prints the sbatch lines.
--
-- Where Slurm is not installed (or we are not root, which its daemons need here)
-- every test of the cluster is skipped with that reason; .ci/run installs it. The
-- state mapping (lrun.slurm.poll) is checked everywhere, on squeue's and scontrol's
-- own line formats, OUT_OF_MEMORY and NODE_FAIL included.
local H = require "helper"
local lp = require "lprocess"
local core = require "lprocess.core"
local cjson = require "cjson"

local ROOT = core.getcwd()
local LRUN = ROOT .. "/scripts/lrun"
local CLUSTER = ROOT .. "/scripts/slurm-cluster"
local TIMEOUT = 120

local SKIP, CONF, STARTED

local function lines_of(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

local function sorted(t)
  local c = table.move(t, 1, #t, 1, {})
  table.sort(c)
  return c
end

local function sh(cmd, setenv)
  local res = assert(lp.run { "/bin/sh", "-c", cmd, setenv = setenv, timeout = 60 })
  return res.status.how == "exit" and res.status.code or -1, res.stdout, res.stderr
end

-- scripts/lrun ARGS...; -> { code =, stdout =, stderr =, out = {lines} }
local function lrun(args, setenv)
  local e = { NO_COLOR = "1", SLURM_CONF = CONF }
  for k, v in pairs(setenv or {}) do e[k] = v end
  local opts = { LRUN, "--color", "never", cwd = ROOT, setenv = e,
    timeout = TIMEOUT }
  for _, a in ipairs(args) do opts[#opts + 1] = a end
  local res = assert(lp.run(opts))
  assert(not res.timed_out, "lrun ran past " .. TIMEOUT .. "s: " .. res.stderr)
  local st = res.status
  return { code = st.how == "exit" and st.code or ("SIG" .. tostring(st.signame)),
    stdout = res.stdout, stderr = res.stderr, out = lines_of(res.stdout) }
end

local function show(r)
  return ("\n--- exit %s\n--- stdout:\n%s--- stderr:\n%s"):format(r.code, r.stdout, r.stderr)
end

local function tmpdir()
  local d = H.tmpdir()
  finally(function() H.rm_rf(d) end)
  return d
end

-- The run's events: skipped unit names (sorted), and results by unit.
local function events_of(path)
  local skips = {}
  for line in io.lines(path) do
    local ev = cjson.decode(line)
    if ev.event == "skip" then skips[#skips + 1] = ev.job end
  end
  table.sort(skips)
  return skips
end

-- Joblog exit values, as "exitval signal command" lines, sorted.
local function joblog_of(path)
  local rows = {}
  local first = true
  for line in io.lines(path) do
    if not first then
      local f = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
      rows[#rows + 1] = f[7] .. " " .. f[8] .. " " .. f[9]
    end
    first = false
  end
  table.sort(rows)
  return rows
end

-- Jobs of ours that Slurm still lists as queued or running (names carry `tag`).
local function live_jobs(tag)
  local _, out = sh("squeue -h -r -o '%i %j %T'", { SLURM_CONF = CONF })
  local live = {}
  for line in out:gmatch("[^\n]+") do
    if line:find(tag, 1, true) then live[#live + 1] = line end
  end
  return live
end

local function procs(pattern)
  local _, out = sh("pgrep -af " .. "'" .. pattern .. "' | grep -v pgrep || true")
  return out
end

-- No process of the pattern is left (slurmstepd may take a moment to reap what it
-- killed: a leak stays, and fails this after the deadline).
local function assert_gone(pattern)
  H.wait_until(function() return procs(pattern) == "" end, 10)
  assert.equal("", procs(pattern))
end

-- A job file written to a fresh directory.
local function jobfile(dir, text)
  local path = dir .. "/jobs.lua"
  H.spit(path, text)
  return path
end

local function cluster_up()
  if core.geteuid() ~= 0 then return "Slurm's daemons need root here" end
  local code = sh("command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged")
  if code ~= 0 then
    return "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)"
  end
  local already = sh(CLUSTER .. " status") == 0
  local c, out, err = sh(CLUSTER .. " up")
  if c ~= 0 then error("scripts/slurm-cluster up failed: " .. out .. err) end
  CONF = out:match("SLURM_CONF=(%S+)")
  STARTED = not already
  return nil
end

describe("lrun --executor slurm", function()
  setup(function() SKIP = cluster_up() end)
  teardown(function()
    if STARTED and os.getenv("LRUN_SLURM_KEEP") == nil then sh(CLUSTER .. " down") end
  end)

  local function need_cluster()
    if SKIP then pending(SKIP) return false end
    return true
  end

  describe("runs the examples as a local run does", function()
    for _, ex in ipairs { "demo.lua", "fanout.lua", "pipeline.yaml" } do
      it(ex, function()
        if not need_cluster() then return end
        local d = tmpdir()
        local env = { WORK = d .. "/work", TMPDIR = d }
        local runs = {}
        for _, mode in ipairs { "local", "slurm" } do
          local args = { "--executor", mode, "--events", d .. "/" .. mode .. ".events",
            "--joblog", d .. "/" .. mode .. ".joblog", "--log-dir", d .. "/" .. mode,
            "examples/" .. ex }
          runs[mode] = lrun(args, env)
        end
        local l, s = runs["local"], runs.slurm
        assert(l.code == 0, show(l))
        assert(s.code == l.code, show(s))
        assert.same(sorted(l.out), sorted(s.out))
        assert.same(events_of(d .. "/local.events"), events_of(d .. "/slurm.events"))
        assert.same(joblog_of(d .. "/local.joblog"), joblog_of(d .. "/slurm.joblog"))
        assert.matches("slurm: run %S+", s.stderr)
      end)
    end
  end)

  -- Both ways of submitting: the whole graph up front with Slurm dependencies (this
  -- file has Slurm equivalents for everything), and each job as its needs are met.
  for _, path in ipairs { "up front", "as needs are met" } do
    it("skips the dependents of a failing job, and carries env, dir and LRUN_* (" ..
      path .. ")", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local file = jobfile(d, [==[
      job "bad" { cmd = "echo about to fail; exit 3" }
      job "after" { "echo", "never", needs = "bad" }
      job "also" { "echo", "never either", needs = "after" }
      job "vars" {
        cmd = [=[echo "$LRUN_JOB $LRUN_INSTANCE $GREETING $(pwd)"; test -n "$LRUN_RUN_ID"]=],
        env = { GREETING = "hello, world's" }, dir = "/tmp", instances = 2,
      }
    ]==])
    local r = lrun({ "--executor", "slurm", "-k", "--events", d .. "/ev", "--joblog",
      d .. "/log", "--log-dir", d .. "/out", file },
      { LRUN_SLURM_AS_NEEDED = path == "up front" and "0" or "1" })
    assert(r.code == 1, show(r))
    assert.equal(path == "up front", r.stderr:find("went in up front", 1, true) ~= nil)
    assert.same({ "after", "also" }, events_of(d .. "/ev"))
    assert.same({ "bad    | about to fail", "vars.0 | vars 0 hello, world's /tmp",
      "vars.1 | vars 1 hello, world's /tmp" }, sorted(r.out))
    local codes = joblog_of(d .. "/log")
    assert.equal("3 0 echo about to fail; exit 3", codes[#codes])
    assert.matches("job bad: failed %(exited with code 3%)", r.stderr)
  end)
  end

  it("runs a fan-out and fan-in of 40 instances up front as one array job", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local file = jobfile(d, [==[
      job "src" { "echo", "src" }
      job "w" { cmd = "echo $LRUN_INSTANCE", instances = 40, needs = "src" }
      job "sink" { "echo", "sink", needs = "w" }
    ]==])
    local r = lrun({ "--executor", "slurm", "--joblog", d .. "/log", "--log-dir", d .. "/out",
      file })
    assert(r.code == 0, show(r))
    assert.matches("went in up front %(42 jobs in 3 submissions", r.stderr)
    local files = select(2, sh("ls " .. d .. "/out"))
    assert.matches("\nw%-%d+_39%.out\n", files)   -- the array's last task, %x-%A_%a
    assert.equal(42, #joblog_of(d .. "/log"))
    assert.equal(42, #r.out)
    assert.equal("sink | sink", r.out[42])
    local want = {}
    for i = 0, 39 do want[#want + 1] = ("w.%d | %d"):format(i, i):gsub("^(w%.%d) ", "%1  ") end
    local got = {}
    for _, l in ipairs(r.out) do if l:match("^w%.") then got[#got + 1] = l end end
    assert.same(sorted(want), sorted(got))
  end)

  it("without -k, cancels what Slurm was to run after a failure (up front)", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-halt-" .. core.getpid()
    local file = jobfile(d, ([==[
      job "bad" { cmd = "sleep 1; exit 3" }
      job "%s" { "sleep", "923", needs = { bad = "done" } }
      job "rescue" { "echo", "rescue", needs = { bad = "failure" } }
    ]==]):format(tag))
    local r = lrun({ "--executor", "slurm", "--events", d .. "/ev", "--log-dir", d .. "/out",
      file })
    assert(r.code == 1, show(r))
    assert.matches("went in up front", r.stderr)
    -- as locally: the first failure stops new starts, so nothing after bad ran
    assert.same(sorted { "rescue", tag }, events_of(d .. "/ev"))
    assert.same({}, r.out)
    assert.same({}, live_jobs(tag))
    assert_gone("sleep 923")
  end)

  it("a submission that fails half-way cancels what it submitted (exit 2)", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-half-" .. core.getpid()
    local file = jobfile(d, ([==[
      job "%s" { "sleep", "925", instances = 3 }
      job "last" { "true", needs = "%s", slurm = { partition = "no-such-partition" } }
    ]==]):format(tag, tag))
    local r = lrun({ "--executor", "slurm", "--log-dir", d .. "/out", file })
    assert(r.code == 2, show(r))
    assert.matches("job last: sbatch: .*[Pp]artition.*cancelled the 3 job", r.stderr)
    assert.same({}, live_jobs(tag))
  end)

  it("retries a failed job, resubmitting it", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local file = jobfile(d, ([==[
      job "flaky" {
        cmd = [=[n=$(cat %s/n 2>/dev/null || echo 0); echo $((n+1)) > %s/n
                 echo "try $n"; [ "$n" -ge 2 ]]=],
        retries = 3, retry_delay = 0.2,
      }

    ]==]):format(d, d))
    local r = lrun({ "--executor", "slurm", "--log-dir", d .. "/out", file })
    assert(r.code == 0, show(r))
    assert.same({ "flaky | try 0", "flaky | try 1", "flaky | try 2" }, r.out)
    assert.matches("ok %(3 attempts%)", r.stderr)
  end)

  it("kills a job past its timeout, which counts from its start", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-to-" .. core.getpid()
    local file = jobfile(d, ([==[
      job "%s" { cmd = "echo started; sleep 917; echo never", timeout = 2, kill_grace = 1 }
      job "next" { "echo", "no", needs = "%s" }

    ]==]):format(tag, tag))
    local r = lrun({ "--executor", "slurm", "--events", d .. "/ev", "--log-dir", d .. "/out",
      file })
    assert(r.code == 1, show(r))
    assert.matches("timed out after 2s", r.stderr)
    assert.matches(tag:gsub("%-", "%%-") .. "%s+timeout", r.stderr)
    assert.is_nil(r.stderr:find("CANCELLED AT", 1, true))
    assert.same({ tag .. " | started" }, r.out)
    assert.same({ "next" }, events_of(d .. "/ev"))
    assert.same({}, live_jobs(tag))
    assert_gone("sleep 917")
  end)

  for _, path in ipairs { "up front", "as needs are met" } do
  it("cancels every job on ^C: squeue and ps show nothing left (" .. path .. ")", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-int-" .. core.getpid() .. (path == "up front" and "u" or "n")
    local file = jobfile(d, ([==[
      job "%s" { cmd = "echo up; sleep 919", instances = 3 }
      job "%s-later" { "echo", "no", needs = "%s" }

    ]==]):format(tag, tag, tag))
    local p = assert(lp.spawn { LRUN, "--executor", "slurm", "--log-dir", d .. "/out", file,
      stdout = d .. "/stdout", stderr = d .. "/stderr",
      setenv = { SLURM_CONF = CONF, NO_COLOR = "1",
        LRUN_SLURM_AS_NEEDED = path == "up front" and "0" or "1" } })
    finally(function() if not p.status then p:kill("KILL"); p:wait() end end)
    assert(H.wait_until(function()
      local n = 0
      for _, l in ipairs(live_jobs(tag)) do if l:find("RUNNING") then n = n + 1 end end
      return n == 3 and select(2, sh("cat " .. d .. "/stdout")):find("up\n.*up\n.*up") ~= nil
    end, 60), "3 jobs never ran: " .. table.concat(live_jobs(tag), "; "))
    p:kill("INT")
    local st = p:wait({ timeout = 60 })
    assert(st, "lrun did not end after SIGINT")
    assert.equal(130, lp.exit_code(st))
    assert.same({}, live_jobs(tag))
    assert_gone("sleep 919")
    local err = H.slurp(d .. "/stderr")
    assert.matches("stopped", err)
    assert.equal(path == "up front", err:find("went in up front", 1, true) ~= nil)
  end)
  end

  it("lrun --stop of a daemon run (SIGTERM) cancels its jobs", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-stop-" .. core.getpid()
    local file = jobfile(d, ([==[
      job "%s" { "sleep", "927", instances = 2 }
    ]==]):format(tag))
    local pidfile = d .. "/lrun.pid"
    local r = lrun({ "-d", "--pidfile", pidfile, "--log", d .. "/lrun.log", "--executor", "slurm",
      "--log-dir", d .. "/out", file })
    assert(r.code == 0, show(r))
    finally(function() lrun({ "--stop", "--pidfile", pidfile }) end)
    assert(H.wait_until(function()
      local n = 0
      for _, l in ipairs(live_jobs(tag)) do if l:find("RUNNING") then n = n + 1 end end
      return n == 2
    end, 60), "the jobs never ran: " .. table.concat(live_jobs(tag), "; "))
    r = lrun({ "--stop", "--pidfile", pidfile })
    assert(r.code == 0, show(r))
    assert.same({}, live_jobs(tag))
    assert_gone("sleep 927")
    assert.matches("got SIGTERM", H.slurp(d .. "/lrun.log"))
  end)

  it("--cancel RUN_ID removes the jobs of a run whose lrun was SIGKILLed", function()
    if not need_cluster() then return end
    local d = tmpdir()
    local tag = "lrun-spec-kill-" .. core.getpid()
    -- Held in the queue (--begin): lrun's watchdog kills what runs on this machine
    -- with the run's LRUN_RUN_ID when lrun dies, and here the node is this machine.
    local file = jobfile(d, ([==[
      job "%s" { "sleep", "921", instances = 2, slurm = { extra = { "--begin=now+3600" } } }
    ]==]):format(tag))
    local p = assert(lp.spawn { LRUN, "--executor", "slurm", "--log-dir", d .. "/out", file,
      stdout = "null", stderr = d .. "/stderr", setenv = { SLURM_CONF = CONF } })
    finally(function() if not p.status then p:kill("KILL"); p:wait() end end)
    assert(H.wait_until(function() return #live_jobs(tag) == 2 end, 30))
    p:kill("KILL")
    p:wait()
    local run_id = H.slurp(d .. "/stderr"):match("slurm: run (%S+)")
    assert(run_id, H.slurp(d .. "/stderr"))
    assert.equal(2, #live_jobs(tag))
    local r = lrun({ "--executor", "slurm", "--cancel", run_id })
    assert(r.code == 0, show(r))
    assert.matches("cancelled 2 job", r.stderr)
    assert.same({}, live_jobs(tag))
    assert(H.wait_until(function() return procs("sleep 921") == "" end, 15))
  end)

  describe("refuses to start, with nothing submitted (exit 2)", function()
    local function check(setenv, pattern)
      if not need_cluster() then return end
      local tag = "lrun-spec-cfg-" .. core.getpid() .. "-" .. math.random(1 << 30)
      local d = tmpdir()
      local file = jobfile(d, ([==[ job "%s" { "true" }
    ]==]):format(tag))
      local r = lrun({ "--executor", "slurm", "--log-dir", d .. "/out", file }, setenv)
      assert(r.code == 2, show(r))
      assert.matches(pattern, r.stderr)
      local _, out = sh("squeue -h -t all -o %j", { SLURM_CONF = CONF })
      assert.is_nil(out:find(tag, 1, true))
    end

    it("when SLURM_CONF is unset", function()
      check({ SLURM_CONF = false }, "SLURM_CONF is not set")
    end)

    it("when sbatch is not on PATH", function()
      if not need_cluster() then return end
      local d = tmpdir()
      sh("ln -s \"$(command -v lua5.4)\" " .. d .. "/lua5.4")
      check({ PATH = d }, "sbatch not found")
    end)

    it("when the controller is down", function()
      if not need_cluster() then return end
      local d = tmpdir()
      sh(("sed 's/^SlurmctldHost=.*/&\\nSlurmctldPort=6999/' %s > %s/bad.conf"):format(CONF, d))
      check({ SLURM_CONF = d .. "/bad.conf" }, "controller does not answer")
    end)
  end)

  it("-n prints the sbatch lines and submits nothing", function()
    if not need_cluster() then return end
    local r = lrun({ "--executor", "slurm", "-n", "examples/demo.lua" })
    assert(r.code == 0, show(r))
    local n = 0
    for _, l in ipairs(r.out) do
      if l:match("^sbatch %-%-parsable %-%-job%-name=") then n = n + 1 end
    end
    assert.equal(7, n)
    assert.matches("%-%-job%-name=sum%.2 ", r.stdout)
    assert.matches("LRUN_INSTANCE=2", r.stdout)
    assert.matches("as each job's needs are met %(a %-j bound%)", r.stdout)
    -- a graph with Slurm equivalents for everything: one script, dependencies by id
    local d = tmpdir()
    local file = jobfile(d, [==[
      job "a" { "true" }
      job "b" { "true", needs = "a", instances = 2 }
      job "c" { "true", needs = { b = "done", a = "success" } }
    ]==])
    r = lrun({ "--executor", "slurm", "-n", file })
    assert(r.code == 0, show(r))
    assert.matches("submitted up front", r.stdout)
    -- b's two instances are one array job, J2, which c waits for once
    assert.matches('J2=%$%(sbatch [^\n]*%-%-job%-name=b [^\n]*%-%-array=0%-1', r.stdout)
    assert.matches('J3=%$%(sbatch [^\n]* "%-%-dependency=afterok:%$J1,afterany:%$J2"',
      r.stdout)
    assert.matches('LRUN_INSTANCE="%$SLURM_ARRAY_TASK_ID"', r.stdout)
  end)
end)

-- The mapping of Slurm's states, on squeue lines in the form the cluster prints them
-- (the states a one-node test cluster cannot produce on demand included).
describe("lrun.slurm.poll", function()
  local poll = require "lrun.slurm.poll"
  local function outcome(line)
    local recs = poll.parse_squeue(line .. "\n")
    local _, rec = next(recs)
    assert(rec, "unparsed: " .. line)
    return poll.outcome(rec)
  end

  it("reads exit codes and signals from the raw wait status", function()
    local st, x = outcome("2|FAILED|768|0:03|NonZeroExitCode|")
    assert.same({ how = "exit", code = 3 }, st)
    assert.equal(3, x.elapsed)
    st = outcome("4|FAILED|9|1:00:01|JobLaunchFailure|")
    assert.equal("signal", st.how)
    assert.equal("KILL", st.signame)
    assert.same({ how = "exit", code = 0 }, (outcome("7_3|COMPLETED|0|0:00|None|")))
  end)

  it("keys array tasks by ARRAY_TASK", function()
    local recs = poll.parse_squeue("12_0|PENDING|0|0:00|None|\n12_1|RUNNING|0|0:01|None|\n")
    assert.equal("PENDING", recs["12_0"].JobState)
    assert.equal("RUNNING", recs["12_1"].JobState)
    assert.is_nil((outcome("12_1|RUNNING|0|0:01|None|")))
  end)

  it("maps TIMEOUT, a dependency never satisfied and the infrastructure's failures", function()
    local st, x = outcome("5|TIMEOUT|15|1:21|TimeLimit|")
    assert.is_true(x.timed_out)
    assert.equal("TERM", st.signame)
    local _, y = outcome("3|CANCELLED|0|0:00|DependencyNeverSatisfied|")
    assert.is_true(y.skipped)
    for _, state in ipairs { "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL" } do
      st, x = outcome("9|" .. state .. "|0|0:05|None|")
      assert.equal(state:lower():gsub("_", " "), x.failure)
      assert.are_not.same({ how = "exit", code = 0 }, st)
    end
  end)

  it("reads scontrol's ExitCode=N:S and RunTime", function()
    local st, x = poll.outcome(poll.parse_scontrol(
      "JobId=8 JobName=x JobState=FAILED Reason=NonZeroExitCode ExitCode=2:0 RunTime=00:01:05"))
    assert.same({ how = "exit", code = 2 }, st)
    assert.equal(65, x.elapsed)
  end)
end)
