-- Shared by every spec (named in .busted). The busted process becomes a child
-- subreaper so that grandchildren orphaned by a test are re-parented here, where the
-- helpers can count and reap them, instead of piling up as zombies under PID 1.
--
-- Specs that want the helpers: `local H = require "helper"`. Everything here looks
-- at the real system: /proc for zombies, descriptors and signal masks, pidfds for
-- "this process has ended", no mocks.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
local core = require "lprocess.core"
core.subreaper(true)

if package.loaded.helper then return package.loaded.helper end

local lp = require "lprocess"
local say = require "say"
local luassert = require "luassert"

local H = { core = core, lp = lp, mypid = core.getpid() }

---------------------------------------------------------------------------------------
-- paths: the repository and the module build this run loaded (build/ or build-san/)

H.root = core.getcwd()
do
  local so = package.searchpath("lprocess.core", package.cpath)
  local dir = so and so:match("^(.*)/lprocess/core%.so$") or "build"
  if dir:sub(1, 1) ~= "/" then dir = H.root .. "/" .. dir end
  H.cpath = dir .. "/?.so"
  H.lpath = H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua"
  H.sanitize = dir:find("build%-san") ~= nil
end

-- Our environment (LD_PRELOAD of make sanitize included) plus LUA_PATH/LUA_CPATH for
-- a Lua child that must load this checkout of lprocess; `extra` entries override
-- (false removes).
function H.lua_env(extra)
  local env = core.environ()
  env.LUA_PATH, env.LUA_CPATH = H.lpath .. ";;", H.cpath .. ";;"
  for k, v in pairs(extra or {}) do env[k] = v or nil end
  return env
end

-- argv running `code` under lua5.4 with this checkout on its paths.
function H.lua(code, ...)
  local pre = string.format("package.path=%q..';'..package.path package.cpath=%q..';'..package.cpath ",
    H.lpath, H.cpath)
  return { "lua5.4", "-e", pre .. code, ... }
end

---------------------------------------------------------------------------------------
-- /proc

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
H.slurp = slurp

function H.spit(path, data, mode)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
  if mode then assert(os.execute(string.format("chmod %o '%s'", mode, path))) end
  return path
end

-- /proc/PID/stat -> {pid=, comm=, state=, ppid=, pgrp=, session=} | nil (gone)
function H.stat(pid)
  local s = slurp("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local comm, rest = s:match("^%d+ %((.*)%) (.*)$")
  if not comm then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return { pid = pid, comm = comm, state = f[1], ppid = tonumber(f[2]),
    pgrp = tonumber(f[3]), session = tonumber(f[4]) }
end

-- /proc/PID/status as a table of its fields (strings)
function H.status_fields(pid)
  local s = slurp("/proc/" .. pid .. "/status")
  if not s then return nil end
  local t = {}
  for k, v in s:gmatch("([%w_]+):%s*([^\n]*)") do t[k] = v end
  return t
end

-- Signals of a hex mask from /proc/PID/status (SigBlk, SigIgn...), as a set.
function H.sigset(hex)
  local set, n = {}, tonumber(hex, 16)
  for sig = 1, 63 do
    if (n >> (sig - 1)) & 1 == 1 then set[sig] = true end
  end
  return set
end

-- Direct children of pid (default: this process), from /proc/PID/task/*/children.
function H.children_of(pid)
  pid = pid or H.mypid
  local kids = {}
  local s = slurp(string.format("/proc/%d/task/%d/children", pid, pid))
  if s then
    for k in s:gmatch("%d+") do kids[#kids + 1] = tonumber(k) end
    return kids
  end
  -- no CONFIG_PROC_CHILDREN: scan /proc
  local ls = assert(io.popen("ls /proc"))
  for name in ls:lines() do
    local n = tonumber(name)
    local st = n and H.stat(n)
    if st and st.ppid == pid then kids[#kids + 1] = n end
  end
  ls:close()
  return kids
end

-- Zombie children of pid (default: this process) as an array of pids, optionally
-- only those in the set `among` ({[pid]=true}).
function H.zombies_of(pid, among)
  local z = {}
  for _, k in ipairs(H.children_of(pid)) do
    local st = H.stat(k)
    if st and st.state == "Z" and (not among or among[k]) then z[#z + 1] = k end
  end
  table.sort(z)
  return z
end

-- Zombie children of ours as a set, and those that appeared since such a set.
function H.zombie_set()
  local s = {}
  for _, pid in ipairs(H.zombies_of()) do s[pid] = true end
  return s
end

function H.new_zombies(before)
  local z = {}
  for _, pid in ipairs(H.zombies_of()) do
    if not before[pid] then z[#z + 1] = pid end
  end
  return z
end

-- The open descriptors of pid, sorted, from /proc/PID/fd.
function H.fds_of(pid)
  local ls = assert(io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null"))
  local fds = {}
  for name in ls:lines() do fds[#fds + 1] = tonumber(name) end
  ls:close()
  table.sort(fds)
  return fds
end

-- Our own descriptors as a set, after a full GC (collected Lua files close theirs).
-- Probed with dup() up to the table's size rather than listed by a child `ls`: the
-- pipe to that child would itself show up, racing with its closing.
function H.own_fds()
  collectgarbage()
  collectgarbage()
  local size = tonumber(H.status_fields(H.mypid).FDSize) or 1024
  local set = {}
  for fd = 0, size - 1 do
    local d = core.dup(fd)
    if d then
      core.close(d)
      set[fd] = true
    end
  end
  return set
end

-- Descriptors in our table now that were not in `before` (a set from own_fds).
function H.new_fds(before)
  local new = {}
  for fd in pairs(H.own_fds()) do
    if not before[fd] then new[#new + 1] = fd end
  end
  table.sort(new)
  return new
end

function H.alive(pid)
  local st = H.stat(pid)
  return st ~= nil and st.state ~= "Z" and st.state ~= "X"
end

---------------------------------------------------------------------------------------
-- waiting on real events

-- Poll pred() until it returns a true value or `timeout` seconds pass; returns that
-- value, or false. Between checks it blocks in poll() on `fds` (an array: readiness
-- there is the event pred is waiting for), or, with no descriptor to watch, sleeps
-- 1 ms doubling to 50 ms.
function H.wait_until(pred, timeout, fds)
  local deadline = core.now() + (timeout or 10)
  local nap = 0.001
  while true do
    local v = pred()
    if v then return v end
    local left = deadline - core.now()
    if left <= 0 then return false end
    if fds and #fds > 0 then
      local set = {}
      for _, fd in ipairs(fds) do set[fd] = "r" end
      core.poll(set, math.min(left, 0.5))
    else
      core.sleep(math.min(nap, left))
      nap = math.min(nap * 2, 0.05)
    end
  end
end

-- Block until pid (a child or re-parented orphan) ends, at most `timeout` seconds,
-- through its pidfd; then reap it. -> status | nil, "timeout"
function H.wait_pid(pid, timeout)
  local fd = core.pidfd_open(pid)
  if fd then
    local ready = core.poll({ [fd] = "r" }, timeout or 10)
    core.close(fd)
    if not ready[fd] then return nil, "timeout" end
  end
  return lp.wait(pid)
end

-- Read a line from a Lua file with a deadline (the file is a pipe from a child).
function H.read_line(f, timeout)
  local fd = core.fileno(f)
  local ready = core.poll({ [fd] = "r" }, timeout or 10)
  if not next(ready) then return nil, "timeout" end
  return f:read("l")
end

---------------------------------------------------------------------------------------
-- a tracker of what a test spawned, reaped in `finally`

local Tracker = {}
Tracker.__index = Tracker

-- local t = H.track(finally): spawn through t (or t:add pids/Processes); when the test
-- ends, pass or fail, whatever is still running is SIGKILLed (with its group when it
-- leads one) and reaped, and t:defer'ed cleanups run.
function H.track(finally_fn)
  local t = setmetatable({ list = {}, after = {} }, Tracker)
  if finally_fn then finally_fn(function() t:cleanup() end) end
  return t
end

function Tracker:add(x)
  self.list[#self.list + 1] = x
  return x
end

function Tracker:spawn(opts)
  local p, err = lp.spawn(opts)
  assert(p, err)
  return self:add(p)
end

-- raw core.spawn; returns the pid (and pidfd when asked)
function Tracker:cspawn(opts)
  local pid, pidfd = core.spawn(opts)
  assert(pid, pidfd)
  self:add(pid)
  if opts.pidfd and pidfd then self:defer(function() core.close(pidfd) end) end
  return pid, pidfd
end

function Tracker:defer(fn)
  self.after[#self.after + 1] = fn
end

local function ours(pid)
  local st = H.stat(pid)
  return st ~= nil and st.ppid == H.mypid
end

function Tracker:cleanup()
  local groups = {}
  local mygroup = core.getpgid(0)
  for i = #self.list, 1, -1 do
    local x = self.list[i]
    local pid = type(x) == "number" and x or x.pid
    local leader = type(x) == "table" and x.pgid == x.pid or (H.stat(pid) or {}).pgrp == pid
    if leader and pid ~= mygroup then
      core.killpg(pid, "KILL")   -- the group outlives its leader: kill what is left
      groups[pid] = true
    end
    if type(x) == "number" then
      if ours(x) then
        core.kill(x, "KILL")
        H.wait_pid(x, 10)
      end
    else
      if not x.status and ours(x.pid) then
        x:kill("KILL")
        x:wait()
      end
      x:close_pipes()
    end
  end
  -- group members re-parented to us (we are a subreaper) and killed above
  for _, k in ipairs(H.children_of()) do
    local st = H.stat(k)
    if st and groups[st.pgrp] then
      core.kill(k, "KILL")
      H.wait_pid(k, 10)
    end
  end
  self.list = {}
  for i = #self.after, 1, -1 do pcall(self.after[i]) end
  self.after = {}
end

---------------------------------------------------------------------------------------
-- temp files

function H.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -m 700 '" .. path .. "'"))
  return path
end

function H.rm_rf(path)
  if path and path:match("^/tmp/") then os.execute("rm -rf '" .. path .. "'") end
end

---------------------------------------------------------------------------------------
-- assertions: assert.exited(code, st), assert.signaled(sig, st), assert.alive(pid),
-- assert.oserror("ENOENT", nil, msg, errno), assert.zombiefree(pids)

local function describe(st)
  if type(st) ~= "table" then return tostring(st) end
  if st.how == "exit" then return "exit " .. tostring(st.code) end
  return string.format("%s %s%s", tostring(st.how), tostring(st.signame or st.signal),
    st.core and " (core dumped)" or "")
end
H.describe = describe

local function register(name, check)
  say:set("assertion." .. name .. ".positive", "%s")
  say:set("assertion." .. name .. ".negative", "not expected: %s")
  luassert:register("assertion", name, function(_, args)
    local ok, why = check(table.unpack(args, 1, args.n))
    for i = 1, args.n do args[i] = nil end
    args[1], args.n, args.nofmt = why, 1, { true }
    return ok
  end, "assertion." .. name .. ".positive", "assertion." .. name .. ".negative")
end

register("exited", function(code, st)
  return type(st) == "table" and st.how == "exit" and st.code == code,
    string.format("exit %s, got %s", tostring(code), describe(st))
end)

register("signaled", function(sig, st)
  local want = core.signals[sig] and type(sig) == "string" and core.signals[sig] or sig
  return type(st) == "table" and st.how == "signal" and st.signal == want,
    string.format("death by signal %s, got %s", tostring(sig), describe(st))
end)

register("alive", function(pid)
  local st = H.stat(pid)
  return H.alive(pid), string.format("process %s alive, it is %s", tostring(pid),
    st and ("in state " .. st.state) or "gone")
end)

register("oserror", function(errname, v, msg, errno)
  local want = core.errno[errname]
  return v == nil and type(msg) == "string" and errno == want,
    string.format("nil, message, %s (%s), got %s, %s, %s (%s)", errname, tostring(want),
      tostring(v), tostring(msg), tostring(errno), tostring(core.errno[errno or -1]))
end)

-- No zombie child of ours among `pids` (an array or set; nil: any child at all).
register("zombiefree", function(pids)
  local among
  if pids then
    among = {}
    for k, v in pairs(pids) do
      if type(v) == "number" then among[v] = true else among[k] = true end
    end
  end
  local z = H.zombies_of(H.mypid, among)
  return #z == 0, string.format("no zombie children, found %d: %s", #z,
    table.concat(z, " "))
end)

---------------------------------------------------------------------------------------
-- README checks: fenced blocks and verbatim quotes

local function text_lines(s)
  local t = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  if t[#t] == "" then t[#t] = nil end
  return t
end
H.lines_of = text_lines

-- Fenced blocks of markdown `text`: { lang =, body =, first =, marker = "examples/x" |
-- nil }, where marker comes from a `<!-- from: FILE -->` line just above the fence.
function H.md_blocks(text, where)
  local found, lines, i = {}, text_lines(text), 1
  while i <= #lines do
    local lang = lines[i]:match("^```(%S*)%s*$")
    if lang then
      local j = i + 1
      while lines[j] and lines[j] ~= "```" do j = j + 1 end
      assert(lines[j], "README.md: unclosed ``` block " .. (where or ("at its line " .. i)))
      found[#found + 1] = {
        lang = lang, body = table.concat(lines, "\n", i + 1, j - 1), first = lines[i + 1],
        marker = i > 1 and lines[i - 1]:match("^<!%-%- from: (%S+) %-%->$") or nil,
      }
      i = j + 1
    else
      i = i + 1
    end
  end
  return found
end

-- Does `body` appear in `file_text` as a run of whole lines? -> true | false, why
function H.verbatim(body, file_text)
  local want, have = text_lines(body), text_lines(file_text)
  local best, best_at = 0, nil
  for s = 1, #have - #want + 1 do
    local k = 0
    while k < #want and have[s + k] == want[k + 1] do k = k + 1 end
    if k == #want then return true end
    if k > best then best, best_at = k, s end
  end
  local bad = want[best + 1]
  return false, best_at
    and ("line %q differs from the file's %q"):format(bad, tostring(have[best_at + best]))
    or ("line %q is not in the file"):format(tostring(want[1]))
end

package.loaded.helper = H
return H
