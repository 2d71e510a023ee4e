-- lprocess: processes for Lua 5.4 -- spawn, wait, run, signals, an event loop.
--
-- The C core (lprocess.core) binds the primitives; this facade adds Process objects,
-- stream plumbing, the pid -> Process registry and `run`. See README.md for a tour.
--
-- Caveats
-- * A Process that is garbage-collected before its child was reaped is not waited for
--   (__gc never blocks): its pid goes on an orphan list that the next lprocess.wait
--   sweeps (an event loop reaps it anyway). Use `<close>` to wait deterministically.
-- * Nothing is lost to that sweep: a status it reaps is owed to the program, and the
--   next lprocess.wait(-1), lprocess.wait(pid) for that pid, or lprocess.reap()
--   returns it first, before asking the kernel. Raw pids and Process objects mix
--   freely. Group waits (pid 0 or < -1) do not see owed statuses; once a new child
--   gets the same pid, an owed status is returned only by wait(-1) and reap().
-- * After a Process has been reaped, :kill refuses: its pid may belong to someone else.
-- * Signals: a spawned program starts with an empty signal mask and every signal at
--   its default disposition, whatever the Lua host blocked, ignored or handled (a
--   host that ignores SIGPIPE does not hand that on). `sigmask` and `sigignore` give
--   it a mask and an ignored set instead; core.sigstate() tells what the calling
--   process has now, for a runner that passes on to its children what it was given.
local core = require "lprocess.core"
local status = require "lprocess.status"
local stop = require "lprocess.stop"

local M = {
  core = core,
  signals = core.signals,
  errno = core.errno,
  now = core.now,
  sleep = core.sleep,
}

local ETIMEDOUT_MSG = "timed out"

-- Every Process not yet reaped, by pid. Weak values: an abandoned Process can be
-- collected, and its __gc moves the pid to `orphans`.
local registry = setmetatable({}, { __mode = "v" })
local orphans = {}
-- Statuses the orphan sweep reaped, owed to the program's next wait/reap: oldest
-- first, and by pid for wait(pid).
local owed, owed_by_pid = {}, {}

local Process = {}
Process.__index = Process
M.Process = Process

-- Record a status reaped anywhere (raw wait, loop, run) on the object that owns it.
local function record(st)
  if st and st.how ~= "stop" and st.how ~= "continue" then
    local p = registry[st.pid]
    if p then
      p.status = st
      registry[st.pid] = nil
    end
    orphans[st.pid] = nil
  end
  return st
end
M._record = record

---------------------------------------------------------------------------------------
-- spawn

local SPAWN_KEYS = {
  env = true, setenv = true, cwd = true, stdin = true, stdout = true, stderr = true,
  fds = true, close_fds = true, setsid = true, pgid = true, pdeathsig = true,
  umask = true, limits = true, uid = true, gid = true, user = true, group = true,
  path = true, pidfd = true, method = true, foreground = true, sigmask = true,
  sigignore = true,
}
M.SPAWN_KEYS = SPAWN_KEYS

local function check_keys(opts, known, what)
  for k in pairs(opts) do
    if type(k) ~= "number" and not known[k] then
      error(string.format("%s: unknown option '%s'", what, tostring(k)), 3)
    end
  end
end

-- The environment for the child: env replaces, setenv merges (false removes).
local function child_env(opts)
  if opts.env == nil and opts.setenv == nil then return nil end
  local env = {}
  for k, v in pairs(opts.env or core.environ()) do env[k] = tostring(v) end
  for k, v in pairs(opts.setenv or {}) do
    if v == false then env[k] = nil else env[k] = tostring(v) end
  end
  return env
end

-- Resolve one stream spec to a descriptor for the child. Returns the fd to pass (or
-- nil to inherit), and records in `plumb` what the parent keeps or must close.
local function stream_fd(spec, childfd, plumb)
  local input = childfd == 0
  if spec == nil or spec == "inherit" then return nil end
  local t = type(spec)
  if t == "number" then return spec end
  if io.type(spec) == "file" then return core.fileno(spec) end
  if spec == "null" then
    local fd = assert(core.open("/dev/null", input and "r" or "w"))
    plumb.close[#plumb.close + 1] = fd
    return fd
  end
  if spec == "pipe" then
    local r, w = assert(core.pipe())
    local mine, theirs = input and w or r, input and r or w
    plumb.close[#plumb.close + 1] = theirs
    plumb.pipes[childfd] = mine
    return theirs
  end
  if t == "string" then
    local fd, err, errno = core.open(spec, input and "r" or "wct", 438)
    if not fd then return nil, err, errno end
    plumb.close[#plumb.close + 1] = fd
    return fd
  end
  error("bad stream for fd " .. childfd .. ": " .. tostring(spec), 4)
end

local function close_all(fds)
  for _, fd in ipairs(fds) do core.close(fd) end
end

--- credentials{ user=, group=, uid=, gid= } -> { uid=, gid=, groups= } | nil, msg
-- The ids a child drops to. A user (name or uid) brings its passwd entry's gid and
-- supplementary groups, as login does; a bare uid that has a passwd entry too.
-- A group alone sets the gid and makes it the only supplementary group.
function M.credentials(opts)
  local ids, gid = {}, opts.gid
  if opts.group ~= nil then
    local gr, err = core.getgrnam(opts.group)
    if not gr then return nil, err end
    gid = gr.gid
  end
  local who = opts.user
  if who == nil and opts.uid ~= nil then
    ids.uid = opts.uid
    who = core.getpwnam(opts.uid) and opts.uid or nil
  end
  if who ~= nil then
    local pw, err = core.getpwnam(who)
    if not pw then return nil, err end
    ids.uid = pw.uid
    gid = gid or pw.gid
    ids.groups = core.getgrouplist(pw.name, gid)
  end
  if gid ~= nil then
    ids.gid = gid
    ids.groups = ids.groups or { gid }
  end
  return ids
end

-- The fast path's options for core.spawn, reused: core.spawn keeps nothing of it.
local fast_copts = {}

-- The child's descriptors from stdin/stdout/stderr/fds -> fds, plumb | nil, msg, errno
-- (plumb: what the parent closes after the spawn, and keeps as pipes).
local function plumb_streams(opts)
  local plumb = { close = {}, pipes = {} }
  local fds = {}
  local streams = { opts.stdin, opts.stdout, opts.stderr }
  for childfd = 0, 2 do
    local spec = streams[childfd + 1]
    if childfd == 2 and spec == "stdout" then
      fds[2] = fds[1] or 1
    else
      local fd, err, errno = stream_fd(spec, childfd, plumb)
      fds[childfd] = fd
      if err then
        close_all(plumb.close)
        for _, pipe in pairs(plumb.pipes) do core.close(pipe) end
        return nil, err, errno
      end
    end
  end
  for childfd, spec in pairs(opts.fds or {}) do
    fds[childfd] = io.type(spec) == "file" and core.fileno(spec) or spec
  end
  return fds, plumb
end

-- A Process for a child that was just spawned.
local function new_process(pid, argv)
  owed_by_pid[pid] = nil   -- an owed status of a former holder of this pid
  local p = setmetatable({ pid = pid, argv = argv, started = core.now() }, Process)
  registry[pid] = p
  return p
end

local PIPE_MODES = { [0] = "w", "r", "r" }
local STREAM_NAMES = { [0] = "stdin", "stdout", "stderr" }

--- spawn{ "prog", "arg", ... , options } -> Process | nil, msg, errno
function M.spawn(opts)
  if type(opts) ~= "table" then error("spawn: expected a table", 2) end
  -- check_keys inlined, noting on the way whether there is any option at all
  local plain = true
  for k in pairs(opts) do
    if type(k) ~= "number" then
      if not SPAWN_KEYS[k] then error(string.format("spawn: unknown option '%s'", tostring(k)), 2) end
      plain = false
    end
  end
  local argv = {}
  for i, a in ipairs(opts) do argv[i] = tostring(a) end
  if #argv == 0 then error("spawn: no command", 2) end
  if plain then
    -- Nothing but a command: every stream inherited, no ids, no option tables to build
    -- (what the general path below would pass to core.spawn amounts to argv alone).
    fast_copts.argv = argv
    local pid, err, errno = core.spawn(fast_copts)
    fast_copts.argv = nil
    if not pid then return nil, err, errno end
    return new_process(pid, argv)
  end
  local ids, ierr = M.credentials(opts)
  if not ids then return nil, "spawn " .. argv[1] .. ": " .. ierr, core.errno.EINVAL end
  local fds, plumb, errno = plumb_streams(opts)
  if not fds then return nil, plumb, errno end
  local pid, pidfd_or_err, e = core.spawn {
    argv = argv, path = opts.path, env = child_env(opts), cwd = opts.cwd, fds = fds,
    close_fds = opts.close_fds, setsid = opts.setsid, pgid = opts.pgid,
    pdeathsig = opts.pdeathsig, umask = opts.umask, limits = opts.limits,
    pidfd = opts.pidfd, method = opts.method, foreground = opts.foreground,
    sigmask = opts.sigmask, sigignore = opts.sigignore,
    uid = ids.uid, gid = ids.gid, groups = ids.groups,
  }
  close_all(plumb.close)
  if not pid then
    for _, fd in pairs(plumb.pipes) do core.close(fd) end
    return nil, pidfd_or_err, e
  end
  local p = new_process(pid, argv)
  if opts.pidfd then p.pidfd = pidfd_or_err end
  if opts.setsid or opts.pgid == 0 then
    p.pgid = pid
  elseif opts.pgid then
    p.pgid = opts.pgid
  end
  for childfd, fd in pairs(plumb.pipes) do
    p[STREAM_NAMES[childfd]] = assert(core.fdopen(fd, PIPE_MODES[childfd]))
  end
  return p
end

---------------------------------------------------------------------------------------
-- waiting

-- Reap the children of collected Process objects that have ended, keeping each
-- status for the program (see Caveats).
local function reap_orphans()
  for pid in pairs(orphans) do
    local st = core.wait(pid, { nohang = true })
    if st ~= false then orphans[pid] = nil end
    if st then
      owed[#owed + 1] = st
      owed_by_pid[pid] = st
    end
  end
end

-- An owed status for wait(pid): the oldest for -1, that pid's for a pid.
local function take_owed(pid)
  local st
  if pid == -1 then
    st = table.remove(owed, 1)
    if owed_by_pid[st.pid] == st then owed_by_pid[st.pid] = nil end
  elseif pid > 0 then
    st = owed_by_pid[pid]
    if st then
      owed_by_pid[pid] = nil
      for i = 1, #owed do
        if owed[i] == st then table.remove(owed, i) break end
      end
    end
  end
  return st
end

--- wait(pid, {nohang=, untraced=, continued=}) -> status | false | nil, msg, errno
function M.wait(pid, opts)
  pid = pid or -1
  if owed[1] and math.type(pid) == "integer" then
    local st = take_owed(pid)
    if st then return st end
  end
  local st, err, errno = core.wait(pid, opts)
  if st then record(st) end
  if next(orphans) then reap_orphans() end
  return st, err, errno
end

--- reap() -> array of every status ready now (the loop's SIGCHLD handler calls this),
-- owed ones first
function M.reap()
  local list = core.reap()
  for i = 1, #list do record(list[i]) end
  if owed[1] then
    table.move(list, 1, #list, #owed + 1)
    table.move(owed, 1, #owed, 1, list)
    owed, owed_by_pid = {}, {}
  end
  return list
end

function Process:poll()
  if self.status then return self.status end
  local st, err, errno = core.wait(self.pid, { nohang = true })
  if st == nil and errno == core.errno.ECHILD then
    -- someone else reaped it (status recorded then, if through lprocess)
    return self.status or nil, err, errno
  end
  return record(st) or st, err, errno
end

-- Block until the child ends or `timeout` seconds pass (false then), readiness-driven
-- through a pidfd: no sleep-and-poll.
function Process:wait(opts)
  if opts then check_keys(opts, { timeout = true }, "wait") end
  if self.status then return self.status end
  local timeout = opts and opts.timeout
  if timeout then
    local fd = self.pidfd
    local own = false
    if not fd then
      local err, errno
      fd, err, errno = core.pidfd_open(self.pid)
      if not fd then return self:poll() or nil, err, errno end
      own = true
    end
    local ready = core.poll({ [fd] = "r" }, timeout)
    if own then core.close(fd) end
    if not ready[fd] then return false, ETIMEDOUT_MSG end
    return self:poll()
  end
  local st, err, errno = core.wait(self.pid)
  if not st then return self.status or nil, err, errno end
  return record(st)
end

function Process:kill(sig)
  if self.status then
    return nil, string.format("kill %d: process already reaped", self.pid), core.errno.ESRCH
  end
  return core.kill(self.pid, sig or "TERM")
end

function Process:killpg(sig)
  if not self.pgid and self.status then   -- getpgid could name a recycled pid's group
    return nil, string.format("killpg: process %d already reaped", self.pid), core.errno.ESRCH
  end
  local pgid = self.pgid or core.getpgid(self.pid)
  if not pgid then return nil, "killpg: unknown process group", core.errno.ESRCH end
  if pgid == core.getpgid(0) then         -- a child left in our group: we would die too
    return nil, string.format("killpg %d: process %d is in our own process group", pgid,
      self.pid), core.errno.EPERM
  end
  return core.killpg(pgid, sig or "TERM")
end

-- TERM (to the whole group when the child leads one), then KILL after `grace`
-- seconds (lprocess.stop); returns the status.
function Process:terminate(grace)
  if self.status then return self.status end
  local target = self.pgid == self.pid and self.pid or { pid = self.pid }
  return stop.sync(target, "TERM", grace or 5, function(t)
    if t then return self:wait { timeout = t } end
    return self:wait()
  end)
end

function Process:close_pipes()
  for _, k in ipairs { "stdin", "stdout", "stderr" } do
    local f = self[k]
    if f and io.type(f) == "file" then f:close() end
  end
  if self.pidfd then
    core.close(self.pidfd)
    self.pidfd = nil
  end
end

-- `local p <close> = spawn{...}`: on error the child is terminated and reaped,
-- otherwise waited for. Either way no running child and no zombie is left.
function Process:__close(err)
  -- Our pipe ends go first: a child blocked writing to an output pipe nobody reads
  -- any more would otherwise never end (it gets EPIPE instead), nor one reading stdin.
  for _, k in ipairs { "stdin", "stdout", "stderr" } do
    if self[k] and io.type(self[k]) == "file" then self[k]:close() end
  end
  if err ~= nil then self:terminate(1) else self:wait() end
  self:close_pipes()
end

-- Never blocks and never reaps: an event loop may be waiting for this pid's status.
function Process:__gc()
  if self.pidfd then core.close(self.pidfd) end
  if not self.status then orphans[self.pid] = true end
end

function Process:__tostring()
  return string.format("process %d (%s)", self.pid,
    self.status and self.status.how or "running")
end

--- run{ "prog", ..., input=, timeout=, check=, grace=, spawn options }
--- -> {status=, stdout=, stderr=, timed_out=, duration=} | nil, msg, errno
--- (lprocess.run, loaded on first use; a tail call keeps error levels the caller's)
function M.run(opts)
  return require("lprocess.run")(opts)
end

--- write(fd, s [, i]) -> core.write's results, with SIGPIPE ignored for the call
-- when nobody handles it: a reader that has gone (a child that stopped reading its
-- input, a launcher or watchdog that died) is EPIPE, never the death of the writer.
function M.write(fd, s, i)
  local dfl = core.sigaction("PIPE") == "default"
  if dfl then core.sigaction("PIPE", "ignore") end
  local n, err, errno = core.write(fd, s, i)
  if dfl then core.sigaction("PIPE", "default") end
  return n, err, errno
end

--- ensure_stdio() -> the fds among 0, 1, 2 that were closed and now read and write
-- /dev/null. A program started with any of them closed (some supervisors and cron
-- setups do that) would otherwise get its first own descriptor there -- an epoll fd
-- as "stderr" -- and its children would write into it. Call it first thing.
function M.ensure_stdio()
  local filled = {}
  for fd = 0, 2 do
    if core.getcloexec(fd) == nil then
      -- the lowest free number is this one: lower ones are open by now
      local got = assert(core.open("/dev/null", "rw"))
      assert(got == fd, "ensure_stdio: /dev/null landed on fd " .. got)
      core.setcloexec(fd, false)
      filled[#filled + 1] = fd
    end
  end
  return filled
end

--- Turn a status into a shell-like exit code: code, or 128+signal.
M.exit_code = status.exit_code

return M
