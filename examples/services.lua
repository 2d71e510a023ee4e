-- Services next to a batch job: an echo server, a worker, and a client job that needs
-- both. The programs are small Python scripts in examples/services/.
--
--   scripts/lrun examples/services.lua            (lrun examples/services.lua once installed)
--   ECHO_PORT=9000 ROUNDS=20 scripts/lrun examples/services.lua
--
-- What happens:
-- * "echo" and "worker" start together. Neither counts as up when its process starts:
--   echo is ready once a TCP connect to its port succeeds, worker once it writes a
--   newline to the descriptor lrun gave it (LRUN_NOTIFY_FD), after warming up.
-- * "client" starts only when both are ready, runs ROUNDS rounds through them and
--   exits. The batch part being over, lrun stops the services -- in reverse order of
--   need, each with SIGTERM and, past kill_grace, SIGKILL -- and exits 0.
-- * ^C at any point stops everything cleanly the same way (exit 130).
-- * While it runs (ROUNDS=100 gives you time), `kill -SEGV <worker pid>` (the worker
--   prints it): the crash_only policy below restarts it after a backoff. Crash it more
--   than 3 times within 30 s and lrun gives up on it, saying why and how it last
--   ended; the client, left without a worker, fails.

local PORT = tonumber(os.getenv("ECHO_PORT") or "7407")
local ROUNDS = os.getenv("ROUNDS") or "5"
-- The worker's spool: a fresh name of our own unless SPOOL says where. The worker
-- makes the directory and removes it again when it stops.
local SPOOL = os.getenv("SPOOL")
if not SPOOL then
  SPOOL = os.tmpname()
  os.remove(SPOOL)
end

-- A reaper policy: restart the worker when a signal killed it (a crash), and let the
-- default decide everything else. `ev` is the exit event (see lua/lrun/policy.lua:
-- ev.status is the wait status, ev.stopping is true when lrun itself stopped it).
policy("crash_only", function(ev)
  if ev.status and ev.status.how == "signal" and not ev.stopping then
    return "restart"
  end
  return nil   -- no opinion: restart = "no" below decides (done on exit 0, else fail)
end)

service "echo" { "python3", "services/echo_server.py", tostring(PORT),
  ready = { tcp = PORT },     -- host defaults to 127.0.0.1
  ready_timeout = 30,         -- not listening by then: it failed to start
  kill_grace = 3,
}

service "worker" { "python3", "services/worker.py", SPOOL,
  ready = { notify = "fd" },
  ready_timeout = 30,
  restart = "no",
  policy = "crash_only",
  backoff = { min = 0.5, max = 4, factor = 2 },
  max_restarts = { count = 3, within = 30 },
}

job "client" { "python3", "services/client.py", tostring(PORT), SPOOL, ROUNDS,
  needs = { "echo", "worker" },   -- services: waits until both are *ready*
  timeout = 60,
}
