-- lrun.watchdog and lrun.groups: what lrun's watchdog kills when lrun dies -- the
-- process groups lrun told it of, in the table they share and through its pipe once
-- that table is full -- and what it leaves alone.
local H = require "helper"
local core = H.core
local groups = require "lrun.groups"
local watchdog = require "lrun.watchdog"

describe("lrun.groups", function()
  it("keeps ids until removed, reuses freed slots, and says when it is full", function()
    local t <close> = assert(groups.new(3))
    assert.is_true(t:add(101))
    assert.is_true(t:add(102))
    assert.is_true(t:add(103))
    assert.is_true(t:add(103))   -- there already: still one entry
    assert.is_false(t:add(104))
    assert.is_true(t:remove(102))
    assert.is_false(t:remove(102))
    assert.is_true(t:add(105))
    local list = t:list()
    table.sort(list)
    assert.same({ 101, 103, 105 }, list)
  end)

  it("is shared with a process forked after it was made", function()
    local t <close> = assert(groups.new(8))
    local r, w = assert(core.pipe())
    local pid = assert(core.fork())
    if pid == 0 then
      core.close(w)
      core.read(r, 1)   -- EOF once the parent has written its ids and closed
      local n = #t:list()
      core._exit(n)
    end
    core.close(r)
    assert.is_true(t:add(7))
    assert.is_true(t:add(8))
    core.close(w)
    local st = assert(H.wait_pid(pid, 10))
    assert.same({ how = "exit", code = 2 }, { how = st.how, code = st.code })
  end)

  it("refuses what is not a process group id or a size", function()
    local t <close> = assert(groups.new(1))
    assert.has_error(function() t:add(0) end)
    assert.has_error(function() t:add(-5) end)
    assert.has_error(function() t:add(2 ^ 40) end)
    assert.has_error(function() t:add("x") end)
    assert.has_error(function() groups.new(0) end)
    assert.has_error(function() groups.new(math.maxinteger) end)
    t:close()
    assert.has_error(function() t:add(1) end, "groups table is closed")
  end)
end)

describe("lrun.watchdog", function()
  local size = watchdog.SIZE
  after_each(function() watchdog.SIZE = size end)

  -- A process group of its own: a sleep leading it.
  local function group(t)
    local p = t:spawn { "sleep", "300", pgid = 0 }
    return p.pid
  end

  it("kills the groups it was told of when lrun's end of its pipe closes without bye", function()
    local t = H.track(finally)
    watchdog.SIZE = 2   -- two groups in the shared table, the rest through the pipe
    local wd = assert(watchdog.start("spec-" .. H.mypid))
    t:add(wd.pid)
    local g = {}
    for i = 1, 5 do
      g[i] = group(t)
      assert.is_true(wd:group(g[i]))
    end
    assert.equal(2, #wd.shared:list())
    -- emptied groups (one from the table, one from the pipe) are not the watchdog's
    assert.is_true(wd:ungroup(g[1]))
    assert.is_true(wd:ungroup(g[4]))
    -- lrun "dies": the watchdog sees EOF, not "bye"
    core.close(wd.fd)
    wd.fd = nil
    assert.truthy(H.wait_pid(wd.pid, 20), "the watchdog did not end")
    for _, i in ipairs { 2, 3, 5 } do
      assert.truthy(H.wait_until(function() return not H.alive(g[i]) end, 10),
        "group " .. i .. " survived")
    end
    assert.is_true(H.alive(g[1]))
    assert.is_true(H.alive(g[4]))
  end)

  it("a dead watchdog is an error to tell, never a SIGPIPE", function()
    local t = H.track(finally)
    watchdog.SIZE = 1
    local wd = assert(watchdog.start("spec-" .. H.mypid))
    t:add(wd.pid)
    assert.is_true(wd:group(group(t)))   -- the table is full now
    core.kill(wd.pid, "KILL")
    -- its pipe closes before wait() can tell: try right away, and until it can (a
    -- made-up group: the watchdog dies by SIGKILL and kills nothing)
    local ok, err
    for _ = 1, 100000 do
      ok, err = wd:group(999999999)
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.matches("^watchdog: ", err)
    local wpid = t.list[1]
    wd:bye()
    assert.is_nil(H.stat(wpid), "the watchdog is left as a zombie")
  end)

  it("after bye kills nothing, and is reaped", function()
    local t = H.track(finally)
    local wd = assert(watchdog.start("spec-" .. H.mypid))
    local pid = group(t)
    assert.is_true(wd:group(pid))
    local wpid = wd.pid
    wd:bye()
    assert.is_false(H.alive(wpid))
    assert.is_nil(H.stat(wpid), "the watchdog is left as a zombie")
    assert.is_true(H.alive(pid))
  end)
end)
