-- counts.lua -- per spawn+wait from Lua: the parent's syscalls (strace -c, parent
-- only) and user-space instructions (valgrind --tool=cachegrind, parent only: the
-- child execs outside valgrind). Each figure is measured at two loop sizes and the
-- difference divided, so start-up cancels out. These are the figures CI gates on
-- (bench/gates.lua): unlike wall time they do not move with machine load.
local util = require "util"
local gen = require "gen"
local gates = require "gates"

local M = {}

-- nil when not measured, else whether the figure passes
local function verdict(x, pass)
  if x == nil then return nil end
  return pass(x)
end

local function strace_counts(argv, file)
  local res = util.run(table.move(argv, 1, #argv, 5, { "strace", "-c", "-o", file }))
  if not res.ok then return nil, res.log end
  local calls, total = {}, nil
  for line in (util.readfile(file) or ""):gmatch("[^\n]+") do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if #f >= 5 and tonumber(f[1]) and tonumber(f[4]) then
      if f[#f] == "total" then total = tonumber(f[4]) else calls[f[#f]] = tonumber(f[4]) end
    end
  end
  return { total = total, calls = calls }
end

local function valgrind_argv(argv)
  return table.move(argv, 1, #argv, 5, { "valgrind", "--tool=cachegrind", "--cache-sim=no",
    "--cachegrind-out-file=/dev/null" })
end

-- The instruction count of the process valgrind started (the first pid in its log),
-- not of children that fork without exec (lrun's watchdog) and print their own.
local function irefs(res)
  local log = res.ok and res.log or ""
  local pid = log:match("==(%d+)==")
  local n = pid and log:match("==" .. pid .. "==%s+I%s+refs:%s+([%d,]+)")
  return n and tonumber((n:gsub(",", ""))) or nil
end

-- Per-iteration syscalls of argv_at(n) between n1 and n2 (strace -c, parent only).
local function per_iteration_syscalls(argv_at, n1, n2)
  local out = {}
  local f = util.work .. "/counts.strace"
  local a, err = strace_counts(argv_at(n1), f)
  local b = a and strace_counts(argv_at(n2), f)
  if a and b and a.total and b.total then
    out.syscalls = (b.total - a.total) / (n2 - n1)
    local parts = {}
    for name, c in pairs(b.calls) do
      local d = (c - (a.calls[name] or 0)) / (n2 - n1)
      if d >= 0.05 then parts[#parts + 1] = { name, d } end
    end
    table.sort(parts, function(x, y) return x[2] > y[2] end)
    local t = {}
    for i, p in ipairs(parts) do t[i] = ("%s %.2g"):format(p[1], p[2]) end
    out.breakdown = table.concat(t, ", ")
  else
    out.error = err or "strace failed"
  end
  return out
end

-- Per-iteration instructions for several commands at once: valgrind runs are slow
-- (each spawn forks the whole valgrind process) but their counts do not depend on
-- timing, so all of them run concurrently. specs: { {argv_at=fn, into=table}, ... }
local function per_iteration_instructions(specs, n1, n2)
  local list = {}
  for _, sp in ipairs(specs) do
    list[#list + 1] = valgrind_argv(sp.argv_at(n1))
    list[#list + 1] = valgrind_argv(sp.argv_at(n2))
  end
  local res = util.run_all(list)
  for i, sp in ipairs(specs) do
    local a, b = irefs(res[2 * i - 1]), irefs(res[2 * i])
    if a and b then
      sp.into.instructions = (b - a) / (n2 - n1)
    else
      sp.into.error = (sp.into.error or "") .. " valgrind: " ..
        tostring((res[2 * i - 1].log or ""):sub(-200))
    end
  end
end

function M.run(ctx)
  local tiny = util.work .. "/bin/tiny_true"
  local drv = util.root .. "/bench/drivers/count_loop.lua"
  local n1, n2 = 100, 400
  if ctx.quick then n1, n2 = 50, 150 end
  local have_strace, have_vg = util.have("strace"), util.have("valgrind")
  local apis = {
    { key = "core", name = "lprocess.core.spawn + core.wait (options table reused)" },
    { key = "facade", name = "lprocess.spawn{prog} + p:wait()" },
    { key = "loop", name = "lprocess.spawn + loop:child + loop:run" },
  }
  util.log("counts: syscalls (strace -c) and instructions (valgrind) per spawn+wait, N=%d..%d", n1, n2)
  local results, specs = {}, {}
  for _, api in ipairs(apis) do
    local function argv_at(n) return { util.lua, drv, api.key, n, tiny } end
    results[api.key] = have_strace and per_iteration_syscalls(argv_at, n1, n2)
      or { error = "strace missing" }
    specs[#specs + 1] = { argv_at = argv_at, into = results[api.key] }
  end
  -- lrun per job (gated on instructions: issue 11): a flat file of tiny_true jobs at -j1.
  local lrun_r
  if ctx.lrun and have_strace then
    local files = {}
    local function jf(n)
      files[n] = files[n] or gen.jobfile(("%s/counts-lrun-%d.lua"):format(util.work, n), gen.flat(n), { tiny })
      return files[n]
    end
    -- through the interpreter: valgrind does not follow the #! line's exec of lua5.4
    local function argv_at(n) return { util.lua, util.root .. "/scripts/lrun", "-q", "-j1", jf(n) } end
    lrun_r = per_iteration_syscalls(argv_at, n1, n2)
    specs[#specs + 1] = { argv_at = argv_at, into = lrun_r }
  end
  if have_vg then per_iteration_instructions(specs, n1, n2) end

  local rows, targets = {}, {}
  local function fail(msg) targets.gate = (targets.gate and targets.gate .. "; " or "") .. msg end
  for _, api in ipairs(apis) do
    local r = results[api.key]
    local g, gi = gates.syscalls[api.key], gates.instructions[api.key]
    rows[#rows + 1] = { api.name, r.syscalls and ("%.2f"):format(r.syscalls) or "-",
      r.instructions and ("%.0f"):format(r.instructions) or "-", r.breakdown or (r.error or ""):sub(1, 80) }
    targets[#targets + 1] = { name = ("counts: %s syscalls"):format(api.key),
      want = ("<= %d"):format(g.target), got = r.syscalls and ("%.2f"):format(r.syscalls) or "not measured",
      ok = verdict(r.syscalls, function(x) return x <= g.target + 0.25 end) }
    if not r.syscalls or r.syscalls > g.ceiling + 0.25 then
      fail(("%s syscalls %s > %d"):format(api.key,
        r.syscalls and ("%.2f"):format(r.syscalls) or "unmeasured", g.ceiling))
    end
    local ins = r.instructions
    if gi.target then
      targets[#targets + 1] = { name = ("counts: %s user instructions"):format(api.key),
        want = ("<= %d"):format(gi.target),
        got = ins and ("%.0f (gate %d)"):format(ins, gi.ceiling) or "not measured",
        ok = verdict(ins, function(x) return x <= gi.target end) }
    end
    if not ins or ins > gi.ceiling then
      fail(("%s instructions %s > ceiling %d"):format(api.key,
        ins and ("%.0f"):format(ins) or "unmeasured", gi.ceiling))
    end
  end
  if lrun_r then
    rows[#rows + 1] = { "lrun -j1 (per job: load, plan, run)",
      lrun_r.syscalls and ("%.2f"):format(lrun_r.syscalls) or "-",
      lrun_r.instructions and ("%.0f"):format(lrun_r.instructions) or "-",
      lrun_r.breakdown or (lrun_r.error or ""):sub(1, 80) }
    local ceiling = gates.instructions.lrun.ceiling
    if have_vg and (not lrun_r.instructions or lrun_r.instructions > ceiling) then
      fail(("lrun instructions per job %s > ceiling %d"):format(lrun_r.instructions
        and ("%.0f"):format(lrun_r.instructions) or "unmeasured", ceiling))
    end
  end
  local notes = {}
  for _, a in ipairs(apis) do
    notes[#notes + 1] = ("%s syscalls <= %d, instructions <= %d"):format(a.key,
      gates.syscalls[a.key].ceiling, gates.instructions[a.key].ceiling)
  end
  return { {
    name = "counts",
    what = ("per spawn+wait of a static no-op child, parent only: (count at N=%d - count at N=%d) / %d"):format(
      n2, n1, n2 - n1),
    columns = { "API", "syscalls", "user instructions", "syscalls per spawn+wait" },
    rows = rows, targets = targets,
    notes = { "CI gates (bench/gates.lua): " .. table.concat(notes, "; ") ..
      ("; lrun instructions per job <= %d"):format(gates.instructions.lrun.ceiling) },
    commands = {
      ("strace -c -o FILE %s bench/drivers/count_loop.lua API N build/bench/bin/tiny_true"):format(util.lua),
      ("valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null %s " ..
        "bench/drivers/count_loop.lua API N build/bench/bin/tiny_true"):format(util.lua),
    },
  } }
end

return M
