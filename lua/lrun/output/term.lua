-- lrun.output.term: terminals and colour -- whether a stream is a terminal, whether
-- to colour, a job's colour, and widths counted in characters.
--
--   local term = require "lrun.output.term"
--   term.isatty(io.stderr)                   -- also an fd; a sink that is no file: false
--   term.want_color("auto", io.stdout)       -- "always" | "never" | "auto" (nil = auto)
--   term.color_of("web")                     --> 32, an SGR foreground from term.PALETTE
--   term.width("é|") --> 2;  term.truncate("héllo", 3) --> "hél"
local core = require "lprocess.core"

local M = {}

local byte, sub = string.byte, string.sub

-- Foreground colours a job prefix may get: normal and bright, no black/white.
M.PALETTE = { 31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96 }

-- `fn(fd)` answers in place of core.isatty (a hook for tests). A sink that is not a
-- Lua file has no descriptor and is no terminal.
function M.isatty(file, fn)
  local fd = file
  if math.type(file) ~= "integer" then
    if io.type(file) ~= "file" then return false end
    fd = core.fileno(file)
  end
  return (fn or core.isatty)(fd) == true
end

-- auto: a terminal, NO_COLOR unset or empty (as no-color.org defines it) and TERM
-- not "dumb". `opts` is an isatty function, or {isatty = fn, getenv = fn} (hooks
-- for tests).
function M.want_color(when, file, opts)
  if type(opts) == "function" then opts = { isatty = opts } end
  opts = opts or {}
  if when == true or when == "always" then return true end
  if when == false or when == "never" then return false end
  if when ~= nil and when ~= "auto" then
    error("color: expected always, never or auto, got " .. tostring(when), 2)
  end
  local getenv = opts.getenv or os.getenv
  local no_color = getenv("NO_COLOR")
  if no_color and no_color ~= "" then return false end
  if getenv("TERM") == "dumb" then return false end
  return M.isatty(file or io.stdout, opts.isatty)
end

-- Palette entry from a 32-bit FNV-1a hash of the name: stable across runs.
function M.color_of(name)
  local h = 2166136261
  for i = 1, #name do
    h = ((h ~ byte(name, i)) * 16777619) & 0xffffffff
  end
  return M.PALETTE[h % #M.PALETTE + 1]
end

-- Display width in characters (bytes when not valid UTF-8).
function M.width(s)
  return utf8.len(s) or #s
end

-- At most n characters, without splitting a UTF-8 sequence.
function M.truncate(s, n)
  if n < 1 then return "" end
  if utf8.len(s) then
    local cut = utf8.offset(s, n + 1)
    if cut then return sub(s, 1, cut - 1) end
    return s
  end
  return sub(s, 1, n)
end

return M
