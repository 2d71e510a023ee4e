-- lprocess.loop: a readiness-driven event loop -- descriptors (epoll), signals (a
-- signalfd), children (SIGCHLD, then waitpid(-1, WNOHANG) until nothing is left) and
-- timers (a binary heap). It never sleeps to poll: it blocks in epoll_wait until a
-- descriptor, a signal or the next timer is due.
--
--   local loop = require("lprocess.loop").new()
--   loop:child(pid, function(status) ... end)      -- status tables as lprocess.wait
--   loop:watch(fd, "r", function(fd, ev) ... end)  -- ev: "r", "w", "h" (hangup), "e"
--   local t = loop:timer(1.5, function() ... end)  -- t:cancel()
--   loop:signal("TERM", function(sig) ... end)
--   loop:run()                                      -- until loop:stop() or nothing to do
--
-- Children that end without a handler (orphans re-parented to a subreaper, or exits
-- that happen before :child is called) go to loop.on_orphan(status), else are kept in
-- loop.unclaimed[pid] until claimed by :child.
local core = require "lprocess.core"
local lprocess = require "lprocess"

local M = {}
local Loop = {}
Loop.__index = Loop

---------------------------------------------------------------------------------------
-- timers: a binary min-heap on (deadline, sequence)

local function before(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_up(h, i)
  while i > 1 do
    local parent = i // 2
    if not before(h[i], h[parent]) then break end
    h[i], h[parent] = h[parent], h[i]
    h[i].index, h[parent].index = i, parent
    i = parent
  end
end

local function heap_down(h, i)
  local n = #h
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(h[l], h[m]) then m = l end
    if r <= n and before(h[r], h[m]) then m = r end
    if m == i then return end
    h[i], h[m] = h[m], h[i]
    h[i].index, h[m].index = i, m
    i = m
  end
end

local function heap_remove(h, i)
  local n = #h
  h[i].index = nil
  if i == n then h[n] = nil return end
  h[i] = h[n]
  h[i].index = i
  h[n] = nil
  heap_up(h, i)
  heap_down(h, i)
end

local Timer = {}
Timer.__index = Timer

function Timer:cancel()
  if self.index then heap_remove(self.loop.timers, self.index) end
end

---------------------------------------------------------------------------------------

--- new() -> loop | nil, msg, errno (no epoll or signal descriptor to be had)
function M.new()
  local ep, err, errno = core.epoll()
  if not ep then return nil, err, errno end
  local self = setmetatable({
    ep = ep,
    fds = {},          -- fd -> fn(fd, events)
    fd_events = {},    -- fd -> the events it is watched for
    children = {},     -- pid -> fn(status)
    unclaimed = {},    -- pid -> status reaped before anyone asked
    signals = {},      -- signo -> fn(signo)
    timers = {},
    seq = 0,
    idle = {},         -- fns run before blocking (output flush, status line)
    running = false,
  }, Loop)
  local ok
  ok, err, errno = self:_rewatch_signals()
  if not ok then
    ep:close()
    return nil, err, errno
  end
  return self
end

-- (Re)create the signalfd for SIGCHLD plus every signal with a handler. On failure
-- the signals watched so far stay watched -> true | nil, msg, errno
function Loop:_rewatch_signals()
  local list = { core.signals.CHLD }
  for sig in pairs(self.signals) do
    if sig ~= core.signals.CHLD then list[#list + 1] = sig end
  end
  local new, err, errno = core.sigwatch(list)
  if not new then return nil, err, errno end
  local ok
  ok, err, errno = self.ep:add(new:fd(), "r")
  if not ok then
    new:close()
    return nil, err, errno
  end
  local old = self.sigwatch
  self.sigwatch = new
  if old then
    self.ep:del(old:fd())
    old:close()
  end
  return true
end

--- watch(fd, events, fn) -> true | nil, msg, errno (epoll refused the descriptor)
-- fds[fd] = fn, fd_events[fd] = events: no table per descriptor watched.
function Loop:watch(fd, events, fn)
  if self.fds[fd] then
    if self.fd_events[fd] ~= events then
      local ok, err, errno = self.ep:mod(fd, events)
      if not ok then return nil, err, errno end
      self.fd_events[fd] = events
    end
    self.fds[fd] = fn
    return true
  end
  local ok, err, errno = self.ep:add(fd, events)
  if not ok then return nil, err, errno end
  self.fds[fd], self.fd_events[fd] = fn, events
  return true
end

--- unwatch(fd [, closing]): closing = true when the caller closes fd next and no
--- other descriptor shares its open file: the kernel then drops it from the epoll
--- set by itself, and the EPOLL_CTL_DEL is skipped.
function Loop:unwatch(fd, closing)
  if self.fds[fd] then
    self.fds[fd], self.fd_events[fd] = nil, nil
    if not closing then self.ep:del(fd) end
  end
end

function Loop:timer(delay, fn)
  self.seq = self.seq + 1
  local t = setmetatable({ at = core.now() + math.max(0, delay), seq = self.seq, fn = fn,
    loop = self }, Timer)
  local h = self.timers
  h[#h + 1] = t
  t.index = #h
  heap_up(h, #h)
  return t
end

-- Run fn before the loop next blocks (and before timers due at the same time).
function Loop:defer(fn)
  return self:timer(0, fn)
end

--- signal(sig, fn) -> true | nil, msg, errno (the signal descriptor could not be
--- remade; the handler is not set then)
function Loop:signal(sig, fn)
  local n = type(sig) == "number" and sig or core.signals[(tostring(sig):upper():gsub("^SIG", ""))]
  if not n then error("unknown signal " .. tostring(sig), 2) end
  local old = self.signals[n]
  self.signals[n] = fn
  if (fn ~= nil) ~= (old ~= nil) then
    local ok, err, errno = self:_rewatch_signals()
    if not ok then
      self.signals[n] = old
      return nil, err, errno
    end
  end
  return true
end

-- Call fn(status) when pid ends. A status reaped earlier is delivered at once
-- (deferred to the loop so the caller's code runs first).
function Loop:child(pid, fn)
  local st = self.unclaimed[pid]
  if st then
    self.unclaimed[pid] = nil
    self:defer(function() fn(st) end)
  else
    self.children[pid] = fn
  end
end

function Loop:forget(pid)
  self.children[pid] = nil
end

-- Run before every block: flushing output belongs here, so a burst is written once.
function Loop:on_idle(fn)
  self.idle[#self.idle + 1] = fn
end

function Loop:reap()
  local list = lprocess.reap()
  for i = 1, #list do
    local st = list[i]
    local fn = self.children[st.pid]
    if fn then
      self.children[st.pid] = nil
      fn(st)
    elseif self.on_orphan then
      self.on_orphan(st)
    else
      self.unclaimed[st.pid] = st
    end
  end
  return #list
end

function Loop:_signals()
  local chld = false
  for _, sig in ipairs(self.sigwatch:read()) do
    if sig == core.signals.CHLD then
      chld = true
    else
      local fn = self.signals[sig]
      if fn then fn(sig) end
    end
  end
  if chld then self:reap() end
end

function Loop:_timers()
  local h, now = self.timers, core.now()
  while h[1] and h[1].at <= now do
    local t = h[1]
    heap_remove(h, 1)
    t.fn(t)
  end
end

-- One turn: block until something is ready (at most `max_wait` seconds, or the next
-- timer), dispatch it, then run the timers that are due.
function Loop:step(max_wait)
  for i = 1, #self.idle do self.idle[i]() end
  local timeout = max_wait
  local h = self.timers
  if h[1] then
    local left = math.max(0, h[1].at - core.now())
    timeout = timeout and math.min(timeout, left) or left
  end
  local ready = assert(self.ep:wait(timeout))
  local sigfd = self.sigwatch:fd()
  for i = 1, #ready, 2 do
    local fd, ev = ready[i], ready[i + 1]
    if fd == sigfd then
      self:_signals()
    else
      local fn = self.fds[fd]
      if fn then fn(fd, ev) end
    end
  end
  self:_timers()
end

function Loop:stop()
  self.running = false
end

function Loop:busy()
  return next(self.children) ~= nil or next(self.fds) ~= nil or self.timers[1] ~= nil
end

-- Run until :stop(), or until `done()` returns true, or until nothing is left to
-- wait for (no children, descriptors or timers).
function Loop:run(done)
  self.running = true
  self:reap()   -- children that ended before the loop existed
  self:_timers()
  while self.running do
    if done and done() then break end
    if not done and not self:busy() then break end
    self:step()
  end
  self.running = false
end

function Loop:close()
  for fd in pairs(self.fds) do self.ep:del(fd) end
  self.fds, self.fd_events = {}, {}
  if self.sigwatch then self.sigwatch:close() end
  self.ep:close()
end

Loop.__close = Loop.close

return M
