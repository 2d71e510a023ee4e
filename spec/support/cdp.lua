-- A headless Chromium driven over the DevTools protocol on a pipe
-- (--remote-debugging-pipe: JSON messages, each ended by a NUL byte, read by the
-- browser on its fd 3 and written on its fd 4). Enough for http_spec: open a page,
-- evaluate JavaScript in it. Spawned through the test's tracker, so it is reaped.
--
--   local b = cdp.launch(t, exe)       -- nil, why when Chromium is not installed
--   local page = b:open(url)
--   page:eval("document.title")        -- the value (returnByValue)
--   page:wait("expr", timeout)         -- until expr is truthy -> its value | nil
--   b:close()
local H = require "helper"
local core = H.core
local cjson = require "cjson"

local M = {}

function M.find()
  for _, name in ipairs { "chromium", "chromium-browser" } do
    local r = H.lp.run { "sh", "-c", "command -v " .. name }
    if r and H.lp.exit_code(r.status) == 0 then return (r.stdout:gsub("%s+$", "")) end
  end
end

local Browser = {}
Browser.__index = Browser

function M.launch(t, exe)
  local profile = H.tmpdir()
  t:defer(function() H.rm_rf(profile) end)
  local to_r, to_w = assert(core.pipe())
  local from_r, from_w = assert(core.pipe())
  local p = t:spawn { exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--user-data-dir=" .. profile, "--remote-debugging-pipe", "about:blank",
    fds = { [3] = to_r, [4] = from_w }, stdout = "null", stderr = "null", pgid = 0 }
  core.close(to_r)
  core.close(from_w)
  local self = setmetatable({ p = p, w = to_w, r = from_r, buf = "", id = 0 }, Browser)
  t:defer(function() self:close() end)
  return self
end

-- One message of the browser's, or nil at the deadline / EOF
function Browser:_next(deadline)
  while true do
    local i = self.buf:find("\0", 1, true)
    if i then
      local msg = self.buf:sub(1, i - 1)
      self.buf = self.buf:sub(i + 1)
      return cjson.decode(msg)
    end
    local left = deadline - core.now()
    if left <= 0 or not next(core.poll({ [self.r] = "r" }, left)) then return nil end
    local s = core.read(self.r, 65536)
    if not s or s == "" then return nil end
    self.buf = self.buf .. s
  end
end

-- A command -> its result (errors raise)
function Browser:call(method, params, session, timeout)
  self.id = self.id + 1
  local msg = { id = self.id, method = method, params = params or {}, sessionId = session }
  local text = cjson.encode(msg) .. "\0"
  local pos = 1
  while pos <= #text do
    local n = assert(core.write(self.w, text:sub(pos)))
    pos = pos + n
  end
  local deadline = core.now() + (timeout or 30)
  while true do
    local m = self:_next(deadline)
    if not m then error("no answer from chromium to " .. method) end
    if m.id == self.id then
      if m.error then error(method .. ": " .. cjson.encode(m.error)) end
      return m.result
    end
  end
end

local Page = {}
Page.__index = Page

function Browser:open(url)
  local target = self:call("Target.createTarget", { url = url })
  local att = self:call("Target.attachToTarget", { targetId = target.targetId, flatten = true })
  return setmetatable({ b = self, session = att.sessionId }, Page)
end

function Page:eval(expr)
  local r = self.b:call("Runtime.evaluate", { expression = expr, returnByValue = true },
    self.session)
  if r.exceptionDetails then error("page: " .. cjson.encode(r.exceptionDetails)) end
  return r.result.value
end

function Page:wait(expr, timeout)
  return H.wait_until(function()
    local v = self:eval(expr)
    return v ~= cjson.null and v or nil
  end, timeout or 30)
end

function Browser:close()
  if not self.w then return end
  -- only to a live browser: a write to its pipe after it died would be SIGPIPE
  if not self.p.status and H.alive(self.p.pid) then
    pcall(self.call, self, "Browser.close", {}, nil, 5)
  end
  core.close(self.w)
  core.close(self.r)
  self.w = nil
  if not self.p.status then
    H.wait_pid(self.p.pid, 10)
    self.p.status = true
  end
end

return M
