-- The control socket under bad input (issue 13): a wrong job name, a bad signal,
-- malformed JSON, a huge line, a client that says nothing, 100 clients at once, a
-- peer of another uid. Each gets a clear error; lrun and its jobs go on as they were
-- (same lrun pid, same job pid, same state), and lrun then exits 0 when told to stop.
local H = require "helper"
local C = require "support.ctl"
local core = H.core

local SERVICES = [[
service "web" { cmd = "echo web up; trap 'echo got USR1' USR1; while :; do sleep 0.1; done" }
service "pair" { cmd = "sleep 300 & sleep 300; wait", instances = 2 }
]]

describe("the control socket under bad input", function()
  local t, T, p, sock, pid0, web0
  before_each(function()
    t = H.track()   -- cleaned up in after_each: a finally here would not run
    T = H.tmpdir()
    t:defer(function() H.rm_rf(T) end)
    p, sock = C.start(t, T, C.jobfile(T, SERVICES))
    web0 = assert(C.wait_state(sock, "web", { ready = true })).pid
    pid0 = C.req(sock, { cmd = "pid" }).result
  end)
  after_each(function() t:cleanup() end)

  -- lrun and its jobs are as they were
  local function unaffected()
    assert.equal(pid0, C.req(sock, { cmd = "pid" }).result)
    local web = C.state(sock, "web")
    assert.equal("ready", web.state)
    assert.equal(web0, web.pid)
    assert.equal(0, C.finish(p, sock))
  end

  local function err_of(text)
    local reply = require("lrun.control.protocol").parse(text:match("^[^\n]*"))
    assert.is_false(reply.ok)
    return reply.error
  end

  it("a wrong job name, for every command that takes one", function()
    for _, cmd in ipairs { "start", "stop", "restart", "tail" } do
      local r = C.ctl(sock, cmd, "nosuch")
      assert.equal(1, r.code)
      assert.equal("lrun ctl: no job or instance named 'nosuch' (jobs: pair, web)\n", r.stderr)
    end
    assert.matches("no job or instance named 'nosuch'",
      C.ctl(sock, "signal", "nosuch", "TERM").stderr)
    assert.equal("web is already running",
      C.req(sock, { cmd = "start", job = "web" }).error)
    unaffected()
  end)

  it("a bad signal", function()
    for _, sig in ipairs { "NOPE", "SIGNOPE", "0x1", "" } do
      assert.matches("unknown signal", C.req(sock, { cmd = "signal", job = "web", signal = sig }).error)
    end
    assert.matches("unknown signal", C.req(sock, { cmd = "signal", job = "web", signal = 1e9 }).error)
    unaffected()
  end)

  it("malformed JSON, and requests that are JSON but not requests", function()
    assert.matches("^malformed JSON", err_of(C.raw(sock, '{"cmd": "status"\n')))
    assert.matches("^malformed JSON", err_of(C.raw(sock, '{\xff\xfe}\n')))
    assert.equal("a request is a JSON object", err_of(C.raw(sock, '[1,2]\n')))
    assert.equal("a request needs \"cmd\"", err_of(C.raw(sock, '{}\n')))
    assert.equal("unknown key 'jbo'", err_of(C.raw(sock, '{"cmd":"stop","jbo":"web"}\n')))
    assert.equal("'job' must be a string", err_of(C.raw(sock, '{"cmd":"stop","job":{}}\n')))
    assert.equal("unknown command 'dance'", err_of(C.raw(sock, '{"cmd":"dance"}\n')))
    assert.matches("^malformed JSON", err_of(C.raw(sock, string.rep("[", 5000) .. "\n")))
    assert.matches("^malformed JSON", err_of(C.raw(sock, '{' .. string.rep('"a":{', 40) .. '\n')))
    assert.equal("error: unknown command 'dance'\n", C.raw(sock, "dance\n"))
    unaffected()
  end)

  it("a huge line is cut off at the cap with an error", function()
    local reply = C.raw(sock, '{"cmd":"status","job":"' .. string.rep("x", 1024 * 1024) .. '"}\n')
    assert.equal("request too long (more than 65536 bytes)", err_of(reply))
    unaffected()
  end)

  it("a client that connects and sends nothing is dropped; others are served meanwhile", function()
    local idle = assert(core.unix_connect(sock))
    local t0 = core.now()
    assert.equal("ready", C.state(sock, "web").state)
    core.poll({ [idle] = "r" }, 20)
    assert.equal("", core.recv(idle, 100))   -- EOF: lrun closed it
    assert.truthy(core.now() - t0 < 15)
    core.close(idle)
    unaffected()
  end)

  it("100 clients at once: every one gets its answer", function()
    local fds = {}
    for i = 1, 100 do fds[i] = assert(core.unix_connect(sock)) end
    for _, fd in ipairs(fds) do core.send(fd, '{"cmd":"status"}\n') end
    local protocol = require "lrun.control.protocol"
    for _, fd in ipairs(fds) do
      local buf = ""
      H.wait_until(function()
        local s = core.recv(fd, 65536)
        if s then buf = buf .. s end
        return s == "" or s == nil
      end, 20, { fd })
      core.close(fd)
      local reply = protocol.parse(buf:match("^[^\n]*"))
      assert.is_true(reply.ok)
      assert.equal(3, #reply.result)
    end
    unaffected()
  end)

  it("a peer of another uid is refused (SO_PEERCRED)", function()
    if core.getuid() ~= 0 then pending("needs root to connect as another user") return end
    -- open the socket file up so that only the credential check is left to refuse
    assert(os.execute("chmod 0777 '" .. T .. "' '" .. sock .. "'"))
    local r = assert(H.lp.run { "lua5.4", "-e", string.format([[
      package.cpath = %q .. ";" .. package.cpath
      local core = require "lprocess.core"
      local fd = assert(core.unix_connect(%q))
      core.send(fd, '{"cmd":"shutdown"}\n')
      core.poll({ [fd] = "r" }, 10)
      io.write(core.recv(fd, 4096) or "")]], H.cpath, sock), uid = 65534, gid = 65534,
      timeout = 20 })
    assert.equal("permission denied: uid 65534 is not lrun's", err_of(r.stdout))
    unaffected()
  end)
end)
