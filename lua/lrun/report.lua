-- lrun.report: what lrun tells about a run once jobs end — the summary table,
-- GNU parallel's --joblog, the --events JSON lines, the status line text and the
-- --stats line (the runner's own cost: M.self_usage, M.stats_text).

local M = {}

local format, rep, sub = string.format, string.rep, string.sub
local concat = table.concat

---------------------------------------------------------------------------
-- Human formats.

-- Seconds as "0.25s", "12.3s", "2m03s", "1h02m". nil -> "-".
function M.duration(sec)
  if sec == nil then return "-" end
  if sec ~= sec or sec < 0 then return "?" end
  -- Thresholds on the rounded value, so 59.96 reads "1m00s", not "60.0s".
  if sec < 9.995 then return format("%.2fs", sec) end
  if sec < 59.95 then return format("%.1fs", sec) end
  local s = math.floor(sec + 0.5)
  if s < 3600 then return format("%dm%02ds", s // 60, s % 60) end
  return format("%dh%02dm", s // 3600, (s % 3600) // 60)
end

-- KiB (as rusage gives maxrss) as "512 KiB", "12.3 MiB", "1.5 GiB".
function M.kib(kib)
  if kib == nil then return "-" end
  if kib < 1024 then return format("%d KiB", math.floor(kib)) end
  if kib < 1024 * 1024 then return format("%.1f MiB", kib / 1024) end
  return format("%.1f GiB", kib / (1024 * 1024))
end

-- Elapsed time for the status line: "MM:SS", or "H:MM:SS" past an hour.
function M.clock(sec)
  local s = math.floor((sec or 0) + 0.5)
  if s >= 3600 then
    return format("%d:%02d:%02d", s // 3600, (s % 3600) // 60, s % 60)
  end
  return format("%02d:%02d", s // 60, s % 60)
end

local function signame(name)
  name = tostring(name)
  if sub(name, 1, 3) == "SIG" then return name end
  return "SIG" .. name
end

-- Width in characters when valid UTF-8 (job names may not be ASCII).
local function width(s)
  return utf8.len(s) or #s
end

---------------------------------------------------------------------------
-- The end-of-run table.

local COLUMNS = {
  { title = "job" },
  { title = "result" },
  { title = "exit" },
  { title = "duration", right = true },
  { title = "CPU", right = true },
  { title = "peak RSS", right = true },
}

-- One row per job, in the order given. A job tried more than once says so in
-- its result ("failed (3 attempts)"). Unknown values print as "-". Text
-- columns are left-aligned, numbers right-aligned; no trailing blanks.
function M.summary(results)
  local rows = {}
  for i, r in ipairs(results or {}) do
    local result = tostring(r.result or "-")
    if r.attempts and r.attempts > 1 then
      result = format("%s (%d attempts)", result, r.attempts)
    end
    local exit = "-"
    if r.signame then exit = signame(r.signame)
    elseif r.code then exit = tostring(r.code) end
    rows[i] = { tostring(r.name or "?"), result, exit, M.duration(r.duration),
                M.duration(r.cpu), M.kib(r.maxrss) }
  end
  local widths = {}
  for c, col in ipairs(COLUMNS) do
    local w = width(col.title)
    for _, row in ipairs(rows) do
      local cw = width(row[c])
      if cw > w then w = cw end
    end
    widths[c] = w
  end
  local function line(cells)
    local parts = {}
    for c, col in ipairs(COLUMNS) do
      local pad = rep(" ", widths[c] - width(cells[c]))
      parts[c] = col.right and pad .. cells[c] or cells[c] .. pad
    end
    return (concat(parts, "  "):gsub(" +$", ""))
  end
  local titles = {}
  for c, col in ipairs(COLUMNS) do titles[c] = col.title end
  local out = { line(titles) }
  for _, row in ipairs(rows) do out[#out + 1] = line(row) end
  return concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------
-- Writers share this: a path (opened with `mode`), "-" for stdout, or an
-- already open file (left open by close()).
local function open_sink(path, mode)
  if io.type(path) == "file" then return path, false end
  if path == "-" then return io.stdout, false end
  local f, err = io.open(path, mode)
  if not f then return nil, err end
  return f, true
end

-- Linux numbers of the usual signals, so a signal may be given by name.
local SIGNUM = {
  HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8,
  KILL = 9, USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15,
  STKFLT = 16, CHLD = 17, CONT = 18, STOP = 19, TSTP = 20, TTIN = 21,
  TTOU = 22, URG = 23, XCPU = 24, XFSZ = 25, VTALRM = 26, PROF = 27,
  WINCH = 28, IO = 29, PWR = 30, SYS = 31,
}

local function signum(sig)
  if sig == nil or sig == false then return 0 end
  if math.type(sig) == "integer" then return sig end
  if type(sig) == "number" then return math.tointeger(sig) or 0 end
  local name = tostring(sig):upper():gsub("^SIG", "")
  return SIGNUM[name] or tonumber(name) or 0
end

-- argv -> a line a shell would read back: words quoted only when needed.
local function shell_join(argv)
  local words = {}
  for i, w in ipairs(argv) do
    w = tostring(w)
    if w == "" or w:find("[^%w%%+,./:=@_-]") then
      w = "'" .. w:gsub("'", "'\\''") .. "'"
    end
    words[i] = w
  end
  return concat(words, " ")
end

-- GNU parallel's JobRuntime: milliseconds truncated (not rounded), printed
-- "%10.3f" (right-aligned in 10 columns), as parallel 20221122 does.
local function runtime_field(sec)
  sec = tonumber(sec) or 0
  return format("%10.3f", math.floor(sec * 1000 + 1e-6) / 1000)
end

local JOBLOG_HEADER = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

-- The Command column's text of a command (a string or an argv array).
function M.joblog_command(cmd)
  cmd = cmd or ""
  if type(cmd) == "table" then cmd = shell_join(cmd) end
  return (tostring(cmd):gsub("\n", "\0"))
end

local Joblog = {}
Joblog.__index = Joblog

-- One row per finished job, flushed at once (parallel does the same, and a
-- killed lrun then still leaves a complete log). Missing fields: seq counts
-- up from 1, host ":" (local), send/receive/exitval/signal 0. The command is
-- a string or an argv array; newlines in it become NUL bytes, as in parallel,
-- so one job stays one line.
function Joblog:write(row)
  self.seq = row.seq or (self.seq + 1)
  local cmd = M.joblog_command(row.command)
  local f = self.file
  f:write(concat({
    tostring(self.seq),
    tostring(row.host or ":"),
    format("%.3f", tonumber(row.start) or 0),
    runtime_field(row.runtime),
    tostring(math.tointeger(row.send) or 0),
    tostring(math.tointeger(row.receive) or 0),
    tostring(math.tointeger(row.exitval) or 0),
    tostring(signum(row.signal)),
    cmd,
  }, "\t"), "\n")
  f:flush()
end

function Joblog:close()
  if self.file and self.owned then self.file:close() end
  self.file = nil
end

-- report.joblog(path [, {append=bool}]) -> writer, or nil, message.
-- Like `parallel --joblog FILE` the file is truncated; with append (parallel's
-- "+FILE") rows are added and the header is written only to an empty file.
function M.joblog(path, opts)
  opts = opts or {}
  local f, owned = open_sink(path, opts.append and "ab" or "wb")
  if not f then return nil, owned end
  local empty = true
  if opts.append and owned then empty = (f:seek("end") or 0) == 0 end
  if empty then
    f:write(JOBLOG_HEADER)
    f:flush()
  end
  return setmetatable({ file = f, owned = owned, seq = 0 }, Joblog)
end

---------------------------------------------------------------------------
-- Event stream: one JSON object per line.

local json
do
  local cjson = require "cjson"
  json = cjson.new and cjson.new() or cjson   -- own settings, not the global's
  if json.encode_sparse_array then json.encode_sparse_array(true) end
end
local escape_slash = true
if json.encode_escape_forward_slash then
  json.encode_escape_forward_slash(false)
  escape_slash = false
end

-- cjson copies invalid UTF-8 through and so writes invalid JSON: replace each
-- bad byte with U+FFFD (strict UTF-8: no surrogates, no overlongs).
local function fix_utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then
      out[#out + 1] = sub(s, i)
      break
    end
    out[#out + 1] = sub(s, i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return concat(out)
end
M._fix_utf8 = fix_utf8

-- Make a value cjson can always encode: strings valid UTF-8, no NaN/inf,
-- keys strings, no cycles; what JSON has no word for becomes its tostring.
local function clean(v, depth)
  local t = type(v)
  if t == "string" then return fix_utf8(v) end
  if t == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    return v
  end
  if t == "boolean" or t == "nil" then return v end
  if t ~= "table" or depth > 16 then return fix_utf8(tostring(v)) end
  local n = #v
  local is_array = n > 0 or next(v) == nil
  if is_array then
    for k in pairs(v) do
      if math.type(k) ~= "integer" or k < 1 or k > n then is_array = false; break end
    end
  end
  local out = {}
  if is_array then
    for i = 1, n do
      local c = clean(v[i], depth + 1)
      if c == nil then c = json.null end
      out[i] = c
    end
  else
    for k, val in pairs(v) do
      out[fix_utf8(tostring(k))] = clean(val, depth + 1)
    end
  end
  return out
end

local function encode(v)
  local ok, s = pcall(json.encode, clean(v, 0))
  if not ok then s = json.encode(fix_utf8(tostring(v))) end
  -- cjson 2.1 writes "\/" for "/": legal JSON, but noisy in paths. Every "/"
  -- it writes is escaped and every "\" doubled, so this replace is exact.
  if escape_slash then s = s:gsub("\\/", "/") end
  return s
end
M._encode = encode

local function default_clock()
  local ok, system = pcall(require, "system")
  if ok and type(system) == "table" and system.gettime then return system.gettime() end
  return os.time()
end

local Events = {}
Events.__index = Events

-- w:emit(type, fields): {"event":type,"time":T,"job":fields.job, then the
-- other fields with keys sorted}. time is epoch seconds with microseconds,
-- from fields.time when given, else the writer's clock. Written and flushed
-- as one line, so a reader tailing the file never sees half an event.
function Events:emit(kind, fields)
  fields = fields or {}
  local t = tonumber(fields.time) or self.clock()
  local parts = { '{"event":', encode(tostring(kind)), ',"time":', format("%.6f", t) }
  if fields.job ~= nil then
    parts[#parts + 1] = ',"job":'
    parts[#parts + 1] = encode(fields.job)
  end
  local keys, values = {}, {}
  for k, v in pairs(fields) do
    if k ~= "job" and k ~= "time" and k ~= "event" then
      k = tostring(k)
      keys[#keys + 1] = k
      values[k] = v
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = "," .. encode(k) .. ":" .. encode(values[k])
  end
  parts[#parts + 1] = "}\n"
  local f = self.file
  f:write(concat(parts))
  f:flush()
end

Events.close = Joblog.close   -- both own (or borrow) one file

-- report.events(path [, {append=bool, clock=fn}]) -> writer, or nil, message.
function M.events(path, opts)
  opts = opts or {}
  local f, owned = open_sink(path, opts.append and "ab" or "wb")
  if not f then return nil, owned end
  return setmetatable({ file = f, owned = owned, clock = opts.clock or default_clock }, Events)
end

---------------------------------------------------------------------------
-- Status line: "[12/40] running 4, queued 20, failed 1 — 00:12".
-- total defaults to done + running + queued; "failed" shows only when some
-- did; the clock only when elapsed is given.
function M.status_text(s)
  local done, running, queued = s.done or 0, s.running or 0, s.queued or 0
  local total = s.total or (done + running + queued)
  local text = format("[%d/%d] running %d, queued %d", done, total, running, queued)
  if s.failed and s.failed > 0 then text = text .. format(", failed %d", s.failed) end
  if s.elapsed then text = text .. " — " .. M.clock(s.elapsed) end
  return text
end

---------------------------------------------------------------------------
-- --stats: what lrun itself cost, so a user sees the runner's overhead on their
-- own graph.

-- lrun's own CPU seconds (user + system, children excluded) and peak RSS in KiB,
-- from /proc/self; nil where the file cannot be read.
function M.self_usage()
  local cpu, kib
  local f = io.open("/proc/self/stat")
  if f then
    local line = f:read("l") or ""
    f:close()
    -- after the ")" that ends comm: state is field 3, utime and stime 14 and 15
    local rest = line:match("^.*%)%s+(.*)$") or ""
    local fields = {}
    for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
    local ut, st = tonumber(fields[12]), tonumber(fields[13])
    if ut and st then cpu = (ut + st) / 100 end   -- USER_HZ: 100 on Linux
  end
  f = io.open("/proc/self/status")
  if f then
    local text = f:read("a") or ""
    f:close()
    kib = tonumber(text:match("VmHWM:%s*(%d+)"))
  end
  return cpu, kib
end

--- stats_text{ runs =, wall =, cpu =, maxrss = } -> "lrun: stats: ...\n"
-- runs: job runs started (retries count); wall, cpu: seconds; maxrss: KiB.
function M.stats_text(s)
  local runs, wall = s.runs or 0, s.wall or 0
  local rate = wall > 0 and format("%.0f", runs / wall) or "-"
  local cpu = s.cpu and format("%.2fs", s.cpu) or "-"
  local per = (s.cpu and runs > 0) and format("%.0f us", s.cpu / runs * 1e6) or "-"
  local rss = s.maxrss and format("%.1f MB", s.maxrss / 1024) or "-"
  return format("lrun: stats: %d job runs in %.2fs (%s jobs/s); lrun's own CPU %s (%s per job); "
    .. "peak RSS %s\n", runs, wall, rate, cpu, per, rss)
end

return M
