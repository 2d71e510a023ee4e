--- lprocess.pidfile: a pidfile that names a live process only while that process
-- holds it -- the protocol lprocess.daemon uses, for any program that wants one.
--
--   local pidfile = require "lprocess.pidfile"
--   local fd, err = pidfile.acquire("/run/x.pid", core.getpid())  -- keep fd open: the lock
--   pidfile.holder(path)        -- pid holding it | nil, "not running" | nil, message
--   pidfile.status(path), pidfile.stop(path, timeout)   -- as lprocess.daemon's
--   pidfile.remove_dead(path, pid)   -- a dead daemon's pidfile, only if still its own
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
local core = require "lprocess.core"

local M = {}

local E = core.errno

---------------------------------------------------------------------------------------
-- paths

local function absolute(path, cwd)
  if path:sub(1, 1) == "/" then return path end
  path = path:gsub("^%./", "")
  return (cwd == "/" and "" or cwd) .. "/" .. path
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


-- Remove the pidfile a daemon left when it died before it was ready -- only if it is
-- still that daemon's (stale, holding its pid), and under the replacers' lock, so that
-- a daemon starting meanwhile is never touched.
function M.remove_dead(path, pid)
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
M.absolute, M.check_dir, M.holder, M.acquire = absolute, check_dir, holder, acquire
M.read_pid, M.same_file, M.open_existing = read_pid, same_file, open_existing

return M
