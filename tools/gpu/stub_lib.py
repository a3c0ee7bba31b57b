#!/usr/bin/env python3
"""Writes a stand-in shared library with the same SONAME, symbols and symbol
versions as a real one, every function returning 0 and every object zeros.

Why: the GPU machines are bare (no libvips and its ~60 MB of optional
format libraries), the working tree that travels there is capped at 64 MiB,
and Debian's libvips is linked with BIND_NOW, so every library it names must
load and define every symbol it imports. tycho decodes JPEG/PNG/WebP/GIF only;
the SVG, PDF, FITS, MAT, EXR, TIFF, FFT and text-rendering libraries are never
used, so their stand-ins only have to load (vips_init calls gsf_init, a void
function: hence "return 0", not a trap). For the dev harness only, never shipped.

usage: stub_lib.py REAL_LIB OUT_DIR   (writes OUT_DIR/<soname>)
"""
import os
import re
import subprocess
import sys
import tempfile


def soname(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[(.+)\]", out)
    return m.group(1) if m else os.path.basename(path)


def dynamic_symbols(path):
    """(name, kind, size, version) of every symbol the library defines."""
    out = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        # 0000000000012340 g    DF .text  0000000000000042  Base        name
        m = re.match(r"^[0-9a-f]+ (.{7}) (\S+)\s+([0-9a-f]+)\s+(\(?[^\s()]+\)?)?\s+(\S+)$", line)
        if not m:
            continue
        flags, section, size, version, name = m.groups()
        if section == "*UND*" or section == "*ABS*":
            continue
        if "g" not in flags and "w" not in flags and "u" not in flags:
            continue
        version = (version or "Base").strip("()")
        kind = "object" if "O" in flags else "function"
        syms.append((name, kind, int(size, 16), version))
    return syms


def main():
    real, out_dir = sys.argv[1], sys.argv[2]
    name = soname(real)
    syms = dynamic_symbols(real)
    asm, nodes = [], {}
    for sym, kind, size, version in syms:
        q = '"%s"' % sym
        if kind == "object":
            asm += [".data", ".globl %s" % q, ".type %s,@object" % q, ".size %s,%d" % (q, max(size, 1)),
                    ".balign 16", "%s:" % q, ".zero %d" % max(size, 1)]
        else:
            asm += [".text", ".globl %s" % q, ".type %s,@function" % q, "%s:" % q, "xorl %eax,%eax", "ret"]
        if version not in ("Base", "(Base)"):
            nodes.setdefault(version, []).append(sym)
    with tempfile.TemporaryDirectory() as tmp:
        s = os.path.join(tmp, "stub.s")
        with open(s, "w") as f:
            f.write("\n".join(asm) + "\n.section .note.GNU-stack,\"\",@progbits\n")
        cmd = ["gcc", "-shared", "-nostdlib", "-o", os.path.join(out_dir, name), s, "-Wl,-soname," + name]
        if nodes:
            vs = os.path.join(tmp, "versions.map")
            with open(vs, "w") as f:
                for node, names in nodes.items():
                    f.write("%s {\n  global:\n" % node)
                    f.write("".join('    "%s";\n' % n for n in names))
                    f.write("};\n")
            cmd.append("-Wl,--version-script=" + vs)
        subprocess.run(cmd, check=True)
    print(name, len(syms), "symbols")


if __name__ == "__main__":
    main()
