-- The job files in examples/ run through scripts/lrun as a user runs them (a
-- subprocess, exit code and output checked), and README.md stays true to them:
--
-- * every `examples/...` path README names exists, and every example is named;
-- * in the "Job files" section, each ```lua / ```yaml block sits right under a
--   `<!-- from: examples/FILE -->` line and is a verbatim run of whole lines of FILE;
-- * every key the job-file loader accepts (JOB_KEYS, SETTINGS_KEYS in
--   lua/lrun/jobfile/schema.lua) is named there, and every option of `lrun --help` is named
--   in "The lrun command";
-- * the two commands README shows first are targets of the Makefile.
--
-- Runs write only to fresh temporary directories (OUT, WORK, TMPDIR), so this spec
-- may run while someone else runs the examples in the same checkout.
local H = require "helper"
local lp = require "lprocess"
local core = require "lprocess.core"
local cjson = require "cjson"

local ROOT = core.getcwd()
local LRUN = ROOT .. "/scripts/lrun"
local TIMEOUT = 300   -- seconds for one run: generous, for a loaded CI machine

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function lines_of(s)
  local t = {}
  for line in (s .. (s:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

-- A fresh directory, removed by `finally`.
local function tmpdir()
  local res = assert(lp.run { "mktemp", "-d", "/tmp/lrun-examples-spec.XXXXXX" })
  assert(res.status.code == 0, res.stderr)
  local dir = res.stdout:gsub("%s+$", "")
  finally(function() lp.run { "rm", "-rf", dir } end)
  return dir
end

-- scripts/lrun ARGS... from the repository root; setenv is merged over our
-- environment. -> { code =, stdout =, stderr =, out = {lines}, err = {lines} }
local function lrun(args, setenv)
  local env = { NO_COLOR = "1" }
  for k, v in pairs(setenv or {}) do env[k] = v end
  local opts = { LRUN, "--color", "never", cwd = ROOT, setenv = env, timeout = TIMEOUT }
  for _, a in ipairs(args) do opts[#opts + 1] = a end
  local res = assert(lp.run(opts))
  assert(not res.timed_out, "lrun " .. table.concat(args, " ") .. " ran past "
    .. TIMEOUT .. "s:\n" .. res.stdout .. res.stderr)
  local st = res.status
  return { code = st.how == "exit" and st.code or ("SIG" .. tostring(st.signame)),
    stdout = res.stdout, stderr = res.stderr,
    out = lines_of(res.stdout), err = lines_of(res.stderr) }
end

local function show(r)
  return ("\n--- exit %s\n--- stdout:\n%s--- stderr:\n%s"):format(r.code, r.stdout, r.stderr)
end

local function assert_exit(code, r)
  assert(r.code == code, ("expected exit %s, got %s"):format(code, r.code) .. show(r))
end

-- Index of the first line equal to `want` (a string) in `lines`, or nil.
local function find_line(lines, want)
  for i, l in ipairs(lines) do
    if l == want then return i end
  end
  return nil
end

-- A job's output line under the default prefix: "NAME<padding> | TEXT". The padding
-- is not the examples' business, so any run of spaces passes.
local function job_line(lines, name, text)
  for i, l in ipairs(lines) do
    local n, t = l:match("^(%S+) +| (.*)$")
    if n == name and t == text then return i end
  end
  return nil
end

local function assert_job_line(r, name, text)
  local i = job_line(r.out, name, text)
  assert(i, ("no line %q from job %s on stdout"):format(text, name) .. show(r))
  return i
end

-- The result column of a job's row in the summary table (stderr, after its
-- "job  result ..." header), or nil when the job has no row.
local function summary_result(r, name)
  local in_table = false
  for _, l in ipairs(r.err) do
    if l:find("^job%s+result%s") then
      in_table = true
    elseif in_table then
      local n, rest = l:match("^(%S+)%s+(.*)$")
      if n == name then return (rest:match("^(.-)%s%s") or rest) end
    end
  end
  return nil
end

local EXAMPLES = {
  ["examples/demo.lua"] = { "sum", "lint", "build", "flaky", "report" },
  ["examples/build-and-test.lua"] = { "outdir", "greet.o", "words.o", "main.o",
    "test_hello.o", "hello", "test_hello", "unit", "integration" },
  ["examples/fanout.lua"] = { "generate", "split", "count", "merge", "report" },
  ["examples/pipeline.yaml"] = { "generate", "evens", "odds", "sum", "flaky", "check",
    "report", "cleanup" },
}
-- { a, b }: a must come before b in the plan (b needs a, directly or not).
local ORDER = {
  ["examples/demo.lua"] = { { "lint", "build" }, { "sum", "report" }, { "build", "report" },
    { "flaky", "report" } },
  ["examples/build-and-test.lua"] = { { "outdir", "greet.o" }, { "main.o", "hello" },
    { "test_hello.o", "test_hello" }, { "test_hello", "unit" }, { "hello", "integration" },
    { "unit", "integration" } },
  ["examples/fanout.lua"] = { { "generate", "split" }, { "split", "count" },
    { "count", "merge" }, { "merge", "report" } },
  ["examples/pipeline.yaml"] = { { "generate", "evens" }, { "sum", "check" },
    { "check", "report" }, { "report", "cleanup" } },
}
local FILES = { "examples/demo.lua", "examples/build-and-test.lua", "examples/fanout.lua",
  "examples/pipeline.yaml" }

describe("examples through scripts/lrun", function()
  describe("-n prints a valid plan", function()
    for _, file in ipairs(FILES) do
      it("for " .. file, function()
        local r = lrun { "-n", file }
        assert_exit(0, r)
        assert.equal("", r.stderr)
        local pos, n = {}, 0
        for _, l in ipairs(r.out) do
          local num, name = l:match("^%s*(%d+)%. (%S+)")
          if num then
            n = n + 1
            assert(tonumber(num) == n, "plan lines are not numbered 1, 2, ...:" .. show(r))
            pos[name] = n
          end
        end
        local want = EXAMPLES[file]
        assert(n == #want, ("%d jobs in the plan, want %d"):format(n, #want) .. show(r))
        for _, name in ipairs(want) do
          assert(pos[name], "job " .. name .. " missing from the plan" .. show(r))
        end
        for _, pair in ipairs(ORDER[file]) do
          assert(pos[pair[1]] < pos[pair[2]],
            ("%s should start before %s"):format(pair[1], pair[2]) .. show(r))
        end
      end)
    end
  end)

  it("demo.lua runs in parallel, in dependency order, retries flaky and exits 0", function()
    local dir = tmpdir()
    local events = dir .. "/events.jsonl"
    local r = lrun({ "--events", events, "examples/demo.lua" }, { TMPDIR = dir })
    assert_exit(0, r)
    assert_job_line(r, "sum.0", "total: 5000050000")
    assert_job_line(r, "sum.1", "total: 20000100000")
    assert_job_line(r, "sum.2", "total: 45000150000")
    local lint_end = assert_job_line(r, "lint", "run.lua: fine")
    local build_start = assert_job_line(r, "build", "bundling 3 files")
    assert(lint_end < build_start, "build printed before lint ended" .. show(r))
    assert_job_line(r, "flaky", "server answered")
    local last = assert_job_line(r, "report", "all checks passed")
    assert.equal(#r.out, last)                  -- nothing after the final job
    assert(job_line(r.err, "flaky", "server not up yet"), "flaky's stderr is lost" .. show(r))
    local said_retry = false
    for _, l in ipairs(r.err) do
      if l:find("^lrun: job flaky: .*retry") then said_retry = true end
    end
    assert(said_retry, "lrun did not say it retries flaky" .. show(r))
    assert.equal("ok (2 attempts)", summary_result(r, "flaky"))
    for _, name in ipairs { "sum.0", "sum.1", "sum.2", "lint", "build", "report" } do
      assert.equal("ok", summary_result(r, name))
    end

    -- From the event log: four jobs (settings { jobs = 4 }) run at once, never more;
    -- build starts after lint ends, report after everything else; flaky runs twice.
    local starts, order, running, most = {}, {}, 0, 0
    for line in io.lines(events) do
      local ev = cjson.decode(line)
      if ev.event == "start" then
        starts[ev.job] = (starts[ev.job] or 0) + 1
        order[#order + 1] = "start " .. ev.job
        running = running + 1
        most = math.max(most, running)
      elseif ev.event == "exit" then
        order[#order + 1] = "exit " .. ev.job
        running = running - 1
      end
    end
    assert(most == 4, most .. " jobs at most ran at once: " .. table.concat(order, ", "))
    local function index(what) return assert(find_line(order, what), what) end
    assert(index("exit lint") < index("start build"), table.concat(order, ", "))
    assert.equal("start report", order[#order - 1])
    assert.equal(2, starts.flaky)
    assert.equal(1, starts.report)

    -- flaky's marker file went with its second attempt.
    local left = assert(lp.run { "ls", "-A", dir })
    assert.equal("events.jsonl\n", left.stdout)
  end)

  it("build-and-test.lua compiles, links, passes its unit and integration tests", function()
    local out = tmpdir() .. "/build"
    local r = lrun({ "examples/build-and-test.lua" }, { OUT = out })
    assert_exit(0, r)
    for i, what in ipairs { "greet uses the name", "greet falls back to the world",
      "an empty name is the world too", "greet truncates and returns the length it needed",
      "no words in an empty string", "no words in blanks", "one word",
      "words split on any blank" } do
      assert_job_line(r, "unit", ("ok %d - %s"):format(i, what))
    end
    assert_job_line(r, "unit", "1..8")
    assert.falsy(r.stdout:find("not ok", 1, true))
    assert_job_line(r, "integration", "integration: 3 checks passed")
    for _, name in ipairs(EXAMPLES["examples/build-and-test.lua"]) do
      assert.equal("ok", summary_result(r, name))
    end
    -- The program it built works outside lrun too.
    local hello = assert(lp.run { out .. "/hello", "lrun" })
    assert.equal("Hello, lrun!\n", hello.stdout)
  end)

  it("build-and-test.lua with a TARGET builds only what the target needs", function()
    local out = tmpdir() .. "/build"
    local r = lrun({ "examples/build-and-test.lua", "hello" }, { OUT = out })
    assert_exit(0, r)
    assert.equal("", r.stdout)          -- compilers and the linker said nothing
    for _, name in ipairs { "outdir", "greet.o", "words.o", "main.o", "hello" } do
      assert.equal("ok", summary_result(r, name))
    end
    for _, name in ipairs { "test_hello.o", "test_hello", "unit", "integration" } do
      assert.is_nil(summary_result(r, name))
    end
    assert.is_true(exists(out .. "/hello"))
    assert.is_false(exists(out .. "/test_hello"))
  end)

  it("build-and-test.lua fails (exit 1) and skips the tests when a compile fails", function()
    local out = tmpdir() .. "/build"
    -- -include of a header that does not exist breaks every compile.
    local r = lrun({ "examples/build-and-test.lua" },
      { OUT = out, CFLAGS = "-std=c11 -include no-such-header.h" })
    assert_exit(1, r)
    assert.equal("skipped", summary_result(r, "unit"))
    assert.equal("skipped", summary_result(r, "integration"))
  end)

  it("fanout.lua splits into $PARTS parts, counts them in parallel and merges", function()
    local work = tmpdir() .. "/work"
    local r = lrun({ "examples/fanout.lua" }, { WORK = work, PARTS = "3" })
    assert_exit(0, r)
    assert_job_line(r, "generate", "200000 lines, 15612001 bytes")
    local total = 0
    for i = 0, 2 do
      local part = ("part.%03d"):format(i)
      local line
      for _, l in ipairs(r.out) do
        local n, t = l:match("^(%S+) +| (.*)$")
        if n == "count." .. i then line = t end
      end
      local c = line and tonumber(line:match("^" .. part .. ": (%d+) requests$"))
      assert(c, "no count from count." .. i .. show(r))
      total = total + c
    end
    assert.equal(200000, total)
    assert.is_nil(summary_result(r, "count.3"))
    assert_job_line(r, "merge", "merged 3 parts into 40 rows")
    assert_job_line(r, "report", "requests: 200000 in the log, 200000 counted")
    assert_job_line(r, "report", "63278 /")
    assert_job_line(r, "report", "results in " .. work .. "/totals.txt")
    assert.is_true(exists(work .. "/totals.txt"))
  end)

  it("fanout.lua gives the same totals whatever the number of parts", function()
    local base = tmpdir()
    local totals = {}
    for _, parts in ipairs { "1", "8" } do
      local work = base .. "/w" .. parts
      local r = lrun({ "-q", "examples/fanout.lua" }, { WORK = work, PARTS = parts })
      assert_exit(0, r)
      totals[parts] = slurp(work .. "/totals.txt")
    end
    assert.equal(40, #lines_of(totals["1"]))
    assert.equal(totals["1"], totals["8"])
  end)

  it("fanout.lua refuses a bad PARTS with exit 2, naming the file", function()
    local r = lrun({ "examples/fanout.lua" }, { PARTS = "many", WORK = tmpdir() .. "/w" })
    assert_exit(2, r)
    assert.equal("", r.stdout)
    assert.truthy(r.stderr:find("fanout.lua", 1, true), show(r))
    assert.truthy(r.stderr:find("PARTS must be a whole number", 1, true), show(r))
  end)

  it("pipeline.yaml runs to exit 0", function()
    local r = lrun { "examples/pipeline.yaml" }
    assert_exit(0, r)
    assert_job_line(r, "sum", "evens: 250500")
    assert_job_line(r, "sum", "odds: 250000")
    assert_job_line(r, "report", "pipeline finished")
  end)
end)

---------------------------------------------------------------------------------------
-- README.md

local function readme() return slurp(ROOT .. "/README.md") end

-- The text of the "## TITLE" section, up to the next "## " heading.
local function section(text, title)
  local start = text:find("\n## " .. title .. "\n", 1, true)
  assert(start, "README.md has no '## " .. title .. "' section")
  local stop = text:find("\n## ", start + 1, true)
  return text:sub(start + 1, stop)
end

local blocks, verbatim = H.md_blocks, H.verbatim

-- The strings of `local NAME = { "a", "b", ... }` in a Lua source file.
local function string_list(src, name)
  local body = src:match("local " .. name .. " = (%b{})")
  assert(body, "no 'local " .. name .. " = { ... }' in lua/lrun/jobfile/schema.lua")
  local t = {}
  for s in body:gmatch('"([%w_]+)"') do t[#t + 1] = s end
  return t
end

describe("README.md", function()
  it("names only example files that exist, and names every example", function()
    local text = readme()
    local named = {}
    for path in text:gmatch("examples/[%w_./-]*[%w_/]") do
      named[path] = true
      assert(exists(ROOT .. "/" .. path), "README.md names " .. path .. ", which does not exist")
    end
    for _, file in ipairs(FILES) do
      assert(named[file], "README.md does not name " .. file)
    end
  end)

  it("shows `make demo` and `make test` first, and the Makefile has both", function()
    local first = blocks(readme())[1]
    assert(first, "README.md has no code block")
    assert.truthy(first.body:find("^make demo"), first.body)
    assert.truthy(first.body:find("\nmake test"), first.body)
    local mk = slurp(ROOT .. "/Makefile")
    local demo = mk:match("\ndemo:[^\n]*\n(.-)\n%S")
    assert(demo, "Makefile has no demo target")
    assert.truthy(demo:find("examples/demo.lua", 1, true), demo)
    assert.truthy(mk:find("\ntest:", 1, true))
  end)

  it("quotes the examples verbatim in 'Job files'", function()
    local marked, files = 0, {}
    for _, b in ipairs(blocks(section(readme(), "Job files"))) do
      if b.lang ~= "" then
        assert(b.marker, ("the ```%s block starting %q has no <!-- from: examples/FILE --> line"
          .. " right above it"):format(b.lang, tostring(b.first)))
        assert(b.marker:find("^examples/"), b.marker)
        assert(exists(ROOT .. "/" .. b.marker), b.marker .. " does not exist")
        local ok, why = verbatim(b.body, slurp(ROOT .. "/" .. b.marker))
        assert(ok, ("README.md's block from %s starting %q: %s"):format(b.marker,
          tostring(b.first), tostring(why)))
        local ext = b.marker:match("%.(%w+)$")
        assert.equal(ext == "lua" and "lua" or "yaml", b.lang)
        marked, files[b.marker] = marked + 1, true
      end
    end
    assert(marked >= 4, "fewer than 4 quoted blocks in 'Job files'")
    for _, file in ipairs(FILES) do
      assert(files[file], "'Job files' quotes nothing from " .. file)
    end
  end)

  it("catches a quote that drifted from its file", function()
    -- The check above must be able to fail.
    local src = slurp(ROOT .. "/examples/demo.lua")
    assert.is_true((verbatim('job "report" {\n  "echo", "all checks passed",', src)))
    assert.is_false((verbatim('job "report" {\n  "echo", "all checks passed!",', src)))
    assert.is_false((verbatim('  "echo", "all checks passed",\njob "report" {', src)))
  end)

  it("names every job and settings key the loader accepts in 'Job files'", function()
    local src = slurp(ROOT .. "/lua/lrun/jobfile/schema.lua")
    local text = section(readme(), "Job files")
    local keys = string_list(src, "JOB_KEYS")
    assert(#keys >= 20, "JOB_KEYS looks truncated: " .. table.concat(keys, " "))
    for _, list in ipairs { keys, string_list(src, "SETTINGS_KEYS") } do
      for _, k in ipairs(list) do
        assert(text:find("`" .. k .. "[` ]") or text:find("`" .. k .. "$")
          or text:find("[{,] " .. k .. " =", 1), "'Job files' does not name the key " .. k)
      end
    end
  end)

  it("names every option of `lrun --help` in 'The lrun command'", function()
    local r = lrun { "--help" }
    assert_exit(0, r)
    local text = section(readme(), "The lrun command")
    local opts = {}
    for o in r.stdout:gmatch("%-%-[%a][%w-]*") do opts[o] = true end
    for o in r.stdout:gmatch("%f[%S]%-%a%f[%s,]") do opts[o] = true end
    assert(opts["--jobs"] and opts["-j"] and opts["--init"], "odd --help output:" .. show(r))
    for o in pairs(opts) do
      assert(text:find("`" .. o:gsub("%-", "%%-") .. "[` ,]"),
        "'The lrun command' does not name " .. o)
    end
  end)
end)
