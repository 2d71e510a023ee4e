-- heap.lua -- spawn+reap cost of /bin/true through lprocess.spawn{method=METHOD} and
-- :wait(), from this Lua process with an empty heap and holding MB MiB of touched
-- heap, alternately: CYCLES times, N timed spawns empty, then MB MiB allocated, N
-- timed spawns, the memory freed again (so machine drift hits both alike).
--
--   lua5.4 bench/drivers/heap.lua MB N METHOD CYCLES     METHOD: vfork | fork
-- Prints two lines, "empty|big median_us min_us max_us rss_kib", over all cycles.
do
  local root = (arg[0]:match("^(.*)/bench/drivers/[^/]*$")) or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LPROCESS_CPATH") or (root .. "/build/?.so")) .. ";" .. package.cpath
end
local lp = require "lprocess"
local now = lp.core.now

local mb, n, method, cycles = tonumber(arg[1]), tonumber(arg[2]), arg[3] or "vfork", tonumber(arg[4] or 1)

local function rss()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function once()
  local p = assert(lp.spawn { "/bin/true", method = method })
  local st = p:wait()
  assert(st.how == "exit" and st.code == 0)
end

local function phase(into)
  for _ = 1, n do
    local t0 = now()
    once()
    into[#into + 1] = now() - t0
  end
  into.rss = math.max(into.rss or 0, rss())
end

local empty, big = {}, {}
for _ = 1, 3 do once() end
for _ = 1, cycles do
  phase(empty)
  local hold = {}
  for i = 1, mb do hold[i] = string.rep(string.char(i % 251 + 1), 1024 * 1024) end
  phase(big)
  assert(#hold == mb)
  hold = nil -- luacheck: ignore 311 (dropped for the collector)
  collectgarbage()
  collectgarbage()
end
for _, t in ipairs { { "empty", empty }, { "big", big } } do
  local s = t[2]
  local rss_kib = s.rss
  table.sort(s)
  io.write(("%s %.1f %.1f %.1f %d\n"):format(t[1], s[(#s + 1) // 2] * 1e6, s[1] * 1e6, s[#s] * 1e6, rss_kib))
end
