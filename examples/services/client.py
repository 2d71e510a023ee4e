#!/usr/bin/env python3
"""The job that needs both services of examples/services.lua.

    python3 client.py PORT SPOOL [ROUNDS]

Each round sends a line through the echo server and a task through the worker's spool,
and checks both answers. Exit 0 when every round came back right.
"""
import os
import signal
import socket
import sys
import time


def echo(port, text):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(text.encode() + b"\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    return got.decode().rstrip("\n")


def count_words(spool, name, text):
    task = os.path.join(spool, name + ".task")
    with open(task + ".tmp", "w") as f:
        f.write(text)
    os.rename(task + ".tmp", task)       # the worker sees whole tasks only
    done = os.path.join(spool, name + ".done")
    deadline = time.monotonic() + 10
    while not os.path.exists(done):
        if time.monotonic() > deadline:
            raise SystemExit("client: no answer from the worker for %s" % name)
        time.sleep(0.05)
    with open(done) as f:
        n = int(f.read())
    os.remove(done)
    return n


def main():
    # ^C (or lrun stopping the run with SIGINT) ends it quietly, without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    port, spool = int(sys.argv[1]), sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for i in range(1, rounds + 1):
        text = "round %d: the quick brown fox" % i
        back = echo(port, text)
        if back != text:
            raise SystemExit("client: echo sent %r, got %r" % (text, back))
        n = count_words(spool, "round%d" % i, text)
        if n != len(text.split()):
            raise SystemExit("client: worker counted %d words, not %d" % (n, len(text.split())))
        print("client: round %d: echo ok, worker counted %d words" % (i, n), flush=True)
        time.sleep(0.3)
    print("client: all %d rounds ok" % rounds, flush=True)


if __name__ == "__main__":
    main()
