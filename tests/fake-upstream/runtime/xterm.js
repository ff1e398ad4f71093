// SPDX-License-Identifier: GPL-2.0-only
// Fake upstream runtime (lwnet tests): a terminal with xterm.js's small
// surface the page uses (open, write, onData), writing into a <pre>.
class Terminal {
  constructor() { this.el = null; }
  open(parent) { this.el = document.createElement("pre"); parent.appendChild(this.el); }
  write(text) { if (this.el) this.el.textContent += text; }
  onData() {}
}
