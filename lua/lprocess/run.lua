--- lprocess.run: spawn, feed input, capture output, honour a timeout -- the body of
-- lprocess.run (the facade calls this on first use).
--
--   local res = lprocess.run{ "prog", "arg", input = "...", timeout = 5, grace = 1,
--     check = false, ...spawn options }
--   -- res = { status =, stdout =, stderr =, timed_out =, duration = }
--
-- One poll() over the output pipes, the input pipe and the child's pidfd: nothing
-- sleeps, any amount of output is taken while input is written. On timeout the
-- child's group gets lprocess.stop's TERM, then KILL after `grace` (default 1 s).
local core = require "lprocess.core"
local lprocess = require "lprocess"
local status = require "lprocess.status"
local stop = require "lprocess.stop"

local OWN = { input = true, timeout = true, check = true, grace = true }

local function describe_failure(argv, res)
  local how = res.timed_out and "timed out" or status.describe(res.status)
  local tail = (res.stderr or ""):sub(-500):gsub("%s+$", "")
  return string.format("run: '%s' %s%s", table.concat(argv, " "), how,
    tail ~= "" and (": " .. tail) or "")
end

-- The spawn options of a run: pipes by default, its own process group, a pidfd.
local function spawn_opts(opts)
  local sopts = {}
  for k, v in pairs(opts) do
    if not OWN[k] then sopts[k] = v end
  end
  sopts.stdin = opts.stdin or (opts.input and "pipe" or "null")
  sopts.stdout = opts.stdout or "pipe"
  sopts.stderr = opts.stderr or "pipe"
  if sopts.pgid == nil and not sopts.setsid then sopts.pgid = 0 end
  sopts.pidfd = true
  return sopts
end

-- The pipes of one run: output taken as it comes, input written as it is wanted.
local Pump = {}
Pump.__index = Pump

local function new_pump(p, input)
  local self = setmetatable({ p = p, out = { stdout = {}, stderr = {} }, names = {},
    input = input, inpos = 1 }, Pump)
  for _, name in ipairs { "stdout", "stderr" } do
    if p[name] then
      local fd = core.fileno(p[name])
      core.setnonblock(fd, true)
      self.names[fd] = name
    end
  end
  if p.stdin then
    if not input or #input == 0 then
      self:close_input()
    else
      self.infd = core.fileno(p.stdin)
      core.setnonblock(self.infd, true)
    end
  end
  return self
end

function Pump:close_input()
  self.p.stdin:close()
  self.p.stdin, self.infd = nil, nil
end

-- Read what fd holds now; false at EOF (or an error), true when more may come.
function Pump:drain(fd)
  while true do
    local data = core.read(fd, 65536)
    if data == false then return true end
    if not data or data == "" then return false end
    local buf = self.out[self.names[fd]]
    buf[#buf + 1] = data
  end
end

function Pump:write()
  -- A child that exits without reading its input ends it by EPIPE, not SIGPIPE.
  local n = lprocess.write(self.infd, self.input, self.inpos)
  if n == nil or (n and self.inpos + n > #self.input) then
    self:close_input()
  elseif n then
    self.inpos = self.inpos + n
  end
end

-- The descriptors to poll; nil when there is nothing left to wait for.
function Pump:set(child_done)
  local set = {}
  for fd in pairs(self.names) do set[fd] = "r" end
  if self.infd then set[self.infd] = "w" end
  if not child_done then set[self.p.pidfd] = "r" end
  return next(set) and set or nil
end

-- Dispatch one poll's result; returns the child's status once it has ended.
function Pump:dispatch(ready)
  local st
  for fd, ev in pairs(ready) do
    if fd == self.infd then
      self:write()
    elseif fd == self.p.pidfd then
      st = self.p:poll() or nil
    elseif self.names[fd] and ev:find("[rh]") and not self:drain(fd) then
      self.names[fd] = nil
    end
  end
  return st
end

-- Poll until the child ended and its pipes are drained, stopping it at the deadline.
local function pump_until_done(p, pump, opts)
  local deadline = opts.timeout and (p.started + opts.timeout)
  local kill_at, timed_out, st = nil, false, nil
  local group = p.pgid or { pid = p.pid }
  while true do
    local set = pump:set(st)
    if not set then break end
    local until_t = kill_at or deadline
    st = pump:dispatch(core.poll(set, until_t and math.max(0, until_t - core.now()) or nil)) or st
    if st then
      -- The child is gone: take what its pipes hold, but do not wait for EOF that a
      -- lingering grandchild could keep from ever coming.
      for fd in pairs(pump.names) do pump:drain(fd) end
      break
    end
    local now = core.now()
    if deadline and not timed_out and now >= deadline then
      timed_out = true
      stop.signal(group, "TERM")
      kill_at = now + (opts.grace or 1)
    elseif kill_at and now >= kill_at then
      stop.signal(group, "KILL")
      kill_at, deadline = nil, nil
    end
  end
  return st or p:wait(), timed_out
end

return function(opts)
  if type(opts) ~= "table" then error("run: expected a table", 2) end
  for k in pairs(opts) do
    if type(k) ~= "number" and not OWN[k] and not lprocess.SPAWN_KEYS[k] then
      error(string.format("run: unknown option '%s'", tostring(k)), 2)
    end
  end
  local p, err, errno = lprocess.spawn(spawn_opts(opts))
  if not p then return nil, err, errno end
  local pump = new_pump(p, opts.input)
  local st, timed_out = pump_until_done(p, pump, opts)
  if timed_out and p.pgid then stop.signal(p.pgid, "KILL") end  -- leftovers of the group
  p:close_pipes()
  local res = {
    status = st, timed_out = timed_out, duration = core.now() - p.started,
    stdout = opts.stdout == nil and table.concat(pump.out.stdout) or nil,
    stderr = opts.stderr == nil and table.concat(pump.out.stderr) or nil,
  }
  if opts.check and (timed_out or not status.ok(st)) then
    error(describe_failure(p.argv, res), 2)
  end
  return res
end
