-- lrun.output.tail: a job's newest lines, for policies (on_failure's last_lines).
-- It keeps whole chunk segments -- no copy, no split on the hot path -- until newer
-- segments hold `max` lines; lines are cut out only when asked for.
--
--   local ring = require("lrun.output.tail").new(20)
--   ring:add(s, i, e)     -- s[i..e] were seen: lines ending "\n", a last piece too
--   ring:lines(5)         --> up to 5 newest lines, oldest first, no "\n" or "\r\n"
local lines = require "lrun.output.lines"

local M = {}

local find, remove = string.find, table.remove

local Ring = {}
Ring.__index = Ring

function M.new(max)
  return setmetatable({ max = max, count = 0 }, Ring)   -- [k] = {s, i, e, nlines}
end

-- Counting stops at `max`: a segment with more lines than that is worth `max`, as
-- it alone fills the tail.
function Ring:add(s, i, e)
  local max = self.max
  local n, at = 0, i
  while n < max do
    local j = find(s, "\n", at, true)
    if not j or j > e then
      if at <= e then n = n + 1 end
      break
    end
    n = n + 1
    at = j + 1
  end
  self[#self + 1] = { s, i, e, n }
  local total = self.count + n
  while total - self[1][4] >= max do
    total = total - self[1][4]
    remove(self, 1)
  end
  self.count = total
end

-- At most max + 1 segments are kept, so splitting them all is bounded.
function Ring:lines(n)
  n = math.min(n or self.max, self.max)
  local out = {}
  if n <= 0 then return out end
  local all = {}
  for _, seg in ipairs(self) do
    lines.each(seg[1], seg[2], seg[3], function(line) all[#all + 1] = line end)
  end
  for k = math.max(1, #all - n + 1), #all do out[#out + 1] = all[k] end
  return out
end

return M
