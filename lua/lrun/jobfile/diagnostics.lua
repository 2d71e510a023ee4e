-- lrun.jobfile.diagnostics: the wording of job-file errors -- suggestions for near
-- misses, quoting that keeps a message on one line, and the error list a load fills.
--
--   local D = require "lrun.jobfile.diagnostics"
--   D.suggest("neds", { "needs", "name" })  --> " (did you mean 'needs'?)"
--   D.show("a\nb")                            --> "\"a\\nb\"" (strings quoted, rest tostring)
--   D.tick("needs")                           --> "'needs'" (a key as messages print it)
--   D.add_error(raw, "%s: bad", where)        -- appends to raw.errors
--   D.error_text(v)                           --> text of an error object, never raising
--   table.sort(keys, D.by_text)               -- keys of any type, by their text
--
-- Nothing here calls a metamethod of a job file's values: show() describes a table
-- by its type, not through __tostring or __name, since those are the file's code.
local M = {}

-- Edit distance counting a swap of two neighbours as one edit ("TREM" is one from
-- "TERM"), since that is the commonest typo.
function M.distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 0, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      d[i][j] = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d[i][j] = math.min(d[i][j], d[i - 2][j - 2] + 1)
      end
    end
  end
  return d[#a][#b]
end

-- Words much longer than every candidate are no typo of one; skipping them keeps a
-- 10 MB key from costing a 10 MB x 15 table.
local MAX_WORD = 64

-- " (did you mean 'x'?)" for the closest candidate within two edits, else "".
function M.suggest(word, candidates)
  if type(word) ~= "string" or #word > MAX_WORD then return "" end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = M.distance(word, c)
    if d <= 2 and d < #word and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

-- Past this many bytes a quoted value is cut ("..."): a message stays readable
-- whatever a file holds.
local MAX_SHOWN = 200

-- A string in double quotes with control characters escaped, so that a message
-- stays on one line whatever a name contains.
local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
function M.quote(s)
  local cut = #s > MAX_SHOWN
  if cut then s = s:sub(1, MAX_SHOWN) end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\%d"):format(c:byte())
  end) .. '"' .. (cut and "..." or "")
end

-- A value as messages print it: strings quoted, numbers and booleans as Lua writes
-- them, anything else by its type (no metamethod of the file runs).
function M.show(v)
  local t = type(v)
  if t == "string" then return M.quote(v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return t
end

-- A key or a policy name in single quotes, as messages print them, unless it holds
-- something that needs escaping.
function M.tick(s)
  if #s > MAX_SHOWN or s:find("[%c'\\]") then return M.quote(s) end
  return "'" .. s .. "'"
end

-- Sort keys of any type by their text, without metamethods (a comparator that
-- called __tostring would run the file's code, and addresses would not be stable).
local function sort_text(k)
  local t = type(k)
  if t == "string" then return k end
  if t == "number" or t == "boolean" then return tostring(k) end
  return t
end
function M.by_text(a, b) return sort_text(a) < sort_text(b) end

function M.add_error(raw, fmt, ...)
  raw.errors[#raw.errors + 1] = fmt:format(...)
end

-- The text of an error object as lua(1) would print it, without running its
-- __tostring (the job file's code, maybe hostile): strings and numbers as they are.
function M.error_text(v)
  if type(v) == "string" then return v end
  if math.type(v) then return tostring(v) end
  return ("(error object is a %s value)"):format(type(v))
end

-- A string made safe for a one-line message: control characters escaped, cut.
function M.line(s)
  if #s > 4 * MAX_SHOWN then s = s:sub(1, 4 * MAX_SHOWN) .. "..." end
  return (s:gsub("[%c]", function(c)
    return ESCAPES[c] or ("\\%d"):format(c:byte())
  end))
end

return M
