--- lrun.initmode: `lrun --init -- CMD ARGS...`, the job tini does, in the process
-- runner.
--
--   local code = require("lrun.initmode").main{ argv = { "cmd", "arg" },
--     success_codes = { [3] = true }, grace = 5, verbose = false,
--     sigmask = { ... }, sigignore = { ... } }   -- what lrun inherited (sigstate)
--
-- * As PID 1 (a container) it is the reaper already; otherwise it becomes a child
--   subreaper, so every orphan among CMD's descendants is re-parented to it.
-- * CMD runs in its own process group, and is made the terminal's foreground group
--   when lrun itself is in the foreground of a terminal on stdin (^C, ^Z then reach
--   CMD's group from the terminal, not lrun). The terminal is CMD's before CMD runs
--   (handed over between fork and exec), and lrun takes it back when CMD ends.
-- * Descriptors lrun inherited pass on to CMD, as with tini, and so does the signal
--   configuration lrun was started with: CMD starts with that mask, and what was
--   ignored stays ignored (`nohup lrun --init -- cmd` keeps SIGHUP ignored in cmd).
--   Handled signals are reset to default, as exec does.
-- * Every catchable signal lrun receives is forwarded once to CMD: HUP INT QUIT USR1
--   USR2 PIPE ALRM TERM CONT TSTP URG XCPU XFSZ VTALRM PROF WINCH IO PWR STKFLT and the
--   real-time ones. Not forwarded: CHLD (ours), TTIN/TTOU (terminal control of lrun
--   itself), and the signals the kernel sends a process about its own fault (SEGV,
--   BUS, ILL, FPE, TRAP, SYS, ABRT).
-- * Every child that ends is reaped as soon as SIGCHLD says so (readiness-driven,
--   through lprocess.loop): no zombie accumulates.
-- * When CMD exits, what is left (its process group and every child of ours) gets
--   SIGTERM (and CONT), then SIGKILL after `grace` seconds, until no child is left.
--   As PID 1 "what is left" is everything in the PID namespace (kill -1). A TERM or
--   INT received meanwhile skips the rest of the grace.
-- * The result is CMD's exit code (0 for codes in success_codes, like tini -e), or
--   128+N when CMD was killed by signal N. When CMD cannot be executed: a message,
--   then 127 (not found) or 126 (found, not executable).
-- * When lrun is not PID 1, CMD gets a parent-death SIGKILL: if lrun is killed (even
--   by SIGKILL), CMD does not run on unsupervised.
local core = require "lprocess.core"
local lprocess = require "lprocess"
local loopmod = require "lprocess.loop"
local status = require "lprocess.status"
local stop = require "lprocess.stop"

local M = {}

local FORWARD = { "HUP", "INT", "QUIT", "USR1", "USR2", "PIPE", "ALRM", "TERM", "STKFLT",
  "CONT", "TSTP", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR" }
local RT_FIRST, RT_LAST = 34, 64   -- SIGRTMIN..SIGRTMAX as glibc leaves them to us

-- The signals forwarded to CMD, as numbers.
function M.forwarded()
  local list = {}
  for _, name in ipairs(FORWARD) do
    if core.signals[name] then list[#list + 1] = core.signals[name] end
  end
  for n = RT_FIRST, RT_LAST do list[#list + 1] = n end
  return list
end

local function eprint(msg)
  io.stderr:write("lrun: ", msg, "\n")
  io.stderr:flush()
end

local function signame(n)
  return core.signals[n] and ("SIG" .. core.signals[n]) or ("signal " .. n)
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Our children, from /proc -- only when /proc shows our own PID namespace: pids read
-- from another namespace's /proc would name other processes to kill().
local function children(me)
  if core.readlink("/proc/self") ~= tostring(me) then return {} end
  local kids = {}
  local s = slurp("/proc/thread-self/children")
  if s then
    for k in s:gmatch("%d+") do kids[#kids + 1] = tonumber(k) end
    return kids
  end
  for _, name in ipairs(core.listdir("/proc") or {}) do
    local stat = tonumber(name) and slurp("/proc/" .. name .. "/stat")
    local ppid = stat and stat:match("^%d+ %(.*%) %S+ (%d+)")
    if ppid and tonumber(ppid) == me then kids[#kids + 1] = tonumber(name) end
  end
  return kids
end

-- fd 0 when it is a terminal whose foreground process group is ours.
local function foreground_tty()
  if not core.isatty(0) then return nil end
  local fg = core.tcgetpgrp(0)
  if fg and fg == core.getpgid(0) then return 0 end
  return nil
end

local function check_opts(opts)
  if type(opts) ~= "table" then error("initmode.main: expected a table", 3) end
  local known = { argv = true, success_codes = true, grace = true, verbose = true,
    sigmask = true, sigignore = true }
  for k in pairs(opts) do
    if not known[k] then error("initmode.main: unknown option '" .. tostring(k) .. "'", 3) end
  end
  if type(opts.argv) ~= "table" or #opts.argv == 0 then
    error("initmode.main: argv must be a non-empty array", 3)
  end
end

-- One run of init mode: CMD, what it leaves behind, and the stop in phases.
local Init = {}
Init.__index = Init

function Init:say(fmt, ...)
  if self.verbose then eprint(string.format(fmt, ...)) end
end

-- Reap what has ended; false once no child at all is left.
function Init:any_children()
  -- wait(-1, nohang): false = children exist, none ended; nil = none at all.
  while true do
    local st = lprocess.wait(-1, { nohang = true })
    if st == false then return true end
    if not st then return false end
    self:say("reaped orphan %d (%s)", st.pid, status.describe(st))
  end
end

-- `first`: the start of a phase (the whole group gets it); later calls only reach
-- orphans that arrived since, and each gets SIGTERM once.
function Init:signal_rest(sig, first)
  if self.pid1 then
    core.kill(-1, sig)
    if sig == "TERM" then core.kill(-1, "CONT") end
    return
  end
  if first or sig == "KILL" then stop.signal(self.child.pid, sig) end
  for _, pid in ipairs(children(self.me)) do
    if sig == "KILL" or not self.termed[pid] then
      if sig == "TERM" then self.termed[pid] = true end
      stop.signal({ pid = pid }, sig)
    end
  end
end

function Init:check_done()
  if not self:any_children() then
    self.done = true
    return
  end
  -- Orphans keep arriving as their parents die: they get what the others got.
  local phase = self.phase
  if phase == "KILL" or (phase == "TERM" and not self.pid1) then self:signal_rest(phase) end
end

function Init:kill_phase(why)
  if self.phase == "KILL" then return end
  if self.hurry_timer then self.hurry_timer:cancel() end
  self.phase = "KILL"
  self:say("%s: killing what is left", why)
  self:signal_rest("KILL", true)
end

function Init:begin_stop()
  self.stopping = true
  if self.tty then core.tcsetpgrp(self.tty, core.getpgid(0)) end   -- take the terminal back
  if not self:any_children() then
    self.done = true
    return
  end
  self:say("stopping what CMD left behind (SIGTERM, then SIGKILL after %gs)", self.grace)
  self.phase = "TERM"
  self:signal_rest("TERM", true)
  self.hurry_timer = self.loop:timer(self.grace, function()
    self:kill_phase("grace period over")
  end)
end

-- -> true | nil, message (the signal descriptor could not be made)
function Init:forward_signals()
  local TERM, INT = core.signals.TERM, core.signals.INT
  for _, sig in ipairs(M.forwarded()) do
    local ok, err = self.loop:signal(sig, function(s)
      if self.child and not self.status then
        self:say("forwarding %s to %d", signame(s), self.child.pid)
        core.kill(self.child.pid, s)
      elseif self.stopping and (s == TERM or s == INT) then
        self:kill_phase("got " .. signame(s))
      end
    end)
    if not ok then return nil, "watching " .. signame(sig) .. ": " .. err end
  end
  return true
end

-- Descriptors lrun was given pass on to CMD (socket activation, a supervisor's
-- pipes), as with tini: lrun's own are all close-on-exec. CMD is the terminal's
-- foreground group from before its first instruction: handing the terminal over
-- after spawn would race with CMD's first read of it.
function Init:spawn(opts)
  local spec = { pgid = 0, close_fds = false, pdeathsig = not self.pid1 and "KILL" or nil,
    foreground = self.tty, sigmask = opts.sigmask, sigignore = opts.sigignore }
  for i, a in ipairs(opts.argv) do spec[i] = a end
  return lprocess.spawn(spec)
end

--- main{ argv=, success_codes=, grace=, verbose=, sigmask=, sigignore= } -> exit code
function M.main(opts)
  check_opts(opts)
  local me = core.getpid()
  local self = setmetatable({ grace = opts.grace or 5, verbose = opts.verbose, me = me,
    pid1 = me == 1, termed = {}, done = false }, Init)
  if not self.pid1 then
    local ok, err = core.subreaper(true)
    if not ok then eprint("cannot become a child subreaper (" .. err .. "): orphans will not come to lrun") end
  end
  -- Blocked, so that lrun can take the terminal back while in the background
  -- (tcsetpgrp would otherwise stop us with SIGTTOU). CMD starts with the mask lrun
  -- was given (opts.sigmask), not this one.
  local old_mask = core.sigmask("block", { "TTOU", "TTIN" })
  self.tty = foreground_tty()
  local err, errno
  self.loop, err = loopmod.new()
  local ready = self.loop and true
  if ready then ready, err = self:forward_signals() end
  if not ready then   -- nothing started: say why, as tini does, and fail
    if self.loop then self.loop:close() end
    core.sigmask("set", old_mask)
    eprint(err)
    return 1
  end
  local p
  p, err, errno = self:spawn(opts)
  if not p then
    if self.tty then core.tcsetpgrp(self.tty, core.getpgid(0)) end   -- the failed child had it
    self.loop:close()
    core.sigmask("set", old_mask)
    eprint(err)
    return errno == core.errno.ENOENT and 127 or 126
  end
  self.child = p
  self:say("started %d: %s", p.pid, table.concat(opts.argv, " "))
  self.loop.on_orphan = function(st)
    self:say("reaped orphan %d (%s)", st.pid, status.describe(st))
    if self.stopping then self:check_done() end
  end
  self.loop:child(p.pid, function(st)
    self.status = st
    self:say("%s ended: %s", opts.argv[1], status.describe(st))
    self:begin_stop()
  end)
  self.loop:run(function() return self.done end)
  self.loop:close()
  core.sigmask("set", old_mask)
  local st = self.status
  if st.how == "exit" and (opts.success_codes or {})[st.code] then return 0 end
  return status.exit_code(st)
end

return M
