--- lrun.app: the composition root -- what each `lrun` command does, wiring the modules
-- together. lrun.cli parses argv and calls one of these.
--
--   app.run(o, spec, selected [, daemon])   -- a run: loop, output, executor,
--                                           -- scheduler, signals, watchdog, reports
--   app.init(o)                             -- --init -- CMD  |  --init jobs.lua
--   app.daemon_cmds(o)                      -- --status / --stop with --pidfile
--   app.attach_daemon(d, loop, scheduler)   -- -d: SIGUSR2, the control socket
--   app.load(o)                             -- the job file and its selected jobs
--   app.list(spec)                          -- -l
--
-- Each returns the exit code of doc/design.md ("Exit codes"); `o` is lrun.cli.parse's.
local core = require "lprocess.core"

local M = {}

local function eprint(msg)
  io.stderr:write("lrun: ", msg, "\n")
end
M.eprint = eprint

local function cpu_count()
  local f = io.open("/proc/cpuinfo")
  if not f then return 2 end
  local n = 0
  for line in f:lines() do
    if line:match("^processor%s*:") then n = n + 1 end
  end
  f:close()
  return n > 0 and n or 2
end

--- load(o) -> spec, selected | nil, message
function M.load(o)
  local jobfile = require "lrun.jobfile"
  local graph = require "lrun.graph"
  local cli = require "lrun.cli"
  local file, targets = cli.split_file(o.positional)
  if not file then
    local err
    file, err = jobfile.find(".")
    if not file then return nil, err end
  end
  local spec, err = jobfile.load(file)
  if not spec then return nil, err end
  local selected, serr = graph.select(spec, targets)
  if not selected then return nil, serr end
  return spec, selected
end

function M.list(spec)
  local graph = require "lrun.graph"
  local w = 0
  for _, job in ipairs(spec.jobs) do w = math.max(w, #job.name) end
  for _, job in ipairs(spec.jobs) do
    io.stdout:write(string.format("%-" .. w .. "s  %-7s  %s\n", job.name, job.kind,
      graph.command_text(job)))
  end
  return 0
end

-- The --events and --joblog writers -> events, joblog | nil, nil, message
local function open_reports(o)
  local report = require "lrun.report"
  local events, joblog, err
  if o.events then
    events, err = report.events(o.events)
    if not events then return nil, nil, err end
  end
  if o.joblog then
    joblog, err = report.joblog(o.joblog)
    if not joblog then
      if events then events:close() end
      return nil, nil, err
    end
  end
  return events, joblog
end

local function close_all(...)
  for _, w in ipairs { ... } do if w then w:close() end end
end

-- The scheduler and its executor, wired to the output, the watchdog and each other.
local function make_scheduler(o, spec, selected, parts)
  local executor = require "lrun.executor"
  local scheduler = require "lrun.scheduler"
  local s
  local wd = parts.watchdog
  local ex = executor.new {
    loop = parts.loop, out = parts.out, env = core.environ(), run_id = parts.run_id,
    grace = o.grace or spec.settings.grace or 5,
    sigmask = o.sigmask, sigignore = o.sigignore,
    on_leftover = function(u, pgid) s:leftover(u, pgid) end,
    on_group = wd and function(pgid, alive)
      if alive then wd:group(pgid) else wd:ungroup(pgid) end
    end,
  }
  s = scheduler.new(spec, selected, {
    loop = parts.loop, out = parts.out, executor = ex,
    jobs = o.jobs or spec.settings.jobs or cpu_count(), keep_going = o.keep_going,
    grace = o.grace, events = parts.events, joblog = parts.joblog, verbose = o.verbose,
  })
  return s
end

-- Signals, orphans and the status line, through the loop.
local function wire(loop, s, out)
  local report = require "lrun.report"
  for _, name in ipairs { "INT", "TERM", "HUP" } do
    loop:signal(name, function(sig) s:shutdown(sig, "got SIG" .. name .. ", stopping jobs") end)
  end
  -- Orphans re-parented to lrun (the subreaper) are reaped here; their going may
  -- empty a process group that lrun is waiting on.
  loop.on_orphan = function() s:orphan_reaped() end
  local t0, last_status = core.now(), 0
  loop:on_idle(function()
    local now = core.now()
    if out.status_on and now - last_status >= 0.1 then
      last_status = now
      local c = s:counts()
      c.elapsed = now - t0
      out:set_status(report.status_text(c))
    end
    out:flush()   -- its sinks are io.stdout and io.stderr
  end)
end

-- A daemon's extras: SIGUSR2 reopens the logs, PIDFILE.sock answers --status/--stop.
function M.attach_daemon(d, loop, s)
  local control = require "lrun.control"
  d:attach(loop)
  if d.pidfile then
    local server, err = control.serve(loop, d.pidfile .. ".sock", control.handler(s, d.pid))
    if not server then error(err, 0) end
    d:at_cleanup(function() server:close() end)
  end
end

--- run(o, spec, selected [, daemon]) -> exit code
function M.run(o, spec, selected, d)
  local loopmod = require "lprocess.loop"
  local output = require "lrun.output"
  local report = require "lrun.report"
  local watchdog = require "lrun.watchdog"

  core.subreaper(true)
  -- Most of what a run allocates dies young (per-event tables, output chunks). (An
  -- earlier major collection, at +50 % of the heap, took graph-10k's peak RSS from
  -- ~60 to ~53 MB but halved `-o raw` throughput: 64 KiB chunks then trigger majors.)
  collectgarbage("generational")
  local run_id = string.format("%x-%d", math.floor(core.realtime()), core.getpid())
  local wd = watchdog.start(run_id)
  local loop = loopmod.new()
  -- Job output is written in whole lines and flushed by the loop before it blocks:
  -- a large buffer turns a 64 KiB chunk into one write instead of sixteen.
  io.stdout:setvbuf("full", 256 * 1024)
  local out = output.new {
    mode = o.output, color = output.want_color(o.color, io.stdout),
    log_dir = o.log_dir or spec.settings.log_dir, status = not o.quiet and not o.daemon,
  }
  -- Before the daemon is ready its launcher is still waiting: tell it why we stop.
  local function early_fail(msg, ...)
    close_all(...)
    eprint(msg)
    if d then d:fail(msg) end
    if wd then wd:bye() end
    return 2
  end
  local events, joblog, err = open_reports(o)
  if err then return early_fail(err) end
  local s = make_scheduler(o, spec, selected, {
    loop = loop, out = out, run_id = run_id, watchdog = wd, events = events, joblog = joblog,
  })
  wire(loop, s, out)
  if d then
    local ok, derr = pcall(M.attach_daemon, d, loop, s)
    if not ok then return early_fail(tostring(derr), events, joblog) end
    d:ready()
  end
  -- What loading and planning left behind goes now, in one full collection: the
  -- generational collector's later majors then start from the live heap (graph-10k
  -- peak RSS ~42 MB instead of ~60).
  collectgarbage()
  local t_run = core.now()
  local code = s:run()
  local wall = core.now() - t_run
  out:set_status(nil)
  out:flush()
  out:close()
  -- What escaped every process group (setsid grandchildren) goes too.
  if wd then wd:reap_escapees(math.min(s.grace, 5), run_id) end
  core.reap()
  if wd then wd:bye() end
  if not o.quiet then io.stderr:write(report.summary(s:results())) end
  if o.stats then
    local runs = 0
    for _, u in ipairs(s.units) do runs = runs + u.attempt end
    local cpu, kib = report.self_usage()
    io.stderr:write(report.stats_text { runs = runs, wall = wall, cpu = cpu, maxrss = kib })
  end
  close_all(events, joblog)
  if d then d:cleanup() end
  loop:close()
  return code
end

--- init(o) -> exit code: `--init -- CMD` as tini does, or `--init jobs.lua`.
function M.init(o)
  local cmd = o.positional
  if #cmd == 0 then
    eprint("--init needs a command: lrun --init -- CMD [ARGS...]")
    return 2
  end
  local cli = require "lrun.cli"
  if #cmd == 1 and cli.is_jobfile_name(cmd[1]) and core.stat(cmd[1]) then
    local jobfile = require "lrun.jobfile"
    local graph = require "lrun.graph"
    local spec, err = jobfile.load(cmd[1])
    if not spec then eprint(err); return 2 end
    return M.run(o, spec, assert(graph.select(spec, {})))
  end
  return require("lrun.initmode").main {
    argv = cmd, success_codes = o.success_codes, grace = o.grace or 5, verbose = o.verbose,
    sigmask = o.sigmask, sigignore = o.sigignore,
  }
end

--- daemon_cmds(o) -> exit code of --status (0 running, 3 not) or --stop.
function M.daemon_cmds(o)
  local daemon = require "lprocess.daemon"
  if o.status then
    local pid = daemon.status(o.pidfile)
    if not pid then
      io.stdout:write("not running\n")
      return 3
    end
    io.stdout:write(string.format("running (pid %d)\n", pid))
    local reply = require("lrun.control").query(o.pidfile .. ".sock", "status", 5)
    if reply then io.stdout:write(reply) end
    return 0
  end
  local ok, err = daemon.stop(o.pidfile, (o.grace or 5) + 10)
  if not ok then
    eprint(err)
    return 1
  end
  return 0
end

--- daemonize(o) -> daemon handle | nil, message (for -d: the launcher never returns)
function M.daemonize(o)
  local daemon = require "lprocess.daemon"
  local log = o.log or (o.log_dir and (o.log_dir .. "/lrun.log")) or nil
  return daemon.daemonize { pidfile = o.pidfile, stdout = log, stderr = log, progname = "lrun" }
end

return M
