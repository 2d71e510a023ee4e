-- heap.lua -- spawn+reap cost of /bin/true from a Lua process holding MB MiB of
-- touched heap, through lprocess.spawn{method=METHOD} and :wait().
--
--   lua5.4 bench/drivers/heap.lua MB N METHOD     METHOD: vfork (the default) | fork
-- Prints "median_us min_us max_us rss_kib" over N timed spawns (after 5 untimed).
do
  local root = (arg[0]:match("^(.*)/bench/drivers/[^/]*$")) or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LPROCESS_CPATH") or (root .. "/build/?.so")) .. ";" .. package.cpath
end
local lp = require "lprocess"
local now = lp.core.now

local mb, n, method = tonumber(arg[1]), tonumber(arg[2]), arg[3] or "vfork"
local hold = {}
for i = 1, mb do hold[i] = string.rep(string.char(i % 251 + 1), 1024 * 1024) end

local function once()
  local p = assert(lp.spawn { "/bin/true", method = method })
  local st = p:wait()
  assert(st.how == "exit" and st.code == 0)
end

for _ = 1, 5 do once() end
local t = {}
for i = 1, n do
  local t0 = now()
  once()
  t[i] = now() - t0
end
table.sort(t)
local status = io.open("/proc/self/status"):read("a")
io.write(("%.1f %.1f %.1f %s\n"):format(t[(n + 1) // 2] * 1e6, t[1] * 1e6, t[n] * 1e6,
  status:match("VmRSS:%s*(%d+)") or "0"))
assert(#hold == mb)
