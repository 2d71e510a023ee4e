-- examples/reaping/*.lua and README.md's "The lprocess library" section, run as a user
-- runs them: lua5.4 subprocesses with LUA_PATH/LUA_CPATH on this checkout (and, under
-- make sanitize, ASan preloaded), exit codes and output checked. In the README
-- section, every ```lua block either sits under a `<!-- from: examples/FILE -->` line
-- and is a verbatim run of whole lines of FILE, or is a snippet that runs as it is
-- and prints what its `--> ...` comments say.
local H = require "helper"
local lp = H.lp

local TIMEOUT = 120   -- one run, on a loaded machine

local function run_lua(args, input)
  local argv = { "lua5.4" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = H.lua_env()
  argv.input = input
  argv.timeout = TIMEOUT
  argv.cwd = H.root
  local res = assert(lp.run(argv))
  assert.is_false(res.timed_out)
  return res
end

describe("examples/reaping", function()
  it("signal.lua reaps every child from SIGCHLD wake-ups, leaving no zombie", function()
    local res = run_lua { "examples/reaping/signal.lua" }
    assert.exited(0, res.status)
    assert.equal("", res.stderr)
    local reaped = {}
    for pid in res.stdout:gmatch("reaped child process (%d+), status is exit 0") do
      reaped[#reaped + 1] = pid
    end
    assert.equal(3, #reaped, res.stdout)
    local wakeups = res.stdout:match(
      "parent done: 3 children reaped in (%d+) wake%-ups, no child left, so no zombie\n")
    assert.is_truthy(wakeups, res.stdout)
    assert.is_true(tonumber(wakeups) <= 3)
    local spawned = {}
    for i = 1, 3 do
      assert.matches("child " .. i .. " sleep done%.", res.stdout)
      spawned[#spawned + 1] = res.stdout:match("hello from the parent, child " .. i .. " pid is (%d+)\n")
    end
    table.sort(spawned)
    table.sort(reaped)
    assert.same(spawned, reaped)        -- each one reaped once, in whatever order they ended
  end)

  it("polling.lua reaps late and wakes up for nothing", function()
    local res = run_lua { "examples/reaping/polling.lua", "0.2" }
    assert.exited(0, res.status)
    local pid = res.stdout:match("the child pid is (%d+)\n")
    assert.matches("reaped child process " .. pid .. ", status is exit 0\n", res.stdout)
    local wakeups, at = res.stdout:match("polling: (%d+) wake%-ups for one child; reaped ([%d.]+) s")
    assert.is_truthy(wakeups, res.stdout)
    assert.is_true(tonumber(wakeups) >= 1)
    assert.is_true(tonumber(at) >= 0.3)
    local loops = select(2, res.stdout:gsub("one loop%.%.%.\n", ""))
    assert.equal(tonumber(wakeups), loops)
  end)

  it("doublefork.lua leaves a daemon in its own session, parented elsewhere, and no zombie", function()
    local t = H.track(finally)
    local res = run_lua { "examples/reaping/doublefork.lua", "60" }
    assert.exited(0, res.status)
    assert.is_true(res.duration < 60)       -- the daemon does not hold the output pipe
    local me = res.stdout:match("^parent (%d+): forking\n")
    local child, sid, daemon = res.stdout:match(
      "first child (%d+): new session (%d+), forked the daemon (%d+), exiting\n")
    assert.is_truthy(daemon, res.stdout)
    assert.equal(child, sid)
    assert.matches("parent " .. me .. ": first child " .. child .. " reaped at once: exit 0\n",
      res.stdout)
    assert.matches("parent " .. me .. ": no child left, so no zombie\n", res.stdout)
    daemon = tonumber(daemon)
    t:add(daemon)
    -- we are a subreaper, so the orphaned daemon came to us rather than to init
    local st = H.stat(daemon)
    assert.same({ H.mypid, tonumber(sid), tonumber(sid), "sleep" },
      { st.ppid, st.session, st.pgrp, st.comm })
    assert.equal("0022", H.status_fields(daemon).Umask)
    local links = lp.run { "readlink", "/proc/" .. daemon .. "/cwd", "/proc/" .. daemon .. "/fd/0",
      "/proc/" .. daemon .. "/fd/1", "/proc/" .. daemon .. "/fd/2" }
    assert.equal("/\n/dev/null\n/dev/null\n/dev/null\n", links.stdout)
    assert.same({ 0, 1, 2 }, H.fds_of(daemon))
    H.core.kill(daemon, "TERM")
    assert.signaled("TERM", H.wait_pid(daemon, 30))
  end)
end)

---------------------------------------------------------------------------------------
-- README.md, between <!-- api-tour --> and <!-- /api-tour -->

local function tour()
  local text = assert(H.slurp(H.root .. "/README.md"), "no README.md")
  local a = text:find("<!-- api-tour -->", 1, true)
  local b = text:find("<!-- /api-tour -->", 1, true)
  assert(a and b and a < b, "README.md has no <!-- api-tour --> ... <!-- /api-tour --> section")
  return text:sub(a, b - 1)
end

local function blocks(text) return H.md_blocks(text, "in the api tour") end
local verbatim = H.verbatim

-- `--> text` comments as patterns: blanks match any blanks, numbers any number,
-- "..." anything.
local function expectation(text)
  local p = text:gsub("%s+$", ""):gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  p = p:gsub("%%%.%%%.%%%.", "\0"):gsub("%d+", "%%d+"):gsub("%s+", "%%s+"):gsub("%z", ".*")
  return p
end

describe("README.md's lprocess tour", function()
  it("has runnable snippets and verbatim quotes of the examples", function()
    local snippets, quoted = 0, {}
    for _, b in ipairs(blocks(tour())) do
      if b.lang == "lua" then
        if b.marker then
          local src = H.slurp(H.root .. "/" .. b.marker)
          assert(src, b.marker .. " does not exist")
          assert(verbatim(b.body, src), "the block quoted from " .. b.marker .. " starting "
            .. string.format("%q", b.first) .. " is not a verbatim run of its lines")
          quoted[b.marker] = true
        else
          snippets = snippets + 1
          local res = run_lua({ "-" }, b.body)
          assert(res.status.how == "exit" and res.status.code == 0, string.format(
            "the snippet starting %q failed (%s): %s", b.first, H.describe(res.status), res.stderr))
          local out, pos = res.stdout, 1
          for want in b.body:gmatch("%-%->%s*([^\n]+)") do
            local s, e = out:find(expectation(want), pos)
            assert(s, string.format("the snippet starting %q should print %q; it printed:\n%s",
              b.first, want, out))
            pos = e + 1
          end
        end
      end
    end
    assert.is_true(snippets >= 5)
    for _, f in ipairs { "signal", "polling", "doublefork" } do
      assert.is_true(quoted["examples/reaping/" .. f .. ".lua"], f)
    end
  end)
end)
