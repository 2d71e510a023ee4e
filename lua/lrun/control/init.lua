--- lrun.control: the control socket every lrun listens on -- what `lrun ctl`,
-- `lrun --status/--stop` and the status page's buttons talk to.
--
--   local server, err = control.start(ctx, path)  -- serve ctx (lrun.control.commands)
--   local server = control.serve(loop, path, function(cmd) return "text\n" end)
--   server:close()                                -- also removes the socket file
--   local reply, err = control.query(path, "status", 5)      -- a text command
--   local obj, err = control.request(path, { cmd = "status" }, 5)  -- a JSON one
--   control.default_path(o, jobfile_path)         -- where a run's socket is
--
-- Modules: protocol (the JSON lines), server (the socket, its limits, SO_PEERCRED),
-- conn (one connection over the loop), commands (what each request does), bus (the
-- event stream, fanned out), api (the `lrun` table of eval and add_job), client
-- (`lrun ctl`).
local core = require "lprocess.core"
local commands = require "lrun.control.commands"
local protocol = require "lrun.control.protocol"
local server = require "lrun.control.server"

local M = {}

M.format_states = commands.format_states

-- A request line -> the reply text (nil when commands.run streams).
local function answerer(ctx)
  return function(line, stream)
    local req, err = protocol.decode(line)
    if not req then return protocol.error(err) end
    local ok, result, rerr = pcall(commands.run, ctx, req, stream)
    if not ok then rerr, result = tostring(result), nil end
    if req.text then
      if result == nil then return "error: " .. tostring(rerr) .. "\n" end
      return tostring(result)
    end
    if result == commands.STREAM then return nil end
    if result == nil then return protocol.error(rerr, req.id) end
    return protocol.reply(result, req.id)
  end
end
M.answerer = answerer

--- start(ctx, path) -> server | nil, message
function M.start(ctx, path)
  return server.serve(ctx.loop, path, answerer(ctx))
end

--- serve(loop, path, handler) -> server | nil, message: text commands only;
--- handler(cmd) -> reply text | nil (unknown command).
function M.serve(loop, path, handler)
  if type(handler) ~= "function" then error("serve: handler must be a function", 2) end
  return server.serve(loop, path, function(line)
    local cmd = line:match("^%s*(.-)%s*$")
    local ok, reply = pcall(handler, cmd)
    if not ok then return "error: " .. tostring(reply) .. "\n" end
    if reply == nil then return string.format("error: unknown command '%s'\n", cmd) end
    return tostring(reply)
  end)
end

-- A short stable name for a job file's path (FNV-1a, 32 bits).
local function hash(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return string.format("%08x", h)
end

--- default_path(o, jobfile) -> the control socket's path: --control PATH, else
--- PIDFILE.sock, else $XDG_RUNTIME_DIR/lrun-HASH.sock (HASH of the job file's path;
--- /tmp/lrun-UID/ when XDG_RUNTIME_DIR is unset), so that `lrun ctl` run beside the
--- job file finds it. -> path | nil, message
function M.default_path(o, jobfile)
  if o.control then return o.control end
  if o.pidfile then return o.pidfile .. ".sock" end
  if not jobfile then return nil, "no job file: give --control PATH or --pidfile FILE" end
  local dir = os.getenv("XDG_RUNTIME_DIR")
  if not dir or dir == "" then
    dir = "/tmp/lrun-" .. core.getuid()
    core.mkdir(dir, 448)   -- 0700; an existing one must be ours and private
    local st = core.lstat(dir)
    if not st or st.type ~= "directory" or st.uid ~= core.getuid() or st.mode & 63 ~= 0 then
      return nil, dir .. " is not a private directory of ours"
    end
  end
  return string.format("%s/lrun-%s.sock", dir, hash(jobfile))
end

-- Send `out` whole and read to EOF within the deadline -> text | nil, message
local function exchange(fd, path, out, deadline, first_line)
  local function wait(ev)
    return next(core.poll({ [fd] = ev }, math.max(0, deadline - core.now()))) ~= nil
  end
  local pos = 1
  while pos <= #out do
    local n, serr = core.send(fd, pos == 1 and out or out:sub(pos))
    if n == nil then return nil, serr end
    if n == false then
      if not wait("w") then return nil, string.format("control socket %s: timed out", path) end
    else
      pos = pos + n
    end
  end
  local chunks = {}
  while true do
    local s, rerr = core.recv(fd, 65536)
    if s == nil then return nil, rerr end
    if s == "" then break end
    if s == false then
      if not wait("r") then
        return nil, string.format("control socket %s: no answer in time", path)
      end
    else
      chunks[#chunks + 1] = s
      if first_line and s:find("\n", 1, true) then break end
    end
  end
  return table.concat(chunks)
end

--- connect(path) -> fd | nil, message
function M.connect(path)
  if #path > server.SUN_PATH_MAX then return nil, server.too_long(path) end
  local fd, err = core.unix_connect(path)
  if not fd then return nil, "control socket " .. err end
  return fd
end

--- query(path, cmd[, timeout]) -> reply | nil, message. Waits at most `timeout`
--- seconds (default 5) for the whole answer, by poll(), never by sleeping.
function M.query(path, cmd, timeout)
  local fd, err = M.connect(path)
  if not fd then return nil, err end
  local reply, qerr = exchange(fd, path, cmd .. "\n", core.now() + (timeout or 5))
  core.close(fd)
  return reply, qerr
end

--- request(path, req[, timeout]) -> the reply object | nil, message
function M.request(path, req, timeout)
  local fd, err = M.connect(path)
  if not fd then return nil, err end
  local reply, qerr = exchange(fd, path, protocol.encode(req), core.now() + (timeout or 5), true)
  core.close(fd)
  if not reply then return nil, qerr end
  local line = reply:match("^[^\n]*")
  if line == "" then return nil, "control socket " .. path .. ": no answer" end
  return protocol.parse(line)
end

return M
