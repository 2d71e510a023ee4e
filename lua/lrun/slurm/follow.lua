-- lrun.slurm.follow: read what a Slurm job's output file gained since last time, and
-- hand it to lrun.output, so prefix/raw/group modes read as they do for local jobs.
--
--   local f = follow.new(out, unit_name, "stdout", path)
--   f:poll()     -- feed what is new (the file may not exist yet: nothing then)
--   f:finish()   -- feed the rest, then end the stream
--
-- The file is opened for each poll and read from the last offset: the job writes
-- it on a compute node, so there is nothing to watch, only something to re-read.
local M = {}
local Follow = {}
Follow.__index = Follow

local CHUNK = 65536
-- slurmstepd's own line in a cancelled job's stderr ("slurmstepd-node: error: *** JOB
-- 75 ON node CANCELLED AT ... ***"): lrun says why it stopped the job, as locally.
local STEPD_CANCEL = "slurmstepd[^\n:]*: error: %*%*%* JOB %d+ ON %S+ CANCELLED AT [^\n]*\n"

function M.new(out, name, stream, path)
  return setmetatable({ out = out, name = name, stream = stream, path = path, offset = 0 },
    Follow)
end

function Follow:poll()
  if self.done then return 0 end
  local f = io.open(self.path, "rb")
  if not f then return 0 end
  f:seek("set", self.offset)
  local n = 0
  while true do
    local data = f:read(CHUNK)
    if not data then break end
    n = n + #data
    if self.stream == "stderr" then data = data:gsub(STEPD_CANCEL, "") end
    if data ~= "" then self.out:feed(self.name, self.stream, data) end
  end
  f:close()
  self.offset = self.offset + n
  return n
end

function Follow:finish()
  if self.done then return 0 end
  local n = self:poll()
  self.done = true
  self.out:finish(self.name, self.stream)
  return n
end

return M
