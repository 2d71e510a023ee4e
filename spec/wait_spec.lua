-- lprocess.wait / reap with raw pids and collected Process objects mixed: the orphan
-- sweep never loses a status (issue 14). Each case runs in a Lua child of its own, so
-- that no other spec's children (busted is a subreaper) can be among those counted.
local H = require "helper"
local lp = H.lp

-- Run `code` in a fresh lua5.4 with this checkout; its stdout, or an error.
local function child(code)
  local r = assert(lp.run { table.unpack(H.lua(code)) })
  assert(r.status.how == "exit" and r.status.code == 0, r.stderr)
  return r.stdout
end

-- The issue's loop: spawn /bin/true, keep only the pid, at most two in flight,
-- `collect()` -> array of statuses; a full collection after every spawn makes the
-- dropped Process objects orphans at the worst moment. Prints "spawned missing twice".
local CHURN = [[
local lp = require "lprocess"
local function churn(n, collect)
  local spawned, seen, inflight = {}, {}, 0
  local function take()
    for _, st in ipairs(collect()) do
      seen[st.pid] = (seen[st.pid] or 0) + 1
      inflight = inflight - 1
    end
  end
  for _ = 1, n do
    while inflight >= 2 do take() end
    spawned[#spawned + 1] = assert(lp.spawn { "/bin/true" }).pid
    inflight = inflight + 1
    collectgarbage()
  end
  while inflight > 0 do take() end
  local missing, twice = 0, 0
  for _, pid in ipairs(spawned) do
    local c = seen[pid] or 0
    if c == 0 then missing = missing + 1 elseif c > 1 then twice = twice + 1 end
  end
  io.write(#spawned, " ", missing, " ", twice, "\n")
end
]]

-- An orphan (its Process collected) that has ended, and a second child whose
-- lprocess.wait sweeps it; prints the orphan's pid first.
local SWEPT = [[
local lp = require "lprocess"
local core = require "lprocess.core"
local function zombie(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  local s = f and f:read("a")
  if f then f:close() end
  return s and s:match("^%d+ %(.-%) (%a)") == "Z"
end
local p = assert(lp.spawn { "/bin/true" })
local pid = p.pid
local q = assert(lp.spawn { "sh", "-c", "exit 3" })
local t0 = core.now()
while not (zombie(pid) and zombie(q.pid)) and core.now() - t0 < 5 do core.sleep(0.005) end
p = nil
collectgarbage()
collectgarbage()
assert(lp.wait(q.pid).code == 3)   -- sweeps the orphan: its status is kept
io.write(pid, "\n")
]]

describe("lprocess.wait(-1) with collected Process objects", function()
  it("gets every status exactly once, over many rounds", function()
    local out = child(CHURN .. [[
      for _ = 1, 5 do
        churn(300, function() local st, err = lp.wait(-1); assert(st, err); return { st } end)
      end]])
    local rounds = 0
    for spawned, missing, twice in out:gmatch("(%d+) (%d+) (%d+)\n") do
      rounds = rounds + 1
      assert.equal("300", spawned)
      assert.equal("0", missing, "statuses lost")
      assert.equal("0", twice, "statuses delivered twice")
    end
    assert.equal(5, rounds)
  end)

  it("reap() in the same loop gets every status exactly once", function()
    local out = child(CHURN .. [[
      churn(300, function()
        local list = lp.reap()
        if #list == 0 then local st, err = lp.wait(-1); assert(st, err); list = { st } end
        return list
      end)]])
    assert.equal("300 0 0\n", out)
  end)

  it("wait(pid) gets an owed status of that pid", function()
    local out = child(SWEPT .. [[
      local st = assert(lp.wait(pid, { nohang = true }))
      assert(st.pid == pid and st.how == "exit" and st.code == 0)
      assert(#lp.reap() == 0)
      io.write("ok\n")]])
    assert.matches("^%d+\nok\n$", out)
  end)

  it("reap() returns owed statuses first, each once", function()
    local out = child(SWEPT .. [[
      local list = lp.reap()
      assert(#list == 1 and list[1].pid == pid, #list)
      assert(#lp.reap() == 0)
      io.write("ok\n")]])
    assert.matches("^%d+\nok\n$", out)
  end)

  it("wait(-1) gets an owed status before asking the kernel", function()
    local out = child(SWEPT .. [[
      assert(assert(lp.wait(-1)).pid == pid)
      local st, _, errno = lp.wait(-1, { nohang = true })
      assert(st == nil and errno == lp.errno.ECHILD)
      io.write("ok\n")]])
    assert.matches("^%d+\nok\n$", out)
  end)
end)
