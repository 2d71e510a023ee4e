-- lrun.report: summary table, GNU parallel joblog, JSON events, status text.
local report = require "lrun.report"
local cjson = require "cjson"

local tmpfiles = {}

local function tmpname()
  local p = os.tmpname()
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

after_each(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
  tmpfiles = {}
end)

describe("lrun.report", function()
  describe("summary", function()
    it("prints an aligned table with a header, one row per job", function()
      local text = report.summary{
        { name = "build", result = "ok", code = 0, duration = 1.234, cpu = 0.8, maxrss = 12345 },
        { name = "integration", result = "failed", signame = "KILL", duration = 123, cpu = 61,
          maxrss = 512, attempts = 3 },
        { name = "lint", result = "skipped" },
        { name = "slow", result = "timeout", signame = "SIGTERM", duration = 3725.4,
          cpu = 0.004, maxrss = 3 * 1024 * 1024 },
        { name = "web", result = "gave up", code = 1, duration = 12.25, attempts = 1 },
      }
      assert.equal(table.concat({
        "job          result               exit     duration    CPU  peak RSS",
        "build        ok                   0           1.23s  0.80s  12.1 MiB",
        "integration  failed (3 attempts)  SIGKILL     2m03s  1m01s   512 KiB",
        "lint         skipped              -               -      -         -",
        "slow         timeout              SIGTERM     1h02m  0.00s   3.0 GiB",
        "web          gave up              1           12.2s      -         -",
      }, "\n") .. "\n", text)
    end)

    it("aligns non-ASCII names by characters", function()
      local text = report.summary{ { name = "café", result = "ok", code = 0 }, { name = "x", result = "ok" } }
      assert.equal("job   result  exit  duration  CPU  peak RSS\n"
        .. "café  ok      0            -    -         -\n"
        .. "x     ok      -            -    -         -\n", text)
    end)

    it("prints only the header for no jobs", function()
      assert.equal("job  result  exit  duration  CPU  peak RSS\n", report.summary{})
    end)

    it("formats durations and memory for people", function()
      assert.equal("0.05s", report.duration(0.05))
      assert.equal("59.9s", report.duration(59.94))
      assert.equal("1m00s", report.duration(59.96))
      assert.equal("10.0s", report.duration(9.996))
      assert.equal("2h00m", report.duration(7200))
      assert.equal("1023 KiB", report.kib(1023))
      assert.equal("1.0 MiB", report.kib(1024))
    end)
  end)

  describe("joblog", function()
    it("writes GNU parallel's header and tab-separated rows", function()
      local path = tmpname()
      local w = assert(report.joblog(path))
      w:write{ seq = 1, start = 1700000000.12345, runtime = 0.1239, exitval = 0, signal = 0,
               command = "make -j2" }
      w:write{ start = 1700000001, runtime = 61.5, exitval = 3, command = { "sh", "-c", "echo 'hi'\nexit 3" } }
      w:write{ host = "server1", start = 1700000002.5, runtime = 1234567.8915, exitval = 0,
               signal = "TERM", send = 10, receive = 20, command = "sleep 9" }
      w:close()
      assert.equal(
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
        .. "1\t:\t1700000000.123\t     0.123\t0\t0\t0\t0\tmake -j2\n"
        .. "2\t:\t1700000001.000\t    61.500\t0\t0\t3\t0\tsh -c 'echo '\\''hi'\\''\0exit 3'\n"
        .. "3\tserver1\t1700000002.500\t1234567.891\t10\t20\t0\t15\tsleep 9\n",
        slurp(path))
    end)

    it("is readable before close: every row is flushed", function()
      local path = tmpname()
      local w = assert(report.joblog(path))
      w:write{ start = 1, runtime = 1, command = "true" }
      assert.equal(2, select(2, slurp(path):gsub("\n", "")))
      w:close()
    end)

    it("appends without a second header when asked", function()
      local path = tmpname()
      local w = assert(report.joblog(path))
      w:write{ start = 1, runtime = 0, command = "a" }
      w:close()
      w = assert(report.joblog(path, { append = true }))
      w:write{ seq = 2, start = 2, runtime = 0, command = "b" }
      w:close()
      local text = slurp(path)
      assert.equal(1, select(2, text:gsub("Seq\t", "")))
      assert.truthy(text:find("\n2\t:\t2.000\t", 1, true))
    end)

    it("returns nil and a message when the file cannot be opened", function()
      local w, err = report.joblog("/nonexistent-dir/x/joblog")
      assert.is_nil(w)
      assert.is_string(err)
    end)

    it("matches what GNU parallel itself writes", function()
      if not os.execute("command -v parallel >/dev/null 2>&1") then
        pending("GNU parallel is not installed")
        return
      end
      local theirs = tmpname()
      -- Its exit status is the number of failed jobs (one here).
      os.execute("parallel -j1 --joblog " .. theirs
        .. " ::: true 'exit 3' 'sleep 0.01' >/dev/null 2>&1 </dev/null")
      local lines = {}
      for l in slurp(theirs):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      assert.equal(4, #lines)
      -- Write the same rows through our writer and compare byte for byte.
      local ours = tmpname()
      local w = assert(report.joblog(ours))
      for i = 2, #lines do
        local f = {}
        for field in (lines[i] .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
        w:write{ seq = tonumber(f[1]), host = f[2], start = tonumber(f[3]), runtime = tonumber(f[4]),
                 send = tonumber(f[5]), receive = tonumber(f[6]), exitval = tonumber(f[7]),
                 signal = tonumber(f[8]), command = f[9] }
      end
      w:close()
      assert.equal(slurp(theirs), slurp(ours))
    end)
  end)

  describe("events", function()
    local clock = function() return 1700000000.5 end

    local function lines_of(path)
      local t = {}
      for l in slurp(path):gmatch("([^\n]*)\n") do t[#t + 1] = l end
      return t
    end

    it("writes one JSON object per line: event, time, job, then sorted fields", function()
      local path = tmpname()
      local w = assert(report.events(path, { clock = clock }))
      w:emit("start", { job = "build", pid = 4242, argv = { "make", "-C", "src/lib" } })
      w:emit("exit", { job = "build", code = 0, duration = 1.5 })
      w:emit("done", {})
      w:close()
      local lines = lines_of(path)
      assert.same({
        '{"event":"start","time":1700000000.500000,"job":"build","argv":["make","-C","src/lib"],"pid":4242}',
        '{"event":"exit","time":1700000000.500000,"job":"build","code":0,"duration":1.5}',
        '{"event":"done","time":1700000000.500000}',
      }, lines)
      for _, l in ipairs(lines) do assert.is_table(cjson.decode(l)) end
    end)

    it("flushes each line, so a reader tailing the file sees it at once", function()
      local path = tmpname()
      local w = assert(report.events(path))
      w:emit("start", { job = "a" })
      local l = lines_of(path)
      assert.equal(1, #l)
      local ev = cjson.decode(l[1])
      assert.equal("start", ev.event)
      assert.equal("a", ev.job)
      assert.is_true(math.abs(ev.time - os.time()) < 5)
      w:close()
    end)

    it("takes the time from fields.time when given", function()
      local path = tmpname()
      local w = assert(report.events(path, { clock = clock }))
      w:emit("exit", { job = "x", time = 12.25 })
      w:close()
      assert.equal('{"event":"exit","time":12.250000,"job":"x"}', lines_of(path)[1])
    end)

    it("turns invalid UTF-8 into U+FFFD and stays valid JSON", function()
      local path = tmpname()
      local w = assert(report.events(path, { clock = clock }))
      w:emit("log", { job = "bin\xff", line = "a\xc3(b\xed\xa0\x80c\0d", ok = "é€" })
      w:close()
      local l = lines_of(path)[1]
      assert.truthy(utf8.len(l))
      local ev = cjson.decode(l)
      assert.equal("bin\u{FFFD}", ev.job)
      assert.equal("a\u{FFFD}(b\u{FFFD}\u{FFFD}\u{FFFD}c\0d", ev.line)
      assert.equal("é€", ev.ok)
    end)

    it("never crashes on values JSON cannot hold", function()
      local path = tmpname()
      local w = assert(report.events(path, { clock = clock }))
      local cyc = {}
      cyc.self = cyc
      w:emit("odd", { job = "j", nan = 0 / 0, inf = math.huge, fn = print, cyc = cyc,
                      sparse = { [1] = 1, [100] = 2 }, mixed = { 1, 2, x = 3 }, [true] = 1 })
      w:close()
      local ev = cjson.decode(lines_of(path)[1])
      assert.equal("nan", ev.nan)
      assert.equal("inf", ev.inf)
      assert.equal(3, ev.mixed.x)
      assert.equal(2, ev.sparse["100"])
      assert.equal(1, ev["true"])
      assert.is_string(ev.fn)
    end)

    it("does not escape '/' and keeps backslashes exact", function()
      local path = tmpname()
      local w = assert(report.events(path, { clock = clock }))
      w:emit("x", { p = "/a\\/b\\\\/" })
      w:close()
      local l = lines_of(path)[1]
      assert.truthy(l:find('"p":"/a\\\\/b\\\\\\\\/"', 1, true))
      assert.equal("/a\\/b\\\\/", cjson.decode(l).p)
    end)
  end)

  describe("status_text", function()
    it("shows progress, running, queued, failures and the clock", function()
      assert.equal("[12/40] running 4, queued 20, failed 1 — 00:12",
        report.status_text{ done = 12, total = 40, running = 4, queued = 20, failed = 1, elapsed = 12 })
    end)

    it("counts the total itself and leaves out what is zero or unknown", function()
      assert.equal("[3/10] running 2, queued 5", report.status_text{ done = 3, running = 2, queued = 5, failed = 0 })
      assert.equal("[0/0] running 0, queued 0 — 1:01:05", report.status_text{ elapsed = 3665 })
    end)
  end)
end)
