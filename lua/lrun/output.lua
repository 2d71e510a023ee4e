-- lrun.output: job output on its way to lrun's own stdout/stderr.
--
-- The event loop reads raw chunks from each job's pipes and hands them to
-- `out:feed(name, stream, data)`. This module splits them into lines, adds the
-- `name | ` prefix (mode "prefix"), passes bytes through whole-line-at-a-time
-- (mode "raw") or holds a job's output until it ends (mode "group"); it also
-- copies every byte to NAME.log, feeds "log" readiness probes, keeps a short
-- tail for policies and draws the status line.
--
-- Invariants:
--   * Only whole lines are written to a sink, each in a single write call, so
--     two jobs never share a line. Exception, by design: a line that grows past
--     `pending_limit` (1 MiB) without a newline is emitted as it stands, so a
--     job printing an endless line cannot make lrun's memory grow forever.
--     In "prefix"/"group" mode the held part is closed with a newline and the
--     rest of that line continues under a fresh prefix; in "raw" mode the bytes
--     go out as they are (nothing added), so a raw line that long may be torn.
--   * No byte is lost: a partial last line is emitted by `finish`,
--     `finish_job` or `close`; in "prefix"/"group" mode it gets a newline.
--   * Bytes are never altered: CR, NUL and invalid UTF-8 pass through.
--
--   * "group" keeps a job's output in memory up to `group_memory` (8 MiB),
--     then spills it to an anonymous temp file, and replays it in order.
--
-- Speed: the work happens once per chunk in C (string.find with plain=true is
-- memchr; prefixing is one call of the line engine below). There is no
-- per-byte Lua loop and, unless a watcher is installed, no per-line Lua work
-- either. Measured through a pipe, 100 MB of 57-byte lines: raw ~950 MB/s,
-- prefix ~300 MB/s with LPeg, ~100 MB/s with string.gsub; a C prefix_lines
-- in lprocess.core (contract below) lifts prefix to ~500-900 MB/s.

local M = {}

local find, sub, byte, gsub, rep = string.find, string.sub, string.byte, string.gsub, string.rep
local concat, remove = table.concat, table.remove

M.PENDING_LIMIT = 1024 * 1024      -- longest partial line held back, bytes
M.GROUP_MEMORY = 8 * 1024 * 1024   -- group mode: per job, beyond this spill to a temp file
M.TAIL_MAX = 20                    -- lines kept for out:tail
-- Foreground colors a job prefix may get: normal and bright, no black/white.
M.PALETTE = { 31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96 }

local STREAM = { stdout = 1, stderr = 2 }
local STREAM_NAME = { "stdout", "stderr" }
local MODES = { prefix = true, raw = true, group = true }

---------------------------------------------------------------------------
-- Line engines. An engine is `fn(s, init, prefix)` -> text, last: `last` is
-- the index of the last "\n" in s at or after `init` (init - 1 when there is
-- none) and `text` is s[init..last] with `prefix` before each line ("" when
-- there is none). Engines: "core" (a C `prefix_lines` in lprocess.core, with
-- exactly this contract, used when present), "lpeg", and "lua" (string.gsub,
-- always there). All give identical bytes; they differ only in speed.

-- Index of the last "\n" in s, or nil. Lines are usually short, so look in a
-- small window at the end first and widen it geometrically.
local function last_nl(s)
  local n = #s
  if byte(s, n) == 10 then return n end
  local window = 256
  while true do
    local from = n - window
    if from < 1 then from = 1 end
    local p = find(s, "\n[^\n]*$", from)
    if p or from == 1 then return p end
    window = window * 8
  end
end
M._last_nl = last_nl

local engines = {}

engines.lua = function(s, init, prefix)
  local last = last_nl(s)
  if not last or last < init then return "", init - 1 end
  local repl = gsub("\n" .. prefix, "%%", "%%%%")
  local body = gsub(sub(s, init, last - 1), "\n", repl)
  return prefix .. body .. "\n", last
end

do
  local ok, lpeg = pcall(require, "lpeg")
  if ok and type(lpeg) == "table" and lpeg.Cs then
    local nl = lpeg.P "\n"
    -- Each complete line becomes prefix .. line; the trailing partial line
    -- fails `nl`, backtracks out of the substitution and is left for Cp().
    -- The prefix comes in as Carg(1): measured faster than a per-job Cc.
    local pat = lpeg.Cs((lpeg.Carg(1) * (1 - nl) ^ 0 * nl) ^ 0) * lpeg.Cp()
    engines.lpeg = function(s, init, prefix)
      local text, after = pat:match(s, init, prefix)
      return text, after - 1
    end
  end
end

do
  local ok, text = pcall(require, "lrun.text")
  if ok and type(text) == "table" and type(text.prefix_lines) == "function" then
    engines.core = text.prefix_lines
  end
end

M.engines = engines
M.default_engine = (engines.core and "core") or (engines.lpeg and "lpeg") or "lua"

---------------------------------------------------------------------------
-- Terminals and color.

local STD_FD = {}
STD_FD[io.stdin] = 0
STD_FD[io.stdout] = 1
STD_FD[io.stderr] = 2

-- isatty for a Lua file or an fd. `fn` (e.g. lprocess.core.isatty) is tried
-- first with the fd when known, else with the file; then luasystem if it has
-- one; then, for fds 0-2 only, the shell's `test -t` (the child inherits them).
local function tty(file, fn)
  local fd = math.type(file) == "integer" and file or STD_FD[file]
  if fn then
    local ok, res = pcall(fn, fd or file)
    if ok then return res == true or res == 1 end
  end
  local okm, system = pcall(require, "system")
  if okm and type(system) == "table" and type(system.isatty) == "function" then
    local ok, res = pcall(system.isatty, file)
    if ok then return res == true end
  end
  if fd and fd >= 0 and fd <= 2 then
    return os.execute("test -t " .. fd) == true
  end
  return false
end
M.isatty = tty

-- Whether to color output going to `file`. when: "always" | "never" | "auto"
-- (nil = auto). `opts` is an isatty function, or {isatty=fn, getenv=fn} (the
-- getenv hook exists for tests). auto: a TTY, NO_COLOR unset or empty (as
-- no-color.org defines it), and TERM not "dumb".
function M.want_color(when, file, opts)
  if type(opts) == "function" then opts = { isatty = opts } end
  opts = opts or {}
  if when == true or when == "always" then return true end
  if when == false or when == "never" then return false end
  if when ~= nil and when ~= "auto" then
    error("color: expected always, never or auto, got " .. tostring(when), 2)
  end
  local getenv = opts.getenv or os.getenv
  local no_color = getenv("NO_COLOR")
  if no_color and no_color ~= "" then return false end
  if getenv("TERM") == "dumb" then return false end
  return tty(file or io.stdout, opts.isatty)
end

-- Display width in characters (bytes when not valid UTF-8).
local function width(s)
  return utf8.len(s) or #s
end

-- Palette index from a 32-bit FNV-1a hash of the name: stable across runs.
function M.color_of(name)
  local h = 2166136261
  for i = 1, #name do
    h = ((h ~ byte(name, i)) * 16777619) & 0xffffffff
  end
  return M.PALETTE[h % #M.PALETTE + 1]
end

-- Cut to at most n characters, without splitting a UTF-8 sequence.
local function truncate(s, n)
  if n < 1 then return "" end
  if utf8.len(s) then
    local cut = utf8.offset(s, n + 1)
    if cut then return sub(s, 1, cut - 1) end
    return s
  end
  return sub(s, 1, n)
end

local function mkdir_p(dir)
  local ok, lfs = pcall(require, "lfs")
  if ok and type(lfs) == "table" then
    local path = dir:sub(1, 1) == "/" and "" or "."
    for part in dir:gmatch("[^/]+") do
      path = path .. "/" .. part
      if lfs.attributes(path, "mode") == nil then
        local made, err = lfs.mkdir(path)
        if not made and lfs.attributes(path, "mode") ~= "directory" then
          return nil, err
        end
      end
    end
    return true
  end
  -- No LuaFileSystem: the shell's mkdir, with the path single-quoted.
  local quoted = "'" .. dir:gsub("'", "'\\''") .. "'"
  if os.execute("mkdir -p -- " .. quoted) then return true end
  return nil, "cannot create " .. dir
end

---------------------------------------------------------------------------
-- The output object.

local Output = {}
Output.__index = Output

local NEW_KEYS = {
  mode = true, color = true, stdout = true, stderr = true, log_dir = true,
  status = true, isatty = true, engine = true, pending_limit = true,
  group_memory = true, columns = true,
}

-- opts: mode ("prefix"), color (false), stdout/stderr (io.stdout/io.stderr),
-- log_dir, status, isatty (fn), and for tests and tuning: engine ("lpeg" or
-- "lua"), pending_limit, group_memory, columns (status line width).
function M.new(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not NEW_KEYS[k] then error("output.new: unknown option " .. tostring(k), 2) end
  end
  local mode = opts.mode or "prefix"
  if not MODES[mode] then error("output.new: unknown mode " .. tostring(mode), 2) end
  local engine = engines[opts.engine or M.default_engine]
  if not engine then error("output.new: unknown engine " .. tostring(opts.engine), 2) end
  local self = setmetatable({
    mode = mode,
    color = opts.color and true or false,
    sinks = { opts.stdout or io.stdout, opts.stderr or io.stderr },
    log_dir = opts.log_dir,
    engine = engine,
    pending_limit = opts.pending_limit or M.PENDING_LIMIT,
    group_memory = opts.group_memory or M.GROUP_MEMORY,
    jobs = {},
    order = {},
    width = 0,
    status_on = false,
    status_text = nil,
    shown = false,          -- is the status line on screen now?
    at_bol = true,          -- raw mode may leave the cursor mid-line
    closed = false,
  }, Output)
  if opts.status then
    self.status_on = tty(self.sinks[2], opts.isatty)
    self.columns = opts.columns or tonumber(os.getenv("COLUMNS") or "") or 80
  end
  if self.log_dir then
    local ok, err = mkdir_p(self.log_dir)
    if not ok then
      self:message("log dir " .. self.log_dir .. ": " .. tostring(err))
      self.log_dir = nil
    end
  end
  return self
end

local function make_prefix(self, job)
  local padded = job.name .. rep(" ", self.width - width(job.name))
  if self.color then
    job.prefix = "\27[" .. M.color_of(job.name) .. "m" .. padded .. " |\27[0m "
  else
    job.prefix = padded .. " | "
  end
end

local function new_stream()
  return { n = 0, len = 0 }   -- pending pieces of the current partial line
end

local function add_job(self, name)
  if type(name) ~= "string" then error("output: job name must be a string", 3) end
  local job = {
    name = name,
    st = { new_stream(), new_stream() },
    bytes = { 0, 0 },
    recent = {},            -- segments {s, i, e, nlines} holding the newest lines
    recent_lines = 0,
    watchers = nil,
    g_text = {}, g_stream = {}, g_n = 0, g_size = 0, g_file = nil,
  }
  self.jobs[name] = job
  job.seq = #self.order + 1
  self.order[job.seq] = name
  local w = width(name)
  if w > self.width then
    -- A longer name widens every prefix, so alignment holds from here on.
    self.width = w
    for _, other in pairs(self.jobs) do make_prefix(self, other) end
  else
    make_prefix(self, job)
  end
  return job
end

-- Only the width is taken now; a job's buffers are made when it first has output,
-- so a graph of 10 000 jobs costs nothing per job until each runs.
function Output:register(name)
  if self.jobs[name] then return end
  if type(name) ~= "string" then error("output: job name must be a string", 2) end
  local w = width(name)
  if w > self.width then
    self.width = w
    for _, other in pairs(self.jobs) do make_prefix(self, other) end
  end
end

-- The job is over and nothing more will be asked of it: drop its buffers (whatever
-- is still held is emitted first). Late bytes would start a fresh record.
function Output:forget(name)
  local job = self.jobs[name]
  if not job then return end
  self:finish_job(name)
  if job.log then job.log:close() end
  self.jobs[name] = nil    -- its entry in self.order is skipped from now on
end

-- The status line is taken off the screen before anything else is written to
-- the terminal, and put back by flush().
function Output:_erase()
  local err = self.sinks[2]
  err:write("\r\27[K")
  err:flush()
  self.shown = false
end

local function log_write(self, job, data)
  local f = job.log
  if f == nil then
    local name = job.name:gsub("[/%z]", "_")
    local path = self.log_dir .. "/" .. name .. ".log"
    local err
    f, err = io.open(path, "ab")
    if not f then
      job.log = false
      self:message("log " .. path .. ": " .. tostring(err))
      return
    end
    job.log = f
  end
  if f and data ~= "" then
    local ok, err = f:write(data)
    if not ok then
      self:message("log " .. job.name .. ": " .. tostring(err))
      f:close()
      job.log = false
    end
  end
end

-- Remember where the newest lines are, for tail(): whole segments are kept
-- (no copy, no split) until newer ones hold TAIL_MAX lines. A segment is
-- s[i..e]; its lines end with "\n", a last piece without one counts too.
local function remember(job, s, i, e)
  local n, at = 0, i
  while n < M.TAIL_MAX do
    local j = find(s, "\n", at, true)
    if not j or j > e then
      if at <= e then n = n + 1 end
      break
    end
    n = n + 1
    at = j + 1
  end
  local recent = job.recent
  recent[#recent + 1] = { s, i, e, n }
  local total = job.recent_lines + n
  while total - recent[1][4] >= M.TAIL_MAX do
    total = total - recent[1][4]
    remove(recent, 1)
  end
  job.recent_lines = total
end

-- Lines of s[i..e] without their "\n" (and without a "\r" before it).
local function each_line(s, i, e, fn)
  while i <= e do
    local j = find(s, "\n", i, true)
    local stop = (j and j <= e) and j or e + 1
    local line = sub(s, i, stop - 1)
    if byte(line, -1) == 13 then line = sub(line, 1, -2) end
    fn(line)
    i = stop + 1
  end
end

local function notify(job, si, s, i, e)
  local list = job.watchers
  -- Snapshot: a watcher may unwatch itself (or others) while we iterate.
  local snap = table.move(list, 1, #list, 1, {})
  local stream = STREAM_NAME[si]
  each_line(s, i, e, function(line)
    for k = 1, #snap do
      local fn = snap[k]
      if job.watch_set[fn] then fn(line, stream, job.name) end
    end
  end)
end

local function group_spill(job)
  local f = job.g_file
  if f == nil then
    f = io.tmpfile()
    job.g_file = f or false
  end
  if not f then return end   -- no temp file: keep it in memory
  for k = 1, job.g_n do
    local text = job.g_text[k]
    f:write(string.pack("<BI4", job.g_stream[k], #text), text)
    job.g_text[k], job.g_stream[k] = nil, nil
  end
  job.g_n, job.g_size = 0, 0
end

local function group_add(self, job, si, text)
  local k = job.g_n + 1
  job.g_n = k
  job.g_text[k], job.g_stream[k] = text, si
  job.g_size = job.g_size + #text
  if job.g_size > self.group_memory then group_spill(job) end
end

-- Send text (whole lines, or raw bytes in raw mode) where the mode says.
-- Several pieces go out in one write call, never split by another job's.
local function emit(self, job, si, a, b, c)
  if self.mode == "group" then
    group_add(self, job, si, c and a .. b .. c or b and a .. b or a)
  else
    if self.shown then self:_erase() end
    if c then self.sinks[si]:write(a, b, c)
    elseif b then self.sinks[si]:write(a, b)
    else self.sinks[si]:write(a) end
  end
end

-- Lines were seen: tell tail() and the watchers.
local function saw(job, si, s, i, e)
  remember(job, s, i, e)
  if job.watchers then notify(job, si, s, i, e) end
end

-- Take the held pieces of a stream's partial line, appending `more`.
local function take(st, more)
  local n = st.n
  if more then n = n + 1; st[n] = more end
  local text = concat(st, "", 1, n)
  for k = 1, n do st[k] = nil end
  st.n, st.len = 0, 0
  return text
end

-- A held line leaves: final partial line at EOF, or forced out at the limit.
local function emit_held(self, job, si)
  local st = job.st[si]
  if st.n == 0 then return end
  local text = take(st)
  if self.mode == "raw" then
    emit(self, job, si, text)
    if byte(text, -1) ~= 10 then self.at_bol = false end
  else
    emit(self, job, si, job.prefix, text, "\n")
  end
  saw(job, si, text, 1, #text)
end

local function hold(self, job, si, piece)
  local st = job.st[si]
  local n = st.n + 1
  st[n] = piece
  st.n, st.len = n, st.len + #piece
  if st.len > self.pending_limit then emit_held(self, job, si) end
end

-- The hot path. Each chunk costs a few C calls and about one copy of its
-- bytes: the line it completes (if bytes were held) is joined on its own,
-- the rest of its complete lines is sliced or prefixed in one go, and the
-- partial tail is held.
function Output:feed(name, stream, data)
  local job = self.jobs[name] or add_job(self, name)
  local si = STREAM[stream]
  if not si then error("output.feed: stream must be stdout or stderr", 2) end
  local len = #data
  if len == 0 then return end
  job.bytes[si] = job.bytes[si] + len
  if self.log_dir and job.log ~= false then log_write(self, job, data) end
  local first = find(data, "\n", 1, true)
  if not first then
    -- No line ends here; held as pieces so a long line fed in tiny reads
    -- costs linear time.
    return hold(self, job, si, data)
  end
  local st = job.st[si]
  local head = st.n > 0 and take(st, sub(data, 1, first)) or nil
  local last
  if self.mode == "raw" then
    last = last_nl(data)
    if head then
      emit(self, job, si, head, last > first and sub(data, first + 1, last) or "")
    else
      emit(self, job, si, last == len and data or sub(data, 1, last))
    end
    self.at_bol = true
  else
    local text
    text, last = self.engine(data, first + 1, job.prefix)
    emit(self, job, si, job.prefix, head or sub(data, 1, first), text)
  end
  if head then
    saw(job, si, head, 1, #head)
    if last > first then saw(job, si, data, first + 1, last) end
  else
    saw(job, si, data, 1, last)
  end
  if last < len then hold(self, job, si, sub(data, last + 1)) end
end

function Output:finish(name, stream)
  local job = self.jobs[name]
  local si = STREAM[stream]
  if not si then error("output.finish: stream must be stdout or stderr", 2) end
  if job then emit_held(self, job, si) end
end

local function group_emit(self, job)
  if job.g_n == 0 and not job.g_file then return end
  if self.shown then self:_erase() end
  local f = job.g_file
  if f then
    -- Replay the spilled frames in order: <stream byte><u32 length><text>.
    f:seek("set")
    while true do
      local head = f:read(5)
      if not head or #head < 5 then break end
      local si, n = string.unpack("<BI4", head)
      self.sinks[si]:write(f:read(n))
    end
    f:close()
    job.g_file = nil
  end
  for k = 1, job.g_n do
    self.sinks[job.g_stream[k]]:write(job.g_text[k])
    job.g_text[k], job.g_stream[k] = nil, nil
  end
  job.g_n, job.g_size = 0, 0
end

-- The job ended: its partial lines go out (a job's streams may outlive it in
-- a grandchild, but the caller says when it stops listening), its log file
-- exists even if it printed nothing, and in group mode its output is written.
function Output:finish_job(name)
  local job = self.jobs[name] or add_job(self, name)
  emit_held(self, job, 1)
  emit_held(self, job, 2)
  if self.log_dir and job.log == nil then log_write(self, job, "") end
  if self.mode == "group" then group_emit(self, job) end
end

function Output:watch(name, fn)
  local job = self.jobs[name] or add_job(self, name)
  job.watch_set = job.watch_set or {}
  if job.watch_set[fn] then return end
  job.watch_set[fn] = true
  job.watchers = job.watchers or {}
  job.watchers[#job.watchers + 1] = fn
end

function Output:unwatch(name, fn)
  local job = self.jobs[name]
  if not job or not job.watch_set or not job.watch_set[fn] then return end
  job.watch_set[fn] = nil
  for k = #job.watchers, 1, -1 do
    if job.watchers[k] == fn then remove(job.watchers, k) end
  end
  -- No watchers left: back to the path without per-line work.
  if #job.watchers == 0 then job.watchers = nil end
end

-- Up to n (<= TAIL_MAX, default TAIL_MAX) of the job's newest lines, oldest
-- first, both streams in arrival order, without "\n" or a "\r" before it.
function Output:tail(name, n)
  n = math.min(n or M.TAIL_MAX, M.TAIL_MAX)
  local job = self.jobs[name]
  local out = {}
  if not job or n <= 0 then return out end
  -- At most TAIL_MAX segments plus one are kept, so splitting them all is
  -- bounded; tail() is for policies, not for the hot path.
  local lines = {}
  for _, seg in ipairs(job.recent) do
    each_line(seg[1], seg[2], seg[3], function(line) lines[#lines + 1] = line end)
  end
  for k = math.max(1, #lines - n + 1), #lines do out[#out + 1] = lines[k] end
  return out
end

function Output:bytes(name)
  local job = self.jobs[name]
  if not job then return { stdout = 0, stderr = 0 } end
  return { stdout = job.bytes[1], stderr = job.bytes[2] }
end

-- lrun's own line, "lrun: text" on stderr (each line of a multi-line text).
function Output:message(text)
  text = tostring(text):gsub("\n$", "")
  if self.shown then self:_erase() end
  self.sinks[2]:write("lrun: ", (text:gsub("\n", "\nlrun: ")), "\n")
end

-- nil or "" removes the status line. Drawn by the next flush().
function Output:set_status(text)
  if text == "" then text = nil end
  if text then text = tostring(text):gsub("[\r\n]", " ") end
  if text ~= self.status_text then
    self.status_text = text
    self.status_dirty = true
  end
end

function Output:flush()
  self.sinks[1]:flush()
  if self.log_dir then
    for _, job in pairs(self.jobs) do
      if job.log then job.log:flush() end
    end
  end
  local err = self.sinks[2]
  if self.status_on and self.at_bol then
    if self.status_text and (not self.shown or self.status_dirty) then
      -- "\r" + text + clear-to-end redraws in place, without a blank frame.
      err:write("\r", truncate(self.status_text, self.columns - 1), "\27[K")
      self.shown = true
    elseif not self.status_text and self.shown then
      err:write("\r\27[K")
      self.shown = false
    end
    self.status_dirty = false
  end
  err:flush()
end

-- Emits whatever is still held (partial lines, group buffers, in registration
-- order), takes the status line away and closes the log files. The stdout and
-- stderr sinks stay open: they belong to the caller.
function Output:close()
  if self.closed then return end
  for i, name in ipairs(self.order) do
    local job = self.jobs[name]
    if not job or job.seq ~= i then goto next end   -- forgotten, or made again later
    emit_held(self, job, 1)
    emit_held(self, job, 2)
    if self.mode == "group" then group_emit(self, job) end
    ::next::
  end
  if self.shown then self:_erase() end
  self.status_on = false
  self:flush()
  for _, job in pairs(self.jobs) do
    if job.log then job.log:close() end
    job.log = false
  end
  self.closed = true
end

return M
