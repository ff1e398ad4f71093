#!/usr/bin/env python3
"""Drives `./linux-wasm.sh run` (the interactive shell) on a pseudo-terminal,
as a person at a keyboard would: waits for the prompt, starts an lwtcp whose
read blocks (GET /hold), types Ctrl-C, and checks that the prompt is back
within a second and the shell still works; then `exit` must power off and
end the run with status 0.

Usage: terminal.py [--timeout S] [--log FILE] -- COMMAND...  (exit 0 = all good)
"""

import argparse
import os
import pty
import re
import select
import signal
import sys
import time

# BusyBox ash may follow its prompt with a cursor-position query (ESC [6n).
PROMPT = re.compile(rb"lwnet:[^\r\n]*[#$] (?:\x1b\[6n)?$")


class Session:
    def __init__(self, argv, log, deadline):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvp(argv[0], argv)
        self.buf = b""
        self.log = log
        self.deadline = deadline

    def read_until(self, pattern, limit):
        """Reads until the buffer matches pattern; returns seconds taken."""
        start = time.monotonic()
        end = min(start + limit, self.deadline)
        while True:
            m = pattern.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return time.monotonic() - start
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("waited %.1f s for %r; screen ends with %r"
                                   % (limit, pattern.pattern, self.buf[-200:]))
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise EOFError("the run ended; screen ends with %r" % self.buf[-200:])
                self.log.write(data)
                self.log.flush()
                self.buf += data

    def send(self, text):
        os.write(self.fd, text)

    def wait_exit(self, limit):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    data = os.read(self.fd, 4096)
                    self.log.write(data)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGTERM)
        raise TimeoutError("the run did not end within %.0f s of 'exit'" % limit)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("command", nargs="+")
    args = ap.parse_args()

    with open(args.log, "wb") as log:
        s = Session(args.command, log, time.monotonic() + args.timeout)
        try:
            s.read_until(PROMPT, 30)
            s.send(b". /mnt/host/env.sh\r")
            s.read_until(PROMPT, 5)
            s.send(b"printf 'GET /hold HTTP/1.0\\r\\n\\r\\n' | lwtcp 127.0.0.1 $HTTP_PORT\r")
            # lwtcp must now be blocked in read() (the server holds the line):
            # the prompt may not come back before Ctrl-C.
            try:
                s.read_until(PROMPT, 1.5)
                print("tty: lwtcp ended before Ctrl-C; it was not blocked", file=sys.stderr)
                return 1
            except TimeoutError:
                pass
            s.send(b"\x03")
            took = s.read_until(PROMPT, 5)
            if took > 1.0:
                print("tty: the prompt came back %.2f s after Ctrl-C (limit 1 s)" % took, file=sys.stderr)
                return 1
            s.send(b"echo status-$?\r")
            s.read_until(re.compile(rb"status-[1-9]\d*\r"), 5)
            s.read_until(PROMPT, 5)
            s.send(b"echo usable-$((6*7))\r")
            s.read_until(re.compile(rb"usable-42"), 5)
            s.read_until(PROMPT, 5)
            s.send(b"exit\r")
            code = s.wait_exit(15)
            if code != 0:
                print("tty: the run ended with status %d after 'exit'" % code, file=sys.stderr)
                return 1
        except (TimeoutError, EOFError) as e:
            print("tty: %s" % e, file=sys.stderr)
            try:
                os.kill(s.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            return 1
    print("tty: Ctrl-C returned to the prompt in %.2f s; exit powered off" % took)
    return 0


if __name__ == "__main__":
    sys.exit(main())
