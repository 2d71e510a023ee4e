"""py_subprocess.py -- Python 3 as a peer: subprocess.run in a loop, or in a thread pool.

    python3 bench/drivers/py_subprocess.py J N -- PROG [ARG...]
    python3 bench/drivers/py_subprocess.py J @DAGFILE -- PROG [ARG...]

J = 1 runs the commands one after another; J > 1 uses a ThreadPoolExecutor with J
workers (for a DAG, a job is submitted when all its needs have exited 0).
Exits 1 if a child fails.
"""
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait


def run(argv):
    return subprocess.run(argv).returncode


def main():
    jobs, what = int(sys.argv[1]), sys.argv[2]
    assert sys.argv[3] == "--"
    argv = sys.argv[4:]
    if what.startswith("@"):
        return dag(jobs, what[1:], argv)
    n = int(what)
    if jobs == 1:
        return 1 if any(run(argv) for _ in range(n)) else 0
    with ThreadPoolExecutor(jobs) as pool:
        return 1 if any(pool.map(run, [argv] * n)) else 0


def dag(jobs, path, argv):
    needs, out = {}, {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                needs[parts[0]] = set(parts[1:])
                for d in parts[1:]:
                    out.setdefault(d, []).append(parts[0])
    failed = 0
    with ThreadPoolExecutor(jobs) as pool:
        pending = {pool.submit(run, argv): n for n, d in needs.items() if not d}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                name = pending.pop(fut)
                if fut.result() != 0:
                    failed = 1
                    continue
                for o in out.get(name, []):
                    needs[o].discard(name)
                    if not needs[o]:
                        pending[pool.submit(run, argv)] = o
    return failed


if __name__ == "__main__":
    sys.exit(main())
