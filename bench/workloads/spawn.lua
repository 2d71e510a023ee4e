-- spawn.lua -- the spawn-rate workloads: true-seq, true-p2, tiny-seq and dag-p8.
-- Every tool runs the same jobs; the figure is wall time per job (whole command,
-- start-up included), and the ratio is to the C posix_spawn baseline's median.
local util = require "util"
local gen = require "gen"
local tools = require "tools"
local rounds = require "rounds"
local report = require "report"

local M = {}

local W = util.work

-- name, jobs (n or a DAG), parallelism, program
local function defs(quick)
  local n = quick and 200 or 2000
  return {
    { name = "true-seq", n = n, j = 1, prog = { "/bin/true" },
      what = n .. " x /bin/true, one at a time" },
    { name = "true-p2", n = n, j = 2, prog = { "/bin/true" },
      what = n .. " x /bin/true, two at a time" },
    { name = "tiny-seq", n = n, j = 1, prog = { W .. "/bin/tiny_true" },
      what = n .. " x a static libc-free true, one at a time" },
    { name = "dag-p8", layers = quick and 3 or 10, width = 50, j = 8,
      prog = { "/usr/bin/sleep", "0.01" },
      what = (quick and 3 or 10) .. " layers x 50 jobs of sleep 0.01, two needs each, -j8" },
  }
end

-- The files each tool reads, for `n` jobs of workload d (cached per n).
local function inputs(d, n)
  d.files = d.files or {}
  if d.files[n] then return d.files[n] end
  local jobs = d.layers and gen.layered(d.layers, d.width) or gen.flat(n)
  local base = ("%s/%s-%d"):format(W, d.name, n)
  local f = {
    list = gen.list(base .. ".list", jobs),
    makefile = gen.makefile(base .. ".mk", jobs, d.prog),
    jobfile = gen.jobfile(base .. ".lua", jobs, d.prog),
    dag = d.layers and gen.dag(base .. ".dag", jobs) or nil,
    count = #jobs,
  }
  d.files[n] = f
  return f
end

function M.run(ctx)
  local sections = {}
  for _, d in ipairs(defs(ctx.quick)) do
    util.log("%s: %s", d.name, d.what)
    local res = rounds.run {
      label = d.name,
      rounds = ctx.rounds,
      tools = ctx.tools_for(tools.list),
      prepare = function(tool)
        local n = d.n
        if n and tool.scale and not ctx.quick then n = math.max(100, math.floor(n * tool.scale)) end
        local f = inputs(d, n or 0)
        local w = { n = f.count, j = d.j, prog = d.prog, list = f.list, dag = f.dag,
          makefile = f.makefile, jobfile = f.jobfile }
        return tool.argv(w), f.count
      end,
    }
    local used = ctx.tools_for(tools.list)
    sections[#sections + 1] = {
      name = d.name, what = d.what, results = res,
      columns = report.TOOL_COLUMNS, rows = report.tool_rows(res, used, "c-posix"),
      commands = report.commands(res, used),
      notes = not ctx.quick and {
        "whole command timed (start-up included); peers marked by 'runs x jobs' " ..
        "below " .. (d.n or "the full count") .. " ran fewer jobs to keep the run short",
      } or nil,
    }
  end
  return sections
end

return M
