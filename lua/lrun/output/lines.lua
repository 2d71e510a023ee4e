-- lrun.output.lines: cutting job output into lines. One fast path: complete lines
-- are found with string.find (memchr) and prefixed by lrun.text's C loop; a partial
-- last line is held as a list of pieces until its newline comes.
--
--   local lines = require "lrun.output.lines"
--   local text, last = lines.prefix(s, init, "web | ")  -- s[init..last], each line prefixed
--   local last = lines.last_nl(s)                       -- index of the last "\n", or nil
--   lines.each(s, i, e, function(line) ... end)         -- lines of s[i..e], no "\n" or "\r\n"
--   local held = lines.held()                           -- a partial line:
--   held:put(piece)  --> bytes held;  held:take([more]) --> the bytes, and empties it
--
-- Bytes are never altered: CR, NUL and invalid UTF-8 pass through.
local text = require "lrun.text"

local M = {}

local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat

-- prefix(s, init, prefix) -> text, last: `last` is the index of the last "\n" in s
-- at or after init (init - 1 when there is none); `text` is s[init..last] with
-- prefix before each line ("" when there is none).
M.prefix = text.prefix_lines

-- Lines are usually short, so look in a small window at the end first and widen it
-- geometrically.
function M.last_nl(s)
  local n = #s
  if byte(s, n) == 10 then return n end
  local window = 256
  while true do
    local from = n - window
    if from < 1 then from = 1 end
    local p = find(s, "\n[^\n]*$", from)
    if p or from == 1 then return p end
    window = window * 8
  end
end

-- A last piece without "\n" counts as a line too.
function M.each(s, i, e, fn)
  while i <= e do
    local j = find(s, "\n", i, true)
    local stop = (j and j <= e) and j or e + 1
    local line = sub(s, i, stop - 1)
    if byte(line, -1) == 13 then line = sub(line, 1, -2) end
    fn(line)
    i = stop + 1
  end
end

-- The held part of a stream's current line, kept as pieces so that a long line fed
-- in tiny reads costs linear time.
local Held = {}
Held.__index = Held

function M.held()
  return setmetatable({ n = 0, len = 0 }, Held)
end

function Held:put(piece)
  local n = self.n + 1
  self[n] = piece
  self.n, self.len = n, self.len + #piece
  return self.len
end

function Held:take(more)
  local n = self.n
  if more then n = n + 1; self[n] = more end
  local s = concat(self, "", 1, n)
  for k = 1, n do self[k] = nil end
  self.n, self.len = 0, 0
  return s
end

return M
