-- lrun --stats: the line at the end of a run that tells the runner's own cost (job
-- runs per second, lrun's own CPU per job, its peak RSS), and the two functions of
-- lrun.report behind it.
local H = require "helper"
local lp = H.lp
local report = require "lrun.report"

local LRUN = H.root .. "/scripts/lrun"

local function lrun(args, env)
  local argv = { LRUN }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.setenv = env or {}
  argv.setenv.LPROCESS_CPATH = H.cpath
  argv.timeout = 120
  local res = assert(lp.run(argv))
  res.code = lp.exit_code(res.status)
  return res
end

local PATTERN = "lrun: stats: (%d+) job runs in ([%d.]+)s %(([%d-]+) jobs/s%); "
  .. "lrun's own CPU ([%d.]+)s %((%d+) us per job%); peak RSS ([%d.]+) MB\n"

describe("lrun --stats", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rm_rf(dir) end)

  it("ends the run with one line of its own cost, even with -q", function()
    local file = dir .. "/jobs.lua"
    local t = {}
    for i = 1, 30 do t[i] = ('job "t%d" { "/bin/true" }'):format(i) end
    t[#t + 1] = 'job "again" { "/bin/sh", "-c", "exit 1", retries = 1 }'
    H.spit(file, table.concat(t, "\n") .. "\n")
    local r = lrun { "-q", "-j", "2", "--stats", file }
    assert.are.equal(1, r.code)   -- "again" fails twice
    local runs, wall, rate, cpu, per, rss = r.stderr:match(PATTERN)
    assert.truthy(runs, r.stderr)
    assert.are.equal(32, tonumber(runs))   -- 30 + "again" run twice
    assert.truthy(tonumber(wall) > 0)
    assert.truthy(tonumber(rate) > 0)
    assert.truthy(tonumber(cpu) >= 0)
    assert.truthy(tonumber(per) >= 0)
    -- a Lua interpreter with lrun loaded holds more than 1 MB and far less than 1 GB
    assert.truthy(tonumber(rss) > 1 and tonumber(rss) < 1024, rss)
    assert.are.equal(1, select(2, r.stderr:gsub("lrun: stats:", "")))
  end)

  it("says nothing of the kind without --stats", function()
    local file = dir .. "/jobs.lua"
    H.spit(file, 'job "a" { "/bin/true" }\n')
    local r = lrun { "-q", file }
    assert.are.equal(0, r.code)
    assert.is_nil(r.stderr:find("stats", 1, true))
  end)
end)

describe("lrun.report", function()
  it("self_usage reads this process's CPU seconds and peak RSS", function()
    local x = 0
    for i = 1, 2e6 do x = x + i % 7 end   -- some CPU of our own
    local cpu, kib = report.self_usage()
    assert.is_number(cpu)
    assert.truthy(cpu > 0 and cpu < 3600)
    assert.is_number(kib)
    assert.truthy(kib > 1024, tostring(kib))
    assert.truthy(x > 0)
  end)

  it("stats_text words the figures, and a dash for what is unknown", function()
    assert.are.equal("lrun: stats: 100 job runs in 2.00s (50 jobs/s); lrun's own CPU 0.05s "
      .. "(500 us per job); peak RSS 10.0 MB\n",
      report.stats_text { runs = 100, wall = 2, cpu = 0.05, maxrss = 10240 })
    assert.are.equal("lrun: stats: 0 job runs in 0.00s (- jobs/s); lrun's own CPU - (- per job); "
      .. "peak RSS -\n", report.stats_text { runs = 0, wall = 0 })
  end)
end)
