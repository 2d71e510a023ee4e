-- lrun.control: the daemon's status socket -- a Unix stream socket beside the pidfile
-- (PIDFILE.sock), mode 0600 from the moment it exists.
--
--   local server = control.serve(loop, path, function(cmd) return "reply\n" end)
--   server:close()                                  -- also removes the socket file
--   local reply, err = control.query(path, "status", 5)
--
-- Protocol: the client sends one line, the command ("status", "stop", "pid"); the
-- server answers with text and closes the connection: EOF ends the reply. A handler
-- returning nil means "unknown command"; a handler error becomes "error: ..." (the
-- daemon goes on). Everything is driven by the caller's lprocess.loop; a client
-- that says nothing is dropped after a few seconds, and at most a few are served at
-- once, so no client can hold the daemon up.
local core = require "lprocess.core"

local M = {}

local MAX_REQUEST = 1024
local CLIENT_TIMEOUT = 5
local MAX_CLIENTS = 16
local SUN_PATH_MAX = 107        -- sizeof(sun_path) - 1 on Linux

local function too_long(path)
  return string.format("control socket path is too long (%d bytes, at most %d): %s",
    #path, SUN_PATH_MAX, path)
end

local Server = {}
Server.__index = Server

--- serve(loop, path, handler) -> server | nil, message
--- A stale socket file at path is replaced: the caller owns the pidfile, so no live
--- daemon can be serving there. Anything else at path is an error.
function M.serve(loop, path, handler)
  if type(handler) ~= "function" then error("serve: handler must be a function", 2) end
  if #path > SUN_PATH_MAX then return nil, too_long(path) end
  local st = core.lstat(path)
  if st then
    if st.type ~= "socket" then
      return nil, string.format("control socket %s exists and is not a socket", path)
    end
    core.unlink(path)
  end
  -- The umask decides the mode bind() gives the socket file: 0600 with no window in
  -- which another user could connect (a chmod afterwards would leave one).
  local old = core.umask(127)    -- 0177
  local fd, err = core.unix_listen(path, "stream")
  core.umask(old)
  if not fd then return nil, "control socket " .. err end
  local self = setmetatable({ loop = loop, fd = fd, path = path, handler = handler,
    clients = {}, nclients = 0 }, Server)
  loop:watch(fd, "r", function() self:_accept() end)
  return self
end

function Server:_accept()
  while self.fd do
    local c = core.accept(self.fd)
    if not c then return end       -- false: no more pending; nil: a transient error
    if self.nclients >= MAX_CLIENTS then
      core.close(c)
    else
      local cl = { fd = c, buf = "" }
      self.clients[c] = cl
      self.nclients = self.nclients + 1
      cl.timer = self.loop:timer(CLIENT_TIMEOUT, function() self:_drop(cl) end)
      self.loop:watch(c, "r", function() self:_read(cl) end)
    end
  end
end

function Server:_drop(cl)
  if not self.clients[cl.fd] then return end
  self.clients[cl.fd] = nil
  self.nclients = self.nclients - 1
  if cl.timer then cl.timer:cancel() end
  self.loop:unwatch(cl.fd)
  core.close(cl.fd)
end

function Server:_answer(cmd)
  local ok, reply = pcall(self.handler, cmd)
  if not ok then return "error: " .. tostring(reply) .. "\n" end
  if reply == nil then return string.format("error: unknown command '%s'\n", cmd) end
  return tostring(reply)
end

function Server:_read(cl)
  local eof = false
  while true do
    local s = core.recv(cl.fd, 4096)
    if s == false then break end
    if not s or s == "" then eof = true break end
    cl.buf = cl.buf .. s
    if #cl.buf > MAX_REQUEST or cl.buf:find("\n", 1, true) then break end
  end
  local line = cl.buf:match("^([^\n]*)\n")
  if not line and #cl.buf > MAX_REQUEST then
    cl.out = "error: request too long\n"
  else
    if not line and eof then line = cl.buf end
    if not line then return end   -- the rest of the line is yet to come
    cl.out = self:_answer((line:gsub("\r$", ""):match("^%s*(.-)%s*$")))
  end
  cl.pos = 1
  -- Most replies fit the socket buffer: write now, so a reply to "stop" is out
  -- before the loop that is stopping ends.
  if self:_write(cl) then
    self.loop:watch(cl.fd, "w", function() if not self:_write(cl) then self:_drop(cl) end end)
  else
    self:_drop(cl)
  end
end

-- Write what is left of the reply. -> true when more remains to write
function Server:_write(cl)
  while cl.pos <= #cl.out do
    local n = core.send(cl.fd, cl.pos == 1 and cl.out or cl.out:sub(cl.pos))
    if n == false then return true end
    if not n then return false end   -- the client went away
    cl.pos = cl.pos + n
  end
  return false
end

--- server:close() -- stop serving, drop the clients, remove the socket file. Safe
--- from a finalizer at exit, when the loop may already be gone.
function Server:close()
  if not self.fd then return end
  local st = core.lstat(self.path)
  if st and st.type == "socket" then core.unlink(self.path) end
  local fds = { self.fd }
  for fd, cl in pairs(self.clients) do
    fds[#fds + 1] = fd
    if cl.timer then pcall(cl.timer.cancel, cl.timer) end
  end
  for _, fd in ipairs(fds) do
    pcall(self.loop.unwatch, self.loop, fd)
    core.close(fd)
  end
  self.clients, self.nclients, self.fd = {}, 0, nil
end

--- query(path, cmd[, timeout]) -> reply | nil, message. Waits at most `timeout`
--- seconds (default 5) for the whole answer, by poll(), never by sleeping.
function M.query(path, cmd, timeout)
  timeout = timeout or 5
  if #path > SUN_PATH_MAX then return nil, too_long(path) end
  local fd, err = core.unix_connect(path)
  if not fd then return nil, "control socket " .. err end
  local deadline = core.now() + timeout
  local function wait(ev)
    return next(core.poll({ [fd] = ev }, math.max(0, deadline - core.now()))) ~= nil
  end
  local function fail(msg)
    core.close(fd)
    return nil, msg
  end
  local out, pos = cmd .. "\n", 1
  while pos <= #out do
    local n, serr = core.send(fd, pos == 1 and out or out:sub(pos))
    if n == nil then return fail(serr) end
    if n == false then
      if not wait("w") then return fail(string.format("control socket %s: timed out", path)) end
    else
      pos = pos + n
    end
  end
  local chunks = {}
  while true do
    local s, rerr = core.recv(fd, 65536)
    if s == nil then return fail(rerr) end
    if s == "" then break end
    if s == false then
      if not wait("r") then
        return fail(string.format("control socket %s: no answer within %gs", path, timeout))
      end
    else
      chunks[#chunks + 1] = s
    end
  end
  core.close(fd)
  return table.concat(chunks)
end

--- format_states(scheduler:states()) -> one line per unit: name, state, pid, restarts.
function M.format_states(list)
  local w = 4
  for _, u in ipairs(list) do w = math.max(w, #u.name) end
  local lines = {}
  for _, u in ipairs(list) do
    local extra = ""
    if u.pid then extra = extra .. "  pid " .. u.pid end
    if (u.restarts or 0) > 0 then extra = extra .. "  restarts " .. u.restarts end
    lines[#lines + 1] = string.format("%-" .. w .. "s  %s%s\n", u.name, u.state, extra)
  end
  return table.concat(lines)
end

--- handler(scheduler, pid) -> handler for serve: "status" lists the units, "stop"
--- shuts the run down (as SIGTERM does, without a signal's exit code), "pid" answers
--- lrun's pid.
function M.handler(scheduler, pid)
  return function(cmd)
    if cmd == "status" then return M.format_states(scheduler:states()) end
    if cmd == "stop" then
      scheduler:shutdown(nil, "stop requested on the control socket, stopping jobs")
      return "stopping\n"
    end
    if cmd == "pid" then return tostring(pid) .. "\n" end
    return nil
  end
end

return M
