-- util.lua -- running and timing commands for the benchmark, through lprocess itself.
local lp = require "lprocess"
local core = lp.core

local M = {}

M.root = require "bench_root"
M.work = M.root .. "/build/bench"
M.lua = os.getenv("LUA") or "lua5.4"

local devnull_w = assert(core.open("/dev/null", "w"))

-- Run argv to completion: stdout to /dev/null (or opts.stdout, a path), stderr kept
-- in a log file. Returns {wall=seconds, status=, ok=, log=} -- wall measured around
-- spawn..reap with the monotonic clock.
function M.run(argv, opts)
  opts = opts or {}
  local sargv = {}
  for i, a in ipairs(argv) do sargv[i] = tostring(a) end
  argv = sargv
  local log = M.work .. "/last.log"
  local errfd = assert(core.open(log, "wct", 420))
  local outfd = devnull_w
  if opts.stdout then outfd = assert(core.open(opts.stdout, "wct", 420)) end
  local t0 = core.now()
  local pid, err = core.spawn { argv = argv, fds = { [1] = outfd, [2] = errfd },
    cwd = opts.cwd, env = opts.env }
  if not pid then
    core.close(errfd)
    return { ok = false, wall = 0, err = err, log = err }
  end
  local st = assert(core.wait(pid))
  local wall = core.now() - t0
  core.close(errfd)
  if outfd ~= devnull_w then core.close(outfd) end
  local f = io.open(log)
  local text = f and f:read("a") or ""
  if f then f:close() end
  return { ok = st.how == "exit" and st.code == 0, wall = wall, status = st, log = text }
end

-- Run several argvs at once (for measurements that do not depend on timing, such as
-- instruction counts); returns their results in order, as M.run.
function M.run_all(list)
  local procs = {}
  for i, argv in ipairs(list) do
    local sargv = {}
    for k, a in ipairs(argv) do sargv[k] = tostring(a) end
    local log = ("%s/run-all-%d.log"):format(M.work, i)
    local errfd = assert(core.open(log, "wct", 420))
    local pid, err = core.spawn { argv = sargv, fds = { [1] = devnull_w, [2] = errfd } }
    core.close(errfd)
    procs[i] = { pid = pid, err = err, log = log }
  end
  local out = {}
  for i, p in ipairs(procs) do
    if not p.pid then
      out[i] = { ok = false, log = p.err }
    else
      local st = assert(core.wait(p.pid))
      out[i] = { ok = st.how == "exit" and st.code == 0, status = st, log = M.readfile(p.log) or "" }
    end
  end
  return out
end

-- Run a command line through /bin/sh (for pipelines), as M.run.
function M.sh(cmdline, opts)
  return M.run({ "/bin/sh", "-c", cmdline }, opts)
end

-- stdout of argv as a string (nil on failure).
function M.capture(argv)
  local opts = table.move(argv, 1, #argv, 1, {})
  opts.stdin = "null"
  local res = lp.run(opts)
  if not res or res.status.how ~= "exit" or res.status.code ~= 0 then return nil end
  return res.stdout
end

-- The real Python interpreter: `python3` may be a shim (pyenv) whose own start-up
-- would be charged to Python's subprocess.
local python
function M.python()
  if python == nil then
    python = M.have("python3") and M.capture({ "python3", "-c", "import sys; print(sys.executable)" })
    python = python and python:gsub("%s+$", "") or false
  end
  return python or nil
end

function M.have(prog)
  return os.execute("command -v " .. prog .. " >/dev/null 2>&1") == true
end

function M.q(s)
  s = tostring(s)
  if s:match("^[%w%./_=:,@+-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.cmdline(argv)
  local t = {}
  for i, a in ipairs(argv) do t[i] = M.q(a) end
  return table.concat(t, " ")
end

-- Show argv relative to the repository, for RESULTS.md.
function M.show(argv)
  return (M.cmdline(argv):gsub(M.root:gsub("%p", "%%%0") .. "/", ""))
end

function M.readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.writefile(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Rotate `list` by `k` places: round r runs the tools starting from a different one,
-- so no tool always runs first (or right after the slowest).
function M.rotate(list, k)
  local out, n = {}, #list
  for i = 1, n do out[i] = list[(i - 1 + k) % n + 1] end
  return out
end

function M.log(fmt, ...)
  io.stderr:write(("bench: " .. fmt .. "\n"):format(...))
end

M.now = core.now
return M
