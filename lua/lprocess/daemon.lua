-- lprocess.daemon: detach the way a careful daemon does, and own a pidfile.
--
--   local daemon = require "lprocess.daemon"
--   local d, err = daemon.daemonize{ pidfile = "/run/x.pid", umask = "022", chdir = "/",
--     stdout = "/var/log/x.log", stderr = "/var/log/x.log", keep_fds = { 3 } }
--   if not d then print(err) os.exit(1) end     -- e.g. "already running (pid 123)"
--   ... load the configuration; on trouble: d:fail("bad config")  (exits 1)
--   d:ready()                                   -- now the launcher exits 0
--   ... serve; on SIGUSR2: d:reopen_logs(); at the end: d:cleanup()
--   daemon.status("/run/x.pid") -> pid | nil, why
--   daemon.stop("/run/x.pid", 10) -> true | nil, why
--
-- daemonize, in the launching process, first checks the pidfile (returning nil, msg
-- without forking when a daemon holds it or the pidfile cannot be used), then forks,
-- and from then on never returns: it waits on a pipe until the daemon calls
-- d:ready() (exit 0) or d:fail(msg) or dies (message on stderr as "PROGNAME: msg",
-- exit 1; opts.progname, default the script's name).
-- The daemon is the grandchild: fork, setsid, fork again (so it leads no session and
-- can never acquire a controlling terminal), chdir (default "/"), umask (default 022:
-- the classic 0 makes every file it creates world-writable), the pidfile, stdin from
-- /dev/null, stdout/stderr to /dev/null or the given logs (appended), and every
-- descriptor inherited from outside closed (see keep_fds).
--
-- The pidfile is lprocess.pidfile's (its header has the protocol).
--
-- Caveats
-- * Descriptors that are not close-on-exec are taken as inherited from whoever
--   started the launcher and are closed in the daemon. Everything lprocess.core opens
--   is close-on-exec; Lua's own io.open files are not: close them first, or list them
--   in keep_fds.
-- * Buffered output of Lua files other than io.stdout/io.stderr is not flushed before
--   the fork: flush them first, or it may be written twice.
-- * d:cleanup() also runs from a finalizer when the Lua state is closed
--   (os.exit(code, true), or the end of a script); os.exit(code) alone skips it.
local core = require "lprocess.core"
local pidfiles = require "lprocess.pidfile"

local M = {}

local DAEMONIZE_KEYS = {
  pidfile = true, umask = true, chdir = true, stdout = true, stderr = true,
  keep_fds = true, progname = true,
}
local absolute, same_file = pidfiles.absolute, pidfiles.same_file
local check_dir, holder, acquire = pidfiles.check_dir, pidfiles.holder, pidfiles.acquire
M.status, M.stop = pidfiles.status, pidfiles.stop

-- package.path/cpath with every relative template made absolute.
local function absolute_templates(paths, cwd)
  local out = {}
  for t in paths:gmatch("[^;]+") do
    out[#out + 1] = t:sub(1, 1) == "/" and t or absolute(t, cwd)
  end
  return table.concat(out, ";")
end


local function parse_umask(v)
  if v == nil then return 18 end   -- 022
  if math.type(v) == "integer" and v >= 0 and v <= 511 then return v end
  if type(v) == "string" then
    local digits = v:match("^0?[oO]?([0-7]+)$")
    local n = digits and tonumber(digits, 8)
    if n and n <= 511 then return n end
  end
  error("daemonize: umask must be an integer 0-511 or an octal string like \"022\", got "
    .. tostring(v), 3)
end

---------------------------------------------------------------------------------------
-- the daemon handle

local Daemon = {}
Daemon.__index = Daemon

-- Write all of s to the launcher's pipe. A launcher killed meanwhile must not take
-- the daemon with it through SIGPIPE.
local function tell(fd, s)
  local write = require("lprocess").write
  local i = 1
  while i <= #s do
    local n = write(fd, s, i)
    if not n then break end
    i = i + n
  end
end

-- stdout/stderr onto the logs (or /dev/null); stdin too when `stdin` is set.
function Daemon:_redirect(stdin)
  local null = assert(core.open("/dev/null", "rw"))
  local opened = { null }
  local function target(path, other_path, other_fd)
    if not path then return null end
    if path == other_path then return other_fd end
    local fd, msg = core.open(path, "wac", 438)
    if not fd then return nil, "log " .. msg end
    opened[#opened + 1] = fd
    return fd
  end
  local function close_all()
    for _, fd in ipairs(opened) do core.close(fd) end
  end
  local out, err = target(self.stdout)
  if not out then close_all() return nil, err end
  local errfd
  errfd, err = target(self.stderr, self.stdout, out)
  if not errfd then close_all() return nil, err end
  io.stdout:flush()
  io.stderr:flush()
  if stdin then core.dup2(null, 0) end
  core.dup2(out, 1)
  core.dup2(errfd, 2)
  close_all()
  return true
end

--- d:ready() -- tell the launcher the daemon is running; it exits 0.
function Daemon:ready()
  if self.wfd then
    tell(self.wfd, "R")
    core.close(self.wfd)
    self.wfd = nil
  end
  return true
end

--- d:fail(msg) -- tell the launcher why we could not start (it prints the message and
--- exits 1); after ready() the message goes to our stderr (the log). Then clean up
--- and exit 1.
function Daemon:fail(msg)
  msg = tostring(msg)
  -- Clean up first: once told, the launcher exits, and whoever started it may look.
  self:cleanup()
  if self.wfd then
    tell(self.wfd, "F" .. msg .. "\0")
    core.close(self.wfd)
    self.wfd = nil
  else
    io.stderr:write(self.progname, ": ", msg, "\n")
  end
  io.stdout:flush()
  os.exit(1)
end

--- d:reopen_logs() -> true | nil, message: reopen stdout/stderr (after logrotate moved
--- them); on failure the old ones stay.
function Daemon:reopen_logs()
  return self:_redirect(false)
end

--- d:cleanup() -- run the at_cleanup functions and remove the pidfile (if still ours).
function Daemon:cleanup()
  if core.getpid() ~= self.pid then return end   -- a forked child of the daemon
  local fns = self.cleanups or {}
  self.cleanups = nil
  for _, fn in ipairs(fns) do pcall(fn) end
  if self.lockfd then
    if same_file(self.lockfd, self.pidfile) then core.unlink(self.pidfile) end
    core.close(self.lockfd)   -- the lock goes with the last descriptor
    self.lockfd = nil
  end
end

--- d:attach(loop) -- SIGUSR2 reopens the logs (after logrotate moved them), from the
--- event loop.
function Daemon:attach(loop)
  loop:signal("USR2", function()
    local ok, err = self:reopen_logs()
    if not ok then io.stderr:write(self.progname, ": reopening logs: ", err, "\n") end
  end)
  return self
end

--- d:at_cleanup(fn) -- fn() runs once at cleanup, before the pidfile goes (close a
--- control socket there: it should not outlive the pidfile that names the daemon).
function Daemon:at_cleanup(fn)
  self.cleanups = self.cleanups or {}
  self.cleanups[#self.cleanups + 1] = fn
end

---------------------------------------------------------------------------------------
-- daemonize

-- Close what we inherited: descriptors above 2 that are not close-on-exec.
local function close_inherited(keep)
  local list = core.listdir("/proc/self/fd")
  local fds = {}
  if list then
    for _, name in ipairs(list) do fds[#fds + 1] = tonumber(name) end
  else
    local soft = core.getrlimit("nofile")
    for fd = 3, math.min(math.tointeger(soft) or 1024, 65536) - 1 do fds[#fds + 1] = fd end
  end
  for _, fd in ipairs(fds) do
    if fd and fd > 2 and not keep[fd] and core.getcloexec(fd) == false then
      core.close(fd)
    end
  end
end
local function launcher(rfd, child, progname, pidfile)
  core.wait(child)   -- the intermediate process exits right after its fork
  local buf = ""
  while true do
    local s = core.read(rfd, 4096)
    if not s or s == "" then break end
    buf = buf .. s
    -- a whole message is enough: a helper the daemon forked may hold the pipe open
    local body = buf:gsub("^P%d+\n", "")
    if body:sub(1, 1) == "R" or body:find("\0", 1, true) then break end
  end
  local dpid = tonumber(buf:match("^P(%d+)\n"))
  local body = buf:gsub("^P%d+\n", "")
  if body:sub(1, 1) == "R" then os.exit(0) end
  local msg = body:match("^F([^\0]*)") or ""
  if msg == "" then
    msg = "the daemon exited before it was ready"
    if dpid and pidfile then pidfiles.remove_dead(pidfile, math.tointeger(dpid)) end
  end
  io.stderr:write(progname, ": ", msg, "\n")
  io.stderr:flush()
  os.exit(1)
end

--- daemonize{ pidfile=, umask=, chdir=, stdout=, stderr=, keep_fds=, progname= }
--- -> handle (in the daemon) | nil, message (in the launcher, before any fork).
-- Options checked and normalised -> { cwd, mask, dir, keep, pidfile } (raises on misuse)
local function check_opts(opts)
  if type(opts) ~= "table" then error("daemonize: expected a table", 3) end
  for k in pairs(opts) do
    if not DAEMONIZE_KEYS[k] then
      error(string.format("daemonize: unknown option '%s'", tostring(k)), 3)
    end
  end
  for _, k in ipairs { "pidfile", "stdout", "stderr", "progname" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error("daemonize: " .. k .. " must be a string", 3)
    end
  end
  local c = { cwd = assert(core.getcwd()), mask = parse_umask(opts.umask), keep = {} }
  c.dir = opts.chdir
  if c.dir == nil then c.dir = "/" end
  if c.dir ~= false and type(c.dir) ~= "string" then
    error("daemonize: chdir must be a path or false", 3)
  end
  for _, fd in ipairs(opts.keep_fds or {}) do c.keep[fd] = true end
  c.pidfile = opts.pidfile and absolute(opts.pidfile, c.cwd)
  return c
end

-- The intermediate process: a session of its own, without a terminal; then fork
-- again so the daemon leads no session and can never acquire a terminal. Returns in
-- the daemon only.
local function detach(wfd)
  local ok, err = core.setsid()
  if ok then
    local grandchild
    grandchild, err = core.fork()
    if grandchild and grandchild > 0 then core._exit(0) end
    ok = grandchild ~= nil
  end
  if not ok then
    tell(wfd, "F" .. tostring(err) .. "\0")
    core._exit(1)
  end
end

-- In the daemon: its directory, umask, pidfile, stdio and descriptors.
local function settle(d, c)
  local ok, err
  if c.dir then
    -- Modules required from now on must still be found after the chdir.
    package.path = absolute_templates(package.path, c.cwd)
    package.cpath = absolute_templates(package.cpath, c.cwd)
    ok, err = core.chdir(absolute(c.dir, c.cwd))
    if not ok then d:fail(err) end
  end
  core.umask(c.mask)
  if c.pidfile then
    local fd
    fd, err = acquire(c.pidfile, d.pid)
    if not fd then d:fail(err) end
    d.lockfd = fd
    tell(d.wfd, "P" .. d.pid .. "\n")
  end
  ok, err = d:_redirect(true)
  if not ok then d:fail(err) end
  c.keep[d.wfd] = true
  close_inherited(c.keep)
end

function M.daemonize(opts)
  local c = check_opts(opts or {})
  -- A launcher started with stdio closed: /dev/null there first, so that nothing of
  -- ours (the launcher pipe, the pidfile) takes fd 0..2.
  require("lprocess").ensure_stdio()
  local d = setmetatable({
    pidfile = c.pidfile,
    stdout = opts.stdout and absolute(opts.stdout, c.cwd),
    stderr = opts.stderr and absolute(opts.stderr, c.cwd),
    progname = opts.progname or (arg and arg[0] and arg[0]:match("([^/]+)$")) or "daemon",
  }, Daemon)
  if c.pidfile then
    local ok, err = check_dir(c.pidfile)
    if not ok then return nil, err end
    local pid, why = holder(c.pidfile)
    if pid then return nil, string.format("already running (pid %d)", pid) end
    if why ~= "not running" then return nil, why end
  end

  io.stdout:flush()
  io.stderr:flush()
  local rfd, wfd = core.pipe()
  if not rfd then return nil, wfd end
  local child, ferr = core.fork()
  if not child then
    core.close(rfd)
    core.close(wfd)
    return nil, ferr
  end
  if child > 0 then
    core.close(wfd)
    launcher(rfd, child, d.progname, c.pidfile)
  end
  core.close(rfd)
  detach(wfd)
  d.pid, d.wfd = core.getpid(), wfd
  settle(d, c)
  -- Clean exit by closing the Lua state also removes the pidfile. The handle is
  -- anchored here so that a caller dropping it cannot finalize it early.
  d._finalizer = setmetatable({}, { __gc = function() d:cleanup() end })
  M._live = d
  return d
end

return M
