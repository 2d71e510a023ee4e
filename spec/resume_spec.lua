-- --resume and --retry-failed (issue 13): a run picks up from its --joblog, keyed by
-- job name (the joblog's Host column), running again what failed, what never ran, and
-- what changed its command. Real runs of scripts/lrun; what ran is what the jobs
-- wrote.
local H = require "helper"
local C = require "support.ctl"
local resume = require "lrun.resume"

local FILE = [[
local T = os.getenv("T")
local function step(name) return "echo " .. name .. " >> " .. T .. "/ran" end
job "a" { cmd = step("a") .. (os.getenv("A_EXTRA") or "") }
job "c" { cmd = step("c") .. " && test -e " .. T .. "/fixed" }
job "b" { cmd = step("b"), needs = { "a" } }
job "d" { cmd = step("d"), needs = { "c" } }
job "e" { cmd = step("e"), needs = { "b" } }
service "s" { cmd = "exec sleep 100" }
]]

describe("lrun --resume / --retry-failed", function()
  local T
  before_each(function()
    T = H.tmpdir()
    C.jobfile(T, FILE)
  end)
  after_each(function() H.rm_rf(T) end)

  local function lrun(...)
    local argv = { C.LRUN, "-j1", "--joblog", T .. "/log", ... }
    argv[#argv + 1] = T .. "/jobs.lua"
    argv.setenv = { LPROCESS_CPATH = H.cpath, T = T }
    argv.timeout = 60
    local r = assert(H.lp.run(argv))
    r.code = H.lp.exit_code(r.status)
    return r
  end

  -- what ran since the last call
  local seen = 0
  local function ran()
    local all = H.lines_of(H.slurp(T .. "/ran") or "")
    local new = table.concat(all, " ", seen + 1)
    seen = #all
    return new
  end

  it("runs again only what failed, what it blocks, what never ran, what changed", function()
    seen = 0
    local r = lrun()
    assert.equal(1, r.code)                 -- c failed, b d e were not started
    assert.equal("a c", ran())
    local rows = assert(resume.read(T .. "/log"))
    assert.equal(0, rows.a.exitval)
    assert.equal(1, rows.c.exitval)         -- keyed by name, from the Host column

    H.spit(T .. "/fixed", "")
    r = lrun("--retry-failed")
    assert.equal(0, r.code, r.stderr)       -- b and e never ran: left out, no failure
    assert.equal("c d", ran())
    assert.matches("b%s+skipped", r.stderr)

    r = lrun("--resume")
    assert.equal(0, r.code, r.stderr)
    assert.equal("b e", ran())

    r = lrun("--resume")
    assert.equal(0, r.code, r.stderr)
    assert.equal("", ran())                 -- everything is done
    assert.matches("a%s+ok", r.stderr)

    -- the joblog grew, with one header
    local log = H.slurp(T .. "/log")
    assert.equal(1, select(2, log:gsub("Seq\t", "")))
    assert.equal(1 + 2 + 2 + 2 + 4, #H.lines_of(log))   -- and the service, each run
  end)

  it("a job whose command changed runs again", function()
    seen = 0
    H.spit(T .. "/fixed", "")
    assert.equal(0, lrun().code)
    assert.equal("a c b d e", ran())
    local argv = { C.LRUN, "-j1", "--joblog", T .. "/log", "--resume", T .. "/jobs.lua",
      setenv = { LPROCESS_CPATH = H.cpath, T = T, A_EXTRA = " && true" }, timeout = 60 }
    local r = assert(H.lp.run(argv))
    assert.equal(0, H.lp.exit_code(r.status), r.stderr)
    assert.equal("a", ran())
  end)

  it("--resume with no joblog yet runs everything; without --joblog is a usage error", function()
    seen = 0
    H.spit(T .. "/fixed", "")
    local r = lrun("--resume")
    assert.equal(0, r.code, r.stderr)
    assert.equal("a c b d e", ran())
    local bad = assert(H.lp.run { C.LRUN, "--resume", T .. "/jobs.lua",
      setenv = { LPROCESS_CPATH = H.cpath } })
    assert.equal(2, H.lp.exit_code(bad.status))
    assert.matches("%-%-resume needs %-%-joblog FILE", bad.stderr)
  end)
end)
