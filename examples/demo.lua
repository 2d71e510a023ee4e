-- What `make demo` runs: a small pipeline that takes about two seconds.
--
--   scripts/lrun examples/demo.lua       (lrun examples/demo.lua once installed)
--   scripts/lrun -n examples/demo.lua    the plan, without running anything
--   scripts/lrun -j 1 examples/demo.lua  one job at a time: slower, same result
--
-- Job output comes out line by line, each line prefixed with its job's name; lrun's
-- own messages and the summary table at the end go to stderr.

settings { jobs = 4 }   -- at most four at once

-- Three copies of one job run side by side, each summing a different range.
job "sum" {
  cmd = [[
    n=$(( (LRUN_INSTANCE + 1) * 100000 ))
    echo "adding up 1..$n"
    sleep 0.$(( 5 + LRUN_INSTANCE * 2 ))
    seq "$n" | awk '{ s += $1 } END { printf "total: %.0f\n", s }'
  ]],
  instances = 3,
}

job "lint" {
  cmd = [[
    for f in parse.lua plan.lua run.lua; do sleep 0.4; echo "$f: fine"; done
  ]],
}

-- Waits for lint to succeed before it starts.
job "build" {
  cmd = [[
    echo "bundling 3 files"; sleep 0.5; echo "wrote app.bundle (pretend)"
  ]],
  needs = "lint",
}

-- Fails on its first attempt and passes on the second, as a flaky network check
-- might: lrun reports the failure and retries a second later.
job "flaky" {
  cmd = [[
    mark=${TMPDIR:-/tmp}/lrun-demo-$LRUN_RUN_ID
    if [ ! -e "$mark" ]; then
      touch "$mark"
      echo "server not up yet" >&2
      exit 1
    fi
    rm -f "$mark"
    echo "server answered"
  ]],
  retries = 1, retry_delay = 1,
}

-- Starts only once all three sums, build and flaky have succeeded.
job "report" {
  "echo", "all checks passed",
  needs = { "sum", "build", "flaky" },
}
