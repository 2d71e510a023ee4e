-- --http (issue 13): the status page in a real browser -- headless Chromium loads it,
-- the page follows the run over server-sent events, and its restart button restarts
-- a service through the control code -- and the HTTP server under bad requests.
-- Chromium is driven with --dump-dom: the DOM as it stands after --timeout, whose
-- rows carry each unit's state and the states the page saw it in (data-seen).
local H = require "helper"
local C = require "support.ctl"
local cdp = require "support.cdp"
local core = H.core

local FILE = [[
local T = os.getenv("T")
local function wait_for(f) return "while [ ! -e " .. T .. "/" .. f .. " ]; do sleep 0.05; done" end
job "quick" { cmd = "true" }
job "slow" { cmd = wait_for("go") }
job "after" { cmd = wait_for("end"), needs = { "slow" } }
service "web" { cmd = "echo web says hi; exec sleep 300" }
]]

-- One HTTP request over a raw socket -> status code, body
local function http(port, text)
  local fd = assert(core.tcp_connect("127.0.0.1", port))
  core.poll({ [fd] = "w" }, 5)
  local pos = 1
  while pos <= #text do
    local n = core.send(fd, text:sub(pos))
    if not n then break end
    if n == false then core.poll({ [fd] = "w" }, 5) else pos = pos + n end
  end
  local chunks, deadline = {}, core.now() + 10
  while core.now() < deadline do
    core.poll({ [fd] = "r" }, deadline - core.now())
    local s = core.recv(fd, 65536)
    if s == nil or s == "" then break end
    if s then chunks[#chunks + 1] = s end
  end
  core.close(fd)
  local reply = table.concat(chunks)
  return tonumber(reply:match("^HTTP/1%.1 (%d+)")), reply:match("\r\n\r\n(.*)$")
end

local function get(port, path)
  return http(port, "GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
end

local function post(port, body, headers)
  return http(port, "POST /api HTTP/1.1\r\nHost: 127.0.0.1:" .. port .. "\r\n"
    .. (headers or "Content-Type: application/json\r\n")
    .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
end

describe("lrun --http", function()
  local t, T, p, sock, port
  before_each(function()
    t = H.track()   -- cleaned up in after_each: a finally here would not run
    T = H.tmpdir()
    t:defer(function() H.rm_rf(T) end)
    local file = C.jobfile(T, FILE)
    local argv = { C.LRUN, "--control", T .. "/c.sock", "--http", "127.0.0.1:0", file,
      setenv = { LPROCESS_CPATH = H.cpath, T = T }, stdout = T .. "/out", stderr = T .. "/err" }
    p = t:spawn(argv)
    sock = T .. "/c.sock"
    assert.truthy(H.wait_until(function()
      port = tonumber((H.slurp(T .. "/err") or ""):match("status page at http://127%.0%.0%.1:(%d+)/"))
      return port
    end, 20), H.slurp(T .. "/err"))
    assert.truthy(C.wait_state(sock, "web", { ready = true }))
    assert.truthy(C.wait_state(sock, "slow", { running = true }))
  end)
  after_each(function() t:cleanup() end)

  local function state()
    local code, body = get(port, "/state")
    assert.equal(200, code)
    return require("cjson").decode(body)
  end

  -- The page's rows, as its DOM has them: { [unit] = { state =, seen =, attempt =, pid = } }
  local ROWS = [[JSON.stringify(Object.fromEntries([...document.querySelectorAll("tr[data-unit]")]
    .map((tr) => [tr.dataset.unit, Object.assign({}, tr.dataset)])))]]

  local function page()
    local exe = cdp.find()
    if not exe then return nil end
    local b = cdp.launch(t, exe)
    return b:open("http://127.0.0.1:" .. port .. "/")
  end

  -- Wait until pred(rows) holds on the page -> rows
  local function until_rows(pg, pred, timeout)
    local rows
    local ok = H.wait_until(function()
      rows = require("cjson").decode(pg:eval(ROWS))
      return pred(rows)
    end, timeout or 30)
    assert.truthy(ok, "the page shows: " .. require("cjson").encode(rows))
    return rows
  end

  it("shows each job's state live, as jobs finish", function()
    local pg = page()
    if not pg then pending("Chromium is not installed (apt-get install chromium)") return end
    until_rows(pg, function(r) return r.slow and r.slow.state == "running" end)
    H.spit(T .. "/go", "")                           -- slow ends, after starts
    local rows = until_rows(pg, function(r) return r.after.state == "running" end)
    assert.equal("ok", rows.quick.state)
    assert.equal("ok", rows.slow.state)
    assert.equal("running,ok", rows.slow.seen)       -- it changed under the page's eyes
    assert.equal("waiting,running", rows.after.seen)
    assert.equal("ready", rows.web.state)
    assert.equal(state().watchers, 1)
    H.spit(T .. "/end", "")
    local st = H.wait_pid(p.pid, 30)
    assert.equal(0, H.lp.exit_code(st))
    assert.matches("disconnected", pg:wait([[document.getElementById("conn").textContent
      .startsWith("disconnected") && document.getElementById("conn").textContent]], 30))
  end)

  it("its restart button restarts a service", function()
    local pg = page()
    if not pg then pending("Chromium is not installed (apt-get install chromium)") return end
    local before = C.state(sock, "web")
    until_rows(pg, function(r) return r.web and r.web.state == "ready" end)
    pg:eval([[document.querySelector('button[data-cmd="restart"][data-unit="web"]').click()]])
    local rows = until_rows(pg, function(r)
      return r.web.attempt == "2" and r.web.state == "ready"
    end)
    local after = C.state(sock, "web")
    assert.equal("ready", after.state)
    assert.equal(2, after.attempt)
    assert.are_not.equal(before.pid, after.pid)
    assert.equal(tostring(math.tointeger(after.pid)), rows.web.pid)
    assert.equal("1", rows.slow.attempt)             -- nothing else was touched
    -- a click on its name shows its log tail
    pg:eval([[document.querySelector('tr[data-unit="web"] td').click()]])
    assert.equal("web says hi", pg:wait([[document.getElementById("tail").textContent || null]]))
    C.finish(p, sock)
  end)

  it("answers bad requests with a 4xx, and goes on", function()
    assert.equal(404, (get(port, "/nope")))
    local code, body = get(port, "/")
    assert.equal(200, code)
    assert.matches("<!doctype html>", body, 1, true)
    assert.not_matches("https?://", body)            -- nothing fetched from elsewhere
    assert.equal(200, (get(port, "/graph.dot")))
    assert.equal(415, (post(port, '{"cmd":"stop","job":"web"}', "Content-Type: text/plain\r\n")))
    assert.equal(403, (post(port, '{"cmd":"stop","job":"web"}',
      "Content-Type: application/json\r\nOrigin: http://evil.example\r\n")))
    code, body = post(port, '{"cmd":"eval","code":"os.exit()"}')
    assert.equal(400, code)
    assert.matches("not a page command", body)
    code, body = post(port, '{"cmd":"stop","job":"nosuch"}')
    assert.equal(400, code)
    assert.matches("no job or instance named 'nosuch'", body)
    assert.equal(400, (post(port, "{nope")))
    assert.equal(403, (http(port, "GET /state HTTP/1.1\r\nHost: rebound.example:" .. port .. "\r\n\r\n")))
    assert.equal(200, (http(port, "GET /state HTTP/1.1\r\nHost: localhost:" .. port .. "\r\n\r\n")))
    assert.equal(413, (http(port, "POST /api HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")))
    assert.equal(431, (http(port, "GET / HTTP/1.1\r\nX: " .. string.rep("x", 40000) .. "\r\n\r\n")))
    assert.equal(400, (http(port, "NONSENSE\r\n\r\n")))
    -- a client that sends nothing is dropped; 100 at once are all served
    local idle = assert(core.tcp_connect("127.0.0.1", port))
    local fds = {}
    for i = 1, 100 do fds[i] = assert(core.tcp_connect("127.0.0.1", port)) end
    for _, fd in ipairs(fds) do
      core.poll({ [fd] = "w" }, 5)
      core.send(fd, "GET /state HTTP/1.1\r\n\r\n")
    end
    local ok = 0
    for _, fd in ipairs(fds) do
      local buf = ""
      H.wait_until(function()
        local s = core.recv(fd, 65536)
        if s then buf = buf .. s end
        return s == "" or s == nil
      end, 30, { fd })
      core.close(fd)
      if buf:match("^HTTP/1%.1 200") then ok = ok + 1 end
    end
    assert.equal(100, ok)
    core.poll({ [idle] = "r" }, 30)
    assert.equal("", core.recv(idle, 10))
    core.close(idle)
    code, body = post(port, '{"cmd":"stop","job":"web"}')
    assert.equal(200, code)
    assert.equal("web", require("cjson").decode(body).result.units[1])
    assert.truthy(C.wait_state(sock, "web", { stopped = true }))
    assert.equal("running", C.state(sock, "slow").state)
    C.finish(p, sock)
  end)
end)
