--- lrun.app: the composition root -- what each `lrun` command does, wiring the modules
-- together. lrun.cli parses argv and calls one of these.
--
--   app.run(o, spec, selected [, daemon])   -- a run: loop, output, executor,
--                                           -- scheduler, signals, watchdog, reports
--   app.init(o)                             -- --init -- CMD  |  --init jobs.lua
--   app.daemon_cmds(o)                      -- --status / --stop with --pidfile
--   app.attach_daemon(d, loop, scheduler [, ctx])  -- -d: SIGUSR2, the control socket
--                                           -- (every run serves one: lrun.control)
--   app.load(o)                             -- the job file and its selected jobs
--   app.list(spec)                          -- -l
--   app.dry_run(o, spec, selected)          -- -n (with the sbatch lines for Slurm)
--   app.preflight(o, spec, selected)        -- what must hold before anything starts
--   app.cancel(o)                           -- --executor slurm --cancel RUN_ID
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

--- load(o) -> spec, selected | nil, message (--executor overrides settings.executor)
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
  -- Loading keeps most of what it makes (the spec) and builds it in one go, so the
  -- incremental collector (the run switches to generational). Its pause sets the
  -- peak RSS of a big load: at 2x the live heap a 100 000-job `lrun -n` peaks at
  -- 158 MB, at 1.5x at 186 MB (more cycles, each ending higher); graph-10k's peak is
  -- its run's, 28 MB, either way.
  collectgarbage("incremental", 200, 100)
  local spec, err = jobfile.load(file)
  if not spec then return nil, err end
  if o.executor then spec.settings.executor = o.executor end
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

--- fail_start(msg, daemon [, code]) -> code (default 1): lrun could not set up a
--- run; nothing was started. A daemon's launcher is told why.
function M.fail_start(msg, d, code)
  eprint(msg)
  if d then d:fail(msg) end
  return code or 1
end

local function uses_slurm(spec, selected)
  return require("lrun.slurm").uses_slurm(spec, selected)
end

function M.dry_run(o, spec, selected)
  local graph = require "lrun.graph"
  io.stdout:write(graph.plan(spec, selected))
  if uses_slurm(spec, selected) then
    local slurm = require "lrun.slurm"
    io.stdout:write(require("lrun.slurm.admin").dry_run(spec, selected, "RUN_ID",
      slurm.out_dir(o.log_dir or spec.settings.log_dir, "RUN_ID"), o.jobs))
  end
  return 0
end

--- preflight(o, spec, selected) -> true | nil, message: a Slurm run needs sbatch,
--- SLURM_CONF and a controller that answers before anything is submitted.
function M.preflight(_, spec, selected)
  if not uses_slurm(spec, selected) then return true end
  return require("lrun.slurm.admin").preflight()
end

function M.cancel(o)
  return require("lrun.slurm.admin").cancel_run(o.cancel, eprint)
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
    joblog, err = report.joblog(o.joblog, { append = o.resume or o.retry_failed })
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
  -- A group the watchdog did not hear of would outlive a lrun killed by SIGKILL:
  -- the run stops (and fails) rather than go on without that promise.
  -- (before the scheduler exists -- Slurm's up-front submission turns the loop --
  -- the loss is kept, and heard once the run starts)
  local function lost_watchdog(err)
    if not s then wd.lost = wd.lost or err
    elseif not s.aborted then s:abort(err .. "; stopping every job") end
  end
  local function tell_watchdog(pgid, alive)
    local ok, err
    if alive then ok, err = wd:group(pgid) else ok, err = wd:ungroup(pgid) end
    -- on the next turn: this runs inside the executor's start of the unit
    if not ok then parts.loop:defer(function() lost_watchdog(err) end) end
  end
  -- Most groups go to the watchdog through shared memory, not its pipe: its end is
  -- heard here, not from a failed write.
  parts.loop:child(wd.pid, function(st)
    wd.pid = nil
    lost_watchdog("watchdog: " .. require("lprocess.status").describe(st))
  end)
  -- reaped by the watchdog's own check (a pipe write): the loop is not to wait for it
  wd.on_gone = function(pid) parts.loop:forget(pid) end
  local ex = executor.new {
    loop = parts.loop, out = parts.out, env = core.environ(), run_id = parts.run_id,
    grace = o.grace or spec.settings.grace or 5,
    sigmask = o.sigmask, sigignore = o.sigignore,
    on_leftover = function(u, pgid) s:leftover(u, pgid) end,
    on_group = tell_watchdog,
  }
  local jobs = o.jobs or spec.settings.jobs
  local slurm = uses_slurm(spec, selected)
  -- Units whose job says executor = "slurm" go to lrun.slurm, which may submit the
  -- whole graph at once (and fail: nothing is left submitted then).
  local function executor_for(units)
    return require("lrun.slurm").wrap(spec, {
      loop = parts.loop, out = parts.out, run_id = parts.run_id, grace = o.grace,
      slurm_dir = o.log_dir, jobs = jobs,
    }, ex, units)
  end
  local err
  s, err = scheduler.new(spec, selected, {
    loop = parts.loop, out = parts.out, executor = slurm and executor_for or ex,
    -- Slurm decides how many of its jobs run at once unless -j says otherwise
    jobs = jobs or (slurm and math.maxinteger or cpu_count()), keep_going = o.keep_going,
    grace = o.grace, events = parts.events, joblog = parts.joblog, verbose = o.verbose,
  })
  if s and wd.lost then parts.loop:defer(function() lost_watchdog(wd.lost) end) end
  return s, err
end

-- Signals, orphans and the status line, through the loop -> true | nil, message
local function wire(loop, s, out)
  local report = require "lrun.report"
  for _, name in ipairs { "INT", "TERM", "HUP" } do
    local ok, err = loop:signal(name, function(sig)
      s:shutdown(sig, "got SIG" .. name .. ", stopping jobs")
    end)
    if not ok then return nil, "watching SIG" .. name .. ": " .. err end
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
  return true
end

-- A daemon's extras: SIGUSR2 reopens the logs, its control socket (PIDFILE.sock, or
-- ctx.path) answers --status/--stop and `lrun ctl`.
function M.attach_daemon(d, loop, s, ctx)
  local control = require "lrun.control"
  d:attach(loop)
  if d.pidfile then
    ctx = ctx or { loop = loop, scheduler = s, pid = d.pid }
    local server, err = control.start(ctx, ctx.path or (d.pidfile .. ".sock"))
    if not server then error(err, 0) end
    d:at_cleanup(function() server:close() end)
  end
end

-- Working with the run while it runs: the control socket, the lrun API of eval and
-- add_job, --http. -> a close function | nil, message
local function operate(o, spec, d, ctx)
  local control = require "lrun.control"
  local api = require "lrun.control.api"
  ctx.lua = o.control_lua
  ctx.load = function(path) return api.load_file(ctx, path) end
  api.attach(ctx)
  local closers = {}
  local path, perr = control.default_path(o, spec.file)
  if d then
    ctx.path = path
    local ok, err = pcall(M.attach_daemon, d, ctx.loop, ctx.scheduler, ctx)
    if not ok then return nil, tostring(err) end
  elseif path then
    local server, err = control.start(ctx, path)
    -- The default socket of a job file another lrun is running: this run has none.
    if not server and (o.control or o.pidfile) then return nil, err end
    if server then closers[#closers + 1] = server
    elseif o.verbose then ctx.scheduler.out:message(err) end
  elseif o.verbose then
    ctx.scheduler.out:message(perr)
  end
  if o.http then
    local web, err = require("lrun.http").start(ctx, o.http)
    if not web then
      for _, c in ipairs(closers) do c:close() end
      return nil, err
    end
    closers[#closers + 1] = web
  end
  return function()
    for _, c in ipairs(closers) do c:close() end
    api.attach(nil)
  end
end

-- --resume / --retry-failed: the joblog's rows, read before it is appended to.
local function resume_rows(o)
  if not (o.resume or o.retry_failed) then return nil end
  return require("lrun.resume").read(o.joblog)
end

-- The end of a run: output closed, escapees stopped, the watchdog dismissed, the
-- summary and --stats written. -> the exit code, 1 when job output was lost
local function finish_run(o, s, r, code)
  local report = require "lrun.report"
  local out = r.out
  out:set_status(nil)
  out:flush()
  out:close()
  if s.aborted then eprint(s.aborted) end
  if out.write_error then
    -- job output was lost on the way to lrun's own stdout/stderr
    eprint("writing job output: " .. out.write_error)
    if code == 0 then code = 1 end
  end
  -- What escaped every process group (setsid grandchildren) goes too.
  r.wd:reap_escapees(math.min(s.grace, 5), r.run_id)
  core.reap()
  r.wd:bye()
  if not o.quiet then io.stderr:write(report.summary(s:results())) end
  if o.stats then
    local runs = 0
    for _, u in ipairs(s.units) do runs = runs + u.attempt end
    local cpu, kib = report.self_usage()
    io.stderr:write(report.stats_text { runs = runs, wall = r.wall, cpu = cpu, maxrss = kib })
  end
  return code
end

-- Nothing is started without the watchdog and the loop: an OS failure here is
-- reported and the run fails (exit 1) with nothing started. -> wd, loop | nil, nil, msg
local function safety(run_id)
  local wd, werr = require("lrun.watchdog").start(run_id)
  if not wd then return nil, nil, werr end
  local loop, lerr = require("lprocess.loop").new()
  if not loop then
    wd:bye()
    return nil, nil, "event loop: " .. lerr
  end
  return wd, loop
end

local function make_output(o, spec)
  local output = require "lrun.output"
  -- Job output is written in whole lines and flushed by the loop before it blocks:
  -- a large buffer turns a 64 KiB chunk into one write instead of sixteen.
  io.stdout:setvbuf("full", 256 * 1024)
  return output.new {
    mode = o.output, color = output.want_color(o.color, io.stdout),
    log_dir = o.log_dir or spec.settings.log_dir, status = not o.quiet and not o.daemon,
  }
end

--- run(o, spec, selected [, daemon]) -> exit code
function M.run(o, spec, selected, d)

  core.subreaper(true)
  -- Most of what a run allocates dies young (per-event tables, output chunks). (An
  -- earlier major collection, at +50 % of the heap, took graph-10k's peak RSS from
  -- ~60 to ~53 MB but halved `-o raw` throughput: 64 KiB chunks then trigger majors.)
  collectgarbage("generational")
  local run_id = string.format("%x-%d", math.floor(core.realtime()), core.getpid())
  local wd, loop, why = safety(run_id)
  if not wd then return M.fail_start(why, d) end
  local out = make_output(o, spec)
  -- Before the daemon is ready its launcher is still waiting: tell it why we stop.
  local function early_fail(msg, code, ...)
    close_all(...)
    wd:bye()
    loop:close()
    return M.fail_start(msg, d, code)
  end
  local rows, rerr = resume_rows(o)
  if rerr then return early_fail("--joblog " .. rerr, 2) end
  local events, joblog, err = open_reports(o)
  if err then return early_fail(err, 2) end
  -- The event stream goes to --events and to whoever watches the run.
  events = require("lrun.control.bus").new(events, out)
  local s, serr = make_scheduler(o, spec, selected, {
    loop = loop, out = out, run_id = run_id, watchdog = wd, events = events, joblog = joblog,
  })
  if not s then return early_fail(serr, 2, events, joblog) end
  local wired, wire_err = wire(loop, s, out)
  if not wired then return early_fail(wire_err, 1, events, joblog) end
  if rows then
    require("lrun.resume").apply(s, spec, rows, o.resume and "resume" or "retry-failed")
  end
  local close_ops, oerr = operate(o, spec, d, { loop = loop, scheduler = s, bus = events,
    pid = core.getpid() })
  if not close_ops then return early_fail(oerr, 2, events, joblog) end
  if d then d:ready() end
  -- What loading and planning left behind goes now, in one full collection: the
  -- generational collector's later majors then start from the live heap (graph-10k
  -- peak RSS ~42 MB instead of ~60).
  collectgarbage()
  local t_run = core.now()
  local code = s:run()
  local wall = core.now() - t_run
  close_ops()
  code = finish_run(o, s, { out = out, wd = wd, run_id = run_id, wall = wall }, code)
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
