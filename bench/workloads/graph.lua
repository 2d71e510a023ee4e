-- graph.lua -- graph-10k: a 10 000-job graph of /bin/true (100 layers x 100, two
-- needs each) at -j2. Figures: wall time; each scheduler's own CPU per job (perf stat
-- --no-inherit: the children's CPU is not counted), and its CPU per job beyond what
-- the C baseline spends to spawn and reap; peak RSS (ru_maxrss of a plain run).
-- graph-100k: the same shape at 1 000 layers (--quick: 100): `lrun -n` (load,
-- validate, plan: wall and peak RSS) and a full run at -j2 under perf stat (lrun's
-- own CPU per job, against the graph-10k figure of the same run: no superlinear step).
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

-- `lrun -n` and a full run of the big graph; `per10k`: lrun's own CPU per job on
-- graph-10k in this run (or nil).
local function big(ctx, perf, per10k)
  local layers, width = ctx.quick and 100 or 1000, 100
  local n = layers * width
  local name = ctx.quick and ("graph-" .. n) or "graph-100k"
  local file = gen.jobfile(("%s/graph-%d.lua"):format(util.work, n), gen.layered(layers, width),
    { "/bin/true" })
  util.log("%s: lrun -n and a full run at -j2 of %d jobs", name, n)
  local lrun = util.root .. "/scripts/lrun"
  local dry = { lrun, "-n", file }
  local full = { lrun, "-j", "2", "-q", file }
  local sec = { name = name, targets = {}, commands = { util.show(dry), util.show(full) } }
  local walls, rss = {}, nil
  for _ = 1, ctx.quick and 1 or 3 do
    local res = util.run(dry)
    if res.ok then
      walls[#walls + 1] = res.wall
      rss = math.max(rss or 0, res.status.rusage.maxrss)
    end
  end
  local dwall = #walls > 0 and stats.median(walls) or nil
  local fwall, cpu, frss
  local pfile = util.work .. "/perf-big.out"
  local argv = perf and { "perf", "stat", "--no-inherit", "-x,", "-e", "task-clock", "-o", pfile, "--" }
    or {}
  table.move(full, 1, #full, #argv + 1, argv)
  local res = util.run(argv)
  if res.ok then
    fwall, frss = res.wall, res.status.rusage.maxrss
    local ms = perf and (util.readfile(pfile) or ""):match("\n([%d%.]+),msec,task%-clock")
    if ms then cpu = tonumber(ms) / 1000 / n end
  end
  local step = cpu and per10k and cpu / per10k or nil
  sec.what = ("%d jobs of /bin/true (%d layers x %d, two needs each)"):format(n, layers, width)
  sec.columns = { "run", "wall s", "own CPU us/job", "vs graph-10k per job", "peak RSS MB" }
  sec.rows = {
    { "lrun -n (validate + plan)", dwall and ("%.2f"):format(dwall) or "failed", "-", "-",
      rss and ("%.1f"):format(rss / 1024) or "-" },
    { "lrun -j2 (full run)", fwall and ("%.2f"):format(fwall) or "failed",
      cpu and report.us(cpu) or "-", step and ("%.2fx"):format(step) or "-",
      frss and ("%.1f"):format(frss / 1024) or "-" },
  }
  sec.notes = { "lrun -n: median of the runs, peak RSS the largest; own CPU: perf stat " ..
    "--no-inherit task-clock (children excluded), load and plan included" }
  if not ctx.quick then
    local t = sec.targets
    t[#t + 1] = { name = "graph-100k: lrun -n validate + plan", want = "<= 1.5 s and <= 200 MB",
      got = dwall and ("%.2f s, %.1f MB"):format(dwall, rss / 1024) or "failed",
      ok = dwall and dwall <= 1.5 and rss <= 200 * 1024 }
    t[#t + 1] = { name = "graph-100k: lrun own CPU per job at -j2", want = "<= 50 us",
      got = cpu and (report.us(cpu) .. " us") or "not measured", ok = cpu and cpu <= 50e-6 }
    t[#t + 1] = { name = "graph-100k: no superlinear step (per job vs graph-10k)",
      want = "<= 1.20x", got = step and ("%.2fx"):format(step) or "-", ok = step and step <= 1.2 }
  end
  return sec
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
  local base_cpu, lrun_cpu
  for _, u in ipairs(use) do
    if u.tool.key == "c-posix" and #u.cpu > 0 then base_cpu = stats.median(u.cpu) / n end
    if u.tool.key == "lrun" and #u.cpu > 0 then lrun_cpu = stats.median(u.cpu) / n end
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
  local big_sec = ctx.lrun and big(ctx, perf, lrun_cpu) or nil
  sec.notes = {
    "own CPU: perf stat --no-inherit task-clock of the scheduler process alone (children excluded); " ..
    "'beyond C' subtracts the C posix_spawn baseline's own CPU per job on the same graph",
    "peak RSS: ru_maxrss of a run outside perf (the largest of the scheduler and its children)",
  }
  return { sec, big_sec }
end

return M
