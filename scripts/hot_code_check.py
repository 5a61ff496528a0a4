"""Whether link/hot-code.ld still fits a release binary (scripts/hot-code --check).

Prints the share of the list's patterns that match a function symbol of the
binary and the sizes of .text.hot and .text; exits 1 when under 90% match,
the sign that the node's code moved on and the list should be regenerated.

Usage: hot_code_check.py BINARY LINKER_SCRIPT
"""

import bisect
import re
import subprocess
import sys

THRESHOLD = 0.9


def patterns(script):
    with open(script) as f:
        return [
            line.strip()[len("*(.text.") : -1]
            for line in f
            if line.strip().startswith("*(.text.")
        ]


def functions(binary):
    nm = subprocess.run(
        ["nm", "--defined-only", binary], capture_output=True, text=True, check=True
    ).stdout
    rows = (line.split() for line in nm.splitlines())
    return sorted({r[2] for r in rows if len(r) == 3 and r[1] in "tTwW"})


def matches(pattern, symbols):
    # Symbols that share the text before the first wildcard sort together.
    prefix = pattern.split("*")[0]
    rx = re.compile(re.escape(pattern).replace(r"\*", ".*") + "$")
    i = bisect.bisect_left(symbols, prefix)
    while i < len(symbols) and symbols[i].startswith(prefix):
        if rx.match(symbols[i]):
            return True
        i += 1
    return False


def section_sizes(binary):
    out = subprocess.run(
        ["readelf", "-SW", binary], capture_output=True, text=True, check=True
    ).stdout
    sizes = {}
    for line in out.splitlines():
        m = re.search(r"\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s", line)
        if m:
            sizes[m.group(1)] = int(m.group(2), 16)
    return sizes


def main():
    binary, script = sys.argv[1], sys.argv[2]
    listed = patterns(script)
    symbols = functions(binary)
    if not listed:
        sys.exit(f"hot-code: {script} lists no functions")
    if not symbols:
        sys.exit(f"hot-code: {binary} has no function symbols (stripped?)")
    hit = sum(matches(p, symbols) for p in listed)
    share = hit / len(listed)
    sizes = section_sizes(binary)
    print(
        f"hot-code: {hit} of {len(listed)} listed functions are in the binary ({share:.1%}); "
        f".text.hot {sizes.get('.text.hot', 0) // 1024} KiB, .text {sizes.get('.text', 0) // 1024} KiB"
    )
    if share < THRESHOLD:
        sys.exit(
            f"hot-code: link/hot-code.ld is stale (under {THRESHOLD:.0%} of it matches); run scripts/hot-code"
        )


if __name__ == "__main__":
    main()
