#!/usr/bin/env python3
"""Loopback servers for lwnet's tests, benchmarks and local serving (stdlib only).

Every server listens on 127.0.0.1 only, prints one line "ready PORT [PORT]"
on stdout once it accepts connections (port 0 picks a free port), and stops
on SIGTERM, SIGINT or after --lifetime seconds (0: never), so that a test's
server can never linger.

  servers.py files [--root DIR] [--port P] [--cert PEM --key PEM [--tls-port P]]
                   [--state DIR] [--slow-rate N] [--marker M]
      HTTP/1.0: static files from --root, and, with --cert/--key, the same
      behind TLS (a certificate of the test's own CA; close_notify at the
      end, as web servers send it). Prints "ready HTTP-PORT TLS-PORT" (TLS
      0 without a certificate). Paths for tests:
        /hello         a small page containing M (the browser tests' target)
        /bulk/N        N bytes of a repeating 0..255 pattern
        /slow/N        N bytes at about --slow-rate bytes/s; touches
                       STATE/slow-started once the first bytes are out
        /hold, /hold/ANYTHING   headers, then nothing for 120 s (a read that
                       blocks; a repository that stalls)
        /trickle/ANYTHING       a 100,000-byte body at 1 byte/s

  servers.py site --route PREFIX=DIR... [--port P]
      A site with the COOP/COEP headers that make a page cross-origin
      isolated (SharedArrayBuffer, shared WebAssembly.Memory): each request
      path under PREFIX is served from DIR (index.html for a directory).
      /plain/PATH serves PATH without those headers (a page not isolated).

  servers.py echo [--port P]
      TCP: reads until the client half-closes, answers "echo:" and what it
      read, closes. One client at a time.

Used by tests/e2e (tools/test/e2e.sh), the browser tier's harness
(host/web/tools/harness.sh), tools/test/wasm-guest.sh, `./linux-wasm.sh
run` (the demo registry) and `./linux-wasm.sh serve`.
"""

import argparse
import functools
import http.server
import mimetypes
import os
import signal
import socketserver
import ssl
import sys
import threading
import time

# Types the browser insists on (module scripts, streaming wasm compilation).
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}


class FilesHandler(http.server.SimpleHTTPRequestHandler):
    """Static files plus the test paths listed in the module's docstring."""

    state_dir = None
    slow_rate = 1 << 20
    marker = ""

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
        path = self.path
        if path == "/hello":
            return self.reply(("<html><body>lwnet browser test: %s</body></html>\n" % self.marker).encode(), "text/html")
        for prefix, handler in (("/bulk/", self.bulk), ("/slow/", self.slow), ("/trickle/", self.trickle)):
            if path.startswith(prefix):
                return handler(path[len(prefix):])
        if path == "/hold" or path.startswith("/hold/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.flush()
            time.sleep(120)
            return None
        return super().do_GET()

    def reply(self, body, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def length(self, text):
        """N of a /PREFIX/N path, or None after answering 400."""
        try:
            n = int(text)
            if n >= 0:
                return n
        except ValueError:
            pass
        self.send_error(400, "bad length")
        return None

    def body_of(self, total, chunks):
        """Sends the headers of an octet-stream of `total` bytes, then `chunks`."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(total))
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, or the test cut the path on purpose

    def bulk(self, count):
        total = self.length(count)
        if total is None:
            return
        block = bytes(range(256)) * 4096  # 1 MiB

        def chunks(left):
            while left > 0:
                part = block[: min(left, len(block))]
                left -= len(part)
                yield part

        self.body_of(total, chunks(total))

    def slow(self, count):
        total = self.length(count)
        if total is None:
            return

        def chunks(sent):
            while sent < total:
                n = min(16384, total - sent)
                yield b"s" * n
                if sent == 0 and self.state_dir:
                    open(os.path.join(self.state_dir, "slow-started"), "w").close()
                sent += n
                time.sleep(n / self.slow_rate)

        self.body_of(total, chunks(0))

    def trickle(self, _rest):
        def chunks():
            for _ in range(100000):
                yield b"t"
                time.sleep(1)

        self.body_of(100000, chunks())


class SiteHandler(http.server.BaseHTTPRequestHandler):
    """Files under route prefixes, with COOP/COEP unless under /plain/."""

    routes = []  # (prefix, directory), longest prefix first
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("site: " + (fmt % args) + "\n")

    def resolve(self, path):
        """(file, isolated) for a request path; file is None when unknown."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        isolated = not path.startswith("/plain/")
        if not isolated:
            path = path[len("/plain"):]
        for prefix, root in self.routes:
            if path.startswith(prefix):
                rel = path[len(prefix):]
                if ".." in rel.split("/") or rel.startswith("/"):
                    return None, isolated
                file = os.path.join(root, rel)
                if os.path.isdir(file):
                    file = os.path.join(file, "index.html")
                return file, isolated
        return None, isolated

    def do_GET(self):
        self.answer(with_body=True)

    def do_HEAD(self):
        self.answer(with_body=False)

    def answer(self, with_body):
        file, isolated = self.resolve(self.path)
        if file is None or not os.path.isfile(file):
            self.send_error(404)
            return
        with open(file, "rb") as f:
            body = f.read()
        ext = os.path.splitext(file)[1]
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(ext) or mimetypes.guess_type(file)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        # Cross-origin isolation: required for SharedArrayBuffer and for
        # posting shared WebAssembly.Memory to workers.
        if isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)


class EchoHandler(socketserver.BaseRequestHandler):
    """Reads to the client's half-close, answers b"echo:" + what it read."""

    def handle(self):
        data = b""
        while True:
            d = self.request.recv(65536)
            if not d:
                break
            data += d
        self.request.sendall(b"echo:" + data)


class Http(http.server.ThreadingHTTPServer):
    daemon_threads = True


def http_server(port, handler):
    return Http(("127.0.0.1", port), handler)


def tls_server(port, handler, cert, key):
    server = http_server(port, handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server


def echo_server(port):
    class Echo(socketserver.TCPServer):
        allow_reuse_address = True

    return Echo(("127.0.0.1", port), EchoHandler)


def run(servers, lifetime):
    """Serves each server in a thread, prints "ready PORT..." and waits for a
    signal or `lifetime` seconds (0: no limit). A None server prints port 0."""
    for s in servers:
        if s:
            threading.Thread(target=s.serve_forever, daemon=True).start()
    ports = [s.server_address[1] if s else 0 for s in servers]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready " + " ".join(str(p) for p in ports), flush=True)
    stop.wait(lifetime or None)


def route(text):
    prefix, sep, directory = text.partition("=")
    if not sep or not prefix.startswith("/") or not prefix.endswith("/"):
        raise argparse.ArgumentTypeError("a route is /PREFIX/=DIR (prefix with leading and trailing /)")
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError("%s is not a directory" % directory)
    return prefix, directory


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("files", "site", "echo"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
        p.add_argument("--lifetime", type=int, default=1800, help="exit after this many seconds (0: never)")
    files = sub.choices["files"]
    files.add_argument("--root", default=os.getcwd(), help="directory of static files")
    files.add_argument("--state", help="directory for marker files (/slow/N)")
    files.add_argument("--cert", help="PEM certificate chain for the TLS listener")
    files.add_argument("--key", help="PEM private key for the TLS listener")
    files.add_argument("--tls-port", type=int, default=0, help="port of the TLS listener (0: a free one)")
    files.add_argument("--slow-rate", type=int, default=1 << 20, help="bytes/s of /slow/N")
    files.add_argument("--marker", default="", help="text of the /hello page")
    site = sub.choices["site"]
    site.add_argument("--route", type=route, action="append", required=True, metavar="/PREFIX/=DIR")
    args = ap.parse_args()

    if args.mode == "files":
        if bool(args.cert) != bool(args.key):
            ap.error("--cert and --key go together")
        FilesHandler.state_dir = args.state
        FilesHandler.slow_rate = args.slow_rate
        FilesHandler.marker = args.marker
        handler = functools.partial(FilesHandler, directory=args.root)
        servers = [http_server(args.port, handler)]
        servers.append(tls_server(args.tls_port, handler, args.cert, args.key) if args.cert else None)
        run(servers, args.lifetime)
    elif args.mode == "site":
        SiteHandler.routes = sorted(args.route, key=lambda r: -len(r[0]))
        run([http_server(args.port, SiteHandler)], args.lifetime)
    else:
        run([echo_server(args.port)], args.lifetime)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:  # a port in use, a certificate that cannot be read
        sys.exit("servers.py: %s" % e)
