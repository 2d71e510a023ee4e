-- output.lua -- 100 MiB of 80-byte lines from a job, through lrun -o prefix, -o raw
-- and -o group (held until the job ends, past 8 MiB in a temp file), vs cat through a
-- pipe (and vs cat | cat: any runner that captures a job's output relays it through
-- one more pipe and process). Every command's output goes through a pipe to `wc -c`,
-- whose count is checked (no byte lost, one prefix per line).
local util = require "util"
local gen = require "gen"
local stats = require "stats"

local M = {}

function M.run(ctx)
  local mb = ctx.quick and 10 or 100
  local rounds = ctx.quick and 1 or 3
  local file, lines = gen.textfile(util.work .. ("/text-%d.txt"):format(mb), mb)
  local bytes = lines * 80
  local jobfile = util.writefile(util.work .. "/output-job.lua",
    ("job \"out\" { \"cat\", %q }\n"):format(file))
  local lrun = util.q(util.root .. "/scripts/lrun")
  local kinds = {
    { key = "cat", name = "cat | (pipe)", expect = bytes,
      cmd = ("cat %s | wc -c"):format(util.q(file)) },
    { key = "relay", name = "cat | cat | (a relay: the floor for any runner)", expect = bytes,
      cmd = ("cat %s | cat | wc -c"):format(util.q(file)) },
  }
  if ctx.lrun then
    kinds[#kinds + 1] = { key = "prefix", name = "lrun -o prefix", expect = bytes + lines * #"out | ",
      cmd = ("%s -q -j1 -o prefix %s | wc -c"):format(lrun, util.q(jobfile)) }
    kinds[#kinds + 1] = { key = "raw", name = "lrun -o raw", expect = bytes,
      cmd = ("%s -q -j1 -o raw %s | wc -c"):format(lrun, util.q(jobfile)) }
    kinds[#kinds + 1] = { key = "group", name = "lrun -o group", expect = bytes + lines * #"out | ",
      cmd = ("%s -q -j1 -o group %s | wc -c"):format(lrun, util.q(jobfile)) }
  end
  util.log("output: %d MiB of lines through lrun -o prefix / raw / group vs cat", mb)
  local out = util.work .. "/output.out"
  for r = 1, rounds do
    for _, k in ipairs(util.rotate(kinds, r - 1)) do
      k.t = k.t or {}
      if not k.error then
        local res = util.sh(k.cmd, { stdout = out })
        local got = tonumber((util.readfile(out) or ""):match("%d+"))
        if res.ok and got == k.expect then
          k.t[#k.t + 1] = res.wall
        else
          k.error = ("exit %s, %s bytes (expected %d) %s"):format(res.status and res.status.code,
            tostring(got), k.expect, (res.log or ""):sub(1, 200))
          util.log("output: %s failed: %s", k.name, k.error)
        end
      end
    end
  end
  local cat = #kinds[1].t > 0 and stats.median(kinds[1].t)
  local rows, targets = {}, {}
  for _, k in ipairs(kinds) do
    if #k.t > 0 then
      local m = stats.median(k.t)
      rows[#rows + 1] = { k.name, ("%.0f"):format(mb / m), ("%.0f"):format(mb / stats.max(k.t)),
        ("%.0f"):format(mb / stats.min(k.t)), cat and ("%.2fx"):format(cat / m) or "-",
        ("%.3f"):format(m) }
      if k.key == "prefix" and cat then
        targets[#targets + 1] = { name = "output: lrun -o prefix throughput vs cat", want = ">= 0.50x",
          got = ("%.2fx"):format(cat / m), ok = cat / m >= 0.5 }
      end
    else
      rows[#rows + 1] = { k.name, "failed", "", "", "", k.error and k.error:sub(1, 60) or "" }
    end
  end
  local cmds = {}
  for _, k in ipairs(kinds) do cmds[#cmds + 1] = (k.cmd:gsub(util.root:gsub("%p", "%%%0") .. "/", "")) end
  return { {
    name = "output",
    what = ("%d MiB of 80-byte lines from one job through a pipe to wc -c (byte count checked)"):format(mb),
    columns = { "path", "MiB/s (median)", "min", "max", "vs cat", "wall s" },
    rows = rows, targets = targets, commands = cmds,
  } }
end

return M
