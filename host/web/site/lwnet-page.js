// SPDX-License-Identifier: GPL-2.0-only
// lwnet's page: reads its configuration, checks cross-origin isolation,
// attaches lwnet's main side (proxy WebSocket, store) and boots upstream's
// runtime with it. File names are those upstream's runtime and page use:
// vmlinux-<variant>.wasm, initramfs-<variant>.cpio.gz, linux-worker.js.
//
// Configuration: lwnet.json beside this page, {"proxyUrl": "wss://...",
// "token": "<JWT>" | null, "cmdline": "..."}; the query parameters proxy=,
// token= and variant= override it.
import { attachLwnet } from "./lwnet/js/main.js";

/** The kernel command line unless lwnet.json sets one: three CPUs at boot
 * (upstream's runtime adds more), CPU 1 (upstream's interrupt CPU) keeps its
 * tick, the initramfs as root, console on hvc. */
const DEFAULT_CMDLINE =
  "maxcpus=3 nohz_full=0,2-63 rcu_nocbs=0,2-63 root=/dev/ram0 rootfstype=ramfs init=/init console=hvc";
const VARIANTS = ["wasm32_nommu", "wasm64_nommu"];

/** What the page did, for debugging from the console and for tests. */
const page = { state: "starting", config: null, host: null, os: null, log: [], error: null };
globalThis.lwnetPage = page;

const proxyEl = document.getElementById("lwnet-proxy");
const errorEl = document.getElementById("lwnet-error");

function fail(state, text) {
  page.state = state;
  page.error = text;
  errorEl.textContent = text;
  errorEl.hidden = false;
}

/** lwnet.json (optional) with the query parameters on top; validated. */
async function loadConfig() {
  let config = { proxyUrl: null, token: null, cmdline: DEFAULT_CMDLINE };
  const response = await fetch("lwnet.json", { cache: "no-store" });
  if (response.ok) {
    const text = await response.text();
    let json;
    try { json = JSON.parse(text); } catch (e) { throw new Error(`lwnet.json is not valid JSON: ${e.message}`); }
    if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error("lwnet.json must hold a JSON object");
    for (const key of ["proxyUrl", "token", "cmdline"]) {
      if (json[key] !== undefined && json[key] !== null && typeof json[key] !== "string") {
        throw new Error(`lwnet.json: "${key}" must be a string`);
      }
      if (json[key]) config[key] = json[key];
    }
  } else if (response.status !== 404) {
    throw new Error(`fetching lwnet.json: HTTP ${response.status}`);
  }
  const params = new URLSearchParams(location.search);
  if (params.get("proxy")) config.proxyUrl = params.get("proxy");
  if (params.get("token")) config.token = params.get("token");
  config.variant = params.get("variant") || "wasm32_nommu";
  if (!VARIANTS.includes(config.variant)) throw new Error(`unknown variant "${config.variant}" (${VARIANTS.join(", ")})`);
  if (config.proxyUrl) {
    let url;
    try { url = new URL(config.proxyUrl); } catch { throw new Error(`proxy URL "${config.proxyUrl}" is not a URL`); }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new Error(`proxy URL "${config.proxyUrl}" must be ws:// or wss://`);
  }
  return config;
}

function showProxy(host) {
  const names = { open: "connected", connecting: "connecting", down: "not connected" };
  const update = () => {
    const state = host ? host.stats().socket : "down";
    proxyEl.dataset.state = state;
    proxyEl.textContent = names[state] || state;
  };
  update();
  if (host) setInterval(update, 500);
}

async function main() {
  const term = new Terminal({ theme: { background: "#10202a", foreground: "#e8e8d0" } });
  term.open(document.getElementById("terminal"));
  const log = (text) => {
    page.log.push(text);
    term.write(("\x1B[2m" + text + "\x1B[0m\n").replaceAll("\n", "\r\n"));
  };

  if (!globalThis.crossOriginIsolated || typeof SharedArrayBuffer === "undefined") {
    fail("no-isolation",
      "This page is not cross-origin isolated, so the browser gives it no SharedArrayBuffer, which " +
      "Linux on WebAssembly needs. Serve it with the headers\n" +
      "  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp\n" +
      "(./linux-wasm.sh serve does).");
    showProxy(null);
    return;
  }

  const config = await loadConfig();
  if (!config.proxyUrl) {
    // ./linux-wasm.sh serve's proxy, beside the page.
    config.proxyUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:8080/`;
    log(`lwnet: no proxy configured (lwnet.json or ?proxy=), trying ${config.proxyUrl}`);
  }
  document.getElementById("lwnet-proxy-url").textContent = `(${config.proxyUrl})`;
  page.host = await attachLwnet({ proxyUrl: config.proxyUrl, token: config.token, log });
  globalThis.lwnet_host = page.host; // read by the runtime's lwnet hooks
  page.config = { ...config, token: config.token ? "(set)" : null };
  showProxy(page.host);

  const vmlinux = await WebAssembly.compileStreaming(fetch(`vmlinux-${config.variant}.wasm`));
  const initrdResponse = await fetch(`initramfs-${config.variant}.cpio.gz`);
  if (!initrdResponse.ok) throw new Error(`fetching initramfs-${config.variant}.cpio.gz: HTTP ${initrdResponse.status}`);
  const initrd = await initrdResponse.arrayBuffer();
  page.state = "booting";
  page.os = await linux("linux-worker.js", config.variant, vmlinux, config.cmdline, initrd, log, (data) => term.write(data));
  term.onData((data) => page.os.key_input(data));
  page.state = "running";
}

main().catch((e) => fail("failed", `lwnet: ${e.name}: ${e.message}`));
