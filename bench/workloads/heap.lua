-- heap.lua -- heap-1g: spawn+reap of /bin/true through lprocess from a Lua process
-- holding 1 GiB of touched heap vs from an empty one; the same with method="fork"
-- for contrast (fork copies the page tables of the whole heap, vfork/clone(CLONE_VM)
-- copies nothing).
local util = require "util"
local stats = require "stats"

local M = {}

function M.run(ctx)
  local n = ctx.quick and 40 or 300
  local nfork = ctx.quick and 10 or 30
  local big = ctx.quick and 256 or 1024   -- MiB; quick mode only exercises the harness
  local rounds = ctx.quick and 1 or 2
  local drv = util.root .. "/bench/drivers/heap.lua"
  local configs = {
    { key = "v0", name = "lprocess.spawn (vfork), empty heap", mb = 0, method = "vfork", n = n },
    { key = "v1", name = ("lprocess.spawn (vfork), %d MiB heap"):format(big), mb = big, method = "vfork", n = n },
    { key = "f0", name = 'method="fork", empty heap', mb = 0, method = "fork", n = nfork },
    { key = "f1", name = ('method="fork", %d MiB heap'):format(big), mb = big, method = "fork", n = nfork },
  }
  util.log("heap-1g: spawn+wait from an empty vs a 1 GiB Lua heap, vfork and fork")
  local out = util.work .. "/heap.out"
  for r = 1, rounds do
    for _, c in ipairs(util.rotate(configs, r - 1)) do
      c.argv = { util.lua, drv, c.mb, c.n, c.method }
      c.med = c.med or {}
      local res = util.run(c.argv, { stdout = out })
      local m, lo, hi, rss = (util.readfile(out) or ""):match("^(%S+) (%S+) (%S+) (%S+)")
      if res.ok and m then
        c.med[#c.med + 1] = tonumber(m) * 1e-6
        c.min = math.min(c.min or math.huge, tonumber(lo) * 1e-6)
        c.max = math.max(c.max or 0, tonumber(hi) * 1e-6)
        c.rss = tonumber(rss)
      else
        c.error = res.log
        util.log("heap-1g: %s failed: %s", c.name, res.log or "")
      end
    end
  end
  local by = {}
  for _, c in ipairs(configs) do by[c.key] = #c.med > 0 and stats.median(c.med) or nil end
  local rows = {}
  for _, c in ipairs(configs) do
    local m = by[c.key]
    local base = c.method == "fork" and by.f0 or by.v0
    rows[#rows + 1] = { c.name, m and ("%.1f"):format(m * 1e6) or "failed",
      c.min and ("%.1f"):format(c.min * 1e6) or "", c.max and ("%.1f"):format(c.max * 1e6) or "",
      (m and base) and ("%.2fx"):format(m / base) or "-",
      (m and by.v0) and ("%.2fx"):format(m / by.v0) or "-",
      c.rss and ("%.0f"):format(c.rss / 1024) or "-", ("%d x %d"):format(#c.med, c.n) }
  end
  local targets = {}
  if by.v0 and by.v1 then
    targets[1] = { name = ("heap-1g: spawn+wait with %d MiB heap vs empty"):format(big), want = "<= 1.20x",
      got = ("%.2fx"):format(by.v1 / by.v0), ok = by.v1 / by.v0 <= 1.2 }
  end
  return { {
    name = "heap-1g",
    what = "spawn+wait of /bin/true through lprocess.spawn and :wait(), timed one by one inside " ..
      "a Lua process holding 0 or 1 GiB of touched heap (1024 strings of 1 MiB)",
    columns = { "parent", "median us", "min", "max", "vs empty heap", "vs vfork empty", "RSS MB", "runs x spawns" },
    rows = rows, targets = targets,
    notes = { "median: the median over runs of each run's median per-spawn time; min/max over all spawns" },
    commands = (function()
      local c = {}
      for _, x in ipairs(configs) do if x.argv then c[#c + 1] = util.show(x.argv) end end
      return c
    end)(),
  } }
end

return M
