#!/usr/bin/env python3
"""Loopback servers for the end-to-end tests and the system benchmark.

One HTTP/1.0 server (plain) and the same handler behind TLS (a certificate
from the test's own CA), both on 127.0.0.1 only. Static files come from
--root; two paths exist for failure tests:

  /slow/N   N bytes at about --slow-rate bytes/s; touches STATE/slow-started
            once the first bytes are out (so a test knows a transfer is under way)
  /hold     headers, then nothing for 120 s (a read that blocks); also
            /hold/ANYTHING (a repository that stalls)
  /trickle/ANYTHING  a 100,000-byte body at 1 byte/s (a transfer too slow)

Prints "ready HTTP-PORT TLS-PORT" on stdout when both listen. Stops on SIGTERM
or after --lifetime seconds, whichever comes first, so it can never linger.
"""

import argparse
import functools
import http.server
import os
import signal
import ssl
import sys
import threading
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    state_dir = "."
    slow_rate = 1 << 20

    def log_message(self, fmt, *args):  # one line per request, to stderr
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def finish(self):
        super().finish()
        # End TLS the way web servers do, with close_notify, so the proxy
        # sees a clean end of stream rather than a truncation.
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(2)
                self.request.unwrap()
            except (OSError, ValueError):
                pass

    def do_GET(self):
        if self.path.startswith("/slow/"):
            return self.slow(self.path[len("/slow/"):])
        if self.path.startswith("/trickle/"):
            return self.trickle()
        if self.path == "/hold" or self.path.startswith("/hold/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.flush()
            time.sleep(120)
            return None
        return super().do_GET()

    def trickle(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(100000):
                self.wfile.write(b"t")
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def slow(self, count):
        try:
            total = int(count)
        except ValueError:
            self.send_error(400, "bad length")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(total))
        self.end_headers()
        chunk = 16384
        sent = 0
        try:
            while sent < total:
                n = min(chunk, total - sent)
                self.wfile.write(b"s" * n)
                self.wfile.flush()
                if sent == 0:
                    open(os.path.join(self.state_dir, "slow-started"), "w").close()
                sent += n
                time.sleep(n / self.slow_rate)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the test cut the path on purpose


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="directory of static files")
    ap.add_argument("--state", required=True, help="directory for marker files")
    ap.add_argument("--cert", help="PEM certificate chain for the TLS listener")
    ap.add_argument("--key", help="PEM private key for the TLS listener")
    ap.add_argument("--slow-rate", type=int, default=1 << 20, help="bytes/s of /slow/N")
    ap.add_argument("--lifetime", type=int, default=1800, help="exit after this many seconds")
    args = ap.parse_args()

    Handler.state_dir = args.state
    Handler.slow_rate = args.slow_rate
    handler = functools.partial(Handler, directory=args.root)
    http.server.ThreadingHTTPServer.daemon_threads = True
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    servers = [plain]
    tls_port = 0
    if args.cert and args.key:
        tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        tls_port = tls.server_address[1]
        servers.append(tls)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready %d %d" % (plain.server_address[1], tls_port), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait(args.lifetime)


if __name__ == "__main__":
    main()
