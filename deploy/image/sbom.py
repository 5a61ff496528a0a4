"""Helpers of deploy/image/sbom.

lock CARGO_LOCK LINKED          the Cargo.lock entries of the crates in
                                LINKED (`cargo tree --format '{p}'` lines)
join IMAGE CRATES METADATA DIGEST
                                one CycloneDX document: syft's for the image
                                and syft's for the crates, each crate with
                                the licence its Cargo.toml declares
licenses SBOM                   Markdown: the licences of the Debian
                                packages and of the crates, with counts"""

import json
import sys
import tomllib
from collections import defaultdict


def lock(lock_path, linked_path):
    want = set()
    for line in open(linked_path):
        parts = line.split()
        if len(parts) >= 2:
            want.add((parts[0], parts[1].lstrip("v")))
    with open(lock_path, "rb") as f:
        packages = tomllib.load(f)["package"]
    print("version = 4\n")
    for p in packages:
        if (p["name"], p["version"]) not in want:
            continue
        print("[[package]]")
        for key in ("name", "version", "source", "checksum"):
            if key in p:
                print(f'{key} = "{p[key]}"')
        print()


def join(image_path, crates_path, metadata_path, digest):
    image = json.load(open(image_path))
    crates = json.load(open(crates_path))
    meta = json.load(open(metadata_path))
    declared = {(p["name"], p["version"]): p.get("license") for p in meta["packages"]}
    seen = {c.get("bom-ref") for c in image.get("components", [])}
    for c in crates.get("components", []):
        if c.get("bom-ref") in seen:
            continue
        lic = declared.get((c.get("name"), c.get("version")))
        if lic and not c.get("licenses"):
            c["licenses"] = [{"expression": lic}]
        image.setdefault("components", []).append(c)
    image.setdefault("dependencies", []).extend(crates.get("dependencies", []))
    comp = image.setdefault("metadata", {}).setdefault("component", {})
    comp["type"] = "container"
    if digest:
        comp["purl"] = f"pkg:oci/{comp.get('name', 'flashblade-csi')}@{digest.replace(':', '%3A')}"
        comp.setdefault("hashes", []).append({"alg": "SHA-256", "content": digest.split(":", 1)[1]})
    json.dump(image, sys.stdout, indent=2, sort_keys=True)
    print()


def names(c):
    out = []
    for entry in c.get("licenses", []):
        if "expression" in entry:
            out.append(entry["expression"])
        else:
            lic = entry.get("license", {})
            out.append(lic.get("id") or lic.get("name") or "?")
    return sorted(set(out)) or ["(none declared)"]


def licenses(sbom_path):
    doc = json.load(open(sbom_path))
    groups = {"deb": defaultdict(set), "cargo": defaultdict(set)}
    for c in doc.get("components", []):
        kind = c.get("purl", "").split(":", 1)[-1].split("/", 1)[0]
        if kind in groups:
            for name in names(c):
                groups[kind][name].add(c["name"])
    for kind, title in (("deb", "Debian packages"), ("cargo", "Crates linked into the binary")):
        total = len({p for ps in groups[kind].values() for p in ps})
        print(f"## {title} ({total})\n")
        print("| licence | packages | which |\n| --- | ---: | --- |")
        for name, pkgs in sorted(groups[kind].items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"| {name} | {len(pkgs)} | {', '.join(sorted(pkgs))} |")
        print()


if __name__ == "__main__":
    {"lock": lock, "join": join, "licenses": licenses}[sys.argv[1]](*sys.argv[2:])
