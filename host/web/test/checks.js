// SPDX-License-Identifier: GPL-2.0-only
// What every Chromium test page shares: its results (read by
// host/web/tools/chromium.py once window.lwDone is set) and the log.

/** name -> {ok, detail}: one result per check. */
export const results = {};

const logEl = document.getElementById("log");

export const log = (m) => { logEl.textContent += m + "\n"; console.log(m); };

/** Records check `name` (detail: a string, or anything JSON can show). */
export const check = (name, ok, detail) => {
  results[name] = { ok: !!ok, detail: typeof detail === "string" ? detail : JSON.stringify(detail) };
  log(`${ok ? "ok  " : "FAIL"} ${name} ${results[name].detail}`);
};

/** Hands the results to the driver. */
export const finish = () => {
  window.lwResults = results;
  window.lwDone = true;
};
