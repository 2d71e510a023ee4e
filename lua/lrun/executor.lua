--- lrun.executor: the local executor -- how the scheduler's units become processes.
--
-- The scheduler knows nothing of pipes or process groups; it talks to an executor
-- through these calls, so another executor (Slurm, ...) can replace this one:
--
--   local h, err, errno = ex:start(unit, hooks) -- hooks.exit(status, h) once it ended
--   ex:signal(h, sig)                      -- to the unit's whole process group
--   ex:stop(h, sig, grace)                 -- sig + CONT, then KILL after grace
--   ex:kill_all()                          -- every group, KILL, now
--   ex:forget(unit)                        -- the unit will not run again
--   ex:check_groups()                      -- after an orphan was reaped
--   ex:busy(), ex:close()
--
-- A handle's `pid` names the unit's main process in messages, events and for
-- readiness probes; what is cached per unit (its environment and spawn options) is
-- the executor's own, dropped by forget.
--
-- Every unit runs in its own process group with a parent-death signal, and its
-- output pipes are read by the event loop and handed to lrun.output. When the main
-- process ends, whatever is left of its group is stopped (TERM, grace, KILL) and
-- reported; the unit's exit is announced once its pipes are drained.
local core = require "lprocess.core"
local lprocess = require "lprocess"
local stop = require "lprocess.stop"

local M = {}
local Executor = {}
Executor.__index = Executor

-- opts: loop, out (lrun.output), env (base environment map), run_id, grace,
-- sigmask, sigignore (the signal configuration lrun was started with: every job
-- starts with it, as under make), on_leftover(unit, pgid) (a group outlived its
-- leader), on_group(pgid, alive)
function M.new(opts)
  local ex = setmetatable({
    loop = opts.loop,
    out = opts.out,
    env = opts.env,
    run_id = opts.run_id,
    grace = opts.grace or 5,
    sigmask = opts.sigmask,
    sigignore = opts.sigignore,
    on_leftover = opts.on_leftover,
    on_group = opts.on_group,
    groups = {},       -- pgid -> handle, while the group may still have members
    handles = {},      -- pid -> handle of running leaders
    piped = {},        -- handle -> true while any of its pipes is open
    envp = {},         -- job -> its environment as "K=V" strings (a job with env)
    opts_buf = {},     -- the spawn options, refilled at each start
    fds_buf = {},      -- their fds
    opened = {},       -- what a start opened for the child
    pipe_owner = {},   -- fd of a pipe we read -> its handle
  }, Executor)
  local self = ex
  -- One function each for every pipe and every child: no closure per start.
  ex.on_pipe = function(fd) local h = self.pipe_owner[fd]; if h then self:_drain(h, fd) end end
  ex.on_child = function(status)
    local h = self.handles[status.pid]
    if h then self:_exited(h, status) end
  end
  return ex
end

-- One /dev/null for every unit's stdin (the default), opened once per run.
local null_fd

-- Open what a unit's stdin/stdout/stderr name; returns fd (or nil = inherit).
local function open_stream(spec, input, close)
  if spec == "inherit" then return nil end
  if spec == "null" and input then
    null_fd = null_fd or assert(core.open("/dev/null", "r"))
    return null_fd
  end
  local path = spec == "null" and "/dev/null" or spec
  local fd, err = core.open(path, input and "r" or "wac", 420)
  if not fd then return false, err end
  close[#close + 1] = fd
  return fd
end

local function to_envp(map, envp)
  for k, v in pairs(map) do envp[#envp + 1] = k .. "=" .. v end
  return envp
end

-- The child's environment: lrun's own turned into strings once per run; a job's own
-- additions once per job. Entries that must win (job env, probe variables) come
-- first: getenv and every libc take the first of duplicate names. Slots 1 and 2
-- (LRUN_JOB, LRUN_INSTANCE) are set at each start. A job without probe variables gets
-- a core.envblock, checked once and shared by its units (by every job without an env
-- of its own): spawn then reads it as it is, instead of checking ~40 strings a start.
local INSTANCE = setmetatable({}, { __index = function(t, i)
  local v = "LRUN_INSTANCE=" .. i
  t[i] = v
  return v
end })

function Executor:_base_envp()
  local base = self.base_envp
  if not base then
    local env = {}
    for k, v in pairs(self.env) do env[k] = v end
    env.LRUN_JOB, env.LRUN_INSTANCE, env.LRUN_RUN_ID = nil, nil, nil
    -- lrun's own systemd socket is not the jobs' (notify="systemd" sets theirs)
    env.NOTIFY_SOCKET = nil
    base = to_envp(env, { "LRUN_RUN_ID=" .. self.run_id })
    self.base_envp = base
  end
  return base
end

function Executor:_env(unit, extra)
  local job = unit.job
  local envp
  if not extra and not next(job.env) then
    envp = self.plain_envp
    if not envp then
      local base = self:_base_envp()
      envp = core.envblock(table.move(base, 1, #base, 3, { "LRUN_JOB=", "LRUN_INSTANCE=" }))
      self.plain_envp = envp
    end
  else
    envp = not extra and self.envp[job]
    if not envp then
      local base = self:_base_envp()
      envp = { "LRUN_JOB=", "LRUN_INSTANCE=" }
      if extra then to_envp(extra, envp) end
      to_envp(job.env, envp)
      for _, kv in ipairs(base) do
        if job.env[kv:match("^[^=]*")] == nil then envp[#envp + 1] = kv end
      end
      if not extra then
        envp = core.envblock(envp)
        self.envp[job] = envp
      end
    end
  end
  if extra then
    envp[1], envp[2] = "LRUN_JOB=" .. job.name, INSTANCE[unit.instance]
  else
    envp:set(1, "LRUN_JOB=" .. job.name)
    envp:set(2, INSTANCE[unit.instance])
  end
  return envp
end

local function argv_of(job)
  if job.argv then return job.argv end
  return { "/bin/sh", "-c", job.cmd }
end

-- One reader function for every pipe (no closure per pipe): fd -> handle.
-- -> true | nil, msg (epoll refused the descriptor: it is left to the caller)
function Executor:_watch_pipe(h, fd, stream)
  local ok, err = self.loop:watch(fd, "r", self.on_pipe)
  if not ok then return nil, "watching its output: " .. err end
  h.open_pipes = h.open_pipes + 1
  h.pipes[fd] = stream
  self.piped[h] = true
  self.pipe_owner[fd] = h
  return true
end

function Executor:_close_pipe(h, fd)
  local stream = h.pipes[fd]
  self.loop:unwatch(fd, true)   -- our read end alone: close takes it off the epoll set
  core.close(fd)
  self.pipe_owner[fd] = nil
  h.pipes[fd] = nil
  h.open_pipes = h.open_pipes - 1
  if h.open_pipes == 0 then self.piped[h] = nil end
  self.out:finish(h.unit.name, stream)
end

-- Read what the pipe holds now; on EOF finish the stream and close it.
function Executor:_drain(h, fd)
  local stream = h.pipes[fd]
  if not stream then return end
  local name, out = h.unit.name, self.out
  while true do
    local data = core.read(fd, 65536)
    if data == false then return end          -- EAGAIN: the rest comes later
    if not data or data == "" then break end  -- EOF (or an error: treat alike)
    out:feed(name, stream, data)
    h.bytes = h.bytes + #data
  end
  self:_close_pipe(h, fd)
end

local NO_EXTRA = {}
local PIPE_OPTS = { nonblock = "r" }   -- ours nonblocking, the child's end blocking

local function close_fds(list, n)
  for i = 1, n do core.close(list[i]) end
end

-- The spawn options of one start. Without probe extras one table is reused for every
-- start (core.spawn reads it before it returns); credentials are looked up only for
-- a job that names a user or group.
local NO_IDS = {}
function Executor:_spawn_opts(unit, extra)
  local job = unit.job
  local ids = NO_IDS
  if job.user ~= nil or job.group ~= nil then
    local err
    ids, err = lprocess.credentials(job)
    if not ids then return nil, err end
  end
  local copts = extra.setenv and {} or self.opts_buf
  copts.argv, copts.env, copts.cwd = argv_of(job), self:_env(unit, extra.setenv), job.dir
  copts.pgid, copts.pdeathsig, copts.umask, copts.limits = 0, "KILL", job.umask, job.limits
  copts.uid, copts.gid, copts.groups = ids.uid, ids.gid, ids.groups
  copts.sigmask, copts.sigignore = self.sigmask, self.sigignore
  return copts
end

function Executor:forget(unit)
  self.envp[unit.job] = nil
end

-- The child's fds 0..2 (plus a probe's extra fds) into the reused table `fds`
-- -> n opened, reader 1, reader 2 | nil, err. `self.opened[1..n]`: what we close
-- once the child has it (at most 3); the readers: our ends of the stdout and stderr
-- pipes.
function Executor:_child_fds(job, extra, fds)
  local opened, r1, r2 = self.opened, nil, nil
  if self.fds_extra then   -- a probe's fds of the last start: gone
    for k in pairs(fds) do fds[k] = nil end
    self.fds_extra = false
  end
  if extra.fds then
    for k, v in pairs(extra.fds) do fds[k] = v end
    self.fds_extra = true
  end
  local fd, err = open_stream(job.stdin, true, opened)
  if fd ~= false then
    fds[0] = fd
    for i = 1, 2 do
      local spec = i == 1 and job.stdout or job.stderr
      if spec == "prefix" then
        local r, w = core.pipe(PIPE_OPTS)
        if not r then fd, err = false, w; break end
        opened[#opened + 1] = w
        fds[i] = w
        if i == 1 then r1 = r else r2 = r end
      else
        fd, err = open_stream(spec, false, opened)
        if fd == false then break end
        fds[i] = fd
      end
    end
  end
  local n = #opened
  if fd == false then
    close_fds(opened, n)
    for i = n, 1, -1 do opened[i] = nil end
    if r1 then core.close(r1) end
    if r2 then core.close(r2) end
    return nil, err
  end
  return n, r1, r2
end

function Executor:start(unit, hooks)
  local extra = hooks.spawn_opts or NO_EXTRA
  local copts, err = self:_spawn_opts(unit, extra)
  if not copts then return nil, err end
  local fds = self.fds_buf
  local n, r1, r2 = self:_child_fds(unit.job, extra, fds)
  if not n then return nil, r1 end
  -- pipes: fd -> stream, sized for two by its (nil) entries: no rehash as they come
  local h = { unit = unit, hooks = hooks, pipes = { [-1] = nil, [-2] = nil }, open_pipes = 0, bytes = 0,
    status = nil, ended = nil, pid = nil, pgid = nil, started = nil }
  -- Our pipe ends are watched before the child exists: a refusal then costs no job.
  local pid, serr, serrno = nil, nil, nil
  local ok = true
  if r1 then ok, serr = self:_watch_pipe(h, r1, "stdout") end
  if ok and r2 then ok, serr = self:_watch_pipe(h, r2, "stderr") end
  if ok then
    copts.fds = fds
    pid, serr, serrno = core.spawn(copts)
    copts.fds = nil
  end
  close_fds(self.opened, n)
  for i = n, 1, -1 do self.opened[i] = nil end
  if not pid then
    for _, r in ipairs { r1 or false, r2 or false } do
      if r and h.pipes[r] then self.loop:unwatch(r); self.pipe_owner[r] = nil end
      if r then core.close(r) end
    end
    self.piped[h] = nil
    return nil, serr, serrno
  end
  h.pid, h.pgid, h.started = pid, pid, core.now()
  self.handles[pid] = h
  self.groups[pid] = h
  if self.on_group then self.on_group(pid, true) end
  self.loop:child(pid, self.on_child)
  return h
end

function Executor:_exited(h, status)
  self.handles[h.pid] = nil
  h.status = status
  h.ended = core.now()
  -- Everything the leader wrote is in its pipes now; a grandchild may still hold
  -- them open, so take what is there without waiting for EOF.
  for fd in pairs(h.pipes) do self:_drain(h, fd) end
  -- What is left of the group is stopped and reported; the unit's exit is not held
  -- back by it, but lrun does not finish before the group is empty.
  if stop.alive(h.pgid) then
    h.leftover = true
    if self.on_leftover then self.on_leftover(h.unit, h.pgid) end
    if not h.stopper then self:_stop_group(h, h.stop_signal or "TERM", h.grace or self.grace) end
  else
    self:_group_gone(h)
  end
  h.hooks.exit(status, h)
end

-- lprocess.stop's sequence on the group: sig + CONT now, KILL after grace; the
-- group is watched until it is empty (check_groups, on every orphan reaped).
function Executor:_stop_group(h, sig, grace)
  if h.stopper then h.stopper:cancel() end
  h.stopper = stop.start(self.loop, h.pgid, sig, grace)
end

-- Called after any reap: forget groups that have emptied.
function Executor:check_groups()
  for pgid, h in pairs(self.groups) do
    if h.status and not stop.alive(pgid) then self:_group_gone(h) end
  end
end

function Executor:_group_gone(h)
  self.groups[h.pgid] = nil
  if h.stopper then h.stopper:cancel(); h.stopper = nil end
  if self.on_group then self.on_group(h.pgid, false) end
end

function Executor:busy()
  return next(self.groups) ~= nil
end

function Executor:signal(h, sig)
  if stop.alive(h.pgid) then core.killpg(h.pgid, sig) end
end

-- Stop a unit: sig and CONT to its group, KILL after grace. hooks.exit still
-- reports the leader's end; the group is watched until it is empty.
function Executor:stop(h, sig, grace)
  h.stop_signal, h.grace = sig, grace
  if h.stopping and sig ~= "KILL" then return end
  h.stopping = true
  if stop.alive(h.pgid) then self:_stop_group(h, sig, grace) end
end

-- Every group at once, now (second ^C, or lrun dying): KILL.
function Executor:kill_all()
  for pgid in pairs(self.groups) do core.killpg(pgid, "KILL") end
end

-- At the very end: take what pipes still held open (by a grandchild that escaped
-- its group) contain, then close them.
function Executor:close()
  for h in pairs(self.piped) do
    for fd in pairs(h.pipes) do
      self:_drain(h, fd)
      if h.pipes[fd] then self:_close_pipe(h, fd) end
    end
  end
end

M.argv_of = argv_of
return M
