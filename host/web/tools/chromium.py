#!/usr/bin/env python3
"""Drives headless Chromium through chromedriver (W3C WebDriver over HTTP,
stdlib only): opens URL in a fresh profile, waits until the page sets
`window.lwDone`, prints `window.lwResults` as JSON on stdout.

  chromium.py --url URL [--timeout S] [--profile DIR] [--chromium PATH] [--chromedriver PATH]

Exit status: 0 when the page finished (whatever its results), 1 on a
timeout or a browser failure (the browser's console log goes to stderr).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-default-browser-check",
    "--enable-features=SharedArrayBuffer",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise RuntimeError("webdriver %s %s: HTTP %d %s" % (method, path, e.code, detail[:500])) from None

    def wait_ready(self, deadline):
        while time.time() < deadline:
            try:
                status = self.call("GET", "/status", timeout=2)
                if status and status.get("ready"):
                    return
            except (OSError, RuntimeError):
                pass
            time.sleep(0.1)
        raise RuntimeError("chromedriver did not become ready")

    def start(self, chromium, profile):
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": CHROME_FLAGS + ["--user-data-dir=" + profile],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                    "pageLoadStrategy": "normal",
                }
            }
        }
        value = self.call("POST", "/session", caps, timeout=90)
        self.session = value["sessionId"]

    def s(self, path):
        return "/session/%s%s" % (self.session, path)

    def navigate(self, url):
        self.call("POST", self.s("/url"), {"url": url}, timeout=60)

    def script(self, js):
        return self.call("POST", self.s("/execute/sync"), {"script": js, "args": []}, timeout=30)

    def logs(self):
        try:
            return self.call("POST", self.s("/se/log"), {"type": "browser"}, timeout=10) or []
        except (OSError, RuntimeError):
            return []

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", self.s(""), timeout=20)
            except (OSError, RuntimeError):
                pass
            self.session = None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--profile", default="")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = ap.parse_args()

    profile = args.profile or tempfile.mkdtemp(prefix="lwnet-chromium-")
    port = free_port()
    log = open(os.path.join(profile, "chromedriver.log"), "w") if os.path.isdir(profile) else subprocess.DEVNULL
    driver_proc = subprocess.Popen([args.chromedriver, "--port=%d" % port, "--allowed-ips=127.0.0.1"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wd = WebDriver(port)
    rc = 1
    try:
        deadline = time.time() + args.timeout
        wd.wait_ready(time.time() + 30)
        wd.start(args.chromium, profile)
        wd.navigate(args.url)
        result = None
        while time.time() < deadline:
            try:
                result = wd.script("return window.lwDone ? JSON.stringify(window.lwResults) : null;")
            except (OSError, RuntimeError):
                result = None  # navigating (the page reloads itself): try again
            if result:
                break
            time.sleep(0.25)
        if result:
            print(result)
            rc = 0
        else:
            sys.stderr.write("chromium.py: the page did not finish within %.0f s\n" % args.timeout)
        if rc != 0 or os.environ.get("LW_BROWSER_LOG"):
            for entry in wd.logs():
                sys.stderr.write("browser: %s %s\n" % (entry.get("level"), entry.get("message")))
    except Exception as e:  # report any driver failure as a failed run, with context
        sys.stderr.write("chromium.py: %s\n" % e)
        for entry in wd.logs():
            sys.stderr.write("browser: %s %s\n" % (entry.get("level"), entry.get("message")))
    finally:
        wd.quit()
        driver_proc.terminate()
        try:
            driver_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(driver_proc.pid, 9)
        if not args.profile:
            shutil.rmtree(profile, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
