--- lrun.control.bus: the run's event stream, fanned out -- to the --events file (when
-- there is one) and to whoever listens while lrun runs (tail -f, the status page).
-- It stands where the scheduler expects its `events` writer.
--
--   local bus = require("lrun.control.bus").new(file_writer_or_nil, out)
--   local off = bus:listen(function(kind, fields) ... end)   -- off() stops it
--   bus:emit(kind, fields)            -- the scheduler's call
--   bus:quiet()                       -- true: no file, no listener (fields unread)
--   bus:ended(unit_name)              -- what emit("exit") keeps, for a quiet bus
--   bus:last_lines(unit_name)         -- an ended unit's last output lines
--
-- It also keeps each unit's last lines when it exits (lrun.output lets them go once
-- the unit has ended), so `lrun ctl tail` still has something to show afterwards.
local M = {}
local Bus = {}
Bus.__index = Bus

M.KEEP_LINES = 20     -- lines kept of an ended unit
M.KEEP_UNITS = 1000   -- of the units that ended last: a run of 100 000 jobs keeps 1000

function M.new(file, out)
  -- order[head..last]: the names kept, oldest first
  return setmetatable({ file = file, out = out, listeners = {}, kept = {}, order = {},
    head = 1, last = 0 }, Bus)
end

function Bus:_keep(name)
  local lines = self.out:tail(name, M.KEEP_LINES)
  -- A unit that never said anything takes no place: last_lines gives {} either way.
  if #lines == 0 and not self.kept[name] then return end
  if not self.kept[name] then
    local order = self.order
    self.last = self.last + 1
    order[self.last] = name
    if self.last - self.head >= M.KEEP_UNITS then
      self.kept[order[self.head]] = nil
      order[self.head] = nil
      self.head = self.head + 1
    end
  end
  self.kept[name] = lines
end

-- With nobody to read them, the scheduler builds no event tables (two a job).
function Bus:quiet()
  return self.file == nil and next(self.listeners) == nil
end

function Bus:ended(name)
  if self.out then self:_keep(name) end
end

function Bus:listen(fn)
  self.listeners[fn] = true
  return function() self.listeners[fn] = nil end
end

function Bus:emit(kind, fields)
  if self.file then self.file:emit(kind, fields) end
  if kind == "exit" then self:ended(fields.job) end
  if next(self.listeners) == nil then return end
  local snap = {}
  for fn in pairs(self.listeners) do snap[#snap + 1] = fn end
  for _, fn in ipairs(snap) do
    if self.listeners[fn] then
      local ok, err = pcall(fn, kind, fields)
      if not ok and self.out then self.out:message("event listener: " .. tostring(err)) end
    end
  end
end

function Bus:last_lines(name, n)
  local lines = self.out and self.out:tail(name, n) or {}
  if #lines == 0 and self.kept[name] then
    lines = self.kept[name]
    if n and #lines > n then lines = table.move(lines, #lines - n + 1, #lines, 1, {}) end
  end
  return lines
end

function Bus:close()
  if self.file then self.file:close() end
end

return M
