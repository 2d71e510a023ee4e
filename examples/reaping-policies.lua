-- The tutorial's reaping approaches (see examples/reaping/) as lrun reaper policies,
-- and what each costs in latency.
--
--   scripts/lrun examples/reaping-policies.lua     (lrun ... once installed)
--   INTERVAL=0.2 RUNS=10 scripts/lrun examples/reaping-policies.lua
--
-- Two jobs run RUNS times each, every run ending in a crash (SIGSEGV); a policy
-- decides, at each exit, to run it again.
-- * signal_driven (the tutorial's approach 1): lrun reaps from SIGCHLD the moment a
--   child ends, so a policy can act at once -- it restarts with no delay.
-- * polling (approach 2): a parent that looks for ended children every INTERVAL
--   seconds only learns of an exit at its next look. The policy reproduces that: it
--   restarts at the next tick of an INTERVAL clock instead of at once.
-- The last run of each ends in "done" (a policy may call an exit a success), so that
-- "report" runs and prints, per approach, how long each restart came after the exit
-- that caused it: from the crasher's last timestamp to the next run's first one.
--
-- Measured (a 2-CPU VM with a load average of 50-130 from other builds; INTERVAL=0.5,
-- RUNS=8, five runs of 7 restarts each):
--   signal_driven  mean 3.9-5.4 ms, worst 11.5 ms  (a fork+exec of sh, then date)
--   polling        mean 159-303 ms, worst 487 ms   (half an interval on average,
--                                                   up to a whole one)
-- about 50 times longer -- and a shorter interval buys latency back only with wake-ups
-- that find nothing (examples/reaping/polling.lua counts them). lrun itself never
-- polls: its loop sleeps in epoll until a signal, a descriptor or a timer is due.
-- The tutorial's approach 3, the double fork, is examples/reaping/doublefork.lua;
-- under lrun, whatever a job leaves behind is reparented to lrun (a subreaper) and
-- reaped there, so it needs no policy.
local core = require "lprocess.core"

local INTERVAL = tonumber(os.getenv("INTERVAL") or "0.5")
local RUNS = tonumber(os.getenv("RUNS") or "8")

-- Where the crashers log: named after this run (every job gets LRUN_RUN_ID), so that
-- loading the file -- lrun -n, lrun -l -- creates nothing.
local LOG = { signal = '"${TMPDIR:-/tmp}/reaping-$LRUN_RUN_ID.signal"',
  polling = '"${TMPDIR:-/tmp}/reaping-$LRUN_RUN_ID.polling"' }

-- Each run logs when it starts and, last thing before it crashes, when it ends. It
-- lives a random 0-1 s, so that its exits fall anywhere between two looks of the
-- polling parent, as real exits do.
local function crasher(log)
  return ([[
    echo "start $(date +%%s.%%N)" >> %s
    n=$(od -An -N1 -tu1 /dev/urandom)
    sleep "$(printf '0.%%02d' $(( n * 99 / 255 )))"
    echo "end $(date +%%s.%%N)" >> %s
    kill -SEGV $$
  ]]):format(log, log)
end

policy("signal_driven", function(ev)
  if ev.attempt < RUNS then return { action = "restart", delay = 0 } end
  return "done"
end)

local T0 = core.now()   -- the polling parent's clock: it looks at T0, T0 + INTERVAL...
policy("polling", function(ev)
  if ev.attempt < RUNS then
    local since_look = (core.now() - T0) % INTERVAL
    return { action = "restart", delay = INTERVAL - since_look }
  end
  return "done"
end)

job "signal" { cmd = crasher(LOG.signal), policy = "signal_driven" }
job "polling" { cmd = crasher(LOG.polling), policy = "polling" }

-- From each "end" to the "start" after it, in milliseconds; then the logs go.
job "report" {
  cmd = ([[
    for name in signal_driven polling; do
      if [ "$name" = signal_driven ]; then log=%s; else log=%s; fi
      awk -v name="$name" '
        $1 == "end" { last = $2 }
        $1 == "start" && last { d = ($2 - last) * 1000; s += d; n++; if (d > m) m = d; last = 0 }
        END { printf "%%-14s %%d restarts, latency mean %%.1f ms, max %%.1f ms\n", name, n, s / n, m }
      ' "$log"
      rm -f "$log"
    done
  ]]):format(LOG.signal, LOG.polling),
  needs = { "signal", "polling" },
}
