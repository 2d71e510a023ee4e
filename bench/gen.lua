-- gen.lua -- the inputs each tool reads, generated into the bench work directory.
--
-- A workload is a list of jobs {name=, needs={...}}, all running the same argv.
-- The same list is written in every tool's own language: a plain list (xargs,
-- GNU parallel), a Makefile (make), a "name need need" file (the C baseline, the
-- lprocess loop, Python), and a job file (lrun).
local M = {}

-- N independent jobs.
function M.flat(n)
  local jobs = {}
  for i = 1, n do jobs[i] = { name = "t" .. i, needs = {} } end
  return jobs
end

-- `layers` x `width` jobs; every job past the first layer needs two jobs of the layer
-- before it (the same one and a pseudo-random other, so the graph is fixed).
function M.layered(layers, width)
  local jobs = {}
  for l = 1, layers do
    for w = 1, width do
      local needs = {}
      if l > 1 then
        local a = w
        local b = (w * 7 + l * 3) % width + 1
        if b == a then b = a % width + 1 end
        needs = { ("j%d_%d"):format(l - 1, a), ("j%d_%d"):format(l - 1, b) }
      end
      jobs[#jobs + 1] = { name = ("j%d_%d"):format(l, w), needs = needs }
    end
  end
  return jobs
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function sh_quote(s)
  if s:match("^[%w%./_=:-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.sh_quote = sh_quote

-- One line per job for xargs / GNU parallel (the word is passed to the program as an
-- ignored argument).
function M.list(path, jobs)
  local t = {}
  for i = 1, #jobs do t[i] = "x" end
  return write(path, table.concat(t, "\n") .. "\n")
end

-- "name need need..." per line, in dependency order.
function M.dag(path, jobs)
  local t = {}
  for i, j in ipairs(jobs) do t[i] = j.name .. (#j.needs > 0 and " " .. table.concat(j.needs, " ") or "") end
  return write(path, table.concat(t, "\n") .. "\n")
end

-- A Makefile: every job a phony target whose recipe is argv (no shell metacharacters,
-- so GNU make execs it directly, without /bin/sh).
function M.makefile(path, jobs, argv)
  local cmd = {}
  for i, a in ipairs(argv) do cmd[i] = sh_quote(a) end
  cmd = table.concat(cmd, " ")
  local t, names = {}, {}
  for i, j in ipairs(jobs) do names[i] = j.name end
  t[#t + 1] = ".PHONY: all " .. table.concat(names, " ")
  t[#t + 1] = "all: " .. table.concat(names, " ")
  for _, j in ipairs(jobs) do
    t[#t + 1] = j.name .. ":" .. (#j.needs > 0 and " " .. table.concat(j.needs, " ") or "")
    t[#t + 1] = "\t@" .. cmd
  end
  return write(path, table.concat(t, "\n") .. "\n")
end

-- An lrun job file (Lua).
function M.jobfile(path, jobs, argv, settings)
  local cmd = {}
  for i, a in ipairs(argv) do cmd[i] = ("%q"):format(a) end
  cmd = table.concat(cmd, ", ")
  local t = {}
  if settings then t[#t + 1] = "settings { " .. settings .. " }" end
  for _, j in ipairs(jobs) do
    local needs = ""
    if #j.needs > 0 then
      local q = {}
      for i, n in ipairs(j.needs) do q[i] = ("%q"):format(n) end
      needs = ", needs = { " .. table.concat(q, ", ") .. " }"
    end
    t[#t + 1] = ("job %q { %s%s }"):format(j.name, cmd, needs)
  end
  return write(path, table.concat(t, "\n") .. "\n")
end

-- `mb` MiB of 80-byte text lines (newline included); returns path and line count.
function M.textfile(path, mb)
  local line = ("%-79s\n"):format("the quick brown fox jumps over the lazy dog 0123456789 lorem ipsum dolor sit")
  local lines = mb * 1024 * 1024 // #line
  local chunk_lines = 16384
  local chunk = line:rep(chunk_lines)
  local f = assert(io.open(path, "wb"))
  local left = lines
  while left >= chunk_lines do
    f:write(chunk)
    left = left - chunk_lines
  end
  f:write(line:rep(left))
  f:close()
  return path, lines
end

return M
