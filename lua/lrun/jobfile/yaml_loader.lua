-- lrun.jobfile.yaml_loader: read a YAML job file into `raw` (see
-- lrun.jobfile.collect), with the line of every key and the document order of every
-- mapping, which lyaml.load drops.
--
--   local yaml_loader = require "lrun.jobfile.yaml_loader"
--   local ok, message = yaml_loader.read(raw, text)  -- true | nil, "jobs.yaml:3: ..."
--
-- A syntax error stops loading and is the only error. Only the first document is
-- read, like lyaml.load. `key:` with no value counts as absent.
local D = require "lrun.jobfile.diagnostics"
local collect = require "lrun.jobfile.collect"

local M = {}

local function join(a, b) return a == nil and tostring(b) or a .. "\1" .. tostring(b) end

-- One node event (scalar, alias, start of a mapping or sequence) inside `frame`:
-- record its line, and return its path and role ("key" or "value").
local function place(frame, ev, line_of, keys_of)
  local line, path, role = ev.start_mark.line + 1, nil, "value"
  if frame and frame.seq then
    frame.n = frame.n + 1
    path = join(frame.path, frame.n)
    line_of[path] = line
  elseif frame and frame.want == "key" then
    -- A complex (non-scalar) key gets a made-up name: nothing looks it up.
    role, frame.want, frame.key = "key", "value", ev.value or "\0complex"
    line_of[join(frame.path, frame.key)] = line
    local order = keys_of[frame.path or ""]
    order[#order + 1] = frame.key
  elseif frame then
    path = join(frame.path, frame.key)
    if ev.type == "SCALAR" or ev.type == "ALIAS" then frame.want = "key" end
  end
  return path, role
end

-- Walk libyaml's events to learn the line of every mapping key and sequence item
-- and the document order of each mapping's keys. Paths are keys joined by "\1".
local function positions(text)
  local yaml = require "yaml"
  local line_of, keys_of = {}, {}
  -- Frames: { path=, seq=bool, n=items seen, want="key"|"value", key=, role= }
  local stack = {}
  local next_event = yaml.parser(text)
  while true do
    local ok, ev = pcall(next_event)
    if not ok then return nil, D.error_text(ev) end
    if not ev or ev.type == "DOCUMENT_END" then break end
    local t, frame = ev.type, stack[#stack]
    if t == "MAPPING_END" or t == "SEQUENCE_END" then
      local done = table.remove(stack)
      local parent = stack[#stack]
      if parent and done.role == "value" then parent.want = "key" end
    elseif t == "SCALAR" or t == "ALIAS" or t == "MAPPING_START" or t == "SEQUENCE_START" then
      local path, role = place(frame, ev, line_of, keys_of)
      if t == "MAPPING_START" or t == "SEQUENCE_START" then
        stack[#stack + 1] = { path = path, seq = t == "SEQUENCE_START", n = 0,
          want = "key", role = role }
        if t == "MAPPING_START" then keys_of[path or ""] = {} end
      end
    end
  end
  return line_of, keys_of
end

-- lyaml gives `key:` with no value as lyaml.null; the validator wants nil. Tables
-- are walked with an explicit stack: a deeply nested document must not overflow.
local function strip_nulls(doc, null)
  if doc == null then return nil end
  local seen, todo = {}, { doc }
  while #todo > 0 do
    local v = table.remove(todo)
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in next, v do
        if x == null then v[k] = nil
        elseif type(x) == "table" then todo[#todo + 1] = x end
      end
    end
  end
  return doc
end

local function syntax_error(raw, msg, l)
  return nil, ("%s:%s: %s"):format(raw.base, l or "1", D.line(msg))
end

function M.read(raw, text)
  local okl, lyaml = pcall(require, "lyaml")
  if not okl then return nil, raw.base .. ": YAML job files need lyaml (Debian: lua-yaml)" end
  local line_of, keys_of = positions(text)
  if not line_of then
    -- "did not find expected key at document: 1, line: 3, column: 5\nwhile ...";
    -- the reader's errors have no line ("control characters are not allowed at
    -- document: 0"): look for the first such byte ourselves.
    local msg, l = keys_of:match("^(.-) at document: %d+, line: (%d+)")
    if not msg then
      msg = keys_of:gsub("\n.*", ""):gsub(" at document: %d+$", "")
      local at = msg:find("^control characters") and text:find("[%z\1-\8\11\12\14-\31\127]")
      if at then l = select(2, text:sub(1, at):gsub("\n", "")) + 1 end
    end
    return syntax_error(raw, msg, l)
  end
  local ok, doc = pcall(lyaml.load, text)
  if not ok then
    local l, msg = D.error_text(doc):match("^(%d+):%d+: (.*)")
    return syntax_error(raw, msg or D.error_text(doc), l)
  end
  doc = strip_nulls(doc, lyaml.null)
  if doc == nil then doc = {} end
  if type(doc) ~= "table" or (#doc > 0) then
    return nil, raw.base .. ":1: the document must be a mapping (settings:, jobs:, services:)"
  end
  collect.table(raw, doc, {
    keyed = true,
    line = function(path, key)
      local p
      for _, k in ipairs(path) do p = join(p, k) end
      if key ~= nil then p = p .. "\1" .. tostring(key) end
      local l = line_of[p]
      return l and raw.base .. ":" .. l or nil
    end,
    order = function(section) return keys_of[section] end,
  })
  return true
end

return M
