#!/usr/bin/env python3
"""Loopback HTTP servers for the browser tests and benchmark (stdlib only).

  serve.py site --port P --wasm DIR [--site DIR]
      Serves host/web's ES modules at /lwnet/js/, the wasm build at
      /lwnet/wasm/ and the test pages at /test/, with the COOP/COEP headers
      that make a page cross-origin isolated (SharedArrayBuffer, Atomics).
      With --site, an assembled site/ at /site/; /plain/site/ and
      /plain/test/ serve the same without COOP/COEP (not isolated).

  serve.py target --port P --marker M
      The server the stand-in reaches through lwproxy: GET /hello answers a
      small page containing M; GET /bulk/N answers N bytes (a repeating
      pattern); GET /hold answers headers then keeps the connection open.

Each prints "serving on PORT" once it listens. Port 0 picks a free port.
"""
import argparse
import http.server
import os
import sys
import time

WEB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
}


class SiteHandler(http.server.BaseHTTPRequestHandler):
    wasm_dir = ""
    site_dir = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("site: " + (fmt % args) + "\n")

    def resolve(self, path):
        """(file, isolated) for a request path; file is None when unknown."""
        path = path.split("?", 1)[0]
        isolated = not path.startswith("/plain/")
        if not isolated:
            path = path[len("/plain"):]
        routes = [
            ("/lwnet/js/", os.path.join(WEB, "js")),
            ("/lwnet/wasm/", self.wasm_dir),
            ("/test/", os.path.join(WEB, "test")),
        ]
        if self.site_dir:
            routes.append(("/site/", self.site_dir))
        for prefix, root in routes:
            if path.startswith(prefix):
                rel = path[len(prefix):]
                if not rel or ".." in rel.split("/") or rel.startswith("/"):
                    return None, isolated
                return os.path.join(root, rel), isolated
        return None, isolated

    def do_GET(self):
        file, isolated = self.resolve(self.path)
        if file is None or not os.path.isfile(file):
            self.send_error(404)
            return
        with open(file, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(os.path.splitext(file)[1], "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        # Cross-origin isolation: required for SharedArrayBuffer and for
        # posting shared WebAssembly.Memory to workers.
        if isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class TargetHandler(http.server.BaseHTTPRequestHandler):
    marker = ""
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        sys.stderr.write("target: " + (fmt % args) + "\n")

    def do_GET(self):
        if self.path == "/hello":
            body = ("<html><body>lwnet browser test: %s</body></html>\n" % self.marker).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/bulk/"):
            try:
                n = int(self.path[len("/bulk/"):])
            except ValueError:
                self.send_error(400)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(range(256)) * 4096  # 1 MiB
            while n > 0:
                part = block[: min(n, len(block))]
                self.wfile.write(part)
                n -= len(part)
        elif self.path == "/hold":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"holding\n")
            self.wfile.flush()
            time.sleep(60)
        else:
            self.send_error(404)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["site", "target"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--wasm", default="")
    ap.add_argument("--marker", default="")
    ap.add_argument("--site", default="", help="an assembled site/ to serve at /site/")
    args = ap.parse_args()
    if args.mode == "site":
        if not os.path.isdir(args.wasm):
            ap.error("--wasm must name the directory holding lwhost_web.wasm")
        SiteHandler.wasm_dir = args.wasm
        if args.site and not os.path.isdir(args.site):
            ap.error("--site must name a directory")
        SiteHandler.site_dir = args.site
        handler = SiteHandler
    else:
        TargetHandler.marker = args.marker
        handler = TargetHandler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    print("serving on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
