-- lprocess.run: spawn, feed input, capture both outputs of any size without deadlock,
-- honour a timeout by killing the child's whole process group.
local H = require "helper"
local core = H.core
local lp = H.lp

-- The two 50 MB streams the big-output child writes, built the same way here.
local GEN = [[
  local function block(tag, i)
    return tag .. string.format("%07d", i) .. "\0\255\r" .. string.rep(string.char(33 + i % 90), 1014) .. "\n"
  end
]]
local BLOCKS = 50 * 1024 * 1024 // 1024
local block = load(GEN .. " return block")()

describe("lprocess.run", function()
  it("captures stdout and stderr and returns the status, timed_out and duration", function()
    local before = H.zombie_set()
    local res = lp.run { "sh", "-c", "echo out; echo err >&2; exit 2" }
    assert.exited(2, res.status)
    assert.same({ "out\n", "err\n", false }, { res.stdout, res.stderr, res.timed_out })
    assert.is_true(res.duration >= 0 and res.duration < 30)
    assert.same({}, H.new_zombies(before))
  end)

  it("returns 50 MB on both stdout and stderr byte-exact", function()
    local code = GEN .. [[
      for i = 1, ]] .. BLOCKS .. [[ do
        io.stdout:write(block("O", i))
        io.stderr:write(block("E", i))
      end
    ]]
    local res = lp.run { "lua5.4", "-e", code, timeout = 300 }
    assert.exited(0, res.status)
    assert.is_false(res.timed_out)
    local out, err = {}, {}
    for i = 1, BLOCKS do
      out[i] = block("O", i)
      err[i] = block("E", i)
    end
    out, err = table.concat(out), table.concat(err)
    assert.equal(#out, #res.stdout)
    assert.equal(#err, #res.stderr)
    assert.is_true(#res.stdout >= 50 * 1024 * 1024)
    assert.is_true(out == res.stdout, "stdout differs")
    assert.is_true(err == res.stderr, "stderr differs")
  end)

  describe("input", function()
    it("feeds input while reading output, whatever their sizes", function()
      assert.equal("hello", lp.run { "cat", input = "hello" }.stdout)
      local big = string.rep("0123456789abcdef\0", 300000)   -- ~5 MB each way
      local res = lp.run { "cat", input = big }
      assert.exited(0, res.status)
      assert.is_true(big == res.stdout, "cat's output differs from its input")
      local empty = lp.run { "sh", "-c", "cat; echo end", input = "" }
      assert.equal("end\n", empty.stdout)
    end)

    it("survives a child that exits without reading its input", function()
      local res = lp.run { "true", input = string.rep("x", 4 * 1024 * 1024) }
      assert.exited(0, res.status)
      assert.equal("default", core.sigaction("PIPE"))   -- left as it was
    end)

    it("without input, stdin is /dev/null", function()
      local res = lp.run { "sh", "-c", "cat; readlink /proc/self/fd/0" }
      assert.equal("/dev/null\n", res.stdout)
    end)
  end)

  describe("timeout", function()
    it("kills the whole group, grandchild holding the pipe included, and returns promptly", function()
      local t = H.track(finally)
      local t0 = core.now()
      local res = lp.run { "sh", "-c", "sleep 60 & echo $!; wait; echo never", timeout = 0.5 }
      local took = core.now() - t0
      assert.is_true(res.timed_out)
      assert.signaled("TERM", res.status)
      local gc = tonumber(res.stdout:match("^(%d+)\n$"))
      assert.is_number(gc)
      t:add(gc)
      assert.is_true(took >= 0.5)
      assert.is_true(took < 20, "took " .. took)
      assert.is_true(res.duration >= 0.5 and res.duration < 20)
      -- the grandchild is dead too (re-parented to us, a subreaper)
      assert.signaled("TERM", H.wait_pid(gc, 30))
    end)

    it("sends KILL after the grace to a group that ignores TERM", function()
      local t = H.track(finally)
      local res = lp.run { "sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait", timeout = 0.3,
        grace = 0.3 }
      assert.is_true(res.timed_out)
      assert.signaled("KILL", res.status)
      assert.is_true(res.duration >= 0.6 and res.duration < 20)
      local gc = tonumber(res.stdout:match("^(%d+)\n$"))
      t:add(gc)
      assert.signaled("KILL", H.wait_pid(gc, 30))
    end)

    it("does not wait for EOF that a grandchild in another session keeps from coming", function()
      local t = H.track(finally)
      local res = lp.run { "sh", "-c", "setsid sleep 60 & echo $!", timeout = 60 }
      local gc = tonumber(res.stdout:match("^(%d+)\n"))
      t:add(gc)
      assert.is_false(res.timed_out)
      assert.exited(0, res.status)
      assert.is_true(res.duration < 30)
    end)

    it("leaves a fast child alone", function()
      local res = lp.run { "sh", "-c", "echo quick", timeout = 30 }
      assert.is_false(res.timed_out)
      assert.exited(0, res.status)
      assert.equal("quick\n", res.stdout)
    end)
  end)

  describe("check = true", function()
    it("raises an error that says what failed and how", function()
      assert.has_error(function()
        lp.run { "sh", "-c", "echo some output; echo 'it broke' >&2; exit 3", check = true }
      end, "run: 'sh -c echo some output; echo 'it broke' >&2; exit 3' exited with code 3: it broke")
      assert.has_error(function() lp.run { "sh", "-c", "kill -9 $$", check = true } end,
        "run: 'sh -c kill -9 $$' killed by SIGKILL")
      assert.has_error(function() lp.run { "sleep", "60", timeout = 0.2, check = true } end,
        "run: 'sleep 60' timed out")
    end)

    it("returns normally on success", function()
      local res = lp.run { "sh", "-c", "echo fine", check = true }
      assert.equal("fine\n", res.stdout)
    end)
  end)

  describe("options", function()
    it("passes spawn options through and puts the child in a group of its own", function()
      local res = lp.run { "sh", "-c", "echo $$ $X; pwd; cut -d' ' -f5 /proc/$$/stat",
        cwd = "/tmp", setenv = { X = "x" } }
      local pid, x, cwd, pgrp = res.stdout:match("^(%d+) (%a+)\n(%S+)\n(%d+)\n$")
      assert.same({ "x", "/tmp", pid }, { x, cwd, pgrp })
    end)

    it("leaves stdout/stderr out of the result when they go elsewhere", function()
      local dir = H.tmpdir()
      finally(function() H.rm_rf(dir) end)
      local res = lp.run { "sh", "-c", "echo a; echo b >&2", stdout = dir .. "/o", stderr = "null" }
      assert.is_nil(res.stdout)
      assert.is_nil(res.stderr)
      assert.equal("a\n", H.slurp(dir .. "/o"))
    end)

    it("returns nil, message, errno when the program cannot start", function()
      assert.oserror("ENOENT", lp.run { "no-such-program-xyz" })
      assert.oserror("ENOENT", lp.run { "true", cwd = "/nope" })
    end)

    it("raises on unknown keys", function()
      assert.has_error(function() lp.run { "true", timout = 1 } end, "run: unknown option 'timout'")
      assert.has_error(function() lp.run "true" end, "run: expected a table")
    end)
  end)

  it("exit_code turns a status into a shell-like code", function()
    assert.equal(3, lp.exit_code(lp.run { "sh", "-c", "exit 3" }.status))
    assert.equal(137, lp.exit_code(lp.run { "sh", "-c", "kill -9 $$" }.status))
  end)
end)
