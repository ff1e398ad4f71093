// Interop: the Wisp client of @mercuryworkshop/wisp-js (pinned in package-lock.json) against
// the real lwproxy binary, on loopback only. Usage: node interop.mjs PATH/TO/lwproxy
// Prints one line per check, "ok NAME" or "fail NAME: why"; exits 1 if any failed.
import { client as wisp } from "@mercuryworkshop/wisp-js/client";
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";
import readline from "node:readline";

const lwproxy = process.argv[2];
if (!lwproxy) {
  console.error("usage: node interop.mjs PATH/TO/lwproxy");
  process.exit(2);
}
const SECRET = "wisp-interop-test-secret-0123456789";
const STREAMS = 64;
const PER_STREAM = 256 * 1024;
let failed = 0;
let passed = 0;

function report(name, err) {
  if (err) {
    failed++;
    console.log(`fail ${name}: ${err}`);
  } else {
    passed++;
    console.log(`ok ${name}`);
  }
}

function listen(handler) {
  return new Promise((resolve) => {
    const srv = net.createServer(handler);
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

async function startProxy(args) {
  const child = spawn(lwproxy, ["--listen", "127.0.0.1:0", ...args], {
    env: { ...process.env, JWT_SECRET: SECRET, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const rl = readline.createInterface({ input: child.stdout });
  const addr = await withTimeout(
    new Promise((resolve, reject) => {
      rl.on("line", (line) => {
        const m = line.match(/listening on (\S+)/);
        if (m) resolve(m[1]);
      });
      child.on("exit", (code) => reject(new Error(`lwproxy exited with ${code}`)));
    }),
    10000,
    "lwproxy start",
  );
  return { child, addr };
}

function mint(sub) {
  return execFileSync(lwproxy, ["token", "--sub", sub, "--ttl", "10m"], {
    env: { ...process.env, JWT_SECRET: SECRET },
  })
    .toString()
    .trim();
}

/// Opens a Wisp v1 connection; resolves once the server's first CONTINUE arrived.
function openConn(url) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const conn = new wisp.ClientConnection(url, { wisp_version: 1 });
      conn.onopen = () => resolve(conn);
      conn.onerror = () => reject(new Error("websocket error"));
      conn.onclose = () => reject(new Error("closed before open"));
    }),
    10000,
    "wisp open",
  );
}

/// Sends `payload` on a new stream to an echo target, resolves with what came back.
function echoOnce(conn, port, payload, chunk = 16 * 1024) {
  return new Promise((resolve, reject) => {
    const stream = conn.create_stream("127.0.0.1", port);
    const parts = [];
    let got = 0;
    stream.onmessage = (data) => {
      parts.push(Buffer.from(data));
      got += data.length;
      if (got >= payload.length) {
        stream.close(0x02);
        resolve(Buffer.concat(parts));
      }
    };
    stream.onclose = (reason) => reject(new Error(`stream closed early, reason 0x${reason.toString(16)}`));
    for (let i = 0; i < payload.length; i += chunk) stream.send(payload.subarray(i, i + chunk));
  });
}

function closeReason(conn, host, port) {
  return new Promise((resolve) => {
    const stream = conn.create_stream(host, port);
    stream.onclose = (reason) => resolve(reason);
  });
}

function pattern(n, seed) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

const echo = await listen((s) => s.pipe(s));
const sockets = [];
// The slow target: accepts, never reads; its socket buffers fill and its stream's credit runs out.
const slow = await listen((s) => {
  s.pause();
  sockets.push(s);
});
const echoPort = echo.address().port;
const slowPort = slow.address().port;
const proxy = await startProxy([
  "--allow", `127.0.0.1/32:${echoPort}`,
  "--allow", `127.0.0.1/32:${slowPort}`,
  "--max-concurrent", "0",
  "--conns-per-min", "0",
  "--bytes-per-min", "0",
]);
const base = `ws://${proxy.addr}/wisp/`;

try {
  // wisp-js wants the URL to end in '/', so the token goes in the path prefix (?token= is
  // covered by proxy/tests/wisp.rs).
  const conn = await openConn(`${base}${mint("interop")}/`);
  report("wisp-js connects with the token as the path prefix");

  try {
    const payload = pattern(100_000, 1);
    const back = await withTimeout(echoOnce(conn, echoPort, payload), 10000, "echo");
    report("tcp stream to an --allow'ed loopback echo returns its bytes", back.equals(payload) ? null : "bytes differ");
  } catch (e) {
    report("tcp stream to an --allow'ed loopback echo returns its bytes", e.message);
  }

  try {
    const r1 = await withTimeout(closeReason(conn, "127.0.0.1", 22), 10000, "denied port");
    const r2 = await withTimeout(closeReason(conn, "10.1.2.3", 80), 10000, "denied range");
    report(
      "policy-denied targets get CLOSE 0x48",
      r1 === 0x48 && r2 === 0x48 ? null : `reasons 0x${r1.toString(16)}, 0x${r2.toString(16)}`,
    );
  } catch (e) {
    report("policy-denied targets get CLOSE 0x48", e.message);
  }

  try {
    // One stream to the slow target gets far more than its credit; 63 echo streams on the same
    // socket must all finish while it stays stalled (and open: credit was never exceeded).
    const stalled = conn.create_stream("127.0.0.1", slowPort);
    let stalledClosed = null;
    stalled.onclose = (reason) => (stalledClosed = reason);
    const big = pattern(64 * 1024, 7);
    for (let i = 0; i < 256; i++) stalled.send(big);
    const started = Date.now();
    const jobs = [];
    for (let i = 0; i < STREAMS - 1; i++) {
      const payload = pattern(PER_STREAM, i);
      jobs.push(echoOnce(conn, echoPort, payload).then((b) => b.equals(payload)));
    }
    const results = await withTimeout(Promise.all(jobs), 30000, "63 echo streams");
    const ms = Date.now() - started;
    const bad = results.filter((ok) => !ok).length;
    let err = null;
    if (bad) err = `${bad} streams returned wrong bytes`;
    else if (stalledClosed !== null) err = `the stalled stream was closed (0x${stalledClosed.toString(16)})`;
    else if (stalled.send_buffer.length === 0) err = "the slow target was not stalled (nothing held back by credit)";
    report(`${STREAMS} parallel streams, one to a target that stops reading: the others finish (${ms} ms)`, err);
    stalled.close(0x02);
  } catch (e) {
    report(`${STREAMS} parallel streams, one to a target that stops reading: the others finish`, e.message);
  }
  conn.close();
} catch (e) {
  report("wisp-js connects with the token as the path prefix", e.message);
}

for (const [what, url] of [
  ["a bad token", `${base}not.a.token/`],
  ["no token", base],
]) {
  try {
    await openConn(url);
    report(`${what} is refused at the handshake`, "the connection opened");
  } catch (e) {
    report(`${what} is refused at the handshake`, e.message === "websocket error" ? null : e.message);
  }
}

proxy.child.kill("SIGTERM");
for (const s of sockets) s.destroy();
echo.close();
slow.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
