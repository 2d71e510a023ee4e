-- lua_os.lua -- plain Lua 5.4 as a peer: os.execute and io.popen (both go through
-- /bin/sh -c, as they do for every Lua user).
--
--   lua5.4 bench/drivers/lua_os.lua execute 1 N -- PROG [ARG...]
--   lua5.4 bench/drivers/lua_os.lua popen J N -- PROG [ARG...]   (J pipes open at once)
local mode, jobs, n = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(arg[4] == "--" and arg[5], "usage: lua_os.lua execute|popen J N -- PROG [ARG...]")
local parts = {}
for i = 5, #arg do parts[#parts + 1] = "'" .. arg[i]:gsub("'", "'\\''") .. "'" end
local cmd = table.concat(parts, " ")
local failed = false

if mode == "execute" then
  assert(jobs == 1, "os.execute runs one command at a time")
  for _ = 1, n do
    if not os.execute(cmd) then failed = true end
  end
elseif mode == "popen" then
  local left = n
  while left > 0 do
    local batch = {}
    for i = 1, math.min(jobs, left) do batch[i] = assert(io.popen(cmd, "r")) end
    for i = 1, #batch do
      if not batch[i]:close() then failed = true end
    end
    left = left - #batch
  end
else
  error("unknown mode " .. tostring(mode))
end
os.exit(failed and 1 or 0)
