#!/usr/bin/env python3
"""A line echo server over TCP, written for examples/services.lua.

    python3 echo_server.py PORT

Every line a client sends comes back unchanged. It says nothing about being ready:
lrun finds out by connecting (ready = { tcp = PORT }). SIGTERM or SIGINT shut it down
cleanly (exit 0) once the connections being served are closed.
"""
import signal
import socketserver
import sys
import threading


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        # lrun's readiness probe connects and hangs up at once: that is an empty read.
        for line in self.rfile:
            self.wfile.write(line)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True   # a restart must not wait out TIME_WAIT
    daemon_threads = True


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Echo)

    def stop(signum, _frame):
        print("echo: got %s, stopping" % signal.Signals(signum).name, flush=True)
        # shutdown() waits for serve_forever() to return, which runs in this very
        # thread: ask from another one.
        threading.Thread(target=srv.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("echo: listening on 127.0.0.1:%d" % port, flush=True)
    srv.serve_forever()
    srv.server_close()
    print("echo: stopped", flush=True)


if __name__ == "__main__":
    main()
