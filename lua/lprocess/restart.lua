--- lprocess.restart: when to start a crashed process again -- exponential backoff with
-- jitter, and a start limit that stops a crash loop. Pure arithmetic over the clock
-- the caller passes in; nothing here spawns, waits or knows what is being restarted.
--
--   local restart = require "lprocess.restart"
--   local delay = restart.backoff({ min = 0.5, max = 30, factor = 2 }, n)  -- restart n
--   local lim = restart.limiter{ count = 5, within = 10 }
--   if not lim:record(now, runtime) then give_up(lim:reason()) end
--   restart.stable_period(backoff) -- up this long: the crash loop is over, lim:reset()
local M = {}

M.STABLE = 10          -- seconds up after which the backoff may start afresh
M.FAILED_START = 1     -- dying within this many seconds of the start is a failed start
M.JITTER = 0.1         -- delays are spread by +-10% so that processes that fell
                       -- together do not all come back in the same instant

M.BACKOFF = { min = 0.5, max = 30, factor = 2 }
M.LIMIT = { count = 5, within = 10 }

--- backoff(b, n [, rand]) -> seconds to wait before restart number n (1-based):
-- b.min * b.factor^(n-1), capped at b.max, then spread by +-JITTER. `rand` (a number
-- in [0, 1)) replaces math.random, for tests. Missing fields take M.BACKOFF's.
function M.backoff(b, n, rand)
  b = b or M.BACKOFF
  local min, max = b.min or M.BACKOFF.min, b.max or M.BACKOFF.max
  local factor = b.factor or M.BACKOFF.factor
  n = math.max(1, math.tointeger(n) or math.floor(n or 1))
  local d = 0
  if min > 0 then
    d = min * factor ^ (n - 1)
    if d ~= d or d > max then d = max end      -- also an overflow to inf
  end
  local r = rand or math.random()
  return d * (1 + (2 * r - 1) * M.JITTER)
end

--- stable_period(b) -> M.STABLE, or b.max when that is longer: a process that dies
-- every b.max seconds is still crash-looping, only slowly.
function M.stable_period(b)
  local max = b and b.max or M.BACKOFF.max
  return math.max(M.STABLE, max)
end

local Limiter = {}
Limiter.__index = Limiter

--- limiter{ count =, within = [, name =] } -> a start limit (defaults: M.LIMIT;
-- `name` is what reason() calls the limit, default "start limit"). Call
-- `lim:record(now, runtime)` each time a restart is about to happen; it returns false
-- when the restart would break the limit, which is either of:
--   * more than `count` restarts within the last `within` seconds;
--   * more than `count` failed starts in a row (each dying within FAILED_START of its
--     start, whatever time the backoff put between them) -- without this a crash loop
--     would never hit the limit, since the backoff spreads its restarts out of any
--     window (0.5+1+2+4+8 s > 10 s);
-- so `count = 5` allows the first start and 5 restarts. count = 0 allows none.
function M.limiter(limit)
  limit = limit or M.LIMIT
  return setmetatable({
    count = limit.count or M.LIMIT.count,
    within = limit.within or M.LIMIT.within,
    name = limit.name or "start limit",
    times = {},          -- restart times inside the window, oldest first
    failed = 0,          -- failed starts in a row
    records = 0,
  }, Limiter)
end

function Limiter:record(now, runtime)
  self.records = self.records + 1
  if runtime < M.FAILED_START then
    self.failed = self.failed + 1
  else
    self.failed = 0
  end
  local t, cut = {}, now - self.within
  for _, at in ipairs(self.times) do
    if at > cut then t[#t + 1] = at end
  end
  t[#t + 1] = now
  self.times = t
  if self.failed > self.count then
    self.why = "failed"
    return false
  end
  if #t > self.count then
    self.why = "window"
    return false
  end
  self.why = nil
  return true
end

function Limiter:reset()
  self.times, self.failed, self.why = {}, 0, nil
end

--- lim:reason() -> which limit was hit, for the give-up message.
function Limiter:reason()
  local limit = string.format("%s = %d in %g s", self.name, self.count, self.within)
  if self.count == 0 then
    return "restarts are off (" .. limit .. ")"
  elseif self.why == "failed" then
    return string.format("%d failed starts in a row, each dying within %g s (%s)",
      self.failed, M.FAILED_START, limit)
  elseif self.why == "window" then
    return string.format("%d restarts within %g s (%s)", #self.times, self.within, limit)
  end
  return "within its start limit (" .. limit .. ")"
end

return M
