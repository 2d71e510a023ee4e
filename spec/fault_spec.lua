-- Fault injection (issue 9, "Prove it"): lrun runs a small job file with one libc call
-- made to fail by build/test/faultshim.so (spec/support/faultshim.c, LD_PRELOAD into
-- the lua5.4 that runs lrun only). Whatever fails, lrun must say so (exit status not 0,
-- a `lrun:` message, never a Lua traceback or "internal error"), stop what it started,
-- and leave no zombie and no survivor behind.
--
-- The Nth call is counted in lrun as it is now: the calls lrun makes before its first
-- job starts (its watchdog pipe, the signal watcher re-made for each handled signal)
-- decide which call N hits.
local H = require "helper"
local core = H.core

local JOBS = [[
local T = assert(os.getenv("T"))
local rec = "echo $$ >> " .. T .. "/pids; "
job "long" { cmd = rec .. "echo long-out; exec sleep 2" }
job "short" { cmd = rec .. "echo short-out" }
job "after" { cmd = rec .. "echo after-out", needs = "short" }
]]

local function shim()
  local out = H.cpath:gsub("/%?%.so$", "")
  local path = out .. "/test/faultshim.so"
  if not core.stat(path) then
    os.execute(string.format("make -s --no-print-directory OUT='%s' testprogs >/dev/null", out))
  end
  assert(core.stat(path), "missing " .. path .. " (make testprogs)")
  return path
end

local function lines(path)
  local s = H.slurp(path) or ""
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- Runs lrun on JOBS under the fault; returns its output (stdout and stderr), status,
-- the faults injected (lines of the shim's log) and the pids of the jobs it started.
local function lrun_with(t, dir, fault)
  H.spit(dir .. "/jobs.lua", JOBS)
  local env = H.lua_env {
    T = dir, LD_PRELOAD = shim(), FAULT_CALL = fault.call, FAULT_NTH = tostring(fault.nth),
    FAULT_COUNT = tostring(fault.count or 1), FAULT_ERRNO = fault.errno or "ENOMEM",
    FAULT_LOG = dir .. "/log",
  }
  -- make sanitize: the shim comes before the ASan runtime linked into lua5.4
  if H.sanitize then env.ASAN_OPTIONS = (env.ASAN_OPTIONS or "") .. ":verify_asan_link_order=0" end
  local r, w = assert(core.pipe())
  local pid = t:cspawn { argv = { "lua5.4", H.root .. "/scripts/lrun", "--color", "never",
    dir .. "/jobs.lua" }, env = env, fds = { [1] = w, [2] = w } }
  core.close(w)
  local out, deadline = {}, core.now() + 60
  while core.now() < deadline do
    if not core.poll({ [r] = "r" }, deadline - core.now())[r] then break end
    local s = core.read(r)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  core.close(r)
  local st = H.wait_pid(pid, math.max(deadline - core.now(), 1))
  local pids = {}
  for _, l in ipairs(lines(dir .. "/pids")) do pids[#pids + 1] = tonumber(l) end
  t:defer(function()
    for _, p in ipairs(pids) do
      if H.alive(p) then core.kill(p, "KILL") end
    end
  end)
  return table.concat(out), st, lines(dir .. "/log"), pids
end

local CASES = {
  { call = "clone", nth = 1, count = 0,
    why = "no job can ever be started: each is retried for a while, then fails" },
  { call = "clone", nth = 2, errno = "EPERM",
    why = "the second job cannot be started (not transient); the first ends" },
  { call = "clone", nth = 2, errno = "EAGAIN", ok = "trying again",
    why = "a transient failure (hardening 14) is retried, once said, and the run succeeds" },
  { call = "pipe2", nth = 2, why = "a job's output pipe cannot be made" },
  { call = "pipe2", nth = 1, why = "the watchdog's pipe: no run without it" },
  { call = "signalfd", nth = 1, why = "the loop's signal descriptor: no run without it" },
  { call = "epoll_ctl", nth = 6, why = "the signal descriptor remade for SIGHUP's " ..
    "handler cannot be watched: lrun says so instead of never hearing SIGCHLD" },
  { call = "epoll_pipe", nth = 1, why = "a job's output pipe cannot be watched: that " ..
    "job fails before it starts" },
  { call = "mmap_shared", nth = 1, why = "the table of groups lrun shares with its " ..
    "watchdog cannot be made: no run without it" },
  { call = "stdout", nth = 2, count = 0, errno = "EIO", why = "job output lost on lrun's stdout " ..
    "fails the run, with a message" },
}

describe("lrun under fault injection", function()
  for _, c in ipairs(CASES) do
    local name = string.format("%s fails (call %d%s, %s): %s", c.call, c.nth,
      c.count == 0 and " on" or "", c.errno or "ENOMEM", c.why)
    it(name, function()
      local t = H.track(finally)
      local dir = H.tmpdir()
      t:defer(function() H.rm_rf(dir) end)   -- one finally per test: the tracker's
      local before = {}
      for _, k in ipairs(H.children_of()) do before[k] = true end

      local out, st, fired, pids = lrun_with(t, dir, c)
      assert.is_true(#fired > 0, "the fault was never injected: " .. out)
      assert.is_table(st, "lrun did not end within 60 s: " .. out)
      if c.ok then
        assert.is_true(st.how == "exit" and st.code == 0, H.describe(st) .. "\n" .. out)
        assert.matches("lrun: .*" .. c.ok, out)
      else
        assert.is_true(st.how == "exit" and st.code ~= 0 and st.code ~= 70,
          "want a failure exit (not 0, not 70), got " .. H.describe(st) .. "\n" .. out)
        assert.matches("lrun: ", out)
      end
      assert.is_nil(out:find("traceback", 1, true), out)
      assert.is_nil(out:find("internal error", 1, true), out)

      -- nothing of the run is left: jobs dead, and no process of lrun's (a job, its
      -- watchdog) re-parented to us, alive or unreaped
      for _, p in ipairs(pids) do assert.is_false(H.alive(p), "job " .. p .. " survived") end
      local left = H.wait_until(function()
        local l = {}
        for _, k in ipairs(H.children_of()) do
          if not before[k] and H.alive(k) then l[#l + 1] = k end
        end
        return #l == 0 and l
      end, 10)
      assert.truthy(left, "processes of the run survived lrun")
      local z = {}
      for _, k in ipairs(H.zombies_of()) do
        if not before[k] then
          z[#z + 1] = k
          core.wait(k)
        end
      end
      assert.same({}, z, "zombies left by lrun")
    end)
  end
end)
