-- lrun.output.status: the status line at the bottom of a terminal. It is drawn on
-- stderr as "\r" .. text .. clear-to-end-of-line, so a redraw happens in place and
-- never scrolls; it is taken away before anything else goes to the terminal and put
-- back at the next draw.
--
--   local line = require("lrun.output.status").new(io.stderr, 80)
--   line:set("[1/3] running 2")   -- nil or "" removes it; shown at the next draw
--   line:draw()                   -- from flush, when the cursor is at a line start
--   if line.shown then line:erase() end   -- before writing other output
local term = require "lrun.output.term"

local M = {}

local Status = {}
Status.__index = Status

-- columns: the terminal width; the line is cut to columns - 1 characters so the
-- cursor never wraps.
function M.new(sink, columns)
  return setmetatable({
    sink = sink, columns = columns,
    text = nil,
    dirty = false,   -- text changed since it was last drawn
    shown = false,   -- on screen now
  }, Status)
end

function Status:set(text)
  if text == "" then text = nil end
  if text then text = tostring(text):gsub("[\r\n]", " ") end
  if text ~= self.text then
    self.text = text
    self.dirty = true
  end
end

function Status:erase()
  local sink = self.sink
  sink:write("\r\27[K")
  sink:flush()
  self.shown = false
end

-- Writes without flushing: the caller flushes the sink.
function Status:draw()
  local sink = self.sink
  if self.text and (not self.shown or self.dirty) then
    sink:write("\r", term.truncate(self.text, self.columns - 1), "\27[K")
    self.shown = true
  elseif not self.text and self.shown then
    sink:write("\r\27[K")
    self.shown = false
  end
  self.dirty = false
end

return M
