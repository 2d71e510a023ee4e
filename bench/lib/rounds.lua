-- rounds.lua -- run every tool once per round, in a rotated order, several rounds,
-- so that drift on a shared machine hits all tools alike.
local util = require "util"
local stats = require "stats"

local M = {}

-- spec = { rounds=, tools={tool...}, prepare=function(tool) -> argv, jobs | nil,
--          measure=function(tool, res, jobs) -> sample (default: wall / jobs),
--          label= }
-- Returns { [tool.key] = { samples={...}, argv=, jobs=, error= } }.
function M.run(spec)
  local out, order = {}, {}
  for _, tool in ipairs(spec.tools) do
    local argv, jobs = spec.prepare(tool)
    if argv then
      out[tool.key] = { samples = {}, argv = argv, jobs = jobs or 1, tool = tool }
      order[#order + 1] = tool
    end
  end
  for r = 1, spec.rounds do
    for _, tool in ipairs(util.rotate(order, r - 1)) do
      local o = out[tool.key]
      if not o.error then
        local res = util.run(o.argv)
        if not res.ok then
          o.error = (res.log or ""):gsub("%s+$", ""):sub(-300)
          if o.error == "" then o.error = "exit " .. tostring(res.status and res.status.code) end
          util.log("%s: %s failed: %s", spec.label or "?", tool.name, o.error)
        else
          o.samples[#o.samples + 1] = spec.measure and spec.measure(tool, res, o.jobs) or res.wall / o.jobs
        end
      end
    end
  end
  for _, o in pairs(out) do
    if #o.samples > 0 then o.stat = stats.summary(o.samples) end
  end
  return out
end

return M
