-- lrun.slurm.poll: asking Slurm what became of a run's jobs, without blocking the loop.
--
--   poll.async(loop, argv, function(ok, output) end)  -- a command, output collected
--   poll.run(argv, timeout)          -> ok, output    -- the same, waited for (short)
--   poll.squeue_argv(ids)            -- ONE squeue for every id of the run
--   poll.parse_squeue(text)          -> { ["id" or "id_task"] = record, as scontrol's }
--   poll.parse_scontrol(text)        -> { JobState =, ExitCode =, RunTime =, ... }
--   poll.outcome(rec)                -> status, extra | nil (not ended yet)
--
-- Slurm facts this relies on (22.05, no slurmdbd, so no sacct): squeue -t all lists
-- ended jobs for MinJobAge seconds; its exit_code is the raw wait status (768 is
-- exit 3, 9 is SIGKILL); scontrol's ExitCode=N:S is the code and the signal.
local lprocess = require "lprocess"
local core = require "lprocess.core"

local M = {}

-- States in which a job may still run (everything else is an end).
M.ACTIVE = { PENDING = true, RUNNING = true, CONFIGURING = true, COMPLETING = true,
  SUSPENDED = true, REQUEUED = true, REQUEUE_HOLD = true, REQUEUE_FED = true,
  RESIZING = true, SIGNALING = true, STAGE_OUT = true, STOPPED = true,
  RESV_DEL_HOLD = true, SPECIAL_EXIT = true }
-- Ends that are the node's or the cluster's doing, not the program's: the job failed
-- with that reason (and retries apply).
M.INFRA = { OUT_OF_MEMORY = true, NODE_FAIL = true, PREEMPTED = true, BOOT_FAIL = true,
  DEADLINE = true, REVOKED = true }

-- Run argv; on exit and EOF call done(ok, output) (stdout and stderr together).
function M.async(loop, argv, done)
  local opts = table.move(argv, 1, #argv, 1, { stdout = "pipe", stderr = "stdout",
    stdin = "null", pgid = 0 })
  local p, err = lprocess.spawn(opts)
  if not p then return done(false, err) end
  local fd = core.fileno(p.stdout)
  core.setnonblock(fd, true)
  local chunks, status, eof = {}, nil, false
  local function finish()
    if not (status and eof) then return end
    p.stdout:close()
    p.stdout = nil
    local ok = status.how == "exit" and status.code == 0
    done(ok, table.concat(chunks))
  end
  loop:watch(fd, "r", function()
    while true do
      local data = core.read(fd, 65536)
      if data == false then return end
      if not data or data == "" then break end
      chunks[#chunks + 1] = data
    end
    loop:unwatch(fd)
    eof = true
    finish()
  end)
  loop:child(p.pid, function(st) status = st; finish() end)
  return p
end

function M.run(argv, timeout)
  local res, err = lprocess.run(table.move(argv, 1, #argv, 1,
    { stderr = "stdout", timeout = timeout or 30 }))
  if not res then return false, err end
  local ok = res.status.how == "exit" and res.status.code == 0 and not res.timed_out
  local out = res.stdout or ""
  if res.timed_out then out = "timed out after " .. (timeout or 30) .. "s; " .. out end
  return ok, out
end

-- JobArrayID is the job id, or ARRAY_TASK for a task of an array job; -r lists
-- every task on its own line, even those still pending together.
local FORMAT = "JobArrayID:|,State:|,exit_code:|,TimeUsed:|,Reason:|"

function M.squeue_argv(ids)
  return { "squeue", "-h", "-r", "-t", "all", "-j", table.concat(ids, ","), "-O", FORMAT }
end

-- squeue's exit_code is the raw wait status of the same job record that scontrol
-- shows as ExitCode=N:S, so one squeue gives every job's outcome: records in
-- scontrol's form, for M.outcome.
function M.parse_squeue(text)
  local jobs = {}
  for line in text:gmatch("[^\n]+") do
    local id, state, raw, used, reason = line:match(
      "^%s*([%d_]+)%s*|%s*([%u_]+)[^|]*|%s*(%d*)%s*|%s*([^|]-)%s*|%s*(.-)%s*|?$")
    if id then
      raw = tonumber(raw) or 0
      jobs[id] = { JobState = state, Reason = reason, RunTime = used,
        ExitCode = (raw >> 8) .. ":" .. (raw & 0x7f) }
    end
  end
  return jobs
end

-- `scontrol -o show job ID`: one line of Key=Value words.
function M.parse_scontrol(text)
  local rec = {}
  for k, v in text:gmatch("(%w+)=(%S*)") do
    if rec[k] == nil then rec[k] = v end
  end
  return rec
end

-- A jobcomp/filetxt line has the same Key=Value form (JobId=, JobState=, ExitCode=).
function M.from_jobcomp(path, id)
  local f = path and io.open(path)
  if not f then return nil end
  local found
  for line in f:lines() do
    if line:find("JobId=" .. id .. " ", 1, true) then found = line end
  end
  f:close()
  return found and M.parse_scontrol(found)
end

local function seconds(t)   -- [D-]HH:MM:SS or MM:SS
  if not t then return nil end
  local d, rest = t:match("^(%d+)%-(.*)$")
  local n = 0
  for part in (rest or t):gmatch("%d+") do n = n * 60 + tonumber(part) end
  return n + (tonumber(d) or 0) * 86400
end

local function signal_status(sig)
  return { how = "signal", signal = sig, signame = core.signals[sig] or tostring(sig) }
end

-- What an ended job amounts to, from scontrol's (or jobcomp's) record:
-- status (as lprocess.wait's) and extra = { elapsed =, timed_out =, failure =,
-- skipped = }; nil while it may still run.
function M.outcome(rec)
  local state = (rec.JobState or ""):match("^[%u_]+")
  if not state or M.ACTIVE[state] then return nil end
  local code, sig = (rec.ExitCode or "0:0"):match("^(%d+):(%d+)")
  code, sig = tonumber(code) or 0, tonumber(sig) or 0
  local extra = { elapsed = seconds(rec.RunTime or rec.Elapsed), state = state }
  local status
  if sig > 0 then status = signal_status(sig) else status = { how = "exit", code = code } end
  if state == "CANCELLED" and (rec.Reason or ""):find("Dependency", 1, true) then
    extra.skipped = true
  elseif state == "TIMEOUT" then
    extra.timed_out = true
    if status.how == "exit" and status.code == 0 then status = signal_status(15) end
  elseif M.INFRA[state] then
    extra.failure = state:lower():gsub("_", " ")
    if status.how == "exit" and status.code == 0 then status = { how = "exit", code = 1 } end
  elseif state == "CANCELLED" and status.how == "exit" and status.code == 0 then
    status = signal_status(9)   -- cancelled before it started, or without a signal
  end
  return status, extra
end

return M
