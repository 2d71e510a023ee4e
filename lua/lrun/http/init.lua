--- lrun.http: `--http [ADDR:]PORT` -- one status page of a running lrun: the graph
-- as a table by level, each unit's state live (server-sent events fed by the run's
-- event stream, the one --events writes), durations, a log tail per job, and
-- stop/restart/start buttons that go through lrun.control.commands like `lrun ctl`.
--
--   local web, err = http.start(ctx, { host = "127.0.0.1", port = 8080 })
--   web.url; web:close()
--
-- Routes: GET / (the page, lrun.http.page), GET /state (JSON: units, levels),
-- GET /events (SSE: "state" with every unit, "event" with each run event),
-- GET /graph.dot, POST /api (a control request as JSON: start, stop, restart,
-- signal, tail, status).
--
-- The page is for the machine's own user: it listens on 127.0.0.1 unless told
-- otherwise, and a POST must carry Content-Type: application/json and, when the
-- browser sends an Origin, the page's own -- so another site open in the same
-- browser cannot press the buttons (a cross-site JSON POST needs a preflight that
-- this server never grants). Against DNS rebinding, a request must name the host
-- as localhost or an address.
local commands = require "lrun.control.commands"
local protocol = require "lrun.control.protocol"
local server = require "lrun.http.server"

local M = {}

M.TICK = 1          -- seconds between two "state" pushes while someone watches
local ALLOWED = { start = true, stop = true, restart = true, signal = true, tail = true,
  status = true }

-- Each job's level: 0 without needs, else one more than its deepest need.
local function levels(spec)
  local lv = {}
  local function level(job, depth)
    if lv[job.name] then return lv[job.name] end
    if depth > 10000 then return 0 end
    local l = 0
    for _, need in ipairs(job.needs) do
      local j = spec.by_name[need.name]
      if j then l = math.max(l, level(j, depth + 1) + 1) end
    end
    lv[job.name] = l
    return l
  end
  for _, job in ipairs(spec.jobs) do level(job, 0) end
  return lv
end

local Web = {}
Web.__index = Web

function Web:state_json()
  local s = self.ctx.scheduler
  local n = 0
  for _ in pairs(self.watchers) do n = n + 1 end
  return protocol.encode({ units = s:unit_info(), levels = levels(s.spec), pid = self.ctx.pid,
    watchers = n })
end

function Web:_push_state()
  self.pending = nil
  if not next(self.watchers) then return end
  local data = self:state_json():gsub("\n$", "")
  for sse in pairs(self.watchers) do sse:send("state", data) end
end

function Web:_soon()
  if not self.pending then
    self.pending = self.ctx.loop:timer(0.05, function() self:_push_state() end)
  end
end

function Web:_tick()
  self.ticker = nil
  if not next(self.watchers) then return end
  self:_push_state()
  self.ticker = self.ctx.loop:timer(M.TICK, function() self:_tick() end)
end

function Web:_events(res)
  local sse = res:events()
  self.watchers[sse] = true
  sse.on_close = function() self.watchers[sse] = nil end
  sse:send("state", (self:state_json():gsub("\n$", "")))
  if not self.ticker then self.ticker = self.ctx.loop:timer(M.TICK, function() self:_tick() end) end
end

-- A run event: to every watcher as it is, and a fresh state soon after.
function Web:_on_event(kind, fields)
  if not next(self.watchers) then return end
  local f = { event = kind }
  for k, v in pairs(fields) do f[k] = v end
  local data = protocol.encode(f):gsub("\n$", "")
  for sse in pairs(self.watchers) do sse:send("event", data) end
  self:_soon()
end

local function same_origin(req)
  local origin = req.headers.origin
  return origin == nil or origin == "http://" .. (req.headers.host or "")
end

function Web:_api(req, res)
  if req.method ~= "POST" then return res:send(405, "text/plain", "POST only\n") end
  if not (req.headers["content-type"] or ""):find("^application/json") then
    return res:send(415, "text/plain", "Content-Type must be application/json\n")
  end
  if not same_origin(req) then return res:send(403, "text/plain", "cross-origin request\n") end
  local r, err = protocol.decode(req.body)
  if r and (r.text or not ALLOWED[r.cmd]) then r, err = nil, "not a page command" end
  if not r then return res:send(400, "application/json", protocol.error(err)) end
  r.follow = nil
  local result, rerr = commands.run(self.ctx, r)
  self:_soon()
  if result == nil then return res:send(400, "application/json", protocol.error(rerr, r.id)) end
  res:send(200, "application/json", protocol.reply(result, r.id))
end

-- A page reached by a name other than localhost or an address literal may be DNS
-- rebinding: another site's name made to point here, its scripts then "same-origin".
local function trusted_host(req)
  local host = (req.headers.host or ""):gsub(":%d+$", "")
  return host == "" or host == "localhost" or host:match("^[%d.]+$") ~= nil
    or host:match("^%[[%x:.]+%]$") ~= nil
end

function Web:_route(req, res)
  if not trusted_host(req) then
    return res:send(403, "text/plain", "unexpected Host: use an address or localhost\n")
  end
  local p = req.path
  if p == "/api" then return self:_api(req, res) end
  if req.method ~= "GET" then return res:send(405, "text/plain", "GET only\n") end
  if p == "/" or p == "/index.html" then
    return res:send(200, "text/html; charset=utf-8", require("lrun.http.page").html)
  elseif p == "/state" then
    return res:send(200, "application/json", self:state_json())
  elseif p == "/events" then
    return self:_events(res)
  elseif p == "/graph.dot" then
    local graph = require "lrun.graph"
    return res:send(200, "text/vnd.graphviz; charset=utf-8", graph.dot(self.ctx.scheduler.spec))
  end
  res:send(404, "text/plain", "not found\n")
end

--- start(ctx, { host =, port = }) -> web | nil, message
function M.start(ctx, addr)
  local self = setmetatable({ ctx = ctx, watchers = {} }, Web)
  local srv, err = server.listen(ctx.loop, addr.host, addr.port,
    function(req, res) self:_route(req, res) end)
  if not srv then return nil, err end
  self.srv = srv
  local host = srv.host:find(":", 1, true) and ("[" .. srv.host .. "]") or srv.host
  self.url = string.format("http://%s:%d/", host, srv.port)
  self.off = ctx.bus:listen(function(kind, fields) self:_on_event(kind, fields) end)
  ctx.scheduler.out:message("status page at " .. self.url)
  return self
end

function Web:close()
  if self.off then self.off(); self.off = nil end
  if self.ticker then self.ticker:cancel(); self.ticker = nil end
  if self.pending then self.pending:cancel(); self.pending = nil end
  self.watchers = {}
  self.srv:close()
end

return M
