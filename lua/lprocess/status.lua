--- lprocess.status: the one reading of a wait status, used by every message of the
-- library and of the programs built on it.
--
--   local status = require "lprocess.status"
--   status.describe(st)        --> "exited with code 3" | "killed by SIGSEGV (core dumped)"
--   status.exit_code(st)       --> 3 | 128 + signal, as a shell reports it
--   status.ok(st [, codes])    --> true when it exited with a code in `codes`
--
-- `st` is a status table of lprocess.wait (how = "exit"|"signal"|"stop"|"continue").
-- describe also takes nil ("did not start") and the stand-in a caller makes for a
-- process that never ran, { how = "error", error = "prog: No such file..." }.
-- `codes` is a set ({ [0] = true, [3] = true }) or a list ({ 0, 3 }); default { 0 }.
local core = require "lprocess.core"

local M = {}

local function signal_name(st)
  local name = st.signame or core.signals[st.signal or -1]
  return name and ("SIG" .. name) or ("signal " .. tostring(st.signal))
end

function M.describe(st)
  if st == nil then return "did not start" end
  local how = st.how
  if how == "exit" then return "exited with code " .. tostring(st.code) end
  if how == "signal" then
    return "killed by " .. signal_name(st) .. (st.core and " (core dumped)" or "")
  end
  if how == "stop" then return "stopped by " .. signal_name(st) end
  if how == "continue" then return "continued" end
  if how == "error" then return tostring(st.error or "did not start") end
  return "ended (" .. tostring(how) .. ")"
end

function M.exit_code(st)
  if st.how == "exit" then return st.code end
  return 128 + (st.signal or 0)
end

function M.ok(st, codes)
  if st == nil or st.how ~= "exit" then return false end
  if codes == nil then return st.code == 0 end
  if codes[st.code] == true then return true end
  for i = 1, #codes do
    if codes[i] == st.code then return true end
  end
  return false
end

return M
