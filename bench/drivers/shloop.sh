#!/bin/sh
# shloop.sh -- a POSIX shell loop as a peer: N runs of PROG, or at -jJ, J background
# loops of N/J runs each.
#   sh bench/drivers/shloop.sh J N PROG [ARG...]
jobs=$1 n=$2
shift 2
if [ "$jobs" -eq 1 ]; then
  i=0
  while [ "$i" -lt "$n" ]; do
    "$@" || exit 1
    i=$((i + 1))
  done
  exit 0
fi
each=$((n / jobs)) k=0 pids=
while [ "$k" -lt "$jobs" ]; do
  (
    i=0
    while [ "$i" -lt "$each" ]; do
      "$@" || exit 1
      i=$((i + 1))
    done
  ) &
  pids="$pids $!"
  k=$((k + 1))
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
exit "$rc"
