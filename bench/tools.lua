-- tools.lua -- every way of running "these N jobs, J at a time" that the benchmark
-- compares. A tool's argv(w) returns the command for workload w, or nil when the tool
-- cannot express it (a DAG through xargs, -j2 through os.execute).
--
-- w = { n=, j=, prog={argv}, list=, dag=, makefile=, jobfile= } (paths from gen.lua)
-- `scale`: slow peers run a fraction of the jobs (at least 100) to keep `make bench`
-- short; every figure is per job, so the ratios are unaffected but for start-up costs
-- spread over fewer jobs (noted in RESULTS.md).
local util = require "util"

local R, W = util.root, util.work
local LUA = util.lua
local function bin(name) return W .. "/bin/" .. name end
local function drv(name) return R .. "/bench/drivers/" .. name end
local function cat(a, b) return table.move(b, 1, #b, #a + 1, a) end

local M = {}

M.list = {
  { key = "c-posix", name = "C posix_spawn", baseline = true,
    argv = function(w)
      return cat({ bin "spawnc", "-m", "posix_spawn", "-j", w.j,
        w.dag and "-d" or "-n", w.dag or w.n, "--" }, w.prog)
    end },
  { key = "c-vfork", name = "C vfork+exec",
    argv = function(w)
      return cat({ bin "spawnc", "-m", "vfork", "-j", w.j,
        w.dag and "-d" or "-n", w.dag or w.n, "--" }, w.prog)
    end },
  { key = "lrun", name = "lrun", lrun = true,
    argv = function(w)
      return { R .. "/scripts/lrun", "-j", w.j, "-q", w.jobfile }
    end },
  { key = "lp-wait", name = "lprocess spawn/wait",
    argv = function(w)
      if w.dag then return nil end
      return cat({ LUA, drv "lprocess.lua", "wait", w.j, w.n, "--" }, w.prog)
    end },
  { key = "lp-loop", name = "lprocess event loop",
    argv = function(w)
      return cat({ LUA, drv "lprocess.lua", "loop", w.j, w.dag and ("@" .. w.dag) or w.n, "--" }, w.prog)
    end },
  { key = "lp-core", name = "lprocess.core spawn/wait",
    argv = function(w)
      if w.dag then return nil end
      return cat({ LUA, drv "lprocess.lua", "core", w.j, w.n, "--" }, w.prog)
    end },
  { key = "make", name = "make -j",
    argv = function(w) return { "make", "-s", "-j", w.j, "-f", w.makefile } end },
  { key = "xargs", name = "xargs -P", scale = 0.5,
    argv = function(w)
      if w.dag then return nil end
      return cat({ "xargs", "-P", w.j, "-n", "1", "-a", w.list }, w.prog)
    end },
  { key = "parallel", name = "GNU parallel", scale = 0.05, needs = "parallel",
    argv = function(w)
      if w.dag then return nil end
      return cat(cat({ "parallel", "--will-cite", "-j", w.j }, w.prog), { "::::", w.list })
    end },
  { key = "python", name = "Python subprocess", scale = 0.5, needs = "python3",
    argv = function(w)
      return cat({ util.python(), drv "py_subprocess.py", w.j, w.dag and ("@" .. w.dag) or w.n, "--" }, w.prog)
    end },
  { key = "sh", name = "sh loop", scale = 0.5,
    argv = function(w)
      if w.dag then return nil end
      return cat({ "/bin/sh", drv "shloop.sh", w.j, w.n }, w.prog)
    end },
  { key = "lua-exec", name = "Lua os.execute", scale = 0.5,
    argv = function(w)
      if w.dag or tonumber(w.j) ~= 1 then return nil end
      return cat({ LUA, drv "lua_os.lua", "execute", 1, w.n, "--" }, w.prog)
    end },
  { key = "lua-popen", name = "Lua io.popen", scale = 0.5,
    argv = function(w)
      if w.dag then return nil end
      return cat({ LUA, drv "lua_os.lua", "popen", w.j, w.n, "--" }, w.prog)
    end },
}

M.by_key = {}
for _, t in ipairs(M.list) do M.by_key[t.key] = t end

return M
