-- lrun.output: job output on its way to lrun's own stdout and stderr. The event loop
-- hands each chunk read from a job's pipes to out:feed; this object cuts it into
-- lines and writes them prefixed with the job's name ("prefix"), as they are
-- ("raw"), or holds them until the job ends ("group"). It also appends every byte to
-- the job's log file, keeps the job's last lines for policies, tells watchers (log
-- readiness probes) about each line and draws the status line.
--
--   local output = require "lrun.output"
--   local out = output.new{ mode = "prefix", color = output.want_color("auto", io.stdout),
--                           log_dir = "logs", status = true }
--   out:register("web")                      -- its name counts for the prefix width
--   out:feed("web", "stdout", chunk)         -- as read from the pipe
--   out:watch("web", fn); out:unwatch("web", fn)   -- fn(line, stream, name)
--   out:finish("web", "stdout")              -- EOF on one stream
--   out:finish_job("web"); out:forget("web") -- it ended; it is done with
--   out:tail("web", 10); out:bytes("web")    -- newest lines; {stdout=, stderr=} counts
--   out:message("text"); out:set_status("[1/3] running 2"); out:flush(); out:close()
--
-- Invariants (spec/output_spec.lua):
--   * Only whole lines reach a sink, each in one write call, so two jobs never share
--     a line. By design, a line that grows past `pending_limit` (1 MiB) without a
--     newline is emitted as it stands, so an endless line cannot grow lrun's memory:
--     in "prefix"/"group" mode that piece is closed with a newline and the line goes
--     on under a fresh prefix; in "raw" mode it goes out as it is and may be torn.
--   * No byte is lost: a partial last line is emitted by finish, finish_job or close;
--     in "prefix"/"group" mode it gets a newline.
--   * Bytes are never altered: CR, NUL and invalid UTF-8 pass through.
--
-- Speed: the work is done once per chunk in C (string.find with plain = true is
-- memchr, prefixing is one call of lrun.text's loop); there is no per-byte Lua loop,
-- and no per-line Lua work unless a watcher is installed.
local lines = require "lrun.output.lines"
local term = require "lrun.output.term"
local logs_mod = require "lrun.output.logs"
local tail_mod = require "lrun.output.tail"
local group_mod = require "lrun.output.group"
local status_mod = require "lrun.output.status"

local M = {}

local find, sub, byte, rep = string.find, string.sub, string.byte, string.rep
local prefix_lines, last_nl, each_line = lines.prefix, lines.last_nl, lines.each

M.PENDING_LIMIT = 1024 * 1024      -- longest partial line held back, bytes
M.GROUP_MEMORY = 8 * 1024 * 1024   -- group mode, per job: beyond this, a temp file
M.TAIL_MAX = 20                    -- lines kept for out:tail
M.PALETTE = term.PALETTE
M.isatty, M.want_color, M.color_of = term.isatty, term.want_color, term.color_of

local STREAM = { stdout = 1, stderr = 2 }
local STREAM_NAME = { "stdout", "stderr" }
local MODES = { prefix = true, raw = true, group = true }

local Output = {}
Output.__index = Output

local NEW_KEYS = {
  mode = true, color = true, stdout = true, stderr = true, log_dir = true,
  status = true, isatty = true, pending_limit = true, group_memory = true, columns = true,
}

-- opts: mode ("prefix"), color (false), stdout/stderr (io.stdout/io.stderr), log_dir,
-- status (draw the status line when stderr is a terminal), isatty (fn(fd), instead
-- of core.isatty); for tests and tuning: pending_limit, group_memory, columns.
function M.new(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not NEW_KEYS[k] then error("output.new: unknown option " .. tostring(k), 2) end
  end
  local mode = opts.mode or "prefix"
  if not MODES[mode] then error("output.new: unknown mode " .. tostring(mode), 2) end
  local sinks = { opts.stdout or io.stdout, opts.stderr or io.stderr }
  local self = setmetatable({
    mode = mode,
    color = opts.color and true or false,
    sinks = sinks,
    pending_limit = opts.pending_limit or M.PENDING_LIMIT,
    group_memory = opts.group_memory or M.GROUP_MEMORY,
    jobs = {},
    order = {},
    width = 0,
    status_on = opts.status and term.isatty(sinks[2], opts.isatty) or false,
    line = status_mod.new(sinks[2], opts.columns or tonumber(os.getenv("COLUMNS") or "") or 80),
    at_bol = true,          -- raw mode may leave the cursor mid-line
    closed = false,
  }, Output)
  if opts.log_dir then
    local err
    self.logs, err = logs_mod.new(opts.log_dir, function(msg) self:message(msg) end)
    if not self.logs then self:message("log dir " .. opts.log_dir .. ": " .. tostring(err)) end
  end
  return self
end

local function make_prefix(self, job)
  local padded = job.name .. rep(" ", self.width - term.width(job.name))
  if self.color then
    job.prefix = "\27[" .. term.color_of(job.name) .. "m" .. padded .. " |\27[0m "
  else
    job.prefix = padded .. " | "
  end
end

-- A longer name widens every prefix, so alignment holds from here on.
local function widen(self, name)
  local w = term.width(name)
  if w <= self.width then return false end
  self.width = w
  for _, other in pairs(self.jobs) do make_prefix(self, other) end
  return true
end

local function add_job(self, name)
  if type(name) ~= "string" then error("output: job name must be a string", 3) end
  local job = {
    name = name,
    held = { lines.held(), lines.held() },   -- each stream's partial line
    bytes = { 0, 0 },
    ring = tail_mod.new(M.TAIL_MAX),
    watchers = nil,                          -- list, and watch_set: fn -> true
    group = self.mode == "group" and group_mod.new(self.group_memory) or nil,
  }
  self.jobs[name] = job
  job.seq = #self.order + 1
  self.order[job.seq] = name
  if not widen(self, name) then make_prefix(self, job) end
  return job
end

-- Only the width is taken now; a job's buffers are made when it first has output,
-- so a graph of 10 000 jobs costs nothing per job until each runs.
function Output:register(name)
  if self.jobs[name] then return end
  if type(name) ~= "string" then error("output: job name must be a string", 2) end
  widen(self, name)
end

-- The job is over and nothing more will be asked of it: drop its buffers (whatever
-- is still held is emitted first). Late bytes would start a fresh record.
function Output:forget(name)
  if not self.jobs[name] then return end
  self:finish_job(name)
  if self.logs then self.logs:forget(name) end
  self.jobs[name] = nil    -- its entry in self.order is skipped from now on
end

local function notify(job, si, s, i, e)
  -- Snapshot: a watcher may unwatch itself (or others) while we iterate.
  local snap = table.move(job.watchers, 1, #job.watchers, 1, {})
  local stream = STREAM_NAME[si]
  each_line(s, i, e, function(line)
    for k = 1, #snap do
      local fn = snap[k]
      if job.watch_set[fn] then fn(line, stream, job.name) end
    end
  end)
end

-- Lines were seen: tell tail() and the watchers.
local function saw(job, si, s, i, e)
  job.ring:add(s, i, e)
  if job.watchers then notify(job, si, s, i, e) end
end

-- Send text (whole lines, or raw bytes in raw mode) where the mode says. Several
-- pieces go out in one write call, never split by another job's.
local function emit(self, job, si, a, b, c)
  if job.group then
    job.group:add(si, c and a .. b .. c or b and a .. b or a)
  else
    if self.line.shown then self.line:erase() end
    local ok, err
    if c then ok, err = self.sinks[si]:write(a, b, c)
    elseif b then ok, err = self.sinks[si]:write(a, b)
    else ok, err = self.sinks[si]:write(a) end
    if ok == nil and err then self:_failed(err) end
  end
end

-- A held line leaves: the final partial line at EOF, or forced out at the limit.
local function emit_held(self, job, si)
  local held = job.held[si]
  if held.n == 0 then return end
  local text = held:take()
  if self.mode == "raw" then
    emit(self, job, si, text)
    if byte(text, -1) ~= 10 then self.at_bol = false end
  else
    emit(self, job, si, job.prefix, text, "\n")
  end
  saw(job, si, text, 1, #text)
end

local function hold(self, job, si, piece)
  if job.held[si]:put(piece) > self.pending_limit then emit_held(self, job, si) end
end

-- The hot path. Each chunk costs a few C calls and about one copy of its bytes: the
-- line it completes (if bytes were held) is joined on its own, the rest of its
-- complete lines is sliced or prefixed in one go, and the partial tail is held.
function Output:feed(name, stream, data)
  local job = self.jobs[name] or add_job(self, name)
  local si = STREAM[stream]
  if not si then error("output.feed: stream must be stdout or stderr", 2) end
  local len = #data
  if len == 0 then return end
  job.bytes[si] = job.bytes[si] + len
  if self.logs then self.logs:write(name, data) end
  local first = find(data, "\n", 1, true)
  if not first then return hold(self, job, si, data) end
  local held = job.held[si]
  local head = held.n > 0 and held:take(sub(data, 1, first)) or nil
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
    text, last = prefix_lines(data, first + 1, job.prefix)
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
  local group = job.group
  if not group or group:empty() then return end
  if self.line.shown then self.line:erase() end
  group:replay(self.sinks)
end

-- The job ended: its partial lines go out (a job's streams may outlive it in a
-- grandchild, but the caller says when it stops listening), its log file exists
-- even if it printed nothing, and in group mode its output is written.
function Output:finish_job(name)
  local job = self.jobs[name] or add_job(self, name)
  emit_held(self, job, 1)
  emit_held(self, job, 2)
  if self.logs then self.logs:touch(name) end
  group_emit(self, job)
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
    if job.watchers[k] == fn then table.remove(job.watchers, k) end
  end
  -- No watchers left: back to the path without per-line work.
  if #job.watchers == 0 then job.watchers = nil end
end

-- Up to n (at most TAIL_MAX, the default) of the job's newest lines, oldest first,
-- both streams in arrival order, without "\n" or a "\r" before it.
function Output:tail(name, n)
  local job = self.jobs[name]
  if not job then return {} end
  return job.ring:lines(n)
end

function Output:bytes(name)
  local job = self.jobs[name]
  if not job then return { stdout = 0, stderr = 0 } end
  return { stdout = job.bytes[1], stderr = job.bytes[2] }
end

-- lrun's own line, "lrun: text" on stderr (each line of a multi-line text).
function Output:message(text)
  text = tostring(text):gsub("\n$", "")
  if self.line.shown then self.line:erase() end
  self.sinks[2]:write("lrun: ", (text:gsub("\n", "\nlrun: ")), "\n")
end

-- nil or "" removes the status line. Drawn by the next flush().
function Output:set_status(text)
  self.line:set(text)
end

-- A write to stdout/stderr failed (a full disk, EIO, a closed pipe): output is being
-- lost. The first error is kept for the end of the run (out.write_error), where lrun
-- reports it and fails the run; the jobs carry on.
function Output:_failed(err)
  self.write_error = self.write_error or tostring(err)
end

function Output:flush()
  local ok, err = self.sinks[1]:flush()
  if ok == nil and err then self:_failed(err) end
  if self.logs then self.logs:flush() end
  if self.status_on and self.at_bol then self.line:draw() end
  ok, err = self.sinks[2]:flush()
  if ok == nil and err then self:_failed(err) end
end

-- Emits whatever is still held (partial lines, group buffers, in registration
-- order), takes the status line away and closes the log files. The stdout and
-- stderr sinks stay open: they belong to the caller.
function Output:close()
  if self.closed then return end
  for i, name in ipairs(self.order) do
    local job = self.jobs[name]
    if job and job.seq == i then   -- else forgotten, or made again later
      emit_held(self, job, 1)
      emit_held(self, job, 2)
      group_emit(self, job)
    end
  end
  if self.line.shown then self.line:erase() end
  self.status_on = false
  self:flush()
  if self.logs then self.logs:close() end
  self.closed = true
end

return M
