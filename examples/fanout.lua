-- Fan-out / fan-in: a web server's access log is split into N parts, N workers
-- count requests and bytes per page in their part at the same time, one job merges
-- the counts and one reports. The log is generated here (the same one every run);
-- nothing touches the network.
--
--   lrun examples/fanout.lua               8 parts, as many at once as there are CPUs
--   PARTS=32 lrun -j 4 examples/fanout.lua
--   lrun --graph examples/fanout.lua | dot -Tsvg > fanout.svg
--
-- The file is Lua, so the graph can be computed: N comes from $PARTS, and the N
-- workers are one job with `instances = N` (named count.0 ... count.7). A loop
-- calling job("count." .. i) { ... } would do the same.

local N = math.tointeger(tonumber(os.getenv("PARTS") or "8"))
if not N or N < 1 or N > 999 then error("PARTS must be a whole number from 1 to 999") end
local LINES = 200000
local WORK = os.getenv("WORK") or "/tmp/lrun-fanout"   -- scratch; kept for a look after

-- sort and awk compare bytes, not the locale's collation, so that every part is
-- sorted the same way and `sort -m` can merge them.
local env = { LC_ALL = "C", WORK = WORK, LOG_LINES = LINES }

job "generate" {
  -- A Park-Miller generator (exact in awk's doubles) picks client, page, status
  -- and size; low-numbered pages come up more often, as on a real site.
  cmd = [[
    rm -rf "$WORK" && mkdir -p "$WORK"
    awk -v lines="$LOG_LINES" '
      function rnd(m) { x = (x * 16807) % 2147483647; return x % m }
      BEGIN {
        pages = "/ /index.html /search /api/items /api/users /login /about"
        np = split(pages " /static/app.js /static/site.css /favicon.ico", page, " ")
        split("200 200 200 200 200 200 200 304 404 500", status, " ")
        x = 42
        for (i = 0; i < lines; i++) {
          r = rnd(1000)
          printf "10.0.%d.%d - - [26/Nov/2024:%02d:%02d:%02d +0000] \"GET %s HTTP/1.1\" %s %d\n",
            rnd(256), rnd(256), int(i * 24 / lines), rnd(60), rnd(60),
            page[1 + int(r * r * np / 1000000)], status[1 + rnd(10)], 200 + rnd(50000)
        }
      }' > "$WORK/access.log"
    echo "$(wc -l < "$WORK/access.log") lines, $(wc -c < "$WORK/access.log") bytes"
  ]],
  env = env,
}

job "split" {
  -- part.000, part.001, ...: whole lines, about the same size each
  "split", "--number=l/" .. N, "--numeric-suffixes", "--suffix-length=3", "access.log", "part.",
  dir = WORK, needs = "generate",
}

-- A reaper policy is a Lua function that sees how a process ended and decides what
-- happens next. A worker killed by a signal (the OOM killer, say) gets one more
-- try; one that exits with an error met bad data, and a retry would not help.
policy("retry_if_killed", function(ev)
  if ev.status and ev.status.how == "signal" and not ev.stopping and ev.attempt == 1 then
    return "retry"
  end
  return nil   -- no opinion: the default (done on success, else fail)
end)

job "count" {
  -- Instance i finds its part from $LRUN_INSTANCE (0 ... N-1); fields 7, 9 and 10
  -- of a log line are the page, the status and the size.
  cmd = [[
    part=$(printf 'part.%03d' "$LRUN_INSTANCE")
    awk '{ hits[$7 " " $9]++; bytes[$7 " " $9] += $10 }
         END { for (k in hits) print k, hits[k], bytes[k] }' "$part" | sort > "$part.counts"
    echo "$part: $(wc -l < "$part") requests"
  ]],
  instances = N, env = env, dir = WORK,
  needs = "split",
  policy = "retry_if_killed",
}

job "merge" {
  -- needs = "count" waits for all N instances. sort -m merges the sorted parts;
  -- awk adds up the rows of each page and status as they go by.
  cmd = [[
    sort -m part.*.counts | awk '
      $1 " " $2 != key { if (NR > 1) print key, hits, bytes; key = $1 " " $2; hits = bytes = 0 }
      { hits += $3; bytes += $4 }
      END { if (NR) print key, hits, bytes }' > totals.txt
    echo "merged $(ls part.*.counts | wc -l) parts into $(wc -l < totals.txt) rows"
  ]],
  env = env, dir = WORK,
  needs = "count",
}

job "report" {
  -- Fails (exit 1) unless the workers together counted every line of the log.
  cmd = [[
    total=$(wc -l < access.log)
    counted=$(awk '{ n += $3 } END { print n }' totals.txt)
    echo "requests: $total in the log, $counted counted"
    [ "$total" -eq "$counted" ] || { echo "some requests were lost" >&2; exit 1; }
    echo "busiest pages:"
    awk '{ n[$1] += $3 } END { for (p in n) print n[p], p }' totals.txt | sort -rn | head -n 3
    awk -v total="$total" '$2 >= 500 { n += $3 }
      END { printf "server errors: %d (%.1f%%)\n", n, 100 * n / total }' totals.txt
    echo "results in $WORK/totals.txt"
  ]],
  env = env, dir = WORK,
  needs = "merge",
}
