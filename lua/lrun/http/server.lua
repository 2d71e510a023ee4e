--- lrun.http.server: just enough HTTP/1.1 for one local status page -- GET and POST
-- with a small body, one request per connection (Connection: close), and
-- server-sent event streams. Driven by the caller's lprocess.loop over the core's
-- sockets (tcp_listen, accept, recv, send): no framework, no thread, no buffer
-- without a bound.
--
--   local srv, err = server.listen(loop, host, port, function(req, res) ... end)
--   -- req: { method =, path =, query = { k = v }, headers = { lowercased = v }, body = }
--   res:send(200, "text/html; charset=utf-8", body [, headers])
--   local sse = res:events()     -- sse:send(event, data_text); sse.on_close = fn
--   srv.host, srv.port; srv:close()
--
-- Limits: headers 16 KiB, a body 64 KiB, 10 s to send a request, 128 connections
-- (past them: 503). A request that breaks them gets its 4xx and is closed.
local core = require "lprocess.core"
local conn = require "lrun.control.conn"

local M = {}

M.MAX_HEAD = 16384
M.MAX_BODY = 65536
M.MAX_CONNS = 128
M.IDLE = 10

local REASON = { [200] = "OK", [204] = "No Content", [400] = "Bad Request",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [503] = "Service Unavailable" }

local Server = {}
Server.__index = Server

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local t = {}
  for k, v in (q or ""):gmatch("([^&=]+)=?([^&]*)") do t[unescape(k)] = unescape(v) end
  return t
end

local function response(status, ctype, body, headers)
  local h = { string.format("HTTP/1.1 %d %s", status, REASON[status] or "Status"),
    "Content-Type: " .. ctype, "Content-Length: " .. #body, "Connection: close",
    "Cache-Control: no-store", "X-Content-Type-Options: nosniff" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. body
end
M.response = response

function M.listen(loop, host, port, handler)
  local fd, err = core.tcp_listen(host, port)
  if not fd then return nil, "--http " .. err end
  local self = setmetatable({ loop = loop, fd = fd, handler = handler, conns = {}, n = 0 },
    Server)
  self.host, self.port = core.sockname(fd)
  loop:watch(fd, "r", function() self:_accept() end)
  return self
end

function Server:_accept()
  while self.fd do
    local c = core.accept(self.fd)
    if not c then return end
    if self.n >= M.MAX_CONNS then
      core.send(c, response(503, "text/plain", "too many connections\n"))
      core.close(c)
    else
      self.n = self.n + 1
      local cl
      cl = conn.new(self.loop, c, { idle = M.IDLE, max_buffer = M.MAX_HEAD + M.MAX_BODY,
        on_data = function() self:_data(cl) end,
        on_close = function()
          self.conns[cl] = nil
          self.n = self.n - 1
          if cl.sse and cl.sse.on_close then cl.sse.on_close() end
        end })
      self.conns[cl] = true
    end
  end
end

local function fail(cl, status, text)
  cl.done = true
  cl:send(response(status, "text/plain; charset=utf-8", text .. "\n"))
  cl:finish()
end

-- The head (request line and headers) once it is all in -> req | nil
local function parse_head(cl)
  local b, e = cl.buf:find("\r?\n\r?\n")
  if not b or b > M.MAX_HEAD then
    if #cl.buf > M.MAX_HEAD then fail(cl, 431, "request head too large") end
    return nil
  end
  local head = cl.buf:sub(1, b - 1)
  cl.buf = cl.buf:sub(e + 1)
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n?")
  if not method then return fail(cl, 400, "bad request line") end
  local req = { method = method, headers = {} }
  req.path, req.query = target:match("^([^?#]*)%??([^#]*)")
  req.query = parse_query(req.query)
  for k, v in head:gmatch("\n([%w%-]+):[ \t]*([^\r\n]*)") do req.headers[k:lower()] = v end
  local len = tonumber(req.headers["content-length"] or "0")
  if not len or len < 0 or len ~= math.floor(len) then return fail(cl, 400, "bad Content-Length") end
  if len > M.MAX_BODY then return fail(cl, 413, "body too large") end
  req.length = len
  return req
end

function Server:_data(cl)
  if cl.done then return end
  cl.req = cl.req or parse_head(cl)
  local req = cl.req
  if not req or cl.done then
    if cl.eof and not cl.done then fail(cl, 400, "incomplete request") end
    return
  end
  local body = cl:take(req.length)
  if not body then
    if cl.eof then fail(cl, 400, "incomplete body") end
    return
  end
  req.body = body
  cl.done = true
  local res = setmetatable({ cl = cl }, { __index = M.Response })
  local ok, err = pcall(self.handler, req, res)
  if not ok and not res.sent then
    res:send(500, "text/plain; charset=utf-8", "internal error: " .. tostring(err) .. "\n")
  end
end

M.Response = {}

function M.Response:send(status, ctype, body, headers)
  self.sent = true
  self.cl:send(response(status, ctype, body, headers))
  self.cl:finish()
end

--- res:events() -> a server-sent event stream on this connection
function M.Response:events()
  self.sent = true
  local cl = self.cl
  cl:keep()
  cl:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    .. "Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 1000\n\n")
  local sse = {}
  function sse.send(_, event, data)
    if not cl.fd then return false end
    cl:send("event: " .. event .. "\ndata: " .. data:gsub("\n", "\ndata: ") .. "\n\n")
    return true
  end
  cl.sse = sse
  return sse
end

function Server:close()
  if not self.fd then return end
  pcall(self.loop.unwatch, self.loop, self.fd)
  core.close(self.fd)
  self.fd = nil
  local list = {}
  for cl in pairs(self.conns) do list[#list + 1] = cl end
  for _, cl in ipairs(list) do pcall(cl.close, cl) end
end

return M
