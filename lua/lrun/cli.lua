-- lrun.cli: the `lrun` command line (DESIGN.md, "lrun command line").
--
--   lrun [OPTIONS] [FILE] [TARGET...]
--
-- main(argv) returns the exit code: 0 all jobs succeeded; 1 a job failed, was
-- skipped or gave up; 2 usage or job-file error (nothing started); 128+N when lrun
-- was stopped by signal N.
local M = {}

M.VERSION = "0.1.0"

local USAGE = [[
usage: lrun [OPTIONS] [FILE] [TARGET...]
  FILE defaults to ./jobs.lua, then jobs.yaml/.yml; TARGETs run only those jobs
  and what they depend on.

  -j, --jobs N        parallel jobs (default: CPU count)
  -k, --keep-going    keep starting independent jobs after a failure
  -n, --dry-run       validate, print the plan and exit (0 valid, 2 invalid)
      --graph         print the job graph as Graphviz DOT and exit
  -l, --list          list jobs
  -o, --output MODE   prefix (default: "name | line"), raw, group
      --grace SECS    default kill_grace (5)
      --log-dir DIR   also write each job's output to DIR/NAME.log
      --events FILE   one JSON object per event
      --joblog FILE   one line per finished job, GNU parallel's --joblog columns
      --color WHEN    auto | always | never
  -q, --quiet         no summary, only errors
  -v, --verbose       say when jobs start, stop and are skipped
  -d, --daemon        run detached; with --pidfile FILE [--log FILE]
      --status        with --pidfile: is the daemon running? (0 yes, 3 no)
      --stop          with --pidfile: stop the daemon and wait for it to go
      --executor NAME local (default) or slurm: each job a Slurm batch job
      --cancel RUN_ID with --executor slurm: cancel the Slurm jobs of a run
      --init -- CMD   act as init/subreaper for one command (like tini);
                      -e CODE maps an extra exit code to 0 (repeatable)
      --version, -h, --help
]]

-- option name -> { key, takes_value }
local OPTIONS = {
  ["-j"] = { "jobs", true }, ["--jobs"] = { "jobs", true },
  ["-k"] = { "keep_going" }, ["--keep-going"] = { "keep_going" },
  ["-n"] = { "dry_run" }, ["--dry-run"] = { "dry_run" },
  ["--graph"] = { "graph" },
  ["-l"] = { "list" }, ["--list"] = { "list" },
  ["-o"] = { "output", true }, ["--output"] = { "output", true },
  ["--grace"] = { "grace", true },
  ["--log-dir"] = { "log_dir", true },
  ["--events"] = { "events", true },
  ["--joblog"] = { "joblog", true },
  ["--color"] = { "color", true }, ["--colour"] = { "color", true },
  ["-q"] = { "quiet" }, ["--quiet"] = { "quiet" },
  ["-v"] = { "verbose" }, ["--verbose"] = { "verbose" },
  ["-d"] = { "daemon" }, ["--daemon"] = { "daemon" },
  ["--pidfile"] = { "pidfile", true },
  ["--log"] = { "log", true },
  ["--status"] = { "status" },
  ["--stop"] = { "stop" },
  ["--init"] = { "init" },
  ["--executor"] = { "executor", true },
  ["--cancel"] = { "cancel", true },
  ["-e"] = { "success_code", true },
  ["--version"] = { "version" },
  ["-h"] = { "help" }, ["--help"] = { "help" },
}

local function usage_error(msg)
  return nil, msg .. "\nTry 'lrun --help' for more information."
end

-- Parse argv into an options table and the positional words.
function M.parse(argv)
  local o = { positional = {}, success_codes = {} }
  local i, n = 1, #argv
  while i <= n do
    local a = argv[i]
    if a == "--" then
      for k = i + 1, n do o.positional[#o.positional + 1] = argv[k] end
      o.dashdash = true
      break
    end
    local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
    if not name then
      name = a
      if a:match("^%-%a.") and not OPTIONS[a] then   -- -j4, -kq
        local first = a:sub(1, 2)
        if OPTIONS[first] and OPTIONS[first][2] then
          name, inline = first, a:sub(3)
        elseif OPTIONS[first] then
          for c in a:sub(2):gmatch(".") do
            if not OPTIONS["-" .. c] or OPTIONS["-" .. c][2] then
              return usage_error("unknown option -" .. c .. " in " .. a)
            end
          end
          for c in a:sub(2):gmatch(".") do o[OPTIONS["-" .. c][1]] = true end
          name = nil
        end
      end
    end
    if name and name:sub(1, 1) == "-" and name ~= "-" then
      local spec = OPTIONS[name]
      if not spec then return usage_error("unknown option " .. name) end
      local value = true
      if spec[2] then
        value = inline
        if value == nil then
          i = i + 1
          value = argv[i]
          if value == nil then return usage_error("option " .. name .. " needs a value") end
        end
      elseif inline then
        return usage_error("option " .. name .. " takes no value")
      end
      if spec[1] == "success_code" then
        local c = tonumber(value)
        if not c or c ~= math.floor(c) or c < 0 or c > 255 then
          return usage_error("-e needs an exit code 0-255, got '" .. value .. "'")
        end
        o.success_codes[math.tointeger(c)] = true
      else
        o[spec[1]] = value
      end
    elseif name then
      o.positional[#o.positional + 1] = a
    end
    i = i + 1
  end
  if o.jobs then
    local j = math.tointeger(tonumber(o.jobs))
    if not j or j < 1 then return usage_error("--jobs needs a positive integer, got '" .. o.jobs .. "'") end
    o.jobs = j
  end
  if o.grace then
    local g = tonumber(o.grace)
    if not g or g < 0 then return usage_error("--grace needs seconds, got '" .. o.grace .. "'") end
    o.grace = g
  end
  o.output = o.output or "prefix"
  if o.output ~= "prefix" and o.output ~= "raw" and o.output ~= "group" then
    return usage_error("--output must be prefix, raw or group, got '" .. o.output .. "'")
  end
  o.color = o.color or "auto"
  if o.color ~= "auto" and o.color ~= "always" and o.color ~= "never" then
    return usage_error("--color must be auto, always or never, got '" .. o.color .. "'")
  end
  if o.executor and o.executor ~= "local" and o.executor ~= "slurm" then
    return usage_error("--executor must be local or slurm, got '" .. o.executor .. "'")
  end
  if (o.status or o.stop or o.daemon) and not o.pidfile and not o.daemon then
    return usage_error((o.status and "--status" or "--stop") .. " needs --pidfile FILE")
  end
  return o
end

local function is_jobfile_name(s)
  return s:match("%.lua$") or s:match("%.ya?ml$")
end

local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end
-- FILE is the first positional word when it looks like a job file: a .lua, .yaml
-- or .yml name, or a path with a slash. Anything else is a target.
function M.split_file(positional)
  local first = positional[1]
  local file
  if first and (is_jobfile_name(first) or first:find("/")) then file = first end
  local targets = table.move(positional, file and 2 or 1, #positional, 1, {})
  return file, targets
end

local function eprint(msg)
  io.stderr:write("lrun: ", msg, "\n")
end

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

local function load_spec(o)
  local jobfile = require "lrun.jobfile"
  local file, targets = M.split_file(o.positional)
  if not file then
    local err
    file, err = jobfile.find(".")
    if not file then return nil, err end
  end
  local spec, err = jobfile.load(file)
  if not spec then return nil, err end
  return spec, targets
end

local function print_list(spec)
  local graph = require "lrun.graph"
  local w = 0
  for _, job in ipairs(spec.jobs) do w = math.max(w, #job.name) end
  for _, job in ipairs(spec.jobs) do
    io.stdout:write(string.format("%-" .. w .. "s  %-7s  %s\n", job.name, job.kind,
      graph.command_text(job)))
  end
end

-- The run itself: loop, output, runner, signals, watchdog, summary.
local function run(o, spec, targets, daemon_handle)
  local core = require "lprocess.core"
  local loop_mod = require "lprocess.loop"
  local output = require "lrun.output"
  local report = require "lrun.report"
  local runner_mod = require "lrun.runner"
  local watchdog = require "lrun.watchdog"

  core.subreaper(true)
  -- Most of what a run allocates dies young (per-event tables, output chunks).
  collectgarbage("generational")
  local run_id = string.format("%x-%d", math.floor(core.realtime()), core.getpid())
  local wd = watchdog.start(run_id)
  local loop = loop_mod.new()
  -- Job output is written in whole lines and flushed by the loop before it blocks:
  -- a large buffer turns a 64 KiB chunk into one write instead of sixteen.
  io.stdout:setvbuf("full", 256 * 1024)
  local out = output.new {
    mode = o.output,
    color = output.want_color(o.color, io.stdout, core.isatty),
    log_dir = o.log_dir or spec.settings.log_dir,
    status = not o.quiet and not o.daemon,
    isatty = core.isatty,
  }
  local function close_writers(...)
    for _, w in ipairs { ... } do if w then w:close() end end
  end
  -- Before the daemon is ready its launcher is still waiting: tell it why we stop.
  local function early_fail(msg)
    eprint(msg)
    if daemon_handle then daemon_handle:fail(msg) end
    if wd then wd:bye() end
    return 2
  end
  local events, joblog, err
  if o.events then
    events, err = report.events(o.events)
    if not events then return early_fail(err) end
  end
  if o.joblog then
    joblog, err = report.joblog(o.joblog)
    if not joblog then close_writers(events); return early_fail(err) end
  end
  local r
  -- hook: Slurm decides how many of its jobs run at once unless -j says otherwise
  local slurm = require("lrun.slurm").uses_slurm(spec)
  r, err = runner_mod.new(spec, {
    slurm_dir = o.log_dir,
    loop = loop, out = out,
    jobs = o.jobs or spec.settings.jobs or (slurm and math.maxinteger or cpu_count()),
    keep_going = o.keep_going, grace = o.grace, targets = targets, events = events,
    joblog = joblog, run_id = run_id, verbose = o.verbose,
    watchdog = wd and function(pgid, alive)
      if alive then wd:group(pgid) else wd:ungroup(pgid) end
    end,
  })
  if not r then
    close_writers(events, joblog)
    return early_fail(err)
  end
  M.current = r
  for _, s in ipairs { "INT", "TERM", "HUP" } do
    loop:signal(s, function(sig) r:shutdown(sig, "got SIG" .. s .. ", stopping jobs") end)
  end
  -- Orphans re-parented to lrun (the subreaper) are reaped here; their going may
  -- empty a process group that lrun is waiting on.
  loop.on_orphan = function() r.ex:check_groups() end
  local t0, last_status = core.now(), 0
  loop:on_idle(function()
    local now = core.now()
    if out.status_on and now - last_status >= 0.1 then
      last_status = now
      local c = r:counts()
      c.elapsed = now - t0
      out:set_status(report.status_text(c))
    end
    out:flush()   -- its sinks are io.stdout and io.stderr
  end)
  if daemon_handle then
    local ok, derr = pcall(daemon_handle.attach, daemon_handle, loop, r)
    if not ok then
      close_writers(events, joblog)
      return early_fail(tostring(derr))
    end
    daemon_handle:ready()
  end
  local code = r:run()
  out:set_status(nil)
  out:flush()
  out:close()
  -- What escaped every process group (setsid grandchildren) goes too.
  if wd then wd:reap_escapees(math.min(r.grace, 5), run_id) end
  core.reap()
  if wd then wd:bye() end
  if not o.quiet then io.stderr:write(report.summary(r:results())) end
  close_writers(events, joblog)
  if daemon_handle and daemon_handle.cleanup then daemon_handle:cleanup() end
  loop:close()
  return code
end

local function init_mode(o)
  local cmd = o.positional
  if #cmd == 0 then
    eprint("--init needs a command: lrun --init -- CMD [ARGS...]")
    return 2
  end
  if #cmd == 1 and is_jobfile_name(cmd[1]) and file_exists(cmd[1]) then
    local spec, err = require("lrun.jobfile").load(cmd[1])
    if not spec then eprint(err); return 2 end
    return run(o, spec, {})
  end
  return require("lrun.initmode").main {
    argv = cmd, success_codes = o.success_codes, grace = o.grace or 5, verbose = o.verbose,
  }
end

local function daemon_cmds(o)
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

function M.main(argv)
  local o, err = M.parse(argv or {})
  if not o then eprint(err); return 2 end
  if o.help then io.stdout:write(USAGE) return 0 end
  if o.version then io.stdout:write("lrun ", M.VERSION, "\n") return 0 end
  if o.status or o.stop then return daemon_cmds(o) end
  if o.cancel then   -- hook: lrun --executor slurm --cancel RUN_ID
    return require("lrun.slurm.admin").cancel_run(o.cancel, eprint)
  end
  if o.init then return init_mode(o) end
  local spec, targets = load_spec(o)
  if not spec then eprint(targets); return 2 end
  local graph = require "lrun.graph"
  local selected, serr = graph.select(spec, targets)
  if not selected then eprint(serr); return 2 end
  -- hook: --executor slurm, its -n lines and its checks before anything is submitted
  if o.executor then spec.settings.executor = o.executor end
  local slurm = require "lrun.slurm"
  local uses_slurm = slurm.uses_slurm(spec, selected)
  if o.dry_run then
    io.stdout:write(graph.plan(spec, selected))
    if uses_slurm then
      io.stdout:write(require("lrun.slurm.admin").dry_run(spec, selected, "RUN_ID",
        slurm.out_dir(o.log_dir or spec.settings.log_dir, "RUN_ID"), o.jobs))
    end
    return 0
  end
  if o.graph then io.stdout:write(graph.dot(spec, selected)) return 0 end
  if o.list then print_list(spec) return 0 end
  if uses_slurm then
    local ok, perr = require("lrun.slurm.admin").preflight()
    if not ok then eprint(perr); return 2 end
  end
  local d
  if o.daemon then
    if not o.pidfile then eprint("--daemon needs --pidfile FILE"); return 2 end
    local daemon = require "lprocess.daemon"
    local log = o.log or (o.log_dir and (o.log_dir .. "/lrun.log")) or nil
    d, err = daemon.daemonize { pidfile = o.pidfile, stdout = log, stderr = log }
    if not d then eprint(err); return 1 end
  end
  local ok, code = xpcall(run, debug.traceback, o, spec, targets, d)
  if not ok then
    eprint("internal error: " .. tostring(code))
    if d then d:fail(tostring(code)) end
    return 70
  end
  return code
end

return M
