--- lrun.control.protocol: the control socket's wire format -- one JSON object per
-- line each way (README, "Working with a running lrun", has the reference).
--
--   local req, err = protocol.decode(line)   -- { cmd = "stop", job = "web", ... }
--   protocol.reply(result)                   -- '{"ok":true,"result":...}\n'
--   protocol.error(message)                  -- '{"ok":false,"error":"..."}\n'
--   protocol.encode(obj)                     -- any value as one line of JSON
--
-- A line of one bare word is a command of the older text protocol
-- ("status", "stop", "pid": what `lrun --status/--stop` send): req.text is set and
-- the answer is text, ended by the server closing the connection.
local report = require "lrun.report"

local M = {}

M.MAX_LINE = 65536     -- bytes in one request line, "\n" included

local cjson = require "cjson"
local json = cjson.new and cjson.new() or cjson
if json.decode_max_depth then json.decode_max_depth(32) end

-- The keys a request may carry, and the type each must have.
local FIELDS = { cmd = "string", job = "string", signal = "string", lines = "number",
  follow = "boolean", wait = "boolean", file = "string", code = "string", id = true }

--- decode(line) -> request | nil, message
function M.decode(line)
  local word = line:match("^%s*([%w_%-]*)%s*$")
  if word then return { cmd = word, text = true } end
  local ok, req = pcall(json.decode, line)
  if not ok then
    return nil, "malformed JSON: " .. tostring(req):gsub("^.-: ", "", 1):sub(1, 200)
  end
  if type(req) ~= "table" or req[1] ~= nil then return nil, "a request is a JSON object" end
  for k, v in pairs(req) do
    local want = FIELDS[k]
    if not want then return nil, string.format("unknown key '%s'", tostring(k)) end
    if want ~= true and type(v) ~= want and not (k == "signal" and type(v) == "number") then
      return nil, string.format("'%s' must be a %s", k, want)
    end
  end
  if type(req.cmd) ~= "string" then return nil, "a request needs \"cmd\"" end
  return req
end

function M.encode(obj)
  return report._encode(obj) .. "\n"
end

function M.reply(result, id)
  return M.encode { ok = true, result = result, id = id }
end

function M.error(message, id)
  return M.encode { ok = false, error = tostring(message), id = id }
end

--- parse_reply(line) -> table | nil, message (for clients)
function M.parse(line)
  local ok, t = pcall(json.decode, line)
  if not ok or type(t) ~= "table" then return nil, "malformed reply: " .. line:sub(1, 200) end
  return t
end

return M
