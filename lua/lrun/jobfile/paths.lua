-- lrun.jobfile.paths: the lexical path work of a job file -- every path in the spec
-- is absolute and clean, relative ones taken from the job file's directory.
--
--   local P = require "lrun.jobfile.paths"
--   P.basename("/a/b/jobs.lua")   --> "jobs.lua"
--   P.resolve("/a/b", "../c/./d") --> "/a/c/d"
--   P.cwd()                       --> "/current/dir" | nil, message
local core = require "lprocess.core"

local M = {}

function M.basename(p) return (p:match("([^/]*)/*$")) end

-- Lexical clean-up of an absolute path ("." and ".." segments, doubled slashes).
function M.normalize(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then parts[#parts] = nil
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

function M.resolve(base, p)
  if p:sub(1, 1) == "/" then return M.normalize(p) end
  return M.normalize(base .. "/" .. p)
end

function M.cwd()
  local d, err = core.getcwd()
  if not d then return nil, "cannot resolve a relative job file name: " .. tostring(err) end
  return d
end

return M
