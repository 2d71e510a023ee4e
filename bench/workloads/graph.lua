-- graph.lua -- graph-10k: a 10 000-job graph of /bin/true (100 layers x 100, two
-- needs each) at -j2. Figures: wall time; each scheduler's own CPU per job (perf stat
-- --no-inherit: the children's CPU is not counted), and its CPU per job beyond what
-- the C baseline spends to spawn and reap; peak RSS (ru_maxrss of a plain run).
local util = require "util"
local gen = require "gen"
local tools = require "tools"
local stats = require "stats"
local report = require "report"

local M = {}

local function perf_ok()
  if not util.have("perf") then return false end
  local res = util.run({ "perf", "stat", "--no-inherit", "-x,", "-e", "task-clock",
    "-o", util.work .. "/perf.probe", "--", "/bin/true" })
  return res.ok and (util.readfile(util.work .. "/perf.probe") or ""):match("task%-clock") ~= nil
end

function M.run(ctx)
  local layers, width = 100, 100
  if ctx.quick then layers = 10 end
  local n = layers * width
  local jobs = gen.layered(layers, width)
  local base = ("%s/graph-%d"):format(util.work, n)
  local w = { n = n, j = 2, prog = { "/bin/true" }, dag = gen.dag(base .. ".dag", jobs),
    jobfile = gen.jobfile(base .. ".lua", jobs, { "/bin/true" }),
    makefile = gen.makefile(base .. ".mk", jobs, { "/bin/true" }) }
  local name = ctx.quick and ("graph-" .. n) or "graph-10k"
  util.log("%s: %d jobs of /bin/true, %d layers, two needs each, -j2", name, n, layers)
  local use = {}
  for _, t in ipairs(ctx.tools_for(tools.list)) do
    if t.key == "c-posix" or t.key == "lrun" or t.key == "lp-loop" or t.key == "make" then
      local argv = t.argv(w)
      if argv then use[#use + 1] = { tool = t, argv = argv, wall = {}, cpu = {} } end
    end
  end
  local perf = perf_ok()
  if not perf then util.log("%s: perf stat unusable: own CPU not measured", name) end
  local rounds = 1   -- one plain run (wall, RSS) and one under perf (wall, own CPU)
  local pfile = util.work .. "/perf.out"
  for r = 1, rounds + (perf and 1 or 0) do
    for _, u in ipairs(util.rotate(use, r - 1)) do
      if not u.error then
        local plain = r == 1 or not perf
        local argv = u.argv
        if not plain then
          argv = { "perf", "stat", "--no-inherit", "-x,", "-e", "task-clock", "-o", pfile, "--" }
          table.move(u.argv, 1, #u.argv, #argv + 1, argv)
        end
        local res = util.run(argv)
        if not res.ok then
          u.error = (res.log or "failed"):gsub("%s+$", ""):sub(-200)
          util.log("%s: %s failed: %s", name, u.tool.name, u.error)
        else
          u.wall[#u.wall + 1] = res.wall
          if plain then
            u.rss = res.status.rusage.maxrss
          else
            local ms = (util.readfile(pfile) or ""):match("\n([%d%.]+),msec,task%-clock")
            if ms then u.cpu[#u.cpu + 1] = tonumber(ms) / 1000 end
          end
        end
      end
    end
  end
  local base_cpu
  for _, u in ipairs(use) do
    if u.tool.key == "c-posix" and #u.cpu > 0 then base_cpu = stats.median(u.cpu) / n end
  end
  local rows, sec = {}, { name = name, targets = {}, commands = {} }
  for _, u in ipairs(use) do
    sec.commands[#sec.commands + 1] = util.show(u.argv)
    if u.error then
      rows[#rows + 1] = { u.tool.name, "failed", "", "", "", "", u.error:match("[^\n]*"):sub(1, 50) }
    else
      local cpu = #u.cpu > 0 and stats.median(u.cpu) / n or nil
      local beyond = cpu and base_cpu and (cpu - base_cpu) or nil
      local ws = stats.summary(u.wall)
      rows[#rows + 1] = { u.tool.name, ("%.2f"):format(ws.median), ("%.2f"):format(ws.min),
        ("%.2f"):format(ws.max), cpu and report.us(cpu) or "-", beyond and report.us(beyond) or "-",
        u.rss and ("%.1f"):format(u.rss / 1024) or "-" }
      if u.tool.key == "lrun" and not ctx.quick then
        sec.targets[#sec.targets + 1] = { name = "graph-10k: lrun CPU per job beyond the spawn",
          want = "<= 50 us", got = beyond and (report.us(beyond) .. " us") or "not measured",
          ok = beyond and (beyond <= 50e-6) }
        sec.targets[#sec.targets + 1] = { name = "graph-10k: lrun peak RSS", want = "<= 40 MB",
          got = u.rss and ("%.1f MB"):format(u.rss / 1024) or "-", ok = u.rss and (u.rss <= 40 * 1024) }
      end
    end
  end
  sec.what = ("%d jobs of /bin/true (%d layers x %d, two needs each) at -j2"):format(n, layers, width)
  sec.columns = { "tool", "wall s (median)", "min", "max", "own CPU us/job", "beyond C us/job", "peak RSS MB" }
  sec.rows = rows
  sec.notes = {
    "own CPU: perf stat --no-inherit task-clock of the scheduler process alone (children excluded); " ..
    "'beyond C' subtracts the C posix_spawn baseline's own CPU per job on the same graph",
    "peak RSS: ru_maxrss of a run outside perf (the largest of the scheduler and its children)",
  }
  return { sec }
end

return M
