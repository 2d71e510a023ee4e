-- lprocess.status: one wording of a wait status, from real children's statuses.
local lp = require "lprocess"
local status = require "lprocess.status"

local function status_of(script)
  local p = assert(lp.spawn { "sh", "-c", script })
  return p:wait()
end

describe("lprocess.status", function()
  it("describes exits, signals and core dumps in one wording", function()
    assert.equal("exited with code 3", status.describe(status_of("exit 3")))
    assert.equal("killed by SIGTERM", status.describe(status_of("kill -TERM $$")))
    local st = status_of("ulimit -c 0; kill -SEGV $$")
    assert.matches("^killed by SIGSEGV", status.describe(st))
    assert.equal("did not start", status.describe(nil))
    assert.equal("prog: No such file or directory",
      status.describe { how = "error", error = "prog: No such file or directory" })
    assert.equal("stopped by SIGSTOP", status.describe { how = "stop", signal = 19, signame = "STOP" })
  end)

  it("turns a status into a shell's exit code", function()
    assert.equal(3, status.exit_code(status_of("exit 3")))
    assert.equal(143, status.exit_code(status_of("kill -TERM $$")))
    assert.equal(137, status.exit_code(status_of("kill -KILL $$")))
  end)

  it("says whether a status is a success, for sets and lists of codes", function()
    local e0, e3, sig = status_of("exit 0"), status_of("exit 3"), status_of("kill -TERM $$")
    assert.is_true(status.ok(e0))
    assert.is_false(status.ok(e3))
    assert.is_true(status.ok(e3, { [0] = true, [3] = true }))
    assert.is_true(status.ok(e3, { 0, 3 }))
    assert.is_false(status.ok(e0, { 3 }))
    assert.is_false(status.ok(sig, { 0, 143 }))
    assert.is_false(status.ok(nil))
  end)
end)
