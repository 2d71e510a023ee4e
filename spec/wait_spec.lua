-- lprocess.wait / reap with raw pids and collected Process objects mixed: the orphan
-- sweep never loses a status (issue 14). Real children, forced collections.
local H = require "helper"
local lp = H.lp

-- Spawn `n` children of /bin/true, at most two in flight, collecting with `collect`
-- (which returns an array of statuses); a full collection after every spawn makes the
-- discarded Process objects orphans at the worst moment. Returns pids spawned and the
-- count of statuses seen per pid.
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
    local p = assert(lp.spawn { "/bin/true" })
    spawned[#spawned + 1] = p.pid
    inflight = inflight + 1
    p = nil   -- luacheck: ignore (dropped on purpose: the object becomes garbage)
    collectgarbage()
  end
  while inflight > 0 do take() end
  return spawned, seen
end

local function assert_each_once(spawned, seen)
  local missing, twice = 0, 0
  for _, pid in ipairs(spawned) do
    local c = seen[pid] or 0
    if c == 0 then missing = missing + 1 elseif c > 1 then twice = twice + 1 end
  end
  assert.equal(0, missing, "statuses lost")
  assert.equal(0, twice, "statuses delivered twice")
end

describe("lprocess.wait(-1) with collected Process objects", function()
  it("gets every status exactly once, over many rounds", function()
    for _ = 1, 5 do
      local spawned, seen = churn(300, function()
        local st, err = lp.wait(-1)
        assert(st, err)
        return { st }
      end)
      assert_each_once(spawned, seen)
    end
    assert.same({}, H.zombies_of())
  end)

  -- An orphan (its Process collected) that has ended, and a second child `q`; a
  -- lprocess.wait for q sweeps the orphan. Returns the orphan's pid and q.
  local function swept_orphan()
    local p = assert(lp.spawn { "/bin/true" })
    local pid = p.pid
    local q = assert(lp.spawn { "sh", "-c", "exit 3" })
    assert.truthy(H.wait_until(function()
      local a, b = H.stat(pid), H.stat(q.pid)
      return a and a.state == "Z" and b and b.state == "Z"
    end, 5))
    p = nil   -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(3, lp.wait(q.pid).code)   -- sweeps the orphan: its status is kept
    return pid
  end

  it("wait(pid) gets an owed status of that pid", function()
    local pid = swept_orphan()
    local st = assert(lp.wait(pid, { nohang = true }))
    assert.equal(pid, st.pid)
    assert.equal("exit", st.how)
    assert.same({}, lp.reap())
  end)

  it("reap() returns owed statuses first, each once", function()
    local pid = swept_orphan()
    local list = lp.reap()
    assert.equal(1, #list)
    assert.equal(pid, list[1].pid)
    assert.same({}, lp.reap())
  end)

  it("wait(-1) gets an owed status before asking the kernel", function()
    local pid = swept_orphan()
    assert.equal(pid, assert(lp.wait(-1)).pid)
    local st, _, errno = lp.wait(-1, { nohang = true })
    assert.is_nil(st)
    assert.equal(lp.errno.ECHILD, errno)
  end)
end)
