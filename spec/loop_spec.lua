-- lprocess.loop: timers, children, orphans, signals and descriptors, all driven by
-- readiness. Every loop gets a deadline timer so a broken loop fails, not hangs.
local H = require "helper"
local core = H.core
local Loop = require "lprocess.loop"

-- A loop that stops itself (and says so) after `secs`.
local function new_loop(secs)
  local loop = Loop.new()
  loop.deadline_hit = false
  loop.guard = loop:timer(secs or 60, function()
    loop.deadline_hit = true
    loop:stop()
  end)
  return loop
end

-- A child that exits when the write end of the returned pipe is closed.
local function held(t, opts)
  local r, w = assert(core.pipe())
  local o = { "cat", fds = { [0] = r } }
  for k, v in pairs(opts or {}) do o[k] = v end
  local p = t:spawn(o)
  core.close(r)
  return p, w
end

describe("lprocess.loop", function()
  describe("timers", function()
    it("fire in deadline order, ties in creation order, and can be cancelled", function()
      local loop <close> = new_loop()
      local order = {}
      local t0 = core.now()
      loop:timer(0.2, function() order[#order + 1] = "c" end)
      loop:timer(0.1, function() order[#order + 1] = "a" end)
      local dropped = loop:timer(0.15, function() order[#order + 1] = "dropped" end)
      loop:timer(0.1, function() order[#order + 1] = "b" end)
      loop:timer(0, function(t)
        order[#order + 1] = "now"
        assert.equal("table", type(t))
      end)
      dropped:cancel()
      dropped:cancel()
      loop.guard:cancel()
      loop:run()
      assert.same({ "now", "a", "b", "c" }, order)
      assert.is_true(core.now() - t0 >= 0.2)
    end)

    it("a timer may cancel another and schedule more", function()
      local loop <close> = new_loop()
      local fired = {}
      local victim
      loop:timer(0.05, function()
        fired[#fired + 1] = 1
        victim:cancel()
        loop:timer(0.05, function() fired[#fired + 1] = 3 end)
        loop:defer(function() fired[#fired + 1] = 2 end)
      end)
      victim = loop:timer(0.08, function() fired[#fired + 1] = "victim" end)
      loop.guard:cancel()
      loop:run()
      assert.same({ 1, 2, 3 }, fired)
    end)

    it("keeps a thousand timers in heap order", function()
      local loop <close> = new_loop()
      loop.guard:cancel()
      local got, cancelled = {}, {}
      local timers = {}
      for i = 1, 1000 do
        local d = ((i * 7919) % 1000) / 20000   -- 0 .. 50 ms, scrambled
        timers[i] = loop:timer(d, function(t) got[#got + 1] = t.at end)
      end
      for i = 1, 1000, 3 do timers[i]:cancel(); cancelled[#cancelled + 1] = i end
      loop:run()
      assert.equal(1000 - #cancelled, #got)
      for i = 2, #got do assert.is_true(got[i - 1] <= got[i]) end
    end)
  end)

  describe("children", function()
    it("calls the child callback with the status, recorded on the Process too", function()
      local t = H.track(finally)
      local loop <close> = new_loop()
      local p = t:spawn { "sh", "-c", "exit 4" }
      local got
      loop:child(p.pid, function(st) got = st end)
      loop:run(function() return got ~= nil end)
      assert.is_false(loop.deadline_hit)
      assert.exited(4, got)
      assert.equal(got, p.status)
      assert.same({}, H.zombies_of(nil, { [p.pid] = true }))
    end)

    it("keeps statuses nobody asked for until :child claims them", function()
      local t = H.track(finally)
      local loop <close> = new_loop()
      local a, wa = held(t)
      local b, wb = held(t)
      local got_b
      loop:child(b.pid, function(st) got_b = st end)
      core.close(wa)
      local fd = assert(core.pidfd_open(a.pid))
      core.poll({ [fd] = "r" }, 30)          -- a has ended before b
      core.close(fd)
      core.close(wb)
      loop:run(function() return got_b ~= nil end)
      assert.exited(0, got_b)
      assert.exited(0, loop.unclaimed[a.pid])
      local got_a
      loop:child(a.pid, function(st) got_a = st end)
      assert.is_nil(got_a)                   -- deferred: the caller's code runs first
      assert.is_nil(loop.unclaimed[a.pid])
      loop:run(function() return got_a ~= nil end)
      assert.exited(0, got_a)
    end)

    it("hands orphans re-parented to us to on_orphan", function()
      local t = H.track(finally)
      local loop <close> = new_loop()
      local r, w = assert(core.pipe())
      local sh = t:spawn { "sh", "-c", "cat <&3 >/dev/null & echo $!", stdout = "pipe",
        fds = { [3] = r } }
      core.close(r)
      local gc = tonumber(H.read_line(sh.stdout, 30))
      t:add(gc)
      local sh_done, orphan
      loop:child(sh.pid, function() sh_done = true end)
      loop.on_orphan = function(st) if st.pid == gc then orphan = st end end
      loop:run(function() return sh_done end)
      assert.equal(H.mypid, H.stat(gc).ppid)
      core.close(w)                          -- now the grandchild ends
      loop:run(function() return orphan ~= nil end)
      assert.is_false(loop.deadline_hit)
      assert.exited(0, orphan)
    end)

    it("delivers 400 children exiting at once, every one of them", function()
      local t = H.track(finally)
      local loop <close> = new_loop(120)
      local r, w = assert(core.pipe())
      local null = assert(core.open("/dev/null", "w"))
      local pids, got, n = {}, {}, 0
      for i = 1, 400 do
        local p = t:spawn { "cat", fds = { [0] = r, [1] = null } }
        pids[i] = p.pid
        loop:child(p.pid, function(st)
          got[p.pid] = st
          n = n + 1
        end)
      end
      core.close(r)
      core.close(null)
      core.close(w)
      loop:run(function() return n == 400 end)
      assert.is_false(loop.deadline_hit)
      assert.equal(400, n)
      for _, pid in ipairs(pids) do assert.exited(0, got[pid]) end
      assert.zombiefree(pids)
      assert.is_nil(next(loop.children))
    end)

    it("reaps children that ended before the loop ran", function()
      local t = H.track(finally)
      local p = t:spawn { "true" }
      local fd = assert(core.pidfd_open(p.pid))
      core.poll({ [fd] = "r" }, 30)
      core.close(fd)
      local loop <close> = new_loop()
      local got
      loop:child(p.pid, function(st) got = st end)
      loop.guard:cancel()
      loop:run()
      assert.exited(0, got)
    end)
  end)

  describe("signals", function()
    it("runs handlers for signals, by name or number, from the loop", function()
      local loop <close> = new_loop()
      local got = {}
      loop:signal("USR1", function(sig) got[#got + 1] = sig end)
      loop:signal("SIGUSR2", function(sig) got[#got + 1] = sig end)
      loop:signal(core.signals.WINCH, function(sig) got[#got + 1] = sig end)
      local blk = H.sigset(H.status_fields(H.mypid).SigBlk)
      assert.is_true(blk[core.signals.USR1] and blk[core.signals.USR2] and blk[core.signals.CHLD])
      core.raise("USR1")
      local k = assert(core.spawn { argv = { "kill", "-USR2", tostring(H.mypid) } })
      loop:child(k, function() end)
      loop:run(function() return #got >= 2 end)
      table.sort(got)
      assert.same({ core.signals.USR1, core.signals.USR2 }, got)
      -- removing a handler unblocks the signal again
      loop:signal("USR1", nil)
      assert.is_nil(H.sigset(H.status_fields(H.mypid).SigBlk)[core.signals.USR1])
      assert.has_error(function() loop:signal("NOPE", function() end) end)
    end)

    it("unblocks its signals when closed", function()
      do
        local loop <close> = Loop.new()
        loop:signal("USR2", function() end)
      end
      local blk = H.sigset(H.status_fields(H.mypid).SigBlk)
      assert.is_nil(blk[core.signals.USR2])
      assert.is_nil(blk[core.signals.CHLD])
    end)
  end)

  describe("descriptors", function()
    it("watch calls back on readiness and hangup; unwatch stops it", function()
      local loop <close> = new_loop()
      local r, w = assert(core.pipe())
      finally(function() core.close(r) end)
      local events = {}
      loop:watch(r, "r", function(fd, ev)
        events[#events + 1] = ev
        local s = core.read(fd)
        if s == "" then loop:unwatch(fd) end
      end)
      core.write(w, "x")
      loop:step(5)
      assert.same({ "r" }, events)
      loop:step(0.05)                        -- nothing more to read: no callback
      assert.same({ "r" }, events)
      core.close(w)
      loop:run(function() return #events >= 2 end)
      assert.matches("h", events[2])
      assert.is_nil(loop.fds[r])
    end)

    it("unwatch(fd, true) before close: the number, reused at once, is watched afresh", function()
      local loop <close> = new_loop()
      local r, w = assert(core.pipe())
      loop:watch(r, "r", function() error("the closed pipe's callback ran") end)
      loop:unwatch(r, true)
      core.close(r)
      core.close(w)
      -- the kernel dropped the closed descriptor from the epoll set: the same number,
      -- now another pipe, is added (no EEXIST) and reports its own data only
      local r2, w2 = assert(core.pipe())
      finally(function() core.close(r2); core.close(w2) end)
      assert.equal(r, r2)
      local got = {}
      assert(loop:watch(r2, "r", function(fd) got[#got + 1] = core.read(fd) end))
      core.write(w2, "y")
      loop:run(function() return #got > 0 end)
      assert.same({ "y" }, got)
    end)

    it("watch on an fd already watched changes its events and callback", function()
      local loop <close> = new_loop()
      local r, w = assert(core.pipe())
      finally(function() core.close(r); core.close(w) end)
      local first, second = 0, 0
      loop:watch(w, "r", function() first = first + 1 end)
      loop:watch(w, "w", function() second = second + 1 end)
      loop:step(5)
      assert.same({ 0, 1 }, { first, second })
      loop:unwatch(w)
      loop:unwatch(w)
      loop:step(0.05)
      assert.same({ 0, 1 }, { first, second })
    end)
  end)

  describe("running", function()
    it("run returns when nothing is left; stop ends it early; idle runs before blocking", function()
      local loop <close> = Loop.new()
      local idle = 0
      loop:on_idle(function() idle = idle + 1 end)
      loop:run()                             -- nothing to do at all
      local n = 0
      loop:timer(0.01, function() n = n + 1 loop:stop() end)
      loop:timer(30, function() n = n + 100 end)
      loop:run()
      assert.equal(1, n)
      assert.is_true(idle >= 1)
      assert.is_true(loop:busy())
      assert.is_false(loop.running)
    end)

    it("never sleeps to poll: an idle loop blocks in epoll_wait", function()
      local t = H.track(finally)
      local loop <close> = new_loop(0.5)
      local idle = 0
      loop:on_idle(function() idle = idle + 1 end)
      local _, w = held(t)
      loop:child(t.list[1].pid, function() end)
      loop:run(function() return loop.deadline_hit end)
      core.close(w)
      -- half a second with a live child and nothing happening: a handful of turns
      assert.is_true(idle <= 3, "turns: " .. idle)
    end)
  end)
end)
