-- The job-file fuzzer's short run: scripts/fuzz-jobfile's cases (random and mutated
-- Lua and YAML job files, hostile values included) fed to `scripts/lrun -n`, each of
-- which must end with exit 0 and the plan, or exit 2 and an "lrun: " message -- no
-- traceback, internal error, crash or hang. A fixed seed, then a fresh one (printed
-- on failure: replay with FUZZ_SEED=S FUZZ_CASE=i scripts/fuzz-jobfile). The long
-- run is `make fuzz`. The cases that cost the loader its whole deadline (endless
-- loops) are left to the long run and to jobfile_spec's own deadline tests.
--
-- Defects the fuzzer found are kept as spec/fixtures/jf_fuzz_* and replayed here.
local H = require "helper"
local core = require "lprocess.core"

local F = assert(loadfile(H.root .. "/scripts/fuzz-jobfile"))("--lib", H.root)
local TIMEOUT = 60
local FIXED_SEED, FIXED_CASES, RANDOM_CASES = 20261206, 200, 100

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function run_cases(dir, seed, n)
  local failures = {}
  for i = 1, n do
    local c = F.case(seed, i, { loops = false })
    local path = ("%s/case-%d.%s"):format(dir, i, c.ext)
    spit(path, c.text)
    local res = F.run(path, TIMEOUT, H.cpath)
    local ok, why = F.check(res)
    if not ok then
      failures[#failures + 1] = ("FUZZ_SEED=%d FUZZ_CASE=%d (%s): %s: %s"):format(seed, i, c.kind,
        why, (res.stderr or ""):sub(1, 300))
    end
    os.remove(path)
  end
  return failures
end

describe("the job-file fuzzer", function()
  local dir = H.tmpdir()
  teardown(function() H.rm_rf(dir) end)

  it("tells a defect from a good end", function()
    local plan = "  1. a  true\n"
    assert.is_true((F.check { code = 0, status = { how = "exit", code = 0 }, stdout = plan, stderr = "" }))
    assert.is_true((F.check { code = 2, status = { how = "exit", code = 2 }, stdout = "",
      stderr = "lrun: jobs.lua:1: bad\n" }))
    local bad = {
      { code = 0, status = { how = "exit", code = 0 }, stdout = "", stderr = "" },
      { code = 2, status = { how = "exit", code = 2 }, stdout = "", stderr = "" },
      { code = 1, status = { how = "exit", code = 1 }, stdout = "", stderr = "lrun: x\n" },
      { code = 70, status = { how = "exit", code = 70 }, stdout = "", stderr = "lrun: internal error: x\n" },
      { code = 2, status = { how = "exit", code = 2 }, stdout = "",
        stderr = "lrun: jobs.lua: /x/lua/lrun/jobfile/fields.lua:3: attempt to index a nil value\n" },
      { code = 1, status = { how = "exit", code = 1 }, stdout = "",
        stderr = "lua5.4: x.lua:1: boom\nstack traceback:\n" },
      { code = 139, status = { how = "signal", signal = 11 }, stdout = "", stderr = "" },
      { code = 137, timed_out = true, status = { how = "signal", signal = 9 }, stdout = "", stderr = "" },
    }
    for i, res in ipairs(bad) do
      assert.is_false((F.check(res)), "bad result #" .. i .. " passed")
    end
  end)

  it("makes the same file for the same seed and case, and all kinds of files", function()
    assert.same(F.case(1, 7), F.case(1, 7))
    local kinds = {}
    for i = 1, 60 do kinds[F.case(3, i).kind:match("%a+$")] = true end
    assert.is_true(kinds.lua and kinds.yaml and true or false)
  end)

  it(FIXED_CASES .. " cases of a fixed seed end with exit 0 or 2 and an lrun: message", function()
    local failures = run_cases(dir, FIXED_SEED, FIXED_CASES)
    assert(#failures == 0, #failures .. " failed:\n" .. table.concat(failures, "\n"))
  end)

  it(RANDOM_CASES .. " cases of a fresh seed do too", function()
    local seed = math.floor(core.realtime() * 1000) % 2147483647
    local failures = run_cases(dir, seed, RANDOM_CASES)
    assert(#failures == 0, ("seed %d: %d failed:\n%s"):format(seed, #failures,
      table.concat(failures, "\n")))
  end)

  it("replays every defect it found (spec/fixtures/jf_fuzz_*)", function()
    local n = 0
    local names = assert(core.listdir(H.root .. "/spec/fixtures"))
    table.sort(names)
    for _, name in ipairs(names) do
      if name:match("^jf_fuzz_") then
        n = n + 1
        local path = H.root .. "/spec/fixtures/" .. name
        local want = H.slurp(path):match("expect: ([^\n]*)")
        local res = F.run(path, TIMEOUT, H.cpath)
        local ok, why = F.check(res)
        assert(ok, name .. ": " .. tostring(why) .. ": " .. res.stderr)
        assert.equal(2, res.code, name)
        assert(want, name .. " has no 'expect:' line")
        assert(res.stderr:find(want, 1, true), name .. ": want " .. want .. ", got " .. res.stderr)
      end
    end
    assert(n >= 3, "fewer than 3 jf_fuzz_* fixtures")
  end)
end)
