--- lrun.ready: readiness probes of services, run inside an lprocess.loop without ever
-- blocking it. One probe watches one run of one service:
--
--   local probe = ready.new(job, loop, { watch_output = fn })  -- hooks: see below
--   spawn{ ..., fds = probe:spawn_opts().fds, setenv = probe:spawn_opts().setenv }
--   probe:after_spawn()                  -- close our copy of what the child holds
--   probe:start(pid, on_ready, on_fail)  -- exactly one of them is called, once:
--                                        -- on_ready(seconds since start) or
--                                        -- on_fail("not ready after 5 s (...)")
--   probe:cancel()                       -- the service ended first, or lrun stops:
--                                        -- no callback, every fd/timer/probe child gone
--
-- job.ready (as lrun.jobfile validates it) picks the kind:
--   { tcp = port, host = "127.0.0.1" }  a nonblocking connect succeeds (retried every
--                                       READY.tcp s, each attempt given CONNECT_TIMEOUT);
--                                       `host` is resolved with getaddrinfo, which
--                                       blocks: give an address, not a remote name
--   { file = path }                     path exists (looked for every INTERVAL.file s)
--   { log = "lua pattern" }             a line of the job's output matches; needs
--                                       hooks.watch_output(fn(line, stream)) -> unwatch
--   { cmd = argv | "shell string" }     the command exits 0 (run every INTERVAL.cmd s,
--                                       in job.dir with job.env plus LRUN_JOB and
--                                       LRUN_PID = the service's pid; stdio to
--                                       /dev/null; killed after CMD_TIMEOUT)
--   { fn = function(info) }             the function returns true; it runs under
--                                       lprocess.guard (deadline FN_TIMEOUT) with
--                                       info = { job =, pid =, attempt =, elapsed = };
--                                       false/nil = not yet; an error or any other
--                                       value fails the probe
--   { notify = "fd" }                   s6 style: the child gets a pipe as fd 3
--                                       (LRUN_NOTIFY_FD=3) and writes a newline to it
--   { notify = "systemd" }              NOTIFY_SOCKET names a unix datagram socket;
--                                       a datagram with a line READY=1
--   nil                                 ready at once (on the next loop turn)
-- job.ready_timeout (seconds) makes the probe fail when it has not succeeded by then.
--
-- A notify pipe that is closed without a newline means "never ready" (as in s6): the
-- probe stops reading and waits for ready_timeout or for the runner to cancel it on
-- the service's exit -- it does not fail at once, because the pipe closes when the
-- service dies and the runner should see that exit, not a probe failure.
local core = require "lprocess.core"
local lprocess = require "lprocess"
local guard = require "lprocess.guard"
local status = require "lprocess.status"

local M = {}

-- Seconds between re-checks, per kind. The first check is made at once.
M.INTERVAL = { tcp = 0.1, file = 0.05, cmd = 0.2, fn = 0.1 }
M.CONNECT_TIMEOUT = 2   -- one tcp attempt (a SYN to a host that drops it never answers)
M.CMD_TIMEOUT = 5       -- one run of a cmd probe
M.FN_TIMEOUT = 1        -- one call of a fn probe

local Probe = {}
Probe.__index = Probe

local function kind_of(spec)
  if spec == nil then return "none" end
  if type(spec) == "function" then return "fn" end
  if spec.tcp then return "tcp" end
  if spec.file then return "file" end
  if spec.log then return "log" end
  if spec.cmd then return "cmd" end
  if spec.fn then return "fn" end
  if spec.notify == "fd" then return "notify_fd" end
  if spec.notify == "systemd" then return "notify_systemd" end
  error("ready: unknown readiness check " .. tostring(next(spec)), 3)
end

--- new(job, loop, hooks) -> probe. Creates nothing yet: spawn_opts and start do.
function M.new(job, loop, hooks)
  local spec = job.ready
  if type(spec) == "function" then spec = { fn = spec } end
  local kind = kind_of(spec)
  hooks = hooks or {}
  if kind == "log" and not hooks.watch_output then
    error("ready: a log check needs hooks.watch_output", 2)
  end
  return setmetatable({
    job = job, loop = loop, hooks = hooks, spec = spec or {}, kind = kind,
    state = "new",       -- new -> probing -> ready | failed | cancelled
    fds = {},            -- fd -> true: every descriptor we own
    timers = {},         -- timer -> true
    kids = {},           -- pid -> true: running probe commands
    attempts = 0,
  }, Probe)
end

--- describe() -> "tcp 127.0.0.1:6400" etc., for messages.
function Probe:describe()
  local s = self.spec
  if self.kind == "tcp" then return string.format("tcp %s:%d", s.host or "127.0.0.1", s.tcp) end
  if self.kind == "file" then return "file " .. s.file end
  if self.kind == "log" then return "log " .. string.format("%q", s.log) end
  if self.kind == "cmd" then
    return "cmd " .. (type(s.cmd) == "table" and table.concat(s.cmd, " ") or s.cmd)
  end
  if self.kind == "fn" then return "function at " .. guard.where(s.fn) end
  if self.kind == "notify_fd" then return "notify fd" end
  if self.kind == "notify_systemd" then return "notify socket" end
  return "none"
end

---------------------------------------------------------------------------------------
-- bookkeeping: everything the probe holds is released in one place

function Probe:_own(fd) self.fds[fd] = true return fd end

function Probe:_close(fd)
  if fd and self.fds[fd] then
    self.fds[fd] = nil
    self.loop:unwatch(fd)   -- before close: the number may be reused at once
    core.close(fd)
  end
end

function Probe:_timer(delay, fn)
  local t
  t = self.loop:timer(delay, function()
    self.timers[t] = nil
    if self.state == "probing" then fn() end
  end)
  self.timers[t] = true
  return t
end

function Probe:_cancel_timer(t)
  if t and self.timers[t] then
    self.timers[t] = nil
    t:cancel()
  end
end

function Probe:_release()
  for t in pairs(self.timers) do t:cancel() end
  self.timers = {}
  for fd in pairs(self.fds) do self:_close(fd) end
  if self.unwatch then
    local u = self.unwatch
    self.unwatch = nil
    u()
  end
  for pid in pairs(self.kids) do
    -- Its own group, so a shell's children go too; the loop still reaps it.
    core.killpg(pid, "KILL")
    self.loop:child(pid, function() end)
  end
  self.kids = {}
  if self.sock_path then
    os.remove(self.sock_path)
    self.sock_path = nil
  end
end

-- Settle: exactly once, and only while probing.
function Probe:_finish(ok, msg)
  if self.state ~= "probing" then return end
  self.state = ok and "ready" or "failed"
  self:_release()
  if ok then
    self.on_ready(core.now() - self.started)
  else
    self.on_fail(msg)
  end
end

function Probe:_ready() self:_finish(true) end
function Probe:_fail(msg) self:_finish(false, msg) end

-- Try again in `delay` seconds, unless something already ended the probe.
function Probe:_again(delay, fn)
  if self.state == "probing" then self:_timer(delay, fn) end
end

---------------------------------------------------------------------------------------
-- what the child needs

-- A unix datagram socket at a fresh path. os.tmpname reserves a name nobody else has
-- (mkstemp); we bind in its place, and bind refuses a path that someone recreated in
-- between, so the socket cannot be hijacked. The mode lets only our user send, unless
-- the job drops to another user, which then needs write access to the socket.
local function notify_socket(job)
  local last
  for _ = 1, 5 do
    local path = os.tmpname()
    os.remove(path)
    local old = core.umask((job.user ~= nil or job.group ~= nil) and 0 or 63)  -- 0077
    local fd, err = core.unix_listen(path, "dgram")
    core.umask(old)
    if fd then return fd, path end
    last = err
  end
  return nil, last
end

--- spawn_opts() -> { fds = { [childfd] = fd }, setenv = { K = V } } to merge into the
-- job's spawn. Idempotent; raises when the notify socket cannot be made.
function Probe:spawn_opts()
  if self.opts then return self.opts end
  local o = { fds = {}, setenv = {} }
  if self.kind == "notify_fd" then
    local r, w = assert(core.pipe())
    core.setnonblock(r, true)      -- only our end: the child's stays a plain pipe
    self.notify_r, self.notify_w = self:_own(r), self:_own(w)
    o.fds[3] = w
    o.setenv.LRUN_NOTIFY_FD = "3"
  elseif self.kind == "notify_systemd" then
    local fd, path = notify_socket(self.job)
    if not fd then error("ready: notify socket: " .. tostring(path), 2) end
    self.sock, self.sock_path = self:_own(fd), path
    o.setenv.NOTIFY_SOCKET = path
  end
  self.opts = o
  return o
end

--- after_spawn(): close the parent's copy of the child's end (the notify pipe's write
-- end; else our read would never see EOF and a copy would leak into later spawns).
function Probe:after_spawn()
  if self.notify_w then
    self:_close(self.notify_w)
    self.notify_w = nil
  end
end

---------------------------------------------------------------------------------------
-- the checks

local checks = {}

function checks.none(self)
  self:_timer(0, function() self:_ready() end)
end

function checks.tcp(self)
  local host, port = self.spec.host or "127.0.0.1", self.spec.tcp
  local attempt
  attempt = function()
    self.attempts = self.attempts + 1
    local fd, err = core.tcp_connect(host, port)
    if not fd then
      self.last = err
      return self:_again(M.INTERVAL.tcp, attempt)
    end
    self:_own(fd)
    local give_up
    local ok, werr = self.loop:watch(fd, "w", function()
      local e = core.sockerror(fd)
      self:_cancel_timer(give_up)
      self:_close(fd)
      if e == 0 then return self:_ready() end
      self.last = string.format("connect %s:%d: %s", host, port, core.strerror(e or 0))
      self:_again(M.INTERVAL.tcp, attempt)
    end)
    if not ok then
      self:_close(fd)
      return self:_fail("cannot watch the connection: " .. werr)
    end
    give_up = self:_timer(M.CONNECT_TIMEOUT, function()
      self:_close(fd)
      self.last = string.format("connect %s:%d: no answer in %g s", host, port, M.CONNECT_TIMEOUT)
      attempt()
    end)
  end
  attempt()
end

-- Exists, as `test -e` means it: any answer but "no such file" counts (a file we may
-- not read is still there). "n": a FIFO must not block the open.
local function exists(path)
  local fd, _, errno = core.open(path, "rn")
  if fd then core.close(fd) return true end
  return errno ~= core.errno.ENOENT and errno ~= core.errno.ENOTDIR
end

function checks.file(self)
  local path = self.spec.file
  local function look()
    self.attempts = self.attempts + 1
    if exists(path) then return self:_ready() end
    self.last = path .. " does not exist yet"
    self:_again(M.INTERVAL.file, look)
  end
  look()
end

function checks.log(self)
  local pattern = self.spec.log
  self.last = "no output line matched yet"
  self.unwatch = self.hooks.watch_output(function(line)
    if self.state ~= "probing" then return end
    line = line:gsub("\r?\n$", "")
    if line:find(pattern) then self:_ready() end
  end)
end

function checks.cmd(self)
  local cmd = self.spec.cmd
  local argv = type(cmd) == "table" and { table.unpack(cmd) } or { "/bin/sh", "-c", cmd }
  local env = {}
  for k, v in pairs(self.job.env or {}) do env[k] = v end
  env.LRUN_JOB = self.job.name
  env.LRUN_PID = tostring(self.pid)
  local attempt
  attempt = function()
    self.attempts = self.attempts + 1
    local opts = { stdin = "null", stdout = "null", stderr = "null", setenv = env,
      cwd = self.job.dir, pgid = 0 }
    for i, a in ipairs(argv) do opts[i] = a end
    local p, err = lprocess.spawn(opts)
    if not p then
      -- A missing program will not appear by waiting.
      return self:_fail("ready.cmd: " .. tostring(err))
    end
    local pid = p.pid
    self.kids[pid] = true
    local killer = self:_timer(M.CMD_TIMEOUT, function()
      core.killpg(pid, "KILL")
    end)
    self.loop:child(pid, function(st)
      if not self.kids[pid] then return end
      self.kids[pid] = nil
      self:_cancel_timer(killer)
      if st.how == "exit" and st.code == 0 then return self:_ready() end
      self.last = "ready.cmd " .. status.describe(st)
      self:_again(M.INTERVAL.cmd, attempt)
    end)
  end
  attempt()
end

function checks.fn(self)
  local fn = self.spec.fn
  local name = "ready function (" .. guard.where(fn) .. ")"
  local function call()
    self.attempts = self.attempts + 1
    local info = { job = self.job.name, pid = self.pid, attempt = self.attempts,
      elapsed = core.now() - self.started }
    local ok, res = guard.call(fn, { timeout = M.FN_TIMEOUT, name = name }, info)
    if not ok then return self:_fail(res) end
    if res == true then return self:_ready() end
    if res ~= nil and res ~= false then
      return self:_fail(string.format("%s returned %s (expected true, false or nil)",
        name, type(res) == "string" and string.format("%q", res) or tostring(res)))
    end
    self.last = "the function said not yet"
    self:_again(M.INTERVAL.fn, call)
  end
  call()
end

-- Watch fd for reading, or fail the probe when epoll refuses it.
function Probe:_watch_or_fail(fd, fn)
  local ok, err = self.loop:watch(fd, "r", fn)
  if not ok then self:_fail("cannot watch the notify descriptor: " .. err) end
end

function checks.notify_fd(self)
  local fd = assert(self.notify_r, "ready: spawn_opts() was not called")
  self.last = "no newline on the notify fd yet"
  return self:_watch_or_fail(fd, function()
    while self.state == "probing" do
      local data = core.read(fd, 4096)
      if data == false then return end                    -- drained for now
      if not data or data == "" then                       -- EOF: never ready (s6)
        self.last = "the notify fd was closed without a newline"
        return self:_close(fd)
      end
      if data:find("\n", 1, true) then return self:_ready() end
    end
  end)
end

function checks.notify_systemd(self)
  local fd = assert(self.sock, "ready: spawn_opts() was not called")
  self.last = "no READY=1 on the notify socket yet"
  return self:_watch_or_fail(fd, function()
    while self.state == "probing" do
      local msg = core.recv(fd, 4096)
      if not msg then return end                           -- drained (false) or error
      for line in msg:gmatch("[^\n]+") do
        if line == "READY=1" then return self:_ready() end
        local said = line:match("^STATUS=(.*)")
        if said then self.last = "STATUS=" .. said end
      end
    end
  end)
end

--- start(pid, on_ready, on_fail): begin probing. Never blocks, never calls back
-- before returning.
function Probe:start(pid, on_ready, on_fail)
  if self.state ~= "new" then error("ready: probe already started", 2) end
  self.state = "probing"
  self.pid, self.on_ready, self.on_fail = pid, on_ready, on_fail
  self.started = core.now()
  local limit = self.job.ready_timeout
  if limit then
    self:_timer(limit, function()
      self:_fail(string.format("not ready after %g s (%s: %s)", limit, self:describe(),
        self.last or "no answer"))
    end)
  end
  -- The first look is made at once, but from the loop: a check that succeeded inside
  -- start() would call back before start returned.
  if self.kind == "tcp" or self.kind == "file" or self.kind == "cmd" or self.kind == "fn" then
    self:_timer(0, function() checks[self.kind](self) end)
  else
    checks[self.kind](self)
  end
end

--- cancel(): stop probing, no callback; closes and kills whatever the probe holds.
-- Safe at any time and more than once.
function Probe:cancel()
  if self.state == "new" or self.state == "probing" then self.state = "cancelled" end
  self:_release()
end

return M
