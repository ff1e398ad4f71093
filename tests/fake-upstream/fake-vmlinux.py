#!/usr/bin/env python3
"""The fake upstream's kernel "configure" and "link" steps (lwnet tests only).

  fake-vmlinux.py config SRC DEFCONFIG OUT.config
      Like `make <variant>_defconfig`: the defconfig's options, CONFIG_WASM=y,
      and every bool of the tree's Kconfig files whose `default y if WASM`
      applies and whose first `depends on` symbol is set.
  fake-vmlinux.py link SRC .config OUT.wasm
      Writes a WebAssembly module standing in for vmlinux: it imports a shared
      env.memory and, as functions from env, the host functions the built
      code declares: those of arch/wasm/include/asm/fake_host.h, plus those of
      include/linux/lwhost.h when CONFIG_LWNET=y (the lwnet driver's). It
      exports raise_interrupt(cpu, irq) and _start().

raise_interrupt, like upstream's, marks the IRQ pending for the CPU and
wakes waiters; here that is an atomic increment of the i32 at byte
IRQ_COUNTS + 4 * irq, the cpu stored at LAST_CPU, and a notify on the count.
Tests read those words to see that an interrupt reached the "kernel".
"""
import re
import sys
from pathlib import Path

IRQ_COUNTS = 1024
LAST_CPU = 1020
NR_IRQS = 32
MEMORY_PAGES = (64, 4096)  # initial, maximum (64 KiB pages)


def leb_u(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def leb_s(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def name(s):
    return leb_u(len(s.encode())) + s.encode()


def section(sid, payload):
    return bytes([sid]) + leb_u(len(payload)) + payload


def vector(items):
    return leb_u(len(items)) + b"".join(items)


def read_config(path):
    opts = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            opts[m.group(1)] = m.group(2)
    return opts


def configure(src, defconfig, out):
    opts = {"CONFIG_WASM": "y"}
    opts.update(read_config(defconfig))
    for kconfig in sorted(Path(src).rglob("Kconfig*")):
        for block in re.split(r"\n(?=config )", kconfig.read_text()):
            m = re.match(r"config (\w+)", block)
            if not m or not re.search(r"^\s*default y if WASM\s*$", block, re.M):
                continue
            dep = re.search(r"^\s*depends on (\w+)", block, re.M)
            if dep is None or opts.get("CONFIG_" + dep.group(1)) == "y":
                opts.setdefault("CONFIG_" + m.group(1), "y")
    Path(out).write_text("".join(f"{k}={v}\n" for k, v in opts.items()))


def host_functions(header):
    """Names of the wasm_* functions a C header declares."""
    text = re.sub(r"/\*.*?\*/", "", Path(header).read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    names = []
    for decl in text.split(";"):
        m = re.search(r"\b(wasm_\w+)\s*\(", decl)
        if m and "{" not in decl and "#define" not in decl and m.group(1) not in names:
            names.append(m.group(1))
    return names


def link(src, config, out):
    opts = read_config(config)
    src = Path(src)
    funcs = host_functions(src / "arch/wasm/include/asm/fake_host.h")
    if opts.get("CONFIG_LWNET") == "y":
        funcs += host_functions(src / "include/linux/lwhost.h")

    void = b"\x60\x00\x00"
    two_i32 = b"\x60\x02\x7f\x7f\x00"
    types = section(1, vector([void, two_i32]))
    mem = b"\x02\x03" + leb_u(MEMORY_PAGES[0]) + leb_u(MEMORY_PAGES[1])  # memory, shared + max
    imports = [name("env") + name("memory") + mem]
    imports += [name("env") + name(f) + b"\x00" + leb_u(0) for f in funcs]
    imports = section(2, vector(imports))
    functions = section(3, vector([leb_u(1), leb_u(0)]))
    nimp = len(funcs)
    exports = section(7, vector([name("raise_interrupt") + b"\x00" + leb_u(nimp),
                                 name("_start") + b"\x00" + leb_u(nimp + 1)]))

    def irq_word():  # IRQ_COUNTS + 4 * irq
        return b"\x20\x01" + b"\x41" + leb_s(2) + b"\x74" + b"\x41" + leb_s(IRQ_COUNTS) + b"\x6a"

    memarg = b"\x02\x00"
    body = (
        b"\x20\x01\x41" + leb_s(NR_IRQS) + b"\x4f\x04\x40\x0f\x0b"  # irq >= NR_IRQS: return
        + b"\x41" + leb_s(LAST_CPU) + b"\x20\x00\xfe\x17" + memarg  # i32.atomic.store
        + irq_word() + b"\x41\x01\xfe\x1e" + memarg + b"\x1a"  # i32.atomic.rmw.add; drop
        + irq_word() + b"\x41\x01\xfe\x00" + memarg + b"\x1a"  # memory.atomic.notify; drop
        + b"\x0b"
    )
    code = section(10, vector([leb_u(len(body) + 1) + b"\x00" + body, b"\x02\x00\x0b"]))
    Path(out).write_bytes(b"\0asm\x01\0\0\0" + types + imports + functions + exports + code)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("config", "link"):
        sys.exit(__doc__)
    if sys.argv[1] == "config":
        configure(*sys.argv[2:])
    else:
        link(*sys.argv[2:])


if __name__ == "__main__":
    main()
