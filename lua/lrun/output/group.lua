-- lrun.output.group: group mode's hold. A job's finished text (prefixed lines) is
-- kept until the job ends, in memory up to a limit, then in an anonymous temp file,
-- and written out in the order it came, each piece to its own stream.
--
--   local held = require("lrun.output.group").new(8 * 1024 * 1024)
--   held:add(1, "web | up\n")          -- stream index: 1 stdout, 2 stderr
--   if not held:empty() then held:replay({ io.stdout, io.stderr }) end
local M = {}

local pack, unpack = string.pack, string.unpack

local Group = {}
Group.__index = Group

function M.new(memory)
  return setmetatable({ memory = memory, text = {}, stream = {}, n = 0, size = 0,
                        file = nil }, Group)   -- file: nil until a spill, false if none
end

-- Frames in the file: <stream byte><u32 length><text>.
local function spill(self)
  local f = self.file
  if f == nil then
    f = io.tmpfile()
    self.file = f or false
  end
  if not f then return end   -- no temp file: keep it in memory
  for k = 1, self.n do
    local text = self.text[k]
    f:write(pack("<BI4", self.stream[k], #text), text)
    self.text[k], self.stream[k] = nil, nil
  end
  self.n, self.size = 0, 0
end

function Group:add(si, text)
  local k = self.n + 1
  self.n = k
  self.text[k], self.stream[k] = text, si
  self.size = self.size + #text
  if self.size > self.memory then spill(self) end
end

function Group:empty()
  return self.n == 0 and not self.file
end

-- Writes everything held to sinks[stream] and starts over empty.
function Group:replay(sinks)
  local f = self.file
  if f then
    f:seek("set")
    while true do
      local head = f:read(5)
      if not head or #head < 5 then break end
      local si, n = unpack("<BI4", head)
      sinks[si]:write(f:read(n))
    end
    f:close()
    self.file = nil
  end
  for k = 1, self.n do
    sinks[self.stream[k]]:write(self.text[k])
    self.text[k], self.stream[k] = nil, nil
  end
  self.n, self.size = 0, 0
end

return M
