-- lrun.watchdog: nothing lrun started outlives it, even when lrun dies by SIGKILL.
--
-- Each job's main process gets a parent-death signal, but its descendants do not,
-- and a grandchild that calls setsid escapes its job's process group. So lrun forks
-- a small watchdog before it starts any job. lrun keeps each process group it
-- creates, until it has emptied, in a table shared with the watchdog (lrun.groups:
-- no syscall, no wake-up of the watchdog a job); past the table's M.SIZE groups it
-- tells the watchdog through a pipe ("+pgid", "-pgid"). When the pipe reaches EOF
-- without lrun's "bye" -- lrun died -- the watchdog kills the groups of both and then
-- every process tagged with this run's LRUN_RUN_ID (every job inherits it in its
-- environment), until none is left. After a clean "bye" it only sweeps the tagged
-- processes, which lrun has normally already stopped.
local core = require "lprocess.core"
local write = require("lprocess").write
local shared_groups = require "lrun.groups"

local M = {}

M.SIZE = 4096   -- groups in the shared table (16 KiB); tests lower it

-- Pids of processes whose environment carries LRUN_RUN_ID=run_id (not ourselves).
function M.tagged(run_id)
  local tag, me, found = "LRUN_RUN_ID=" .. run_id .. "\0", core.getpid(), {}
  for _, name in ipairs(core.listdir("/proc") or {}) do
    local pid = tonumber(name)
    if pid and pid ~= me then
      local f = io.open("/proc/" .. name .. "/environ", "rb")
      if f then
        local env = f:read("a")
        f:close()
        -- a Slurm job started on this host runs under slurmstepd, not under lrun:
        -- it is Slurm's to stop (scancel, lrun --executor slurm --cancel)
        if env and env:find(tag, 1, true) and not env:find("\0SLURM_JOB_ID=", 1, true)
            and env:sub(1, 13) ~= "SLURM_JOB_ID=" then
          found[#found + 1] = pid
        end
      end
    end
  end
  return found
end

-- Kill every tagged process (and what it stands for) until none is left.
function M.sweep(run_id, sig)
  for _ = 1, 20 do
    local pids = M.tagged(run_id)
    if #pids == 0 then return true end
    for _, pid in ipairs(pids) do core.kill(pid, sig or "KILL") end
    core.reap()
    core.sleep(0.02)   -- let the kernel finish the kills before looking again
  end
  return false
end

local function serve(rfd, run_id, shared)
  local groups, buf, bye = {}, "", false
  while true do
    local data = core.read(rfd, 4096)
    if not data or data == "" then break end
    buf = buf .. data
    for line in buf:gmatch("([^\n]*)\n") do
      local op, n = line:match("^([+-])(%d+)$")
      if op == "+" then groups[tonumber(n)] = true
      elseif op == "-" then groups[tonumber(n)] = nil
      elseif line == "bye" then bye = true end
    end
    buf = buf:match("[^\n]*$")
  end
  -- After lrun's "bye" everything is already stopped: nothing to do.
  if bye then return end
  for _, pgid in ipairs(shared:list()) do groups[pgid] = true end
  for pgid in pairs(groups) do core.killpg(pgid, "KILL") end
  M.sweep(run_id, "KILL")
end

-- Fork the watchdog. Returns an object with :group(pgid), :ungroup(pgid), :bye(),
-- or nil, message: without it lrun could not keep its promise that nothing it
-- started outlives it, so it does not start a run.
function M.start(run_id)
  local shared, serr, serrno = shared_groups.new(M.SIZE)
  if not shared then return nil, "watchdog: " .. serr, serrno end
  local r, w, errno = core.pipe()
  if not r then
    shared:close()
    return nil, "watchdog: " .. w, errno
  end
  local pid, ferr = core.fork()
  if pid == 0 then
    -- The watchdog must not die of what lrun's process group receives (^C), and
    -- must hold nothing of lrun's open (a pipe a caller reads to EOF, say).
    for _, s in ipairs { "INT", "TERM", "HUP", "QUIT", "TSTP", "TTIN", "TTOU", "PIPE" } do
      core.sigaction(s, "ignore")
    end
    core.sigmask("set", {})
    core.setpgid(0, 0)
    core.dup2(r, 0)
    local null = core.open("/dev/null", "w")
    if null then
      core.dup2(null, 1)
      core.dup2(null, 2)
    end
    core.closefrom(3)
    local ok = pcall(serve, 0, run_id, shared)
    core._exit(ok and 0 or 1)
  end
  core.close(r)
  if not pid then
    core.close(w)
    shared:close()
    return nil, "watchdog: " .. tostring(ferr)
  end
  return setmetatable({ fd = w, pid = pid, shared = shared }, { __index = M })
end

-- Whether the watchdog still runs (wait says false). One that died is reaped here,
-- or was already (ECHILD; lrun's loop clears self.pid then): a write to its pipe
-- would raise SIGPIPE.
local function alive(self)
  if self.pid and core.wait(self.pid, { nohang = true }) ~= false then
    if self.on_gone then self.on_gone(self.pid) end
    self.pid = nil
  end
  return self.pid ~= nil
end

-- Tell the watchdog a line -> true | nil, message (it did not hear it). Its pipe may
-- close before wait() says it has died: EPIPE then, not SIGPIPE (lprocess.write).
local function tell(self, line)
  if not self.fd then return true end
  if not alive(self) then return nil, "watchdog: it has ended" end
  local n, err = write(self.fd, line)
  if n == #line then return true end
  return nil, "watchdog: " .. (err or "short write")
end

function M:group(pgid)
  if self.fd and self.shared:add(pgid) then return true end
  return tell(self, "+" .. pgid .. "\n")
end

function M:ungroup(pgid)
  if self.fd and self.shared:remove(pgid) then return true end
  return tell(self, "-" .. pgid .. "\n")
end

-- A clean end: the watchdog exits at once and is reaped here, so it never lingers
-- as a zombie under whoever reaps for lrun's parent.
function M:bye()
  if not self.fd then return end
  if alive(self) then
    write(self.fd, "bye\n")
    core.close(self.fd)
    core.wait(self.pid)
  else
    core.close(self.fd)
  end
  self.fd = nil
  self.shared:close()
end

-- Our direct children now (orphans re-parented to lrun, the subreaper, show here).
local function children()
  local me = core.getpid()
  local f = io.open(string.format("/proc/%d/task/%d/children", me, me))
  if not f then return nil end
  local kids = {}
  for pid in f:read("a"):gmatch("%d+") do kids[#kids + 1] = tonumber(pid) end
  f:close()
  return kids
end

-- At the end of a run, what escaped every job's process group (a setsid'ed
-- grandchild whose parent has gone) is a child of lrun: TERM it with its group,
-- KILL after `grace`, reap, and repeat for what its going re-parents to us.
function M:reap_escapees(grace, run_id)
  local kids = children()
  if not kids then   -- no /proc/PID/task/TID/children here: fall back to the tags
    return M.sweep(run_id, "KILL")
  end
  local deadline, sig = core.now() + grace, "TERM"
  while true do
    local n = 0
    for _, pid in ipairs(kids) do
      if pid ~= self.pid then
        n = n + 1
        core.killpg(pid, sig)
        core.kill(pid, sig)
      end
    end
    if n == 0 then return true end
    core.sleep(0.02)
    core.reap()
    if sig == "TERM" and core.now() >= deadline then sig = "KILL" end
    kids = children()
  end
end

return M
