--- lrun.control.commands: what each control request does -- the one place both the
-- control socket and the status page's buttons go through.
--
--   local commands = require "lrun.control.commands"
--   local result, err = commands.run(ctx, req, stream)
--
-- ctx: { scheduler =, bus = (lrun.control.bus), pid =, loop =, lua = bool (eval is
-- allowed), load = fn(path) -> spec fragment | nil, message }. A command answers a
-- result (any JSON value) or nil and a message for that client. Given a stream,
-- `stop` and `restart` answer once the units have settled (stopped with their
-- process group empty; up again) unless req.wait is false, and `tail` with follow
-- streams lines: both answer commands.STREAM and then write through
-- stream:send(obj) until stream:finish(). Text requests get the older text answers.
local core = require "lprocess.core"
local stop = require "lprocess.stop"
local units = require "lrun.units"

local M = {}

M.STREAM = {}
M.SETTLE = 10     -- seconds past the grace that stop/restart wait for a unit to settle

local C = {}

--- format_states(scheduler:states()) -> one line per unit: name, state, pid, restarts.
function M.format_states(list)
  local w = 4
  for _, u in ipairs(list) do w = math.max(w, #u.name) end
  local lines = {}
  for _, u in ipairs(list) do
    local extra = ""
    if u.pid then extra = extra .. "  pid " .. u.pid end
    if (u.restarts or 0) > 0 then extra = extra .. "  restarts " .. u.restarts end
    lines[#lines + 1] = string.format("%-" .. w .. "s  %s%s\n", u.name, u.state, extra)
  end
  return table.concat(lines)
end

function C.status(ctx, req)
  local s = ctx.scheduler
  if req.text then return M.format_states(s:states()) end
  return s.unit_info and s:unit_info() or s:states()
end

function C.pid(ctx, req)
  return req.text and (tostring(ctx.pid) .. "\n") or ctx.pid
end

function C.shutdown(ctx, req)
  ctx.scheduler:shutdown(nil, "stop requested on the control socket, stopping jobs")
  return req.text and "stopping\n" or "stopping"
end

-- start/stop/restart/signal on every unit the name stands for.
-- -> result, the units acted on, their pids before | nil, message
local function each_unit(ctx, req, method, ...)
  if type(req.job) ~= "string" then return nil, req.cmd .. " needs \"job\"" end
  local s = ctx.scheduler
  local list, err = s:find_units(req.job)
  if not list then return nil, err end
  local done, acted, olds, errs = {}, {}, {}, {}
  for _, u in ipairs(list) do
    local old = units.LIVE[u.state] and u.pid or false
    local ok, uerr = s[method](s, u, ...)
    if ok then
      done[#done + 1] = u.name
      acted[#acted + 1], olds[#acted + 1] = u, old
    else
      errs[#errs + 1] = uerr
    end
  end
  if #done == 0 then return nil, table.concat(errs, "; ") end
  return { units = done, errors = #errs > 0 and errs or nil }, acted, olds
end

-- Has u got where `want` says, its old process group empty?
local function settled(u, want, old)
  if old and stop.alive(old) then return false end
  if want == "ended" then return units.ENDED[u.state] end
  return units.ENDED[u.state] or (units.LIVE[u.state] and u.pid ~= old)
end

-- Answer once every unit has settled (stop: ended, its group empty; restart: up
-- again), as `lrun ctl stop` waits like supervisorctl's. Past the deadline (grace
-- and some), an error says what is still in the way.
local function await(ctx, req, stream, want, result, acted, olds)
  if not stream or req.wait == false then return result end
  local grace = 0
  for _, u in ipairs(acted) do grace = math.max(grace, u.job.kill_grace or ctx.scheduler.grace) end
  local deadline = core.now() + grace + M.SETTLE
  local function tick()
    local pending
    for i, u in ipairs(acted) do
      if not settled(u, want, olds[i]) then pending = u break end
    end
    if not pending then
      stream:send { ok = true, result = result, id = req.id }
      return stream:finish()
    end
    if core.now() > deadline then
      stream:send { ok = false, id = req.id, error = string.format(
        "%s: still %s after %gs", pending.name, pending.state, grace + M.SETTLE) }
      return stream:finish()
    end
    ctx.loop:timer(0.05, tick)
  end
  tick()
  return M.STREAM
end

function C.stop(ctx, req, stream)
  if req.text then return C.shutdown(ctx, req) end   -- `lrun --stop`'s word
  local result, acted, olds = each_unit(ctx, req, "stop_unit")
  if not result then return nil, acted end
  return await(ctx, req, stream, "ended", result, acted, olds)
end

function C.restart(ctx, req, stream)
  local result, acted, olds = each_unit(ctx, req, "restart_unit")
  if not result then return nil, acted end
  return await(ctx, req, stream, "up", result, acted, olds)
end

function C.start(ctx, req) return each_unit(ctx, req, "start_unit") end

function C.signal(ctx, req)
  if req.signal == nil then return nil, "signal needs \"signal\"" end
  return each_unit(ctx, req, "signal_unit", req.signal)
end

local function follow(ctx, u, stream)
  local out, name = ctx.scheduler.out, u.name
  local function on_line(line, which) stream:send { job = name, stream = which, line = line } end
  out:watch(name, on_line)
  local off
  off = ctx.bus:listen(function(kind, fields)
    if fields.job ~= name then return end
    if kind == "start" then out:watch(name, on_line)   -- a fresh run of the unit
    elseif kind == "exit" then
      ctx.loop:defer(function()
        if not units.ENDED[u.state] then return end
        off()
        stream:send { job = name, ["end"] = true, state = u.state }
        stream:finish()
      end)
    end
  end)
  stream.on_close = function() off(); out:unwatch(name, on_line) end
end

function C.tail(ctx, req, stream)
  if type(req.job) ~= "string" then return nil, "tail needs \"job\"" end
  local list, err = ctx.scheduler:find_units(req.job)
  if not list then return nil, err end
  if #list ~= 1 then
    return nil, string.format("%s has %d instances: tail one (%s.0, ...)", req.job, #list, req.job)
  end
  local u = list[1]
  local n = math.tointeger(req.lines) or 10
  if n < 0 or n > 1000 then return nil, "lines must be 0-1000" end
  local lines = n > 0 and ctx.bus:last_lines(u.name, n) or {}
  local result = { job = u.name, state = u.state, lines = lines }
  if not req.follow or not stream then return result end
  if units.ENDED[u.state] then
    result["end"] = true
    return result
  end
  stream:send { ok = true, result = result, id = req.id }
  follow(ctx, u, stream)
  return M.STREAM
end

function C.add(ctx, req)
  if type(req.file) ~= "string" then return nil, "add needs \"file\"" end
  if not ctx.load then return nil, "this lrun cannot add jobs" end
  local frag, err = ctx.load(req.file)
  if not frag then return nil, err end
  return ctx.scheduler:add_jobs(frag)
end

function C.eval(ctx, req)
  if not ctx.lua then
    return nil, "eval is off: start lrun with --control-lua to allow it"
  end
  if type(req.code) ~= "string" then return nil, "eval needs \"code\"" end
  return require("lrun.control.api").eval(ctx, req.code)
end

--- run(ctx, req, stream) -> result | M.STREAM | nil, message
function M.run(ctx, req, stream)
  local fn = C[req.cmd]
  if req.text and not (req.cmd == "status" or req.cmd == "stop" or req.cmd == "pid") then
    fn = nil
  end
  if not fn then return nil, string.format("unknown command '%s'", req.cmd) end
  return fn(ctx, req, stream)
end

M.names = { "status", "pid", "shutdown", "start", "stop", "restart", "signal", "tail",
  "add", "eval" }

return M
