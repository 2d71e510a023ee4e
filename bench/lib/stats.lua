-- stats.lua -- order statistics over a list of numbers.
local M = {}

local function sorted(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s
end

-- p in [0, 1]; linear interpolation between closest ranks.
function M.percentile(xs, p)
  local s = sorted(xs)
  if #s == 0 then return nil end
  local h = (#s - 1) * p + 1
  local lo = math.floor(h)
  local hi = math.min(lo + 1, #s)
  return s[lo] + (h - lo) * (s[hi] - s[lo])
end

function M.median(xs) return M.percentile(xs, 0.5) end

function M.min(xs)
  local m = math.huge
  for _, x in ipairs(xs) do if x < m then m = x end end
  return m
end

function M.max(xs)
  local m = -math.huge
  for _, x in ipairs(xs) do if x > m then m = x end end
  return m
end

function M.mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

-- {median=, min=, max=, n=} of xs.
function M.summary(xs)
  return { median = M.median(xs), min = M.min(xs), max = M.max(xs), n = #xs }
end

return M
