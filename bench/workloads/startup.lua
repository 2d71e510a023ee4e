-- startup.lua -- `lrun -n` on a one-job file, against the floors: the Lua
-- interpreter alone, and what peers take to read a one-job input.
local util = require "util"
local stats = require "stats"

local M = {}

function M.run(ctx)
  local n = ctx.quick and 5 or 20
  local jobfile = util.writefile(util.work .. "/one-job.lua", 'job "one" { "/bin/true" }\n')
  local mk = util.writefile(util.work .. "/one-job.mk", ".PHONY: one\none:\n\t@/bin/true\n")
  local kinds = {
    { name = "lua5.4 -e ''", argv = { util.lua, "-e", "" } },
    { name = "lua5.4 + require lprocess", argv = { util.lua, "-e",
      ("package.path=%q; package.cpath=%q; require 'lprocess'"):format(
        util.root .. "/lua/?.lua;" .. util.root .. "/lua/?/init.lua", util.root .. "/build/?.so") } },
    { name = "make -n (one target)", argv = { "make", "-n", "-f", mk } },
    { name = "python3 -c pass", argv = { util.python() or "python3", "-c", "pass" }, needs = "python3" },
  }
  if ctx.lrun then
    table.insert(kinds, 1, { key = "lrun", name = "lrun -n one-job.lua",
      argv = { util.root .. "/scripts/lrun", "-n", jobfile } })
  end
  util.log("startup: %d runs each", n)
  for r = 1, n do
    for _, k in ipairs(util.rotate(kinds, r - 1)) do
      if not k.needs or util.have(k.needs) then
        k.t = k.t or {}
        local res = util.run(k.argv)
        if res.ok then k.t[#k.t + 1] = res.wall else k.error = res.log end
      end
    end
  end
  local rows, cmds = {}, {}
  for _, k in ipairs(kinds) do
    if k.t and #k.t > 0 then
      local s = stats.summary(k.t)
      rows[#rows + 1] = { k.name, ("%.2f"):format(s.median * 1e3), ("%.2f"):format(s.min * 1e3),
        ("%.2f"):format(s.max * 1e3) }
    elseif k.t then
      rows[#rows + 1] = { k.name, "failed", "", (k.error or ""):match("[^\n]*") }
    end
    cmds[#cmds + 1] = util.show(k.argv)
  end
  return { {
    name = "startup", what = "wall time of one command, from spawn to reap",
    columns = { "command", "median ms", "min", "max" }, rows = rows, commands = cmds,
  } }
end

return M
