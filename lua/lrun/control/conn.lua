--- lrun.control.conn: one nonblocking stream connection driven by an lprocess.loop --
-- what the control socket and the status page's HTTP server share: bounded reads,
-- queued writes, an idle deadline, and a close that forgets everything.
--
--   local c = conn.new(loop, fd, { on_data = fn(c), on_close = fn(c), idle = 5,
--                                  max_buffer = 65536 })
--   c:line()            -- the next whole line ("\r\n" or "\n" cut off) | nil
--   c:take(n)           -- the next n buffered bytes | nil while fewer are in
--   c:send(s)           -- queued; written as the socket takes it
--   c:finish()          -- close once everything queued is written
--   c:close()           -- now
--   c:keep()            -- no idle deadline from now on (a stream to a watcher)
--
-- on_data runs after each read; when more than max_buffer bytes are held unread it
-- runs with c.overflow set (the owner answers and finishes). A peer that sends
-- nothing for `idle` seconds is closed: nobody can hold a slot for ever.
local core = require "lprocess.core"

local M = {}
local Conn = {}
Conn.__index = Conn

local MAX_QUEUED = 4 * 1024 * 1024   -- a watcher that stops reading is dropped

function M.new(loop, fd, opts)
  local self = setmetatable({ loop = loop, fd = fd, buf = "", out = {}, on_data = opts.on_data,
    on_close = opts.on_close, max_buffer = opts.max_buffer or 65536, idle = opts.idle or 5,
    queued = 0, reading = true }, Conn)
  self:_arm()
  self:_watch()
  return self
end

function Conn:_arm()
  if self.timer then self.timer:cancel() end
  if self.idle then
    self.timer = self.loop:timer(self.idle, function() self.timer = nil; self:close() end)
  end
end

function Conn:keep()
  self.idle = nil
  if self.timer then self.timer:cancel(); self.timer = nil end
end

function Conn:_watch()
  if not self.fd then return end
  local ev = (self.reading and "r" or "") .. (self.out[1] and "w" or "")
  if ev == "" then ev = "r" end   -- hangups are still seen
  self.loop:watch(self.fd, ev, function(_, what) self:_ready(what) end)
end

function Conn:_ready(what)
  if what:find("w", 1, true) then self:_flush() end
  if not self.fd then return end
  if what:find("[rhe]") then self:_read() end
end

function Conn:_read()
  local got = false
  while self.fd and #self.buf <= self.max_buffer do
    local s = core.recv(self.fd, 16384)
    if s == false then break end
    if not s or s == "" then
      self.eof = true
      break
    end
    got = true
    self.buf = self.buf .. s
  end
  if not self.fd then return end
  if #self.buf > self.max_buffer then
    self.overflow = true
    self.reading = false
  end
  if got and self.idle then self:_arm() end
  if self.on_data then self.on_data(self) end
  if self.eof and self.fd then
    self.reading = false
    if not self.out[1] then return self:close() end
    self:_watch()
  end
end

function Conn:line()
  local i = self.buf:find("\n", 1, true)
  if not i then return nil end
  local line = self.buf:sub(1, i - 1):gsub("\r$", "")
  self.buf = self.buf:sub(i + 1)
  return line
end

function Conn:take(n)
  if #self.buf < n then return nil end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

function Conn:send(s)
  if not self.fd or s == "" then return end
  if self.queued + #s > MAX_QUEUED then return self:close() end
  self.out[#self.out + 1] = s
  self.queued = self.queued + #s
  self:_flush()
end

function Conn:_flush()
  local out = self.out
  while self.fd and out[1] do
    local n = core.send(self.fd, out[1])
    if n == false then break end
    if not n then return self:close() end   -- the peer went away
    self.queued = self.queued - n
    if n < #out[1] then
      out[1] = out[1]:sub(n + 1)
      break
    end
    table.remove(out, 1)
  end
  if not self.fd then return end
  if not out[1] and (self.finishing or (self.eof and not self.reading)) then
    return self:close()
  end
  self:_watch()
end

function Conn:finish()
  self.finishing = true
  self.reading = false
  self:_flush()
end

function Conn:close()
  if not self.fd then return end
  if self.timer then self.timer:cancel(); self.timer = nil end
  pcall(self.loop.unwatch, self.loop, self.fd)
  core.close(self.fd)
  self.fd = nil
  if self.on_close then self.on_close(self) end
end

return M
