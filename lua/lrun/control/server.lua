--- lrun.control.server: the control socket -- a Unix stream socket, mode 0600 from the
-- moment it exists, served by the caller's lprocess.loop.
--
--   local server, err = server.serve(loop, path, answer)
--   server:close()              -- also removes the socket file
--
-- answer(req, stream) -> reply text (already encoded) | nil when it streams. One
-- request per connection: the client sends one line, gets its answer, and the
-- server closes (EOF ends the answer); a streaming answer (tail -f) goes on until
-- the server finishes it or the client goes.
--
-- What no client can do: connect as another user (SO_PEERCRED: refused unless it is
-- lrun's own uid or root), hold lrun up (it is all nonblocking; a client that says
-- nothing for IDLE seconds is dropped), grow lrun's memory (a request line is capped
-- at protocol.MAX_LINE bytes), or take every descriptor (past MAX_CLIENTS a client
-- gets "too many clients" and is closed). Each gets an error line, never a crash.
local core = require "lprocess.core"
local conn = require "lrun.control.conn"
local protocol = require "lrun.control.protocol"

local M = {}

M.IDLE = 5
M.MAX_CLIENTS = 128
local SUN_PATH_MAX = 107        -- sizeof(sun_path) - 1 on Linux
M.SUN_PATH_MAX = SUN_PATH_MAX

function M.too_long(path)
  return string.format("control socket path is too long (%d bytes, at most %d): %s",
    #path, SUN_PATH_MAX, path)
end

local Server = {}
Server.__index = Server

-- Bind path with mode 0600. A stale socket file is replaced; a live one (something
-- answers a connect) or anything else at path is an error.
local function bind(path)
  if #path > SUN_PATH_MAX then return nil, M.too_long(path) end
  local st = core.lstat(path)
  if st then
    if st.type ~= "socket" then
      return nil, string.format("control socket %s exists and is not a socket", path)
    end
    local fd = core.unix_connect(path)
    if fd then
      core.close(fd)
      return nil, string.format("control socket %s is in use by another process", path)
    end
    core.unlink(path)
  end
  -- The umask decides the mode bind() gives the socket file: 0600 with no window in
  -- which another user could connect (a chmod afterwards would leave one).
  local old = core.umask(127)    -- 0177
  local fd, err = core.unix_listen(path, "stream")
  core.umask(old)
  if not fd then return nil, "control socket " .. err end
  return fd
end

function M.serve(loop, path, answer)
  if type(answer) ~= "function" then error("serve: answer must be a function", 2) end
  local fd, err = bind(path)
  if not fd then return nil, err end
  local self = setmetatable({ loop = loop, fd = fd, path = path, answer = answer,
    clients = {}, nclients = 0, uid = core.getuid and core.getuid() }, Server)
  loop:watch(fd, "r", function() self:_accept() end)
  return self
end

-- Refused at once, with a word: -> true when the client may stay
function Server:_admit(c)
  local why
  local _, uid = core.peercred(c)
  if uid ~= self.uid and uid ~= 0 then
    why = string.format("permission denied: uid %s is not lrun's", tostring(uid))
  elseif self.nclients >= M.MAX_CLIENTS then
    why = "too many clients; try again"
  end
  if not why then return true end
  core.send(c, protocol.error(why))
  core.close(c)
  return false
end

function Server:_accept()
  while self.fd do
    local c = core.accept(self.fd)
    if not c then return end       -- false: no more pending; nil: a transient error
    if self:_admit(c) then
      self.nclients = self.nclients + 1
      local cl
      cl = conn.new(self.loop, c, { idle = M.IDLE, max_buffer = protocol.MAX_LINE,
        on_data = function() self:_request(cl) end,
        on_close = function()
          self.clients[cl] = nil
          self.nclients = self.nclients - 1
          if cl.stream and cl.stream.on_close then cl.stream.on_close() end
        end })
      self.clients[cl] = true
    end
  end
end

function Server:_request(cl)
  if cl.answered then return end
  local line = cl:line()
  if not line and cl.overflow then
    cl.answered = true
    cl:send(protocol.error(string.format("request too long (more than %d bytes)",
      protocol.MAX_LINE)))
    return cl:finish()
  end
  if not line and cl.eof and cl.buf ~= "" then line = cl.buf end
  if not line then return end
  cl.answered = true
  local stream = {
    send = function(_, obj) cl:send(protocol.encode(obj)) end,
    finish = function() cl:finish() end,
  }
  cl.stream = stream
  local reply = self.answer(line, stream)
  if reply == nil then
    cl:keep()
    return
  end
  cl:send(reply)
  cl:finish()
end

--- server:close() -- stop serving, drop the clients, remove the socket file. Safe
--- from a finalizer at exit, when the loop may already be gone.
function Server:close()
  if not self.fd then return end
  local st = core.lstat(self.path)
  if st and st.type == "socket" then core.unlink(self.path) end
  pcall(self.loop.unwatch, self.loop, self.fd)
  core.close(self.fd)
  self.fd = nil
  local list = {}
  for cl in pairs(self.clients) do list[#list + 1] = cl end
  for _, cl in ipairs(list) do pcall(cl.close, cl) end
  self.clients, self.nclients = {}, 0
end

return M
