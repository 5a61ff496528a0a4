"""What is in the image and why, from the image's dpkg status:
the packages deploy/image/packages asks for, what they pull in that minbase
does not already have, and the minbase essentials (Priority required, apt,
and their dependencies). Usage: package_report.py ROOTFS PACKAGES_FILE
Prints Markdown (deploy/image/build writes it to IMAGE_DIR/packages.md)."""

import re
import sys


def status(rootfs):
    pkgs = {}
    with open(f"{rootfs}/var/lib/dpkg/status") as f:
        for line in f.read().split("\n\n"):
            fields, key = {}, None
            for ln in line.splitlines():
                if ln.startswith(" ") and key:
                    fields[key] += "\n" + ln
                elif ":" in ln:
                    key, _, val = ln.partition(":")
                    fields[key] = val.strip()
            if fields.get("Status", "").endswith(" installed"):
                pkgs[fields["Package"]] = fields
    return pkgs


def deps(p, pkgs, provides):
    out = set()
    for field in ("Pre-Depends", "Depends"):
        for alt in p.get(field, "").split(","):
            for name in alt.split("|"):
                name = re.sub(r"\(.*?\)|:any", "", name).strip()
                hit = name if name in pkgs else provides.get(name)
                if hit:
                    out.add(hit)
                    break
    return out


def closure(roots, pkgs, provides):
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen or n not in pkgs:
            continue
        seen.add(n)
        todo += deps(pkgs[n], pkgs, provides)
    return seen


def main(rootfs, listfile):
    pkgs = status(rootfs)
    provides = {}
    for n, p in pkgs.items():
        for v in p.get("Provides", "").split(","):
            v = re.sub(r"\(.*?\)", "", v).strip()
            if v:
                provides.setdefault(v, n)
    wanted = [w for line in open(listfile) for w in [line.split("#", 1)[0].strip()] if w]
    base = closure([n for n, p in pkgs.items() if p.get("Priority") == "required"] + ["apt"], pkgs, provides)
    pulled = closure(wanted, pkgs, provides) - base - set(wanted)
    rest = set(pkgs) - base - pulled - set(wanted)

    def row(n):
        return f"{n} {pkgs[n]['Version']}"

    print(f"{len(pkgs)} packages.\n")
    print("**Asked for** (deploy/image/packages; see the reasons there): "
          + ", ".join(row(n) for n in wanted) + ".\n")
    print("**Pulled in by those** (not in minbase): " + ", ".join(row(n) for n in sorted(pulled)) + ".\n")
    print("**Minbase essentials** (Priority required, apt, and their dependencies; "
          "some are also needed by the above): " + ", ".join(row(n) for n in sorted(base - set(wanted))) + ".")
    if rest:
        print("\n**Other**: " + ", ".join(row(n) for n in sorted(rest)) + ".")


if __name__ == "__main__":
    main(*sys.argv[1:])
