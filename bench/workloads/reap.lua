-- reap.lua -- reap-latency: from a child's exit (it stamps CLOCK_MONOTONIC just
-- before _exit) to the moment its status reaches the caller: in lprocess's event loop
-- (signalfd + epoll, loop:child callback) vs a blocking waitpid in C (the floor).
-- Also checks, under strace, that the loop never polls: every epoll_wait blocks with
-- timeout -1 and nothing sleeps.
local util = require "util"
local stats = require "stats"

local M = {}

local function samples(text, into)
  for ns in (text or ""):gmatch("%-?%d+") do into[#into + 1] = tonumber(ns) * 1e-9 end
end

-- Count the waiting calls the loop makes; "ok" when all block without timeout.
local function polling_check(stamp, n, delay)
  if not util.have("strace") then return nil, "strace missing" end
  local trace = util.work .. "/reap.strace"
  local res = util.run({ "strace", "-o", trace, "-e",
    "trace=epoll_wait,epoll_pwait,epoll_pwait2,poll,ppoll,select,pselect6,nanosleep,clock_nanosleep",
    util.lua, util.root .. "/bench/drivers/reap_latency.lua", n, stamp, delay })
  if not res.ok then return nil, "strace run failed" end
  local waits, timed, sleeps = 0, 0, 0
  for line in (util.readfile(trace) or ""):gmatch("[^\n]+") do
    if line:match("^epoll_p?wait") then
      waits = waits + 1
      if not line:match(", %-1%) = ") and not line:match(", NULL") then timed = timed + 1 end
    elseif line:match("sleep%(") or line:match("^p?poll%(") or line:match("select%(") then
      sleeps = sleeps + 1
    end
  end
  return timed == 0 and sleeps == 0,
    ("%d children: %d epoll_wait, %d with a timeout, %d poll/select/sleep calls"):format(n, waits, timed, sleeps)
end

function M.run(ctx)
  local n = ctx.quick and 100 or 300
  local rounds = ctx.quick and 1 or 3
  local stamp = util.work .. "/bin/stamp"
  local delay = "2000"   -- us: the child ends while its parent is blocked waiting
  local out = util.work .. "/reap.out"
  local kinds = {
    { key = "c", name = "C blocking waitpid (floor)",
      argv = { util.work .. "/bin/spawnc", "-l", n, "--", stamp, delay }, s = {} },
    { key = "loop", name = "lprocess event loop",
      argv = { util.lua, util.root .. "/bench/drivers/reap_latency.lua", n, stamp, delay }, s = {} },
  }
  util.log("reap-latency: %d x %d children, event loop vs blocking waitpid", rounds, n)
  for r = 1, rounds do
    for _, k in ipairs(util.rotate(kinds, r - 1)) do
      local res = util.run(k.argv, { stdout = out })
      if res.ok then samples(util.readfile(out), k.s)
      else k.error = res.log; util.log("reap-latency: %s failed: %s", k.name, res.log or "") end
    end
  end
  local rows, by = {}, {}
  for _, k in ipairs(kinds) do
    if #k.s > 0 then
      by[k.key] = { med = stats.median(k.s), p99 = stats.percentile(k.s, 0.99) }
      rows[#rows + 1] = { k.name, ("%.1f"):format(by[k.key].med * 1e6),
        ("%.1f"):format(stats.percentile(k.s, 0.9) * 1e6), ("%.1f"):format(by[k.key].p99 * 1e6),
        ("%.1f"):format(stats.min(k.s) * 1e6), ("%.1f"):format(stats.max(k.s) * 1e6), #k.s }
    else
      rows[#rows + 1] = { k.name, "failed" }
    end
  end
  local poll_ok, poll_text = polling_check(stamp, 50, delay)
  local targets = {}
  if by.c and by.loop then
    local d = by.loop.med - by.c.med
    targets[#targets + 1] = { name = "reap-latency: loop median minus waitpid median",
      want = "<= 15 us", got = ("%.1f us"):format(d * 1e6), ok = d <= 15e-6 }
    targets[#targets + 1] = { name = "reap-latency: loop p99", want = "<= 250 us",
      got = ("%.1f us"):format(by.loop.p99 * 1e6), ok = by.loop.p99 <= 250e-6 }
  end
  targets[#targets + 1] = { name = "reap-latency: the loop never polls", want = "blocking epoll_wait only",
    got = poll_text, ok = poll_ok }
  return { {
    name = "reap-latency",
    what = "a child's exit (CLOCK_MONOTONIC stamped just before _exit, 2 ms after it starts, so the " ..
      "parent is blocked by then) to its status in the caller's hands",
    columns = { "reaper", "median us", "p90", "p99", "min", "max", "samples" },
    rows = rows, targets = targets,
    notes = { "the floor includes the kernel's exit path and the wake-up of a blocked parent; " ..
      "the loop adds the signalfd read, waitpid(-1, WNOHANG) until empty, status tables and dispatch",
      "polling check (strace): " .. (poll_text or "not run") },
    commands = { util.show(kinds[1].argv), util.show(kinds[2].argv) },
  } }
end

return M
