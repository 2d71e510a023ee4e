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
-- The pidfile protocol ("stale" means "nobody holds the lock", never "pid not alive":
-- pids get reused):
-- * A daemon writes its pid into a fresh file of its own (PIDFILE.tmp.PID), takes an
--   exclusive flock on it, and only then makes it appear at PIDFILE in one step:
--   a rename that refuses to replace anything (renameat2 RENAME_NOREPLACE) when no
--   pidfile exists, a plain rename over a stale one. So whenever the file at
--   PIDFILE is locked, it already holds the whole pid of the process holding the lock,
--   and the lock lasts the daemon's life (the descriptor is close-on-exec: no job
--   inherits it).
-- * Everyone else only ever takes a shared flock, and only to test: a reader never
--   makes a live pidfile look stale, nor a stale one look live, to anyone.
-- * Two daemons replacing the same stale file are serialised by a byte-range lock on
--   that file (independent of flock); each checks, holding it, that the stale file is
--   still the one at PIDFILE. A live pidfile is never written, renamed or removed.
-- * The owner removes the pidfile at clean exit, while still holding the lock, and
--   only when the file at PIDFILE is still its own.
-- * The pidfile is never opened through a symbolic link, and must be a regular file.
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

local M = {}

local E = core.errno
local DAEMONIZE_KEYS = {
  pidfile = true, umask = true, chdir = true, stdout = true, stderr = true,
  keep_fds = true, progname = true,
}

---------------------------------------------------------------------------------------
-- paths

local function absolute(path, cwd)
  if path:sub(1, 1) == "/" then return path end
  path = path:gsub("^%./", "")
  return (cwd == "/" and "" or cwd) .. "/" .. path
end

-- package.path/cpath with every relative template made absolute.
local function absolute_templates(paths, cwd)
  local out = {}
  for t in paths:gmatch("[^;]+") do
    out[#out + 1] = t:sub(1, 1) == "/" and t or absolute(t, cwd)
  end
  return table.concat(out, ";")
end

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

-- The pidfile's directory must exist: say so plainly, not "No such file" about a
-- file the user may think we were to create.
local function check_dir(pidfile)
  local dir = dirname(pidfile)
  local st, _, errno = core.stat(dir)
  if not st then
    if errno == E.ENOENT then
      return nil, string.format("pidfile directory %s does not exist", dir)
    end
    return nil, string.format("pidfile directory %s: %s", dir, core.strerror(errno))
  end
  if st.type ~= "directory" then
    return nil, string.format("pidfile directory %s is not a directory", dir)
  end
  return true
end

local function open_error(path, errno, msg)
  if errno == E.ELOOP then
    return string.format("pidfile %s is a symbolic link; refusing to follow it", path)
  end
  return string.format("pidfile %s: %s", path, errno and core.strerror(errno) or msg)
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
-- the pidfile

local function read_pid(fd)
  local s = core.read(fd, 64)
  local n = type(s) == "string" and tonumber(s:match("^%s*(%d+)%s*$"))
  if n and n > 0 and n < 2 ^ 31 then return math.tointeger(n) end
  return nil
end

-- Is the file open on fd still the one at path (not removed, not replaced)?
local function same_file(fd, path)
  local a = core.fstat(fd)
  local b = core.lstat(path)
  return a ~= nil and b ~= nil and a.dev == b.dev and a.ino == b.ino
end

-- Open what is at path, never through a symlink and never hanging on a FIFO: to
-- look ("r"), or to replace or remove it ("rw": the replacers' lock is a write lock).
-- -> fd | nil, "absent" | nil, message
local function open_existing(path, mode)
  local fd, msg, errno = core.open(path, (mode or "r") .. "nf")
  if not fd then
    if errno == E.ENOENT then return nil, "absent" end
    return nil, open_error(path, errno, msg)
  end
  local st = core.fstat(fd)
  if not st or st.type ~= "file" then
    core.close(fd)
    return nil, string.format("pidfile %s is not a regular file", path)
  end
  return fd
end

-- Who holds the pidfile? -> pid | nil, "not running" | nil, message.
-- Takes a shared lock only to test for the exclusive one, and drops it at once.
local function holder(path)
  for _ = 1, 50 do
    local fd, why = open_existing(path)
    if not fd then
      if why == "absent" then return nil, "not running" end
      return nil, why
    end
    local free, ferr = core.flock(fd, "sh", true)
    if free == nil then
      core.close(fd)
      return nil, ferr
    end
    if free then
      core.close(fd)
      return nil, "not running"
    end
    local pid = read_pid(fd)
    local same = same_file(fd, path)
    core.close(fd)
    if same then
      if pid then return pid end
      return nil, string.format("pidfile %s is locked but holds no pid", path)
    end
    -- removed or replaced since we opened it: look at what is there now
  end
  return nil, string.format("pidfile %s keeps changing", path)
end

-- Make path our pidfile (see the protocol above). -> locked fd | nil, message
local function acquire(path, pid)
  local tmp = string.format("%s.tmp.%d", path, pid)
  local fd, msg, errno = core.open(tmp, "wcxf", 420)
  if not fd and errno == E.EEXIST then
    -- left by a crashed earlier holder of our pid number: it is nobody's now
    core.unlink(tmp)
    fd, msg, errno = core.open(tmp, "wcxf", 420)
  end
  if not fd then return nil, open_error(tmp, errno, msg) end
  local function give_up(why)
    core.close(fd)
    core.unlink(tmp)
    return nil, why
  end
  local content = pid .. "\n"
  local n, werr = core.write(fd, content)
  if n ~= #content then return give_up("pidfile " .. tmp .. ": " .. tostring(werr or "short write")) end
  assert(core.flock(fd, "ex", true))   -- a file nobody else has opened yet

  for _ = 1, 50 do
    local ok, lerr, lerrno = core.rename(tmp, path, true)
    if ok then return fd end
    if lerrno ~= E.EEXIST then return give_up(lerr) end
    local cur, why = open_existing(path, "rw")
    if not cur then
      if why ~= "absent" then return give_up(why) end
      -- removed meanwhile: try again
    else
      local free, ferr = core.flock(cur, "sh", true)
      if free == nil then
        core.close(cur)
        return give_up(ferr)
      end
      if not free then
        local other = read_pid(cur)
        local same = same_file(cur, path)
        core.close(cur)
        -- (not the same file: its daemon removed it on the way out; look again)
        if same and other then return give_up(string.format("already running (pid %d)", other)) end
        if same then return give_up(string.format("pidfile %s is locked but holds no pid", path)) end
      else
        -- stale: replace it, one replacer at a time
        local locked, oerr = core.ofdlock(cur, "w", true)
        if not locked then
          core.close(cur)
          return give_up(oerr)
        end
        if same_file(cur, path) then
          local renamed, rerr = core.rename(tmp, path)
          core.close(cur)
          if not renamed then return give_up("pidfile " .. rerr) end
          return fd
        end
        core.close(cur)   -- replaced or removed by someone else meanwhile: look again
      end
    end
  end
  return give_up(string.format("pidfile %s keeps changing", path))
end

--- status(pidfile) -> pid of the daemon holding it | nil, "not running" | nil, message
function M.status(pidfile)
  if type(pidfile) ~= "string" then error("status: pidfile must be a string", 2) end
  return holder(absolute(pidfile, core.getcwd()))
end

--- stop(pidfile[, timeout]) -> true once the daemon has exited | nil, message.
--- SIGTERM, then waits on a pidfd (no polling) at most `timeout` seconds (nil: until
--- it is gone). Stopping what is not running is an error ("not running").
function M.stop(pidfile, timeout)
  if type(pidfile) ~= "string" then error("stop: pidfile must be a string", 2) end
  local path = absolute(pidfile, core.getcwd())
  for _ = 1, 10 do
    local pid, why = holder(path)
    if not pid then return nil, why end
    local pfd, perr, perrno = core.pidfd_open(pid)
    if not pfd then
      if perrno ~= E.ESRCH then return nil, perr end
      -- gone between the two looks; the next look says whether another took over
    elseif holder(path) ~= pid then
      -- The pid we read may have been reused between reading it and opening the
      -- pidfd: only signal it while the locked pidfile still names it.
      core.close(pfd)
    else
      local sent, serr, serrno = core.pidfd_send_signal(pfd, "TERM")
      if not sent and serrno ~= E.ESRCH then
        core.close(pfd)
        return nil, serr
      end
      local ready = core.poll({ [pfd] = "r" }, timeout or -1)
      core.close(pfd)
      if not ready[pfd] then
        return nil, string.format("still running after %gs (pid %d)", timeout, pid)
      end
      return true
    end
  end
  return nil, "pidfile " .. path .. " keeps changing"
end

---------------------------------------------------------------------------------------
-- the daemon handle

local Daemon = {}
Daemon.__index = Daemon

-- Write all of s to the launcher's pipe. A launcher killed meanwhile must not take
-- the daemon with it through SIGPIPE.
local function tell(fd, s)
  local prev = core.sigaction("PIPE")
  if prev == "default" then core.sigaction("PIPE", "ignore") end
  local i = 1
  while i <= #s do
    local n = core.write(fd, s, i)
    if not n then break end
    i = i + n
  end
  if prev == "default" then core.sigaction("PIPE", "default") end
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

-- Remove the pidfile a daemon left when it died before it was ready -- only if it is
-- still that daemon's (stale, holding its pid), and under the replacers' lock, so that
-- a daemon starting meanwhile is never touched.
local function remove_dead(path, pid)
  -- It closed our pipe on its way out; its lock goes when it is fully gone.
  local pfd = core.pidfd_open(pid)
  if pfd then
    local gone = next(core.poll({ [pfd] = "r" }, 5)) ~= nil
    core.close(pfd)
    if not gone then return end
  end
  local fd = open_existing(path, "rw")
  if not fd then return end
  if core.flock(fd, "sh", true) and core.ofdlock(fd, "w", true)
      and read_pid(fd) == pid and same_file(fd, path) then
    core.unlink(path)
  end
  core.close(fd)
end

-- The launcher: wait for the daemon's word, then exit. Never returns.
-- The daemon says "P<pid>\n" once it owns the pidfile, then "R" (ready) or
-- "F<message>\0" (failed).
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
    if dpid and pidfile then remove_dead(pidfile, math.tointeger(dpid)) end
  end
  io.stderr:write(progname, ": ", msg, "\n")
  io.stderr:flush()
  os.exit(1)
end

--- daemonize{ pidfile=, umask=, chdir=, stdout=, stderr=, keep_fds=, progname= }
--- -> handle (in the daemon) | nil, message (in the launcher, before any fork).
function M.daemonize(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("daemonize: expected a table", 2) end
  for k in pairs(opts) do
    if not DAEMONIZE_KEYS[k] then
      error(string.format("daemonize: unknown option '%s'", tostring(k)), 2)
    end
  end
  -- A launcher started with stdio closed: /dev/null there first, so that nothing of
  -- ours (the launcher pipe, the pidfile) takes fd 0..2.
  require("lprocess").ensure_stdio()
  for _, k in ipairs { "pidfile", "stdout", "stderr", "progname" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error("daemonize: " .. k .. " must be a string", 2)
    end
  end
  local cwd = assert(core.getcwd())
  local mask = parse_umask(opts.umask)
  local dir = opts.chdir
  if dir == nil then dir = "/" end
  if dir ~= false and type(dir) ~= "string" then
    error("daemonize: chdir must be a path or false", 2)
  end
  local keep = {}
  for _, fd in ipairs(opts.keep_fds or {}) do keep[fd] = true end
  local pidfile = opts.pidfile and absolute(opts.pidfile, cwd)
  local d = setmetatable({
    pidfile = pidfile,
    stdout = opts.stdout and absolute(opts.stdout, cwd),
    stderr = opts.stderr and absolute(opts.stderr, cwd),
    progname = opts.progname or (arg and arg[0] and arg[0]:match("([^/]+)$")) or "daemon",
  }, Daemon)

  if pidfile then
    local ok, err = check_dir(pidfile)
    if not ok then return nil, err end
    local pid, why = holder(pidfile)
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
    launcher(rfd, child, d.progname, pidfile)
  end

  -- The intermediate process: a session of its own, without a terminal; then fork
  -- again so the daemon leads no session and can never acquire a terminal.
  core.close(rfd)
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

  -- The daemon.
  d.pid = core.getpid()
  d.wfd = wfd
  if dir then
    -- Modules required from now on must still be found after the chdir.
    package.path = absolute_templates(package.path, cwd)
    package.cpath = absolute_templates(package.cpath, cwd)
    ok, err = core.chdir(absolute(dir, cwd))
    if not ok then d:fail(err) end
  end
  core.umask(mask)
  if pidfile then
    local fd
    fd, err = acquire(pidfile, d.pid)
    if not fd then d:fail(err) end
    d.lockfd = fd
    tell(wfd, "P" .. d.pid .. "\n")
  end
  ok, err = d:_redirect(true)
  if not ok then d:fail(err) end
  keep[wfd] = true
  close_inherited(keep)
  -- Clean exit by closing the Lua state also removes the pidfile. The handle is
  -- anchored here so that a caller dropping it cannot finalize it early.
  d._finalizer = setmetatable({}, { __gc = function() d:cleanup() end })
  M._live = d
  return d
end

return M
