-- profile.lua -- a sampling profiler for Lua programs (lrun, the drivers), for the
-- "where does the time go" part of RESULTS.md. Every `period` VM instructions a
-- count hook records the running Lua function (self) and every function on the
-- stack (inclusive); at exit the top entries go to stderr.
--
--   lua5.4 bench/profile.lua [-p PERIOD] [-n TOP] SCRIPT [ARG...]
-- SCRIPT runs with arg[0] = SCRIPT and its arguments, as if started directly; its
-- os.exit is intercepted to print the profile first. It counts VM instructions, not
-- time: what C functions do (syscalls, allocating tables and strings, the collector)
-- is not seen, so a loop of cheap instructions run once (units.need_edges: 11 % of
-- the samples of a graph-10k run, 14 ms of its 2 s) can outrank code whose time is
-- spent in C. For time, use callgrind on a statically linked lrun (bench/ANALYSIS.md);
-- for where the VM's work goes per job, a line hook. Coroutines made by the program
-- (the job-file sandbox's) are not sampled.
local period, top = 1000, 25
local i = 1
while arg[i] and arg[i]:sub(1, 1) == "-" do
  if arg[i] == "-p" then period = tonumber(arg[i + 1]); i = i + 2
  elseif arg[i] == "-n" then top = tonumber(arg[i + 1]); i = i + 2
  else error("profile.lua: unknown option " .. arg[i]) end
end
local script = assert(arg[i], "usage: profile.lua [-p PERIOD] [-n TOP] SCRIPT [ARG...]")
local args = table.move(arg, i + 1, #arg, 1, {})
arg = table.move(args, 1, #args, 1, { [0] = script }) -- luacheck: ignore 121 (the script's own arg)

local self_n, incl_n, total = {}, {}, 0
local getinfo = debug.getinfo
local function where(info)
  return ("%s:%d %s"):format(info.short_src, info.linedefined, info.name or "?")
end
local function hook()
  total = total + 1
  local info = getinfo(2, "Sn")
  if not info then return end
  local k = where(info)
  self_n[k] = (self_n[k] or 0) + 1
  local seen, level = {}, 2
  while true do
    local f = getinfo(level, "Sn")
    if not f then break end
    local key = where(f)
    if not seen[key] then
      seen[key] = true
      incl_n[key] = (incl_n[key] or 0) + 1
    end
    level = level + 1
  end
end

local function report()
  debug.sethook()
  local function dump(title, t)
    local list = {}
    for k, v in pairs(t) do list[#list + 1] = { k, v } end
    table.sort(list, function(a, b) return a[2] > b[2] end)
    io.stderr:write(("-- %s (%d samples of %d VM instructions)\n"):format(title, total, period))
    for n = 1, math.min(top, #list) do
      io.stderr:write(("%6.1f%%  %s\n"):format(100 * list[n][2] / math.max(total, 1), list[n][1]))
    end
  end
  dump("self", self_n)
  dump("inclusive", incl_n)
end

local real_exit = os.exit
os.exit = function(...)   -- luacheck: ignore
  report()
  return real_exit(...)
end
debug.sethook(hook, "", period)
local chunk = assert(loadfile(script))
chunk(table.unpack(args))
report()
