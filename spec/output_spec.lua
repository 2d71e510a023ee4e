-- lrun.output: bytes in, bytes out, compared exactly through temp files.
local output = require "lrun.output"

local tmpfiles = {}

local function tmpsink()
  local path = os.tmpname()
  tmpfiles[#tmpfiles + 1] = path
  local f = assert(io.open(path, "w+b"))
  return f, path
end

local slurp = require("helper").slurp

local function tmpdir()
  local path = os.tmpname()
  os.remove(path)
  tmpfiles[#tmpfiles + 1] = path
  return path
end

-- An output whose stdout/stderr are temp files; out(), err() read them back.
local function make(opts)
  opts = opts or {}
  local fo, po = tmpsink()
  local fe, pe = tmpsink()
  opts.stdout, opts.stderr = fo, fe
  local o = output.new(opts)
  local function out() fo:flush(); return slurp(po) end
  local function err() fe:flush(); return slurp(pe) end
  return o, out, err
end

-- What prefix mode must print for one stream's bytes: every line, the final
-- partial one too, as "prefix .. line .. \n".
local function prefixed(prefix, bytes)
  local t = {}
  for line, nl in bytes:gmatch("([^\n]*)(\n?)") do
    if line ~= "" or nl ~= "" then t[#t + 1] = prefix .. line .. "\n" end
  end
  return table.concat(t)
end

-- Mixed bytes: empty lines, CR, NUL, invalid UTF-8, multibyte UTF-8, and a
-- final line with no newline.
local NASTY = "one\n\ntwo\r\nx\0y\n\xff\xfe\xc3(\n\xe2\x82\xac euro\n\r\rlast"

after_each(function()
  for _, p in ipairs(tmpfiles) do
    os.remove(p)
    os.execute("rm -rf '" .. p .. "'")
  end
  tmpfiles = {}
end)

describe("lrun.output", function()
  it("rejects unknown options, modes and streams", function()
    assert.has_error(function() output.new{ bogus = 1 } end)
    assert.has_error(function() output.new{ mode = "fancy" } end)
    local o = make()
    assert.has_error(function() o:feed("a", "stdin", "x\n") end)
    assert.has_error(function() o:finish("a", "out") end)
  end)

  describe("prefix mode", function()
    it("writes 'name | line' padded to the longest registered name", function()
      local o, out, err = make()
      o:register("a")
      o:register("build")
      o:feed("a", "stdout", "hello\n")
      o:feed("build", "stdout", "compiling\nlinking\n")
      o:feed("a", "stderr", "oops\n")
      o:flush()
      assert.equal("a     | hello\nbuild | compiling\nbuild | linking\n", out())
      assert.equal("a     | oops\n", err())
    end)

    it("widens every prefix when a longer name registers later", function()
      local o, out = make()
      o:register("ab")
      o:feed("ab", "stdout", "1\n")
      o:register("abcd")
      o:feed("ab", "stdout", "2\n")
      o:feed("abcd", "stdout", "3\n")
      o:flush()
      assert.equal("ab | 1\nab   | 2\nabcd | 3\n", out())
    end)

    it("pads by characters, not bytes, for UTF-8 names", function()
      local o, out = make()
      o:register("é")
      o:register("abc")
      o:feed("é", "stdout", "x\n")
      o:flush()
      assert.equal("é   | x\n", out())
    end)

    it("gives the same bytes however the input is split (every boundary)", function()
      local want = prefixed("job | ", NASTY)
      for i = 0, #NASTY do
        local o, out = make()
        o:register("job")
        o:feed("job", "stdout", NASTY:sub(1, i))
        o:feed("job", "stdout", NASTY:sub(i + 1))
        o:finish("job", "stdout")
        o:flush()
        assert.equal(want, out(), "split at " .. i)
      end
    end)

    it("gives the same bytes when split at every pair of boundaries", function()
      local s = "ab\n\ncd\r\ne\0f\ng"
      local want = prefixed("j | ", s)
      for i = 0, #s do
        for j = i, #s do
          local o, out = make()
          o:feed("j", "stdout", s:sub(1, i))
          o:feed("j", "stdout", s:sub(i + 1, j))
          o:feed("j", "stdout", s:sub(j + 1))
          o:finish("j", "stdout")
          o:flush()
          assert.equal(want, out(), "split at " .. i .. "," .. j)
        end
      end
    end)

    it("gives the same bytes fed one byte at a time", function()
      local o, out = make()
      o:register("job")
      for i = 1, #NASTY do o:feed("job", "stdout", NASTY:sub(i, i)) end
      o:finish("job", "stdout")
      o:flush()
      assert.equal(prefixed("job | ", NASTY), out())
    end)

    it("passes CR, NUL and invalid UTF-8 through untouched", function()
      local o, out = make()
      o:feed("j", "stdout", "a\rb\0c\xff\xc0\n")
      o:flush()
      assert.equal("j | a\rb\0c\xff\xc0\n", out())
    end)

    it("adds a newline to the final partial line, at finish only", function()
      local o, out, err = make()
      o:feed("j", "stdout", "full\npart")
      o:feed("j", "stderr", "e-part")
      o:flush()
      assert.equal("j | full\n", out())
      o:finish("j", "stdout")
      o:flush()
      assert.equal("j | full\nj | part\n", out())
      assert.equal("", err())
      o:finish("j", "stderr")
      o:flush()
      assert.equal("j | e-part\n", err())
      -- Nothing more is held: a second finish adds nothing.
      o:finish("j", "stdout")
      o:flush()
      assert.equal("j | full\nj | part\n", out())
    end)

    it("emits both streams' partial lines at finish_job and at close", function()
      local o, out, err = make()
      o:feed("j", "stdout", "o-part")
      o:feed("j", "stderr", "e-part")
      o:finish_job("j")
      o:feed("k", "stdout", "k-out")
      o:feed("k", "stderr", "k-err")
      o:close()
      assert.equal("j | o-part\nk | k-out\n", out())
      assert.equal("j | e-part\nk | k-err\n", err())
    end)

    it("never mixes two jobs inside one line", function()
      local o, out = make()
      o:register("a")
      o:register("b")
      o:feed("a", "stdout", "hel")
      o:feed("b", "stdout", "wor")
      o:feed("a", "stdout", "lo\nsec")
      o:feed("b", "stdout", "ld\n")
      o:feed("a", "stdout", "ond\n")
      o:flush()
      assert.equal("a | hello\nb | world\na | second\n", out())
    end)

    it("keeps a 1 MiB line whole, as one prefixed line", function()
      local o, out = make()
      local line = string.rep("0123456789abcdef", 65536)   -- exactly 1 MiB
      for i = 1, #line, 65536 do o:feed("j", "stdout", line:sub(i, i + 65535)) end
      o:feed("j", "stdout", "\nnext\n")
      o:flush()
      assert.equal("j | " .. line .. "\nj | next\n", out())
    end)

    it("emits a line held past 1 MiB, so memory stays bounded", function()
      local o, out = make()
      local chunk = string.rep("x", 65536)
      for _ = 1, 48 do o:feed("j", "stdout", chunk) end   -- 3 MiB, no newline
      o:flush()
      local got = out()
      -- Two pieces of 1 MiB + one chunk went out; the rest is held.
      local piece = "j | " .. string.rep("x", 1024 * 1024 + 65536) .. "\n"
      assert.equal(piece .. piece, got)
      o:feed("j", "stdout", "end\n")
      o:flush()
      local held = 3 * 1024 * 1024 - 2 * (1024 * 1024 + 65536)
      assert.equal(piece .. piece .. "j | " .. string.rep("x", held) .. "end\n", out())
    end)

    it("colors the prefix (not the line) with one stable color per job", function()
      local o, out = make{ color = true }
      o:register("web")
      o:register("db")
      o:feed("web", "stdout", "up\n")
      o:feed("db", "stdout", "ready\n")
      o:flush()
      local cw, cd = output.color_of("web"), output.color_of("db")
      assert.equal("\27[" .. cw .. "mweb |\27[0m up\n\27[" .. cd .. "mdb  |\27[0m ready\n", out())
    end)
  end)

  describe("raw mode", function()
    it("writes the bytes exactly as written, however they are split", function()
      for i = 0, #NASTY do
        local o, out = make{ mode = "raw" }
        o:feed("job", "stdout", NASTY:sub(1, i))
        o:feed("job", "stdout", NASTY:sub(i + 1))
        o:flush()
        -- The partial last line waits for its newline or finish...
        assert.equal(NASTY:match("^(.*\n)"), out(), "split at " .. i)
        o:finish("job", "stdout")
        o:flush()
        -- ...and then goes out as it is, nothing added.
        assert.equal(NASTY, out(), "split at " .. i)
      end
    end)

    it("never tears a line: a partial tail waits while other jobs write", function()
      local o, out = make{ mode = "raw" }
      o:feed("a", "stdout", "aa")
      o:feed("b", "stdout", "bb\nb")
      o:feed("a", "stdout", "a\n")
      o:feed("b", "stdout", "b\n")
      o:flush()
      assert.equal("bb\naaa\nbb\n", out())
    end)

    it("sends job stderr to stderr and job stdout to stdout", function()
      local o, out, err = make{ mode = "raw" }
      o:feed("a", "stdout", "o\n")
      o:feed("a", "stderr", "e\n")
      o:flush()
      assert.equal("o\n", out())
      assert.equal("e\n", err())
    end)

    it("emits held bytes past 1 MiB, as they are", function()
      local o, out = make{ mode = "raw" }
      local chunk = string.rep("y", 65536)
      for _ = 1, 48 do o:feed("j", "stdout", chunk) end
      o:flush()
      assert.equal(2 * (1024 * 1024 + 65536), #out())
      o:finish("j", "stdout")
      o:flush()
      assert.equal(string.rep("y", 3 * 1024 * 1024), out())
    end)
  end)

  describe("group mode", function()
    it("holds a job's output until finish_job, then writes it all", function()
      local o, out, err = make{ mode = "group" }
      o:register("a")
      o:register("bb")
      o:feed("a", "stdout", "a1\n")
      o:feed("bb", "stdout", "b1\n")
      o:feed("a", "stderr", "a-err\ne-part")
      o:feed("a", "stdout", "a2\npart")
      o:feed("bb", "stdout", "b2")
      o:flush()
      assert.equal("", out())
      assert.equal("", err())
      -- bb ends first, so its output comes first.
      o:finish_job("bb")
      o:flush()
      assert.equal("bb | b1\nbb | b2\n", out())
      o:finish_job("a")
      o:flush()
      assert.equal("bb | b1\nbb | b2\na  | a1\na  | a2\na  | part\n", out())
      assert.equal("a  | a-err\na  | e-part\n", err())
    end)

    it("gives the same bytes however the input is split", function()
      for i = 0, #NASTY do
        local o, out = make{ mode = "group" }
        o:feed("job", "stdout", NASTY:sub(1, i))
        o:feed("job", "stdout", NASTY:sub(i + 1))
        o:finish_job("job")
        o:flush()
        assert.equal(prefixed("job | ", NASTY), out(), "split at " .. i)
      end
    end)

    it("keeps order and streams when it spills to a temp file", function()
      local o, out, err = make{ mode = "group", group_memory = 10 }
      local want_o, want_e = {}, {}
      for i = 1, 50 do
        o:feed("j", "stdout", "out " .. i .. "\n")
        want_o[#want_o + 1] = "j | out " .. i .. "\n"
        if i % 7 == 0 then
          o:feed("j", "stderr", "err " .. i .. "\n")
          want_e[#want_e + 1] = "j | err " .. i .. "\n"
        end
      end
      o:finish_job("j")
      o:flush()
      assert.equal(table.concat(want_o), out())
      assert.equal(table.concat(want_e), err())
      -- The job may run again (a restarted service) and group again.
      o:feed("j", "stdout", "again\n")
      o:finish_job("j")
      o:flush()
      assert.equal(table.concat(want_o) .. "j | again\n", out())
    end)

    it("writes unfinished jobs' output at close", function()
      local o, out = make{ mode = "group" }
      o:feed("x", "stdout", "1\n2")
      o:close()
      assert.equal("x | 1\nx | 2\n", out())
    end)
  end)

  describe("log_dir", function()
    it("appends every byte, unmodified, both streams in arrival order", function()
      local dir = tmpdir() .. "/nested/logs"
      for _, mode in ipairs{ "prefix", "raw", "group" } do
        local o = make{ mode = mode, log_dir = dir }
        o:register("web")
        local pieces = { { "stdout", "a\r\n" }, { "stderr", "E\0" }, { "stdout", "b" },
                         { "stderr", "\xff\n" }, { "stdout", "c\n" } }
        local want = {}
        for _, p in ipairs(pieces) do
          o:feed("web", p[1], p[2])
          want[#want + 1] = p[2]
        end
        o:finish_job("web")
        o:close()
        want = table.concat(want)
        -- Appended: each mode's run adds to the same file.
        local expect = mode == "prefix" and want or mode == "raw" and want:rep(2) or want:rep(3)
        assert.equal(expect, slurp(dir .. "/web.log"), mode)
      end
    end)

    it("creates the log of a job that printed nothing when it ends", function()
      local dir = tmpdir()
      local o = make{ log_dir = dir }
      o:register("quiet")
      o:register("never-ran")
      o:finish_job("quiet")
      o:close()
      assert.equal("", slurp(dir .. "/quiet.log"))
      assert.is_nil(slurp(dir .. "/never-ran.log"))
    end)

    it("says when it cannot make the directory, and runs on without logs", function()
      local file = tmpdir()
      assert(io.open(file, "w")):close()
      local o, out, err = make{ log_dir = file .. "/logs" }
      o:feed("j", "stdout", "x\n")
      o:close()
      assert.equal("j | x\n", out())
      assert.equal("lrun: log dir " .. file .. "/logs: mkdir " .. file .. ": File exists\n", err())
    end)

    it("says once when a job's log cannot be opened, and goes on", function()
      local dir = tmpdir()
      local o, out, err = make{ log_dir = dir }
      assert(require("lprocess.core").mkdir(dir .. "/j.log"))   -- a directory in the way
      o:feed("j", "stdout", "1\n")
      o:feed("j", "stdout", "2\n")
      o:finish_job("j")
      o:close()
      assert.equal("j | 1\nj | 2\n", out())
      assert.matches("^lrun: log " .. dir:gsub("%p", "%%%0") .. "/j%.log: [^\n]*\n$", err())
    end)

    it("keeps a '/' in a name from escaping the directory", function()
      local dir = tmpdir()
      local o = make{ log_dir = dir }
      o:feed("a/b", "stdout", "x\n")
      o:close()
      assert.equal("x\n", slurp(dir .. "/a_b.log"))
    end)
  end)

  describe("watch", function()
    it("calls fn(line, stream) for each complete line, in order", function()
      local o = make()
      local seen = {}
      local fn = function(line, stream) seen[#seen + 1] = stream .. ":" .. line end
      o:watch("w", fn)
      o:feed("w", "stdout", "one\ntw")
      o:feed("w", "stderr", "err\r\n")
      o:feed("w", "stdout", "o\nthr")
      assert.same({ "stdout:one", "stderr:err", "stdout:two" }, seen)
      o:finish("w", "stdout")
      assert.same({ "stdout:one", "stderr:err", "stdout:two", "stdout:thr" }, seen)
      o:unwatch("w", fn)
      o:feed("w", "stdout", "four\n")
      assert.equal(4, #seen)
    end)

    it("stops at once when a watcher unwatches itself mid-chunk", function()
      local o = make()
      local seen = {}
      local fn
      fn = function(line)
        seen[#seen + 1] = line
        if line:match("ready") then o:unwatch("s", fn) end
      end
      o:watch("s", fn)
      o:feed("s", "stdout", "boot\nready on 8080\nserving\n")
      assert.same({ "boot", "ready on 8080" }, seen)
    end)

    it("watches lines of every mode, a forced 1 MiB piece counting as one", function()
      for _, mode in ipairs{ "raw", "group" } do
        local o = make{ mode = mode, pending_limit = 4 }
        local seen = {}
        o:watch("j", function(line) seen[#seen + 1] = line end)
        o:feed("j", "stdout", "ab\nabcdefg")
        o:feed("j", "stdout", "h\n")
        assert.same({ "ab", "abcdefg", "h" }, seen, mode)
      end
    end)
  end)

  describe("tail", function()
    it("returns the last n complete lines of both streams, oldest first", function()
      local o = make()
      o:feed("t", "stdout", "1\n2\n")
      o:feed("t", "stderr", "e1\r\n")
      o:feed("t", "stdout", "3\npartial")
      assert.same({ "2", "e1", "3" }, o:tail("t", 3))
      assert.same({ "1", "2", "e1", "3" }, o:tail("t", 10))
      o:finish("t", "stdout")
      assert.same({ "3", "partial" }, o:tail("t", 2))
      assert.same({}, o:tail("nobody", 5))
    end)

    it("keeps only 20 lines, across many small and large chunks", function()
      local o = make{ mode = "raw" }
      for i = 1, 500 do o:feed("t", "stdout", i .. "\n") end
      local big = {}
      for i = 501, 5000 do big[#big + 1] = i .. "\n" end
      o:feed("t", "stdout", table.concat(big))
      for i = 5001, 5005 do o:feed("t", "stdout", i .. "\n") end
      local want = {}
      for i = 4986, 5005 do want[#want + 1] = tostring(i) end
      assert.same(want, o:tail("t", 50))
      assert.same({ "5004", "5005" }, o:tail("t", 2))
      local o2 = make()
      for i = 1, 100 do o2:feed("u", "stdout", i .. "\n") end
      assert.same({ "99", "100" }, o2:tail("u", 2))
    end)
  end)

  it("counts the bytes received per stream", function()
    local o = make{ mode = "group" }
    o:feed("b", "stdout", "12345")
    o:feed("b", "stderr", "1\n")
    o:feed("b", "stdout", "\n")
    assert.same({ stdout = 6, stderr = 2 }, o:bytes("b"))
    assert.same({ stdout = 0, stderr = 0 }, o:bytes("none"))
  end)

  it("writes lrun's own messages to stderr as 'lrun: text'", function()
    local o, out, err = make()
    o:message("starting 3 jobs")
    o:message("two\nlines")
    o:flush()
    assert.equal("", out())
    assert.equal("lrun: starting 3 jobs\nlrun: two\nlrun: lines\n", err())
  end)

  describe("status line", function()
    local yes = function() return true end

    it("is drawn at flush, erased before other output, redrawn after", function()
      local o, out, err = make{ status = true, isatty = yes, columns = 80 }
      o:set_status("[0/2] running 2")
      o:flush()
      assert.equal("\r[0/2] running 2\27[K", err())
      o:feed("a", "stdout", "x\n")
      o:feed("a", "stderr", "y\n")
      o:flush()
      assert.equal("a | x\n", out())
      assert.equal("\r[0/2] running 2\27[K\r\27[Ka | y\n\r[0/2] running 2\27[K", err())
      o:set_status("[1/2] running 1")
      o:flush()
      o:set_status(nil)
      o:flush()
      assert.equal("\r[0/2] running 2\27[K\r\27[Ka | y\n\r[0/2] running 2\27[K"
        .. "\r[1/2] running 1\27[K\r\27[K", err())
    end)

    it("is removed by set_status(\"\") as by set_status(nil)", function()
      local o, _, err = make{ status = true, isatty = yes, columns = 80 }
      o:set_status("busy")
      o:flush()
      o:set_status("")
      o:flush()
      assert.equal("\rbusy\27[K\r\27[K", err())
    end)

    it("waits while raw output has left the cursor mid-line", function()
      local o, out, err = make{ mode = "raw", status = true, isatty = yes, columns = 80 }
      o:set_status("busy")
      o:feed("r", "stdout", "no newline")
      o:finish("r", "stdout")
      o:flush()
      assert.equal("no newline", out())
      assert.equal("", err())
      o:feed("r", "stdout", "\n")
      o:flush()
      assert.equal("\rbusy\27[K", err())
    end)

    it("is cut to the terminal width and takes no newline", function()
      local o, _, err = make{ status = true, isatty = yes, columns = 6 }
      o:set_status("héllo\nworld")
      o:flush()
      assert.equal("\rhéllo\27[K", err())
      o:close()
      assert.equal("\rhéllo\27[K\r\27[K", err())
    end)

    it("is never drawn when stderr is not a terminal", function()
      local o, _, err = make{ status = true, isatty = function() return false end }
      o:set_status("busy")
      o:flush()
      o:message("hi")
      o:flush()
      assert.equal("lrun: hi\n", err())
    end)
  end)

  describe("want_color", function()
    local function env(t) return function(k) return t[k] end end
    local tty = function() return true end
    local notty = function() return false end

    it("follows always and never whatever the terminal", function()
      assert.is_true(output.want_color("always", io.stdout, { isatty = notty }))
      assert.is_false(output.want_color("never", io.stdout, { isatty = tty }))
    end)

    it("auto: a TTY, NO_COLOR unset or empty, TERM not dumb", function()
      assert.is_true(output.want_color("auto", io.stdout, { isatty = tty, getenv = env{ TERM = "xterm" } }))
      assert.is_true(output.want_color(nil, io.stdout, { isatty = tty, getenv = env{ NO_COLOR = "" } }))
      assert.is_false(output.want_color("auto", io.stdout, { isatty = notty, getenv = env{} }))
      assert.is_false(output.want_color("auto", io.stdout, { isatty = tty, getenv = env{ NO_COLOR = "1" } }))
      assert.is_false(output.want_color("auto", io.stdout, { isatty = tty, getenv = env{ TERM = "dumb" } }))
    end)

    it("asks isatty about the fd of io.stdout/io.stderr", function()
      local asked
      output.want_color("auto", io.stderr, { isatty = function(fd) asked = fd; return false end,
                                             getenv = env{} })
      assert.equal(2, asked)
      assert.is_true(output.want_color("auto", 7, function(fd) return fd == 7 end))
    end)

    it("asks the kernel by default: a pty is a terminal, a file or pipe is not", function()
      local core = require "lprocess.core"
      local pty = assert(io.open("/dev/ptmx", "r+b"))
      finally(function() pty:close() end)
      assert.is_true(output.isatty(pty))
      assert.is_true(output.want_color("auto", pty, { getenv = env{ TERM = "xterm" } }))
      local f = tmpsink()
      assert.is_false(output.isatty(f))
      local r, w = core.pipe()
      finally(function() core.close(r); core.close(w) end)
      assert.is_false(output.isatty(r))
      assert.is_false(output.isatty({ write = function() end }))
    end)

    it("rejects other words", function()
      assert.has_error(function() output.want_color("sometimes", io.stdout) end)
    end)
  end)

  it("gives each name a palette color, stable and spread out", function()
    local seen, in_palette = {}, {}
    for _, c in ipairs(output.PALETTE) do in_palette[c] = true end
    for i = 1, 40 do
      local c = output.color_of("job" .. i)
      assert.is_true(in_palette[c])
      assert.equal(c, output.color_of("job" .. i))
      seen[c] = true
    end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.is_true(n >= 6)
  end)
end)

-- Not a benchmark gate: it shows the throughput and checks the bytes. Set
-- LRUN_BENCH_MB=100 for the figure the project quotes (default 16 MB here).
describe("throughput", function()
  it("runs prefix, raw and group over MBs of 64 KiB chunks and prints MB/s", function()
    local mb = tonumber(os.getenv("LRUN_BENCH_MB") or "") or 16
    local words = { "GET", "/api/v1/items", "200", "took", "12ms", "user=bob", "INFO" }
    local lines, size = {}, 0
    local seed = 1
    while size < 1024 * 1024 do
      local n = seed % 9 + 3
      local t = {}
      for k = 1, n do seed = (seed * 1103515245 + 12345) % 2147483648; t[k] = words[seed % #words + 1] end
      local l = table.concat(t, " ") .. "\n"
      lines[#lines + 1] = l
      size = size + #l
    end
    local block = table.concat(lines)
    local ok, system = pcall(require, "system")
    local now = ok and system.gettime or os.clock
    for _, mode in ipairs{ "prefix", "raw", "group" } do
      local sink, path = tmpsink()
      local o = output.new{ mode = mode, stdout = sink }
      o:register("build")
      local t0 = now()
      for _ = 1, mb do
        for i = 1, #block, 65536 do o:feed("build", "stdout", block:sub(i, i + 65535)) end
      end
      o:finish_job("build")
      o:close()
      sink:close()
      local dt = now() - t0
      local f = io.open(path, "rb")
      local got = f:seek("end")
      f:close()
      local want = mb * #block + (mode ~= "raw" and mb * #lines * #"build | " or 0)
      assert.equal(want, got)
      io.stderr:write(string.format("\n  throughput %-6s %5.0f MB/s (%d MB)",
        mode, mb * #block / 1e6 / dt, mb))
    end
  end)
end)
