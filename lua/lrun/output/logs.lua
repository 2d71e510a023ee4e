-- lrun.output.logs: --log-dir. Every byte a job writes, both streams in arrival
-- order, is appended unmodified to DIR/NAME.log ("/" and NUL in a name become "_").
-- A file is opened at a job's first output, or when it ends having printed nothing.
--
--   local logs, err = require("lrun.output.logs").new("logs/run", report)
--   logs:write("web", data)   -- report("log ...: why") once if it cannot, then skips
--   logs:touch("web")         -- the job ended: its log exists even if empty
--   logs:flush(); logs:forget("web"); logs:close()
local core = require "lprocess.core"

local M = {}

local EEXIST = 17

-- mkdir -p: each missing component in turn; one that exists must be a directory.
function M.mkdir_p(dir)
  local path = dir:sub(1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    local ok, err, errno = core.mkdir(path)
    if not ok then
      local st = errno == EEXIST and core.stat(path)
      if not (st and st.type == "directory") then return nil, err end
    end
  end
  return true
end

local Logs = {}
Logs.__index = Logs

-- report(msg) is told why a file cannot be opened or written. nil, err when the
-- directory cannot be made.
function M.new(dir, report)
  local ok, err = M.mkdir_p(dir)
  if not ok then return nil, err end
  return setmetatable({ dir = dir, report = report, files = {} }, Logs)
end

-- The job's file: open, false after a failure, nil before the first open.
local function open(self, name)
  local path = self.dir .. "/" .. name:gsub("[/%z]", "_") .. ".log"
  local f, err = io.open(path, "ab")
  if not f then
    self.report("log " .. path .. ": " .. tostring(err))
    f = false
  end
  self.files[name] = f
  return f
end

function Logs:write(name, data)
  local f = self.files[name]
  if f == nil and not self.closed then f = open(self, name) end
  if f then
    local ok, err = f:write(data)
    if not ok then
      self.report("log " .. name .. ": " .. tostring(err))
      f:close()
      self.files[name] = false
    end
  end
end

function Logs:touch(name)
  if self.files[name] == nil and not self.closed then open(self, name) end
end

function Logs:flush()
  for _, f in pairs(self.files) do
    if f then f:flush() end
  end
end

-- The job is gone: a later run of the same name opens its file again.
function Logs:forget(name)
  local f = self.files[name]
  if f then f:close() end
  self.files[name] = nil
end

-- Every file closed; nothing is written from now on.
function Logs:close()
  for name, f in pairs(self.files) do
    if f then f:close() end
    self.files[name] = false
  end
  self.closed = true
end

return M
