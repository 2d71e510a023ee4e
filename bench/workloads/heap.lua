-- heap.lua -- heap-1g: spawn+reap of /bin/true through lprocess from a Lua process
-- holding 1 GiB of touched heap vs from an empty one; the same with method="fork"
-- for contrast (fork copies the page tables of the whole heap, vfork/clone(CLONE_VM)
-- copies nothing). Empty and full phases alternate inside one process, so load on a
-- shared machine hits both alike.
local util = require "util"

local M = {}

function M.run(ctx)
  local big = ctx.quick and 256 or 1024   -- MiB; quick mode only exercises the harness
  local drv = util.root .. "/bench/drivers/heap.lua"
  local runs = {
    { method = "vfork", name = "lprocess.spawn (vfork)",
      n = ctx.quick and 30 or 100, cycles = ctx.quick and 1 or 4 },
    { method = "fork", name = 'lprocess.spawn{method="fork"}',
      n = ctx.quick and 5 or 10, cycles = ctx.quick and 1 or 3 },
  }
  util.log("heap-1g: spawn+wait from an empty vs a %d MiB Lua heap, alternating; vfork and fork", big)
  local out = util.work .. "/heap.out"
  local rows, targets, cmds, by = {}, {}, {}, {}
  for _, r in ipairs(runs) do
    r.argv = { util.lua, drv, big, r.n, r.method, r.cycles }
    cmds[#cmds + 1] = util.show(r.argv)
    local res = util.run(r.argv, { stdout = out })
    local text = util.readfile(out) or ""
    for _, phase in ipairs { "empty", "big" } do
      local m, lo, hi, rss = text:match(phase .. " (%S+) (%S+) (%S+) (%S+)")
      local key = r.method .. "-" .. phase
      local label = ("%s, %s"):format(r.name, phase == "empty" and "empty heap" or (big .. " MiB heap"))
      if res.ok and m then
        by[key] = tonumber(m)
        local base = by[r.method .. "-empty"]
        rows[#rows + 1] = { label, ("%.1f"):format(m), ("%.1f"):format(lo), ("%.1f"):format(hi),
          ("%.2fx"):format(by[key] / base), ("%.2fx"):format(by[key] / by["vfork-empty"]),
          ("%.0f"):format(tonumber(rss) / 1024), ("%d x %d"):format(r.cycles, r.n) }
      else
        rows[#rows + 1] = { label, "failed", "", "", "", "", "", (res.log or ""):match("[^\n]*") }
      end
    end
  end
  if by["vfork-empty"] and by["vfork-big"] then
    local r = by["vfork-big"] / by["vfork-empty"]
    targets[1] = { name = ("heap-1g: spawn+wait with %d MiB heap vs empty"):format(big), want = "<= 1.20x",
      got = ("%.2fx"):format(r), ok = r <= 1.2 }
  end
  return { {
    name = "heap-1g",
    what = ("spawn+wait of /bin/true through lprocess.spawn and :wait(), timed one by one inside a " ..
      "Lua process, alternately with an empty heap and holding %d MiB of touched heap (1 MiB strings)"):format(big),
    columns = { "parent", "median us", "min", "max", "vs empty heap", "vs vfork empty", "RSS MB", "cycles x spawns" },
    rows = rows, targets = targets, commands = cmds,
    notes = { "median and min/max over all timed spawns of that phase" },
  } }
end

return M
