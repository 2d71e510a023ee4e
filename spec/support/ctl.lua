-- Helpers of the specs that work with a running lrun (control_spec, resume_spec,
-- http_spec): start lrun in the background on a job file written by the test, wait
-- for its control socket, and run `lrun ctl` against it.
local H = require "helper"
local lp, core = H.lp, H.core

local C = {}

C.LRUN = H.root .. "/scripts/lrun"

-- Write a job file into dir; -> its path
function C.jobfile(dir, text, name)
  local path = dir .. "/" .. (name or "jobs.lua")
  H.spit(path, text)
  return path
end

-- Start lrun on `file` with its control socket at dir/c.sock; -> Process, socket path.
-- Waits until the socket answers (the graph has been started by then).
function C.start(t, dir, file, extra)
  local sock = dir .. "/c.sock"
  local argv = { C.LRUN, "--control", sock }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = file
  argv.setenv = { LPROCESS_CPATH = H.cpath }
  argv.stdout = dir .. "/out"
  argv.stderr = dir .. "/err"
  argv.cwd = dir
  local p = t:spawn(argv)
  local control = require "lrun.control"
  assert(H.wait_until(function() return control.query(sock, "pid", 1) end, 20),
    "lrun did not answer on its control socket: " .. (H.slurp(dir .. "/err") or ""))
  return p, sock
end

-- `lrun ctl ARGS...` to the end -> { code =, stdout =, stderr = }
function C.ctl(sock, ...)
  local argv = { C.LRUN, "ctl", "--control", sock, ... }
  argv.setenv = { LPROCESS_CPATH = H.cpath }
  argv.timeout = 30
  local res = assert(lp.run(argv))
  res.code = lp.exit_code(res.status)
  return res
end

-- One request as a table -> the reply table
function C.req(sock, req)
  return assert(require("lrun.control").request(sock, req, 10))
end

-- The state of one unit, by the JSON status
function C.state(sock, name)
  for _, u in ipairs(C.req(sock, { cmd = "status" }).result) do
    if u.name == name then return u end
  end
end

-- Wait for a unit to reach one of the states (a set) -> its row | false
function C.wait_state(sock, name, states, timeout)
  return H.wait_until(function()
    local u = C.state(sock, name)
    return u and states[u.state] and u
  end, timeout or 15)
end

-- Ask lrun to stop and wait for it -> its exit code
function C.finish(p, sock)
  pcall(C.req, sock, { cmd = "shutdown" })
  local st = H.wait_pid(p.pid, 20)
  return st and lp.exit_code(st)
end

-- Send raw bytes on a fresh connection and read to EOF (at most `timeout`) -> text
function C.raw(sock, bytes, timeout)
  local fd = assert(core.unix_connect(sock))
  if bytes and #bytes > 0 then
    local pos = 1
    while pos <= #bytes do
      local n = core.send(fd, bytes:sub(pos))
      if n == nil then break end
      if n == false then core.poll({ [fd] = "w" }, 1) else pos = pos + n end
    end
  end
  local chunks, deadline = {}, core.now() + (timeout or 10)
  while core.now() < deadline do
    core.poll({ [fd] = "r" }, deadline - core.now())
    local s = core.recv(fd, 65536)
    if s == nil or s == "" then break end
    if s then chunks[#chunks + 1] = s end
  end
  core.close(fd)
  return table.concat(chunks)
end

return C
