--- lrun.cli: the `lrun` command line (doc/design.md, "The lrun command line"): it
-- parses argv and hands the work to lrun.app.
--
--   lrun [OPTIONS] [FILE] [TARGET...]
--   local o, err = cli.parse(argv)     -- options, or a usage error
--   local code = cli.main(argv)        -- 0 all jobs succeeded; 1 a job failed, was
--                                      -- skipped or gave up; 2 usage or job-file
--                                      -- error (nothing started); 128+N when lrun
--                                      -- was stopped by signal N; 70 internal error
--   os.exit(code, cli.needs_close())   -- close the state only when a finalizer matters
local M = {}

M.VERSION = "0.1.0"

local USAGE = [[
usage: lrun [OPTIONS] [FILE] [TARGET...]
       lrun ctl [--pidfile F | --control PATH] CMD ...   (lrun ctl --help)
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
      --resume        with --joblog: run only what has not succeeded there yet
      --retry-failed  with --joblog: run only what failed there, and its dependents
      --control PATH  the control socket (default: PIDFILE.sock, or one per job
                      file under $XDG_RUNTIME_DIR)
      --control-lua   allow `lrun ctl eval` (Lua inside lrun; off by default)
      --http [ADDR:]PORT  serve a status page (ADDR defaults to 127.0.0.1)
      --color WHEN    auto | always | never
  -q, --quiet         no summary, only errors
  -v, --verbose       say when jobs start, stop and are skipped
      --stats         at the end: jobs/s, lrun's own CPU per job, its peak RSS
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
  ["--resume"] = { "resume" }, ["--retry-failed"] = { "retry_failed" },
  ["--control"] = { "control", true }, ["--control-lua"] = { "control_lua" },
  ["--http"] = { "http", true },
  ["--color"] = { "color", true }, ["--colour"] = { "color", true },
  ["-q"] = { "quiet" }, ["--quiet"] = { "quiet" },
  ["-v"] = { "verbose" }, ["--verbose"] = { "verbose" },
  ["--stats"] = { "stats" },
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

-- "-j4" -> "-j", "4"; "-kq" -> sets k and q in o and returns nil; else a.
-- -> name, inline value | nil (consumed) | nil, usage error
local function short_cluster(a, o)
  if not (a:match("^%-%a.") and not OPTIONS[a]) then return a end
  local first = a:sub(1, 2)
  if OPTIONS[first] and OPTIONS[first][2] then return first, a:sub(3) end
  if not OPTIONS[first] then return a end
  for c in a:sub(2):gmatch(".") do
    if not OPTIONS["-" .. c] or OPTIONS["-" .. c][2] then
      return nil, nil, "unknown option -" .. c .. " in " .. a
    end
  end
  for c in a:sub(2):gmatch(".") do o[OPTIONS["-" .. c][1]] = true end
  return nil
end

-- Store one option's value (-e collects exit codes) -> true | nil, usage error
local function store(o, key, value)
  if key ~= "success_code" then
    o[key] = value
    return true
  end
  local c = tonumber(value)
  if not c or c ~= math.floor(c) or c < 0 or c > 255 then
    return nil, "-e needs an exit code 0-255, got '" .. value .. "'"
  end
  o.success_codes[math.tointeger(c)] = true
  return true
end

-- Values checked once every option is in -> o | nil, usage error
local function check_values(o)
  if o.jobs then
    local j = math.tointeger(tonumber(o.jobs))
    if not j or j < 1 then return nil, "--jobs needs a positive integer, got '" .. o.jobs .. "'" end
    o.jobs = j
  end
  if o.grace then
    local g = tonumber(o.grace)
    if not g or g ~= g or g < 0 then return nil, "--grace needs seconds, got '" .. o.grace .. "'" end
    o.grace = g
  end
  o.output = o.output or "prefix"
  if o.output ~= "prefix" and o.output ~= "raw" and o.output ~= "group" then
    return nil, "--output must be prefix, raw or group, got '" .. o.output .. "'"
  end
  o.color = o.color or "auto"
  if o.color ~= "auto" and o.color ~= "always" and o.color ~= "never" then
    return nil, "--color must be auto, always or never, got '" .. o.color .. "'"
  end
  if o.executor and o.executor ~= "local" and o.executor ~= "slurm" then
    return nil, "--executor must be local or slurm, got '" .. o.executor .. "'"
  end
  if (o.resume or o.retry_failed) and not o.joblog then
    return nil, (o.resume and "--resume" or "--retry-failed") .. " needs --joblog FILE"
  end
  if o.http then
    local host, port = M.parse_addr(o.http)
    if not host then return nil, "--http needs [ADDR:]PORT, got '" .. o.http .. "'" end
    o.http = { host = host, port = port }
  end
  if (o.status or o.stop or o.daemon) and not o.pidfile and not o.daemon then
    return nil, (o.status and "--status" or "--stop") .. " needs --pidfile FILE"
  end
  return o
end

--- parse(argv) -> options table with `positional` words | nil, usage message
function M.parse(argv)
  local o = { positional = {}, success_codes = {} }
  local i, n = 1, #argv
  while i <= n do
    local a = argv[i]
    if a == "--" then
      table.move(argv, i + 1, n, #o.positional + 1, o.positional)
      o.dashdash = true
      break
    end
    local name, inline = a:match("^(%-%-[^=]+)=(.*)$")
    local err
    if not name then
      name, inline, err = short_cluster(a, o)
      if err then return usage_error(err) end
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
      local ok, serr = store(o, spec[1], value)
      if not ok then return usage_error(serr) end
    elseif name then
      o.positional[#o.positional + 1] = a
    end
    i = i + 1
  end
  local ok, err = check_values(o)
  if not ok then return usage_error(err) end
  return o
end

--- parse_addr("8080" | "0.0.0.0:8080" | "[::1]:8080") -> host, port | nil
function M.parse_addr(s)
  local host, port = s:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  if not host then host, port = "127.0.0.1", s:match("^(%d+)$") end
  port = math.tointeger(tonumber(port))
  if not port or port > 65535 then return nil end
  return host, port
end

function M.is_jobfile_name(s)
  return s:match("%.lua$") or s:match("%.ya?ml$")
end

-- FILE is the first positional word when it looks like a job file: a .lua, .yaml
-- or .yml name, or a path with a slash. Anything else is a target.
function M.split_file(positional)
  local first = positional[1]
  local file
  if first and (M.is_jobfile_name(first) or first:find("/")) then file = first end
  local targets = table.move(positional, file and 2 or 1, #positional, 1, {})
  return file, targets
end

local function eprint(msg)
  io.stderr:write("lrun: ", msg, "\n")
end

function M.main(argv)
  -- The signal configuration lrun was started with, before lrun blocks anything of
  -- its own: every job and CMD starts with it (doc/design.md, "Signals").
  local mask, ignored = require("lprocess.core").sigstate()
  if argv and argv[1] == "ctl" then
    return require("lrun.control.client").main(table.move(argv, 2, #argv, 1, {}))
  end
  local o, err = M.parse(argv or {})
  if not o then eprint(err); return 2 end
  o.sigmask, o.sigignore = mask, ignored
  if o.help then io.stdout:write(USAGE) return 0 end
  if o.version then io.stdout:write("lrun ", M.VERSION, "\n") return 0 end
  local app = require "lrun.app"
  if o.status or o.stop then return app.daemon_cmds(o) end
  if o.cancel then return app.cancel(o) end
  if o.init then return app.init(o) end
  local spec, selected = app.load(o)
  if not spec then eprint(selected); return 2 end
  local graph = require "lrun.graph"
  if o.dry_run then return app.dry_run(o, spec, selected) end
  if o.graph then io.stdout:write(graph.dot(spec, selected)) return 0 end
  if o.list then return app.list(spec) end
  local ready, why = app.preflight(o, spec, selected)
  if not ready then eprint(why); return 2 end
  local d
  if o.daemon then
    if not o.pidfile then eprint("--daemon needs --pidfile FILE"); return 2 end
    d, err = app.daemonize(o)
    if not d then eprint(err); return 1 end
  end
  local ok, code = xpcall(app.run, debug.traceback, o, spec, selected, d)
  if not ok then
    eprint("internal error: " .. tostring(code))
    if d then d:fail(tostring(code)) end
    return 70
  end
  return code
end

--- needs_close() -> true when lrun's Lua state must be closed at exit, its finalizers
-- run. Only a daemon's handle has one with an effect outside lrun (its pidfile goes);
-- the rest is descriptors and memory, which the kernel takes back, and exit() flushes
-- stdio. Closing frees the heap object by object: 0.3 s after a 100 000-job plan.
function M.needs_close()
  local daemon = package.loaded["lprocess.daemon"]
  return daemon ~= nil and daemon._live ~= nil
end

return M
