#!/usr/bin/env python3
"""A spool worker, written for examples/services.lua.

    python3 worker.py SPOOL

Takes each SPOOL/*.task file, counts its words and writes the count to *.done (through
a rename, so a reader never sees half a result). It warms up first and then tells lrun
it is ready the s6 way: a newline on the descriptor named by LRUN_NOTIFY_FD
(ready = { notify = "fd" }). SIGTERM or SIGINT end it after the task at hand (exit 0),
removing SPOOL if it is empty.
"""
import os
import signal
import sys
import time

stopping = False


def stop(signum, _frame):
    global stopping
    print("worker: got %s, finishing up" % signal.Signals(signum).name, flush=True)
    stopping = True


def work(spool, name):
    path = os.path.join(spool, name)
    with open(path) as f:
        words = len(f.read().split())
    base = path[: -len(".task")]
    with open(base + ".tmp", "w") as f:
        f.write("%d\n" % words)
    os.rename(base + ".tmp", base + ".done")
    os.remove(path)
    print("worker: %s has %d words" % (name, words), flush=True)


def main():
    spool = sys.argv[1]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.makedirs(spool, exist_ok=True)
    time.sleep(0.5)                      # "loading": dependents must not start yet
    fd = os.environ.get("LRUN_NOTIFY_FD")
    if fd:
        os.write(int(fd), b"\n")
        os.close(int(fd))
    print("worker: ready, watching %s (pid %d)" % (spool, os.getpid()), flush=True)
    while not stopping:
        for name in sorted(os.listdir(spool)):
            if name.endswith(".task") and not stopping:
                work(spool, name)
        time.sleep(0.1)
    try:
        os.rmdir(spool)                  # only when empty: leave unread tasks be
    except OSError:
        pass
    print("worker: stopped", flush=True)


if __name__ == "__main__":
    main()
