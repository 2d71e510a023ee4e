-- lprocess.lua -- the Lua loops over lprocess that the benchmark times.
--
--   lua5.4 bench/drivers/lprocess.lua MODE J N -- PROG [ARG...]
--   lua5.4 bench/drivers/lprocess.lua loop J @DAGFILE -- PROG [ARG...]
--
-- MODE
--   wait  lprocess.spawn{...} + p:wait(); at -jJ, J Process objects in flight and
--         lprocess.wait(-1) to reap whichever ends first
--   core  lprocess.core.spawn{argv=} + lprocess.core.wait(pid|-1): the C layer alone
--   loop  lprocess.spawn + the event loop (loop:child), J in flight; with @DAGFILE,
--         one job per line "name need need...", started once its needs exited 0
-- Exits 1 if a child fails.
do
  local root = (arg[0]:match("^(.*)/bench/drivers/[^/]*$")) or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = (os.getenv("LPROCESS_CPATH") or (root .. "/build/?.so")) .. ";" .. package.cpath
end
local lp = require "lprocess"
local core = lp.core

local mode, jobs, what = arg[1], tonumber(arg[2]), arg[3]
assert(arg[4] == "--" and arg[5], "usage: lprocess.lua MODE J N|@DAG -- PROG [ARG...]")
local argv = table.move(arg, 5, #arg, 1, {})
local failed = false

local function ok(st)
  if st.how ~= "exit" or st.code ~= 0 then failed = true end
end

local function run_wait(n)
  if jobs == 1 then
    for _ = 1, n do
      local p = assert(lp.spawn(argv))
      ok(p:wait())
    end
    return
  end
  -- Keep each Process until it is reaped: a collected one would be reaped behind
  -- lprocess.wait(-1)'s back (see the facade's caveats).
  local procs, running = {}, 0 -- luacheck: ignore 241 (only holds the objects)
  local function reap_one()
    local st = assert(lp.wait(-1))
    procs[st.pid] = nil
    running = running - 1
    ok(st)
  end
  for _ = 1, n do
    if running == jobs then reap_one() end
    local p = assert(lp.spawn(argv))
    procs[p.pid] = p
    running = running + 1
  end
  while running > 0 do reap_one() end
end

local function run_core(n)
  local opts = { argv = argv }
  if jobs == 1 then
    for _ = 1, n do ok(core.wait(assert(core.spawn(opts)))) end
    return
  end
  local running = 0
  for _ = 1, n do
    if running == jobs then
      ok(assert(core.wait(-1)))
      running = running - 1
    end
    assert(core.spawn(opts))
    running = running + 1
  end
  for _ = 1, running do ok(assert(core.wait(-1))) end
end

-- The DAG (or N independent jobs) through the event loop.
local function load_dag(file)
  local nodes, byname = {}, {}
  for line in io.lines(file) do
    local name, rest = line:match("^(%S+)%s*(.*)$")
    if name then
      local nd = { name = name, left = 0, out = {} }
      for need in rest:gmatch("%S+") do
        local dep = assert(byname[need], "unknown need " .. need)
        dep.out[#dep.out + 1] = nd
        nd.left = nd.left + 1
      end
      nodes[#nodes + 1] = nd
      byname[name] = nd
    end
  end
  return nodes
end

local function run_loop(nodes)
  local loop = require("lprocess.loop").new()
  local ready, head = {}, 1
  for _, nd in ipairs(nodes) do if nd.left == 0 then ready[#ready + 1] = nd end end
  local running, done = 0, 0
  local launch
  local function finished(nd, st)
    running, done = running - 1, done + 1
    ok(st)
    if st.how == "exit" and st.code == 0 then
      for _, o in ipairs(nd.out) do
        o.left = o.left - 1
        if o.left == 0 then ready[#ready + 1] = o end
      end
    end
    launch()
  end
  function launch()
    while running < jobs and head <= #ready do
      local nd = ready[head]
      head = head + 1
      local p = assert(lp.spawn(argv))
      running = running + 1
      loop:child(p.pid, function(st) finished(nd, st) end)
    end
  end
  launch()
  loop:run(function() return done == #nodes end)
  loop:close()
end

if mode == "loop" then
  local nodes
  if what:sub(1, 1) == "@" then
    nodes = load_dag(what:sub(2))
  else
    nodes = {}
    for i = 1, tonumber(what) do nodes[i] = { name = i, left = 0, out = {} } end
  end
  run_loop(nodes)
elseif mode == "wait" then
  run_wait(tonumber(what))
elseif mode == "core" then
  run_core(tonumber(what))
else
  error("unknown mode " .. tostring(mode))
end
os.exit(failed and 1 or 0)
