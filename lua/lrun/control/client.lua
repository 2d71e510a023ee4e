--- lrun.control.client: `lrun ctl` -- one request to a running lrun's control socket,
-- its answer printed for people (or as JSON with --json).
--
--   os.exit(client.main(argv))   -- argv after "ctl"
--
-- Exit codes: 0 done; 1 lrun refused or failed the command (its message on stderr);
-- 2 usage; 3 no lrun answers on the socket.
local core = require "lprocess.core"
local control = require "lrun.control"
local protocol = require "lrun.control.protocol"
local report = require "lrun.report"

local M = {}

local USAGE = [[
usage: lrun ctl [--pidfile F | --control PATH | --file JOBFILE] [--json] CMD
  status                 one line per job: state, pid, attempt, started, duration,
                         CPU, RSS, last exit
  start JOB | stop JOB | restart JOB     (JOB: a job, all its instances, or web.1)
  signal JOB SIG         a signal to its process group (TERM, HUP, 10, ...)
  tail [-f] [-n N] JOB   its last lines; -f: then follow until it ends
  add FILE               load more jobs into the running graph
  eval 'LUA'             run Lua inside lrun (only with lrun --control-lua)
  shutdown               stop the whole run, as --stop does
The socket: --control PATH, else PIDFILE.sock, else the one of the job file in
this directory (jobs.lua, jobs.yaml, jobs.yml) or of --file.
]]

local function eprint(msg) io.stderr:write("lrun ctl: ", msg, "\n") end

-- argv -> opts, request | nil, usage message
local function parse(argv)
  local o, rest, i = {}, {}, 1
  while argv[i] do
    local a = argv[i]
    if a == "--pidfile" or a == "--control" or a == "--file" or a == "-n" then
      if not argv[i + 1] then return nil, a .. " needs a value" end
      o[a:gsub("^%-+", "")] = argv[i + 1]
      i = i + 1
    elseif a == "--json" then o.json = true
    elseif a == "-f" or a == "--follow" then o.follow = true
    elseif a == "-h" or a == "--help" then o.help = true
    else rest[#rest + 1] = a end
    i = i + 1
  end
  if o.help then return o end
  local cmd = rest[1]
  if not cmd then return nil, "no command" end
  local req = { cmd = cmd }
  local want = ({ start = 1, stop = 1, restart = 1, signal = 2, tail = 1, add = 1, eval = 1,
    status = 0, shutdown = 0, pid = 0 })[cmd]
  if not want then return nil, "unknown command " .. cmd end
  if #rest - 1 ~= want then
    return nil, string.format("%s takes %d argument%s", cmd, want, want == 1 and "" or "s")
  end
  if cmd == "add" then
    local f = rest[2]
    if f:sub(1, 1) ~= "/" then f = core.getcwd() .. "/" .. f end   -- lrun's cwd is not ours
    req.file = f
  elseif cmd == "eval" then req.code = rest[2]
  elseif want > 0 then req.job = rest[2] end
  if cmd == "signal" then req.signal = rest[3] end
  if cmd == "tail" then
    req.follow = o.follow or nil
    req.lines = o.n and math.tointeger(tonumber(o.n)) or nil
    if o.n and not req.lines then return nil, "-n needs a number" end
  end
  return o, req
end

local function socket_path(o)
  if o.control or o.pidfile then return control.default_path(o) end
  local jobfile = require "lrun.jobfile"
  local file, err = o.file
  if not file then
    file, err = jobfile.find(".")
    if not file then return nil, err .. "; or give --control PATH or --pidfile FILE" end
  end
  local P = require "lrun.jobfile.paths"
  return control.default_path(o, P.resolve(assert(P.cwd()), file))
end

local function clock(t)
  return t and os.date("%H:%M:%S", math.floor(t)) or "-"
end

local function print_status(rows)
  local out = { { "job", "state", "pid", "attempt", "started", "duration", "CPU", "RSS",
    "last exit" } }
  for _, r in ipairs(rows) do
    out[#out + 1] = { r.name, r.state, r.pid and tostring(math.tointeger(r.pid)) or "-",
      tostring(math.tointeger(r.attempt) or 0), clock(r.started), report.duration(r.duration),
      report.duration(r.cpu), report.kib(r.rss), r.last_exit or "-" }
  end
  local w = {}
  for _, row in ipairs(out) do
    for c, cell in ipairs(row) do w[c] = math.max(w[c] or 0, utf8.len(cell) or #cell) end
  end
  for _, row in ipairs(out) do
    local cells = {}
    for c, cell in ipairs(row) do
      cells[c] = cell .. string.rep(" ", w[c] - (utf8.len(cell) or #cell))
    end
    io.stdout:write((table.concat(cells, "  "):gsub("%s+$", "")), "\n")
  end
end

local function print_result(req, res)
  local r = res.result
  if req.cmd == "status" then return print_status(r) end
  if req.cmd == "tail" then
    for _, l in ipairs(r.lines or {}) do io.stdout:write(l, "\n") end
  elseif req.cmd == "eval" then
    io.stdout:write(r.output or "")
    for _, v in ipairs(r.values or {}) do io.stdout:write(v, "\n") end
  elseif req.cmd == "add" then
    io.stdout:write("added: ", table.concat(r, ", "), "\n")
  elseif type(r) == "table" and r.units then
    io.stdout:write(req.cmd, ": ", table.concat(r.units, ", "), "\n")
    for _, e in ipairs(r.errors or {}) do eprint(e) end
  else
    io.stdout:write(tostring(r), "\n")
  end
end

-- tail -f: lines until the unit ends or lrun goes.
local function follow(fd, json)
  local buf = ""
  while true do
    local line
    while true do
      local i = buf:find("\n", 1, true)
      if i then line = buf:sub(1, i - 1); buf = buf:sub(i + 1) break end
      core.poll({ [fd] = "r" }, -1)
      local s = core.recv(fd, 65536)
      if s == nil or s == "" then return 0 end
      if s then buf = buf .. s end
    end
    local obj = protocol.parse(line)
    if json then io.stdout:write(line, "\n")
    elseif obj and obj.line then io.stdout:write(obj.line, "\n")
    elseif obj and obj.result then
      for _, l in ipairs(obj.result.lines or {}) do io.stdout:write(l, "\n") end
    end
    io.stdout:flush()
    if obj and obj["end"] then return 0 end
    if obj and obj.ok == false then eprint(obj.error) return 1 end
  end
end

function M.main(argv)
  local o, req = parse(argv)
  if not o then eprint(req .. "\nTry 'lrun ctl --help'.") return 2 end
  if o.help then io.stdout:write(USAGE) return 0 end
  local path, perr = socket_path(o)
  if not path then eprint(perr) return 3 end
  if req.follow then
    local fd, err = control.connect(path)
    if not fd then eprint(err) return 3 end
    core.send(fd, protocol.encode(req))
    local code = follow(fd, o.json)
    core.close(fd)
    return code
  end
  -- stop and restart answer once the job has settled: grace, and then some
  local res, err = control.request(path, req, (req.cmd == "stop" or req.cmd == "restart") and 600
    or req.cmd == "eval" and 30 or 10)
  if not res then eprint(err) return err:find("control socket", 1, true) and 3 or 1 end
  if o.json then io.stdout:write(protocol.encode(res.result)) end
  if res.ok == false then eprint(res.error) return 1 end
  if not o.json then print_result(req, res) end
  return 0
end

return M
