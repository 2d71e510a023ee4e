-- The double fork (the tutorial's approach 3), with the core primitives only.
--
--   lua5.4 examples/reaping/doublefork.lua [SECONDS]    (the daemon lives 5 s by default)
--
-- The parent forks a child and reaps it at once; the child starts a new session and
-- forks the grandchild, then exits. The grandchild -- the daemon -- has no parent
-- left to wait for it: it is re-parented to init (or to the nearest "subreaper"
-- ancestor, see lprocess.core.subreaper), which reaps it when it ends. So nobody
-- leaves a zombie. The tutorial's version gets a few things wrong that are right here:
-- * umask 022, not 0: a daemon should not create world-writable files by default;
-- * stdio goes to /dev/null with dup2 *before* the daemon runs anything;
-- * the parent learns the daemon's pid -- and that its exec really succeeded --
--   through a close-on-exec pipe: it reads the pid, then EOF at the exec (or an
--   error message if the exec failed). No pidfile polling, no sleep.
-- * stdout is flushed before each fork and children leave with _exit, so nothing
--   buffered is written twice.
-- (lprocess.daemon.daemonize does all this and more: pidfile, lock, logs.)
local core = require "lprocess.core"

io.stdout:setvbuf("line")
local seconds = tostring(tonumber(arg[1]) or 5)
local me = core.getpid()
print(("parent %d: forking"):format(me))

local r, w = assert(core.pipe())            -- close-on-exec, both ends
local child = assert(core.fork())
if child == 0 then
  -- the first child: a new session (so the daemon has no controlling terminal),
  -- then the grandchild, then leave at once
  core.close(r)
  local sid = assert(core.setsid())
  local daemon = assert(core.fork())
  if daemon ~= 0 then
    print(("first child %d: new session %d, forked the daemon %d, exiting"):format(
      core.getpid(), sid, daemon))
    io.stdout:flush()
    core._exit(0)
  end
  -- the daemon: not a session leader (pid ~= sid), so it can never acquire a
  -- controlling terminal by opening one
  core.chdir("/")
  core.umask(tonumber("022", 8))
  local null = assert(core.open("/dev/null", "rw"))
  for fd = 0, 2 do core.dup2(null, fd) end
  core.close(null)
  core.write(w, tostring(core.getpid()) .. "\n")
  local _, msg = core.exec("sleep", { "sleep", seconds })   -- returns only on failure
  core.write(w, "exec failed: " .. tostring(msg) .. "\n")
  core._exit(127)
end

core.close(w)
local st = assert(core.wait(child))          -- the first child ends at once
print(("parent %d: first child %d reaped at once: %s %d"):format(me, child, st.how, st.code))

local said = {}
while true do                                -- until EOF: the daemon exec'd (or failed)
  local s = core.read(r)
  if not s or s == "" then break end
  said[#said + 1] = s
end
core.close(r)
local pid = tonumber(table.concat(said):match("^(%d+)\n$"))
if not pid then
  print("parent: the daemon did not start: " .. table.concat(said))
  os.exit(1)
end
local stat = io.open("/proc/" .. pid .. "/stat"):read("a")
local ppid, pgrp, session = stat:match("^%d+ %(.-%) %a (%d+) (%d+) (%d+)")
print(("parent %d: daemon %d is running sleep %s; its parent is now %s (init or the nearest "
  .. "subreaper), its session %s"):format(me, pid, seconds, ppid, session))
local _, _, errno = core.wait(-1, { nohang = true })
print(("parent %d: %s"):format(me, errno == core.errno.ECHILD and "no child left, so no zombie"
  or "children left over!"))
os.exit(errno == core.errno.ECHILD and tonumber(ppid) ~= me and tonumber(pgrp) ~= pid and 0 or 1)
