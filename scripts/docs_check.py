"""Checks every Markdown file of the repository against the code, and the
code against the docs. Fails when:

- a `--flag`, environment variable, subcommand, StorageClass or
  VolumeAttributesClass parameter key, config-file key or chart value named
  in a Markdown file does not exist, or one that exists is named nowhere;
- a relative link (or its #anchor) or a repository path is dead;
- a Rust path (`module::item`) names no item of this workspace;
- a developer's absolute path (/work/..., /home/<user>/..., /root/...)
  appears;
- a shell block is neither run by the README walk-through
  (`<!-- walkthrough -->`, scripts/readme-walkthrough) nor marked
  `<!-- not run -->`;
- docs/settings.md differs from what `--write` generates.

The truth comes from the driver binary where it can tell: `flashblade-csi
schema` (settings, config keys, parameter keys), `--help` of every
subcommand (flags, environment variables, subcommands); chart values from
deploy/helm/flashblade-csi/values.yaml and values.schema.json.

All Markdown outside test folders together stays within WORD_BUDGET words.

Findings listed in scripts/docs-known.txt (files being rewritten elsewhere)
are reported as known, not failed; a listed finding that no longer occurs
fails, so the list only shrinks.

Usage: docs_check.py [--self-test | --write] [--binary PATH]
Prints one line per check and 'docs: N passed, N failed' at the end."""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = "deploy/helm/flashblade-csi"
SETTINGS_MD = "docs/settings.md"
KNOWN_FILE = "scripts/docs-known.txt"

# The word budget: all Markdown outside test folders.
WORD_BUDGET = 15000
BUDGET_ENFORCED = True

DRIVER = "flashblade.csi.dev"
SHELL_LANGS = {"sh", "bash", "shell", "console", "zsh"}
RUN_MARKERS = {"<!-- walkthrough -->", "<!-- walkthrough: teardown -->"}
NOT_RUN = "<!-- not run -->"
# Paths under /home/ that are a container's, not a developer's machine: the
# Jupyter images' user.
CONTAINER_HOMES = {"jovyan"}
# Flags of other tools that the docs name outside a command line of theirs
# (in prose or inline code). A command line's own flags are that tool's.
OTHER_FLAGS = {
    # helm, kubectl
    "--set", "--set-file", "--values", "--namespace", "--create-namespace", "--kube-version",
    "--api-versions", "--version", "--dry-run", "--server-side", "--reuse-values", "--wait",
    "--all-namespaces", "--timeout",
    # cargo, git
    "--release", "--no-default-features", "--features", "--bench", "--test", "--workspace",
    "--all-targets", "--nocapture", "--ignored", "--check",
    # mount(8), nfs
    "--bind",
    # this repository's scripts and the simulator
    "--self-test", "--write", "--print", "--help", "--version",
    # scripts/csi-call
    "--get",
}
# Settings the chart sets through the array's Secret, which it mounts:
# the template names files, not values.
CHART_SECRETS = {
    "array.api_token_file": ["arrays[].existingSecret", "arrays[].apiToken"],
    "array.ca_file": ["arrays[].existingSecretKeys.caBundle", "arrays[].caBundle"],
}
FILE_EXTS = {"rs", "md", "yaml", "yml", "toml", "json", "py", "sh", "txt", "tpl", "proto", "lock", "pem"}


# ---------------------------------------------------------------- truth

def find_binary(explicit=None):
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "debug", "flashblade-csi")
    if not os.path.exists(path):
        sys.exit(f"docs_check: {path} not found; build it first (cargo build -p flashblade-csi)")
    return path


def run(binary, *args):
    out = subprocess.run([binary, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"docs_check: {binary} {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def parse_help(text):
    """Subcommands, flags and environment variables from clap's --help."""
    subs, flags, envs, section = [], set(), set(), None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line.rstrip(":")
            continue
        if section == "Commands":
            m = re.match(r"\s{2}([a-z][a-z-]*)\s", line + " ")
            if m and m.group(1) != "help":
                subs.append(m.group(1))
        for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
            flags.add(f)
        for e in re.findall(r"\[env: ([A-Z0-9_]+)", line):
            envs.add(e)
    return subs, flags - {"--help", "--version"}, envs


def parse_options(text):
    """(flag, help) for each option of clap's long --help, in order; the
    help is its first paragraph, with a [default: ...] kept."""
    out, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^\s{2,6}(?:-\w, )?(--[a-z][a-z0-9-]*)(?: <[^>]+>)?(.*)$", line)
        if m:
            cur = [m.group(1), m.group(2).strip(), False]
            out.append(cur)
            continue
        if cur is None or not line.startswith(" " * 10):
            if not line.strip() and cur is not None and cur[1]:
                cur[2] = True  # first paragraph over
            continue
        body = line.strip()
        if body.startswith("[default:"):
            cur[1] += f" {body}"
        elif not cur[2] and not body.startswith("[env:") and not body.startswith("Possible values"):
            cur[1] = f"{cur[1]} {body}".strip()
    return [(f, re.sub(r"\s*\[env: [^\]]*\]", "", h).strip()) for f, h, _ in out]


def values_paths(node, prefix=""):
    """Dotted paths of a values tree ([] dropped), every level included."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= values_paths(v, p)
    elif isinstance(node, list):
        for item in node:
            out |= values_paths(item, prefix)
    return out


def schema_paths(node, prefix=""):
    out = set()
    if not isinstance(node, dict):
        return out
    for k, v in (node.get("properties") or {}).items():
        p = f"{prefix}.{k}" if prefix else k
        out.add(p)
        out |= schema_paths(v, p)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out |= schema_paths(node[key], prefix)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in node.get(key) or []:
            out |= schema_paths(sub, prefix)
    for sub in (node.get("$defs") or {}).values():
        pass  # reached through $ref only; refs resolved below
    if "$ref" in node:
        out |= schema_paths(resolve_ref(node["$ref"]), prefix)
    for key in ("then", "else", "if"):
        if isinstance(node.get(key), dict):
            out |= schema_paths(node[key], prefix)
    return out


_SCHEMA = {}


def resolve_ref(ref):
    node = _SCHEMA
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part, {})
    return node


def load_truth(binary):
    t = {"schema": json.loads(run(binary, "schema"))}
    subs, top_flags, envs = parse_help(run(binary, "--help"))
    t["subcommands"] = {"": subs}
    t["flags"] = {"": top_flags}
    t["envs"] = set(envs)
    todo = [[s] for s in subs]
    t["options"], t["about"] = {}, {}
    while todo:
        path = todo.pop()
        text = run(binary, *path, "--help")
        s, f, e = parse_help(text)
        key = " ".join(path)
        t["options"][key] = parse_options(text)
        t["about"][key] = text.strip().splitlines()[0]
        m = re.search(r"^(Exit codes?\b.*?)(?:\n\s*\n|\Z)", text, re.M | re.S)
        t.setdefault("exits", {})[key] = " ".join(m.group(1).split()) if m else None
        t["flags"][key] = f
        t["envs"] |= e
        t["subcommands"][key] = s
        todo += [path + [x] for x in s]
    # `schema` is hidden from --help, as it should be from the docs.
    t["hidden"] = {"schema"}
    with open(os.path.join(ROOT, CHART, "values.yaml")) as f:
        t["values"] = yaml.safe_load(f)
    with open(os.path.join(ROOT, CHART, "values.schema.json")) as f:
        _SCHEMA.clear()
        _SCHEMA.update(json.load(f))
    t["value_paths"] = values_paths(t["values"]) | schema_paths(_SCHEMA)
    t["config_keys"] = {
        (f"{section}.{k}" if section else k)
        for section, ks in t["schema"]["config"].items()
        for k in ks
    }
    t["sc_keys"] = set(t["schema"]["storageClassParameters"])
    t["vac_keys"] = set(t["schema"]["volumeAttributesClassParameters"])
    # Flags the deploy files pass to the sidecars.
    t["deploy_flags"] = set()
    for d in (os.path.join(ROOT, CHART, "templates"), os.path.join(ROOT, "deploy/kubernetes")):
        for dirpath, _, files in os.walk(d):
            for name in files:
                with open(os.path.join(dirpath, name)) as f:
                    t["deploy_flags"] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", f.read()))
    t["rust"] = rust_modules()
    # Variables the repository's own scripts read (no binary to ask).
    for d in ("scripts", "deploy", "tests/vm", "contract"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            for name in files:
                if name.endswith((".py", ".sh")) or "." not in name:
                    try:
                        with open(os.path.join(dirpath, name)) as fh:
                            text = fh.read()
                    except (UnicodeDecodeError, OSError):
                        continue
                    if name == "docs_check.py":
                        continue
                    t["envs"] |= set(re.findall(r"\b(FLASHBLADE_CSI_[A-Z0-9_]*[A-Z0-9])\b", text))
    # The simulator's command line, for its README and the walk-through.
    mock = os.path.join(os.path.dirname(binary), "mock-flashblade")
    if not os.path.exists(mock):
        sys.exit(f"docs_check: {mock} not found; build it first (cargo build -p mock-flashblade)")
    _, t["mock_flags"], mock_envs = parse_help(run(mock, "--help"))
    t["envs"] |= mock_envs
    return t


def rust_modules():
    """module path -> (file text) for the workspace's crates."""
    crates = {"flashblade_csi": "src", "mock_flashblade": "mock-flashblade/src"}
    mods = {}
    for crate, src in crates.items():
        base = os.path.join(ROOT, src)
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), base)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                with open(os.path.join(dirpath, name)) as f:
                    mods[(crate, *rel)] = f.read()
    return mods


# ---------------------------------------------------------------- Markdown

def markdown_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(p for p in out if os.path.exists(os.path.join(ROOT, p)))


class Doc:
    """A Markdown file split into prose lines, inline code spans and fenced
    blocks (with the marker line before each)."""

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.blocks = []   # (line, lang, marker, body)
        self.prose = []    # (line, text) outside fences
        lines = text.splitlines()
        i, prev = 0, ""
        while i < len(lines):
            m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
            if m:
                fence, lang, start = m.group(1), m.group(2).lower(), i
                body = []
                i += 1
                while i < len(lines) and not lines[i].strip().startswith(fence):
                    body.append(lines[i])
                    i += 1
                self.blocks.append((start + 1, lang, prev.strip(), "\n".join(body)))
                prev = ""
            elif (lines[i].startswith("    ") and lines[i].strip() and i > 0 and not lines[i - 1].strip()
                  and not re.match(r"^(\s|[-*+] |\d+\. |\|)", prev)):
                # An indented code block (not a list item's continuation).
                start, body = i, []
                while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                    body.append(lines[i][4:])
                    i += 1
                while body and not body[-1].strip():
                    body.pop()
                self.blocks.append((start, "", prev.strip(), "\n".join(body)))
                prev = ""
                continue
            else:
                self.prose.append((i + 1, lines[i]))
                if lines[i].strip():
                    prev = lines[i]
            i += 1
        self.code = [(n, c) for n, line in self.prose for c in re.findall(r"`([^`]+)`", line)]

    def shell_blocks(self):
        for line, lang, marker, body in self.blocks:
            first = next((x.strip() for x in body.splitlines() if x.strip()), "")
            if lang in SHELL_LANGS or (lang == "" and re.match(
                    r"^(\$ |sudo |kubectl |helm |cargo |export |git |curl |scripts/|\./|flashblade-csi )", first)):
                yield line, lang, marker, body

    def all_text(self):
        return [(n, t) for n, t in self.prose] + [
            (line + k + 1, x) for line, _, _, body in self.blocks for k, x in enumerate(body.splitlines())]


def shell_commands(body):
    """Simple commands of a shell block: continuation lines joined, split at
    ; && || | $( and ` -- `, leading VAR=x, sudo, exec, $ prompt dropped."""
    text = re.sub(r"\\\n", " ", body)
    for line in text.splitlines():
        line = re.sub(r"\s#.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|\|\||;|\||\$\(|\s--\s)\s*", line):
            words = part.split()
            while words and (words[0] in ("$", "sudo", "exec", "env", "time", "(") or re.match(r"^\w+=", words[0])):
                words = words[1:]
            if words:
                yield words


def driver_invocations(doc, program="flashblade-csi"):
    """(line, [subcommand words], [flags]) for each command line of
    `program` in the doc's shell blocks and inline code."""
    sources = [(line, body) for line, lang, _, body in doc.blocks if lang in SHELL_LANGS or lang == ""]
    sources += [(n, c) for n, c in doc.code]
    for line, body in sources:
        for words in shell_commands(body):
            if os.path.basename(words[0]) != program:
                continue
            subs = []
            for w in words[1:]:
                if re.fullmatch(r"[a-z][a-z-]*", w) and not w.startswith("-"):
                    subs.append(w)
                else:
                    break
            flags = [w.split("=")[0] for w in words[1:] if re.match(r"^--[a-z]", w)]
            yield line, subs, flags


# ---------------------------------------------------------------- checks

class Findings:
    def __init__(self):
        self.items = []  # (kind, file, line, item)

    def add(self, kind, path, line, item):
        self.items.append((kind, path, line, item))


def resolve_sub(truth, subs):
    """The longest known subcommand path in `subs`, and the first unknown word."""
    path = []
    for w in subs:
        options = truth["subcommands"].get(" ".join(path), [])
        if w in options or (not path and w in truth["hidden"]):
            path.append(w)
        else:
            return path, (w if options else None)
    return path, None


def other_command(code):
    """Whether inline code is a command line of a program other than ours."""
    words = next(shell_commands(code), [])
    return (len(words) > 1 and not words[0].startswith("-")
            and os.path.basename(words[0]) not in ("flashblade-csi", "mock-flashblade"))


def check_cli(docs, truth, f):
    ours = set().union(*truth["flags"].values()) | truth["mock_flags"]
    named_flags, named_subs, named_envs = set(), set(), set()
    for doc in docs:
        for line, _, flags in driver_invocations(doc, "mock-flashblade"):
            for fl in flags:
                if fl not in truth["mock_flags"] | {"--help", "--version"}:
                    f.add("flag", doc.path, line, f"mock-flashblade {fl}")
        for line, subs, flags in driver_invocations(doc):
            path, bad = resolve_sub(truth, subs)
            if bad:
                f.add("subcommand", doc.path, line, f"flashblade-csi {' '.join(path + [bad])}")
            if path:
                named_subs.add(" ".join(path))
                # Every prefix of a nested subcommand is named as well.
                for k in range(1, len(path)):
                    named_subs.add(" ".join(path[:k]))
            known = truth["flags"].get(" ".join(path), set()) | (
                truth["flags"]["serve"] if path and path[0] != "serve" else set())
            for fl in flags:
                if fl not in known and fl not in ("--help", "--version"):
                    f.add("flag", doc.path, line, f"flashblade-csi {' '.join(path)} {fl}".replace("  ", " "))
                named_flags.add(fl)
        other_tool_lines = set()
        for line, _, _, body in doc.shell_blocks():
            for k, x in enumerate(body.splitlines()):
                other_tool_lines.add(line + k + 1)
        for n, t in doc.all_text():
            if n not in other_tool_lines:
                # Inline code that is another tool's command line.
                t = re.sub(r"`([^`]+)`", lambda m: "" if other_command(m.group(1)) else m.group(0), t)
            for fl in re.findall(r"(?<![\w/-])--[a-z][a-z0-9-]*[a-z0-9](?![\w.-])", t):
                named_flags.add(fl)
                if n in other_tool_lines:
                    continue  # a command line's flags are its tool's
                if fl not in ours and fl not in truth["deploy_flags"] and fl not in OTHER_FLAGS:
                    f.add("flag", doc.path, n, fl)
            for e in re.findall(r"\b(?:FLASHBLADE_CSI_[A-Z0-9_]*[A-Z0-9]|MOCK_FLASHBLADE_[A-Z0-9_]*[A-Z0-9]|CSI_ENDPOINT)\b(?![_*])", t):
                named_envs.add(e)
                if e not in truth["envs"]:
                    f.add("env", doc.path, n, e)
    for fl in sorted(ours - named_flags):
        f.add("undocumented flag", "-", 0, fl)
    for e in sorted(truth["envs"] - named_envs):
        f.add("undocumented env", "-", 0, e)
    for path, subs in truth["subcommands"].items():
        for s in subs:
            full = f"{path} {s}".strip()
            if full not in named_subs:
                f.add("undocumented subcommand", "-", 0, f"flashblade-csi {full}")


def yaml_docs(body):
    try:
        return [d for d in yaml.safe_load_all(body) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def check_parameters(docs, truth, f):
    sc, vac = truth["sc_keys"], truth["vac_keys"]
    named = set()

    def keys_of(params, allowed, kind, doc, line):
        for k in (params or {}):
            named.add(k)
            if k.startswith("csi.storage.k8s.io/"):
                continue
            if k not in allowed:
                f.add(kind, doc.path, line, k)

    for doc in docs:
        for line, lang, _, body in doc.blocks:
            if lang not in ("yaml", "yml"):
                continue
            for d in yaml_docs(body):
                if d.get("kind") == "StorageClass" and d.get("provisioner") == DRIVER:
                    keys_of(d.get("parameters"), sc, "StorageClass parameter", doc, line)
                if d.get("kind") == "VolumeAttributesClass" and d.get("driverName") == DRIVER:
                    keys_of(d.get("parameters"), vac, "VolumeAttributesClass parameter", doc, line)
                for c in d.get("storageClasses") or []:
                    if isinstance(c, dict):
                        keys_of(c.get("parameters"), sc, "StorageClass parameter", doc, line)
                for c in d.get("volumeAttributesClasses") or []:
                    if isinstance(c, dict):
                        keys_of(c.get("parameters"), vac, "VolumeAttributesClass parameter", doc, line)
        # Reference tables: a header whose first cell is "key" or "parameter".
        table = False
        for n, t in doc.prose:
            cells = [c.strip() for c in t.strip().strip("|").split("|")] if t.strip().startswith("|") else None
            if not cells:
                table = False
                continue
            if cells[0].lower() in ("key", "parameter"):
                table = True
                continue
            if table and not set(cells[0]) <= set("-: "):
                m = re.fullmatch(r"`([A-Za-z]+)`", cells[0])
                if m:
                    named.add(m.group(1))
                    if m.group(1) not in sc:
                        f.add("StorageClass parameter", doc.path, n, m.group(1))
        for n, c in doc.code:
            m = re.fullmatch(r"parameters\.([A-Za-z]+)", c.strip())
            if m and m.group(1) not in sc:
                f.add("StorageClass parameter", doc.path, n, m.group(1))
            for k in re.findall(r"^([a-z][A-Za-z]+)(?::|$)", c.strip()):
                named.add(k)
        for n, t in doc.all_text():
            named |= set(re.findall(r"\b([a-z][A-Za-z]+):", t))
    for k in sorted((sc | vac) - named):
        f.add("undocumented parameter", "-", 0, k)


def check_dotted(docs, truth, f):
    """Chart values and config-file keys named as dotted paths."""
    tops = set(truth["values"])
    sections = {k.split(".")[0] for k in truth["config_keys"] if "." in k}
    valid = truth["value_paths"] | truth["config_keys"]
    for doc in docs:
        tokens = [(n, c.strip()) for n, c in doc.code]
        for line, _, _, body in doc.shell_blocks():
            for k, x in enumerate(body.splitlines()):
                tokens += [(line + k + 1, m) for m in re.findall(r"--set(?:-string|-file)?[ =]([^=\s]+)=", x)]
        for n, c in tokens:
            c = re.sub(r"=.*$", "", c)
            if c == DRIVER:
                continue
            if not re.fullmatch(r"[a-zA-Z][\w-]*(\[\d*\])?(\.[a-zA-Z][\w-]*(\[\d*\])?)+", c):
                continue
            first = c.split(".")[0].split("[")[0]
            if first not in tops and first not in sections:
                continue
            if c.rsplit(".", 1)[1] in FILE_EXTS:
                continue
            norm = re.sub(r"\[\d*\]", "", c)
            if norm not in valid:
                f.add("chart value or config key", doc.path, n, c)
        # `[section]` of the config file
        for n, c in doc.code:
            m = re.fullmatch(r"\[\[?([a-z_]+)\]\]?", c.strip())
            if m and m.group(1) not in sections:
                f.add("config section", doc.path, n, c)
    # The other way: every value of values.yaml is named somewhere.
    # `path=value` (a default, a --set) names the path as well.
    named = {re.sub(r"\[\d*\]|=.*$", "", c.strip()) for doc in docs for _, c in doc.code}
    for path, _, _ in values_leaves(truth["values"], {}):
        if path.replace("[]", "") not in named:
            f.add("undocumented chart value", "-", 0, path)


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[`*_~]|<[^>]+>", "", s) if "_" not in heading.strip("`") else re.sub(r"[`*~]|<[^>]+>", "", s)
    s = re.sub(r"[^\w\s-]", "", s)
    return re.sub(r"\s", "-", s)


def anchors(path):
    try:
        with open(os.path.join(ROOT, path)) as fh:
            text = fh.read()
    except OSError:
        return set()
    doc = Doc(path, text)
    out, seen = set(), {}
    for _, t in doc.prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*$", t)
        if m:
            s = slug(m.group(1))
            k = seen.get(s, 0)
            seen[s] = k + 1
            out.add(s if k == 0 else f"{s}-{k}")
    out |= set(re.findall(r'<a (?:name|id)="([^"]+)"', text))
    return out


TOP = None


def top_entries():
    global TOP
    if TOP is None:
        TOP = {e for e in os.listdir(ROOT) if not e.startswith(".") and e != "target"}
    return TOP


def check_paths(docs, truth, f):
    for doc in docs:
        here = os.path.dirname(doc.path)
        for n, t in doc.prose:
            for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", t) + re.findall(r'href="([^"]+)"', t):
                if re.match(r"^[a-z]+:", target):
                    continue
                file, _, frag = target.partition("#")
                dest = os.path.normpath(os.path.join(here, file)) if file else doc.path
                if not os.path.exists(os.path.join(ROOT, dest)) or dest.startswith(".."):
                    f.add("dead link", doc.path, n, target)
                elif frag and dest.endswith(".md") and frag not in anchors(dest):
                    f.add("dead anchor", doc.path, n, target)
        tokens = list(doc.code)
        for line, _, _, body in doc.shell_blocks():
            for k, x in enumerate(body.splitlines()):
                if re.match(r"^\s*(\$ )?kubectl ", x):
                    continue  # kubectl's TYPE/NAME (deploy/x) is no path
                tokens += [(line + k + 1, w) for w in x.split()]
        for n, c in tokens:
            if re.match(r"^\s*kubectl ", c):
                continue
            c = c.strip().rstrip(".,;:)")
            c = re.sub(r":\d+(-\d+)?$", "", c)
            if not re.fullmatch(r"[\w-][\w.-]*(/[\w.@+-]+)*/?", c) or "/" not in c:
                continue  # ./x and ../x are relative to a place the text names
            first = c.split("/")[0]
            here_first = bool(here) and os.path.exists(os.path.join(ROOT, here, first))
            if first in top_entries() or here_first:
                if not (os.path.exists(os.path.join(ROOT, c))
                        or os.path.exists(os.path.join(ROOT, here, c))):
                    f.add("dead path", doc.path, n, c)


def item_in(text, name):
    """Whether Rust source `text` defines or re-exports `name` (an item, a
    method, an enum variant)."""
    n = re.escape(name)
    return bool(re.search(
        rf"\b(fn|struct|enum|trait|type|const|static|mod|union)\s+{n}\b|macro_rules!\s*{n}\b"
        rf"|\bpub(\([a-z]+\))? use [^;]*\b{n}\b|^\s*{n}\s*[({{,]|^\s*{n}\s*$", text, re.M))


def rust_item_exists(truth, segs):
    """True or False for a path of this workspace; None when it is not ours
    (std, a dependency)."""
    mods = truth["rust"]
    crate = None
    if segs[0] in ("flashblade_csi", "mock_flashblade", "crate"):
        crate = "flashblade_csi" if segs[0] == "crate" else segs[0]
        segs = segs[1:]
    candidates = [m for m in mods if crate in (None, m[0])]
    if segs and segs[0][:1].isupper():
        # Type::item: a file that defines the type and the item.
        files = [t for m, t in mods.items() if m in candidates and item_in(t, segs[0])]
        return any(all(item_in(t, x) for x in segs[1:]) for t in files) if files else None
    # A module path, from the crate root or from any module of that name.
    for k in range(len(segs), 0, -1):
        starts = [m for m in candidates if m[1:] == tuple(segs[:k])]
        starts += [m for m in candidates if len(m) > k and m[-k:] == tuple(segs[:k])]
        if starts:
            rest = segs[k:]
            return any(all(item_in(mods[m], x) for x in rest) for m in starts)
    # Neither a module of ours nor a crate we use: a module that is gone.
    return None if crate is None and segs[0] in external_crates() else False


_EXTERNAL = set()


def external_crates():
    if not _EXTERNAL:
        _EXTERNAL.update({"std", "core", "alloc", "self", "super"})
        for manifest in ("Cargo.toml", "mock-flashblade/Cargo.toml", "tests/vm/client/Cargo.toml"):
            path = os.path.join(ROOT, manifest)
            if os.path.exists(path):
                with open(path) as fh:
                    _EXTERNAL.update(n.replace("-", "_") for n in re.findall(r"^([A-Za-z0-9_-]+)\s*=", fh.read(), re.M))
    return _EXTERNAL


def check_rust_paths(docs, truth, f):
    for doc in docs:
        for n, t in doc.prose:
            for m in re.findall(r"(?<![\w:])([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+)", t):
                if rust_item_exists(truth, m.split("::")) is False:
                    f.add("Rust path", doc.path, n, m)


def check_absolute(docs, truth, f):
    pat = re.compile(r"(?<![\w.~-])(/work/|/Users/[\w.-]+/|/home/([\w.-]+)/?|/root/)")
    for doc in docs:
        container = set()
        for line, lang, marker, body in doc.blocks:
            if lang in ("dockerfile", "containerfile"):
                container |= set(range(line, line + len(body.splitlines()) + 2))
        for n, t in doc.all_text():
            for m in pat.finditer(t):
                if m.group(2) in CONTAINER_HOMES or (m.group(1) == "/root/" and n in container):
                    continue
                f.add("absolute path", doc.path, n, m.group(1))


def check_shell_blocks(docs, truth, f):
    for doc in docs:
        for line, lang, marker, body in doc.shell_blocks():
            if marker == NOT_RUN:
                continue
            if marker in RUN_MARKERS and doc.path == "README.md":
                continue
            f.add("unmarked shell block", doc.path, line, (body.strip().splitlines() or [""])[0][:60])


CHECKS = [
    ("flags, environment variables and subcommands match the binary", check_cli),
    ("StorageClass and VolumeAttributesClass keys match the binary", check_parameters),
    ("chart values and config keys exist", check_dotted),
    ("relative links, anchors and repository paths resolve", check_paths),
    ("Rust paths name items of the workspace", check_rust_paths),
    ("no developer's absolute path", check_absolute),
    ("every shell block is run by the walk-through or marked not run", check_shell_blocks),
]


# ---------------------------------------------------------------- settings reference

def chart_settings():
    """file key or flag -> chart value paths, read from the chart's config
    template (key = {{ ... .camelCase ... }}) and its container args."""
    tpl_dir = os.path.join(ROOT, CHART, "templates")
    with open(os.path.join(tpl_dir, "_helpers.tpl")) as fh:
        helpers = fh.read()
    defines = dict(re.findall(r'\{\{-? define "([^"]+)" -?\}\}(.*?)\{\{-? end -?\}\}\s*(?=\{\{/\*|\{\{-? define|\Z)', helpers, re.S))
    body = defines.get("fb.config", "")
    out, section, scope, pending = {}, "", "", []

    def refs(text):
        found = [r for r in re.findall(r"\.Values\.([\w.]+)", text)]
        found += [scope + r for r in re.findall(r"(?<![\w)])\.([a-z]\w*)\b", text) if scope]
        for name in re.findall(r'include "([^"]+)"', text):
            inner = defines.get(name, "")
            found += re.findall(r"\.Values\.([\w.]+)", inner)
            found += [scope + r for r in re.findall(r'(?<![\w)])\.([a-z]\w*)\b', inner) if scope]
            found += [scope + r for r in re.findall(r'dig "(\w+)" "(\w+)"', inner) and
                      [".".join(x) for x in re.findall(r'dig "(\w+)" "(\w+)"', inner)] if scope]
        return found

    for line in body.splitlines():
        s = line.strip()
        if s.startswith("#") or not s:
            continue
        m = re.match(r"^\[\[?(\w+)\]\]?$", s)
        if m:
            section = m.group(1)
            scope = "arrays." if section == "array" else ""
            continue
        m = re.match(r"\{\{-? with \.Values\.(\w+) \}\}", s)
        if m:
            scope = m.group(1) + "."
            continue
        # `{{- with .x }}` / `{{- if .x }}` guards the key line after it.
        m = re.match(r"\{\{-? (?:with|if) (.*)\}\}$", s)
        if m:
            pending = refs(m.group(1))
            continue
        m = re.match(r"^(\w+) = (.*)$", s)
        if m:
            key = f"{section}.{m.group(1)}" if section else m.group(1)
            out.setdefault(key, [])
            out[key] += [r for r in pending + refs(m.group(2)) if r not in out[key]]
        pending = []
    for name in ("controller.yaml", "node.yaml"):
        with open(os.path.join(tpl_dir, name)) as fh:
            text = fh.read()
        var = dict(re.findall(r'\{\{-? (\$\w+) := include "([^"]+)"', text))
        for flag, val in re.findall(r"- (--[a-z-]+)=(.*)", text):
            found = re.findall(r"\.Values\.([\w.]+)", val)
            for v, inc in var.items():
                if v in val:
                    found += re.findall(r"\.Values\.([\w.]+)", defines.get(inc, ""))
            if found:
                out.setdefault(flag, [])
                out[flag] += [r for r in found if r not in out[flag]]
    return out


def values_leaves(values, comments):
    """(path, default, comment) for each leaf of values.yaml, with the
    comment lines above it."""
    rows = []

    def walk(node, prefix):
        if prefix.endswith(".resources"):
            rows.append((prefix, "…", "Requests and limits of each container, as in values.yaml."))
        elif isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for k, v in node[0].items():
                walk(v, f"{prefix}[].{k}")
        else:
            rows.append((prefix, node, comments.get(prefix.replace("[]", ""), "")))
    walk(values, "")
    return rows


def values_comments(path):
    """path -> the comment above its key in values.yaml (by indentation)."""
    out, stack, pending = {}, [], []
    with open(path) as fh:
        for line in fh:
            s = line.strip()
            if s.startswith("#"):
                pending.append(s.lstrip("#").strip())
                continue
            m = re.match(r"^(\s*)(- )?([\w-]+):", line)
            if not m:
                if not s:
                    pending = []
                continue
            indent = len(m.group(1)) + (2 if m.group(2) else 0)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            name = m.group(3)
            parent = stack[-1][1] if stack else ""
            full = f"{parent}.{name}" if parent else name
            if m.group(2) and parent:
                full = f"{parent}[].{name}"
            stack.append((indent, full))
            text = " ".join(x for x in pending if x and not x.startswith("-"))
            if text:
                out[full.replace("[]", "")] = text
            pending = []
    return out


def setting_help(help_text):
    """A setting's help without its "(default X)" (the line gives the
    default); what else the parenthesis says is kept."""
    text = re.sub(r"\s*\(default:? [^);]*\)", "", help_text)
    return re.sub(r"\(default:? [^);]*; ", "(", text).rstrip(".")


def chart_default(value):
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    return json.dumps(value)


def render_settings(truth):
    """docs/settings.md: one line per setting, per command and per chart
    value, each naming every flag, variable, key and value it covers."""
    chart = chart_settings()
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated by scripts/docs-check --write from `flashblade-csi schema`",
        "(src/config/mod.rs), each command's --help and the chart's values.yaml.",
        "Do not edit. -->",
        "",
        "## Driver settings",
        "",
        "Each line: flag, environment variable, key in the TOML file named by",
        "`--config`, the chart value that writes it (`=` the chart's default",
        "where it differs), what it does, the driver's default. A flag wins",
        "over its variable, which wins over the file. Durations:",
        "`500ms`, `30s`, `2m`. Array keys go in one `[[array]]` table per array;",
        "the array flags define or override one array (by `--array-name`).",
        "",
    ]
    plain = values_paths(truth["values"]) | {p for p in truth["value_paths"] if p.startswith("arrays.")}
    leaves = {p: d for p, d, _ in values_leaves(truth["values"], {})}
    shown = set()
    for s in truth["schema"]["settings"]:
        key = s["fileKey"]
        if key in CHART_SECRETS:
            values = CHART_SECRETS[key]
        else:
            found = chart.get(key or "", []) + chart.get(s["flag"], [])
            values = []
            for v in found:
                # `.name` in an array's scope names its credentials' directory.
                if v in plain and (not v.endswith(".name") or key == "array.name"):
                    v = re.sub(r"^arrays\.", "arrays[].", v)
                    if v not in values:
                        values.append(v)
        cells = [f"`{s['flag']}`", f"`{s['env']}`"]
        if key:
            cells.append(f"file `{key}`")
        chart_cells = []
        for v in values:
            shown.add(v)
            d = leaves.get(v)
            # A list item's values are examples, not defaults.
            if d is not None and "[]" not in v and str(d).lower() != str(s["default"]).lower():
                chart_cells.append(f"`{v}={chart_default(d)}`")
            else:
                chart_cells.append(f"`{v}`")
        if chart_cells:
            cells.append("chart " + " or ".join(chart_cells))
        default = f" Default: {s['default']}." if s["default"] else ""
        lines.append(f"- {', '.join(cells)}: {setting_help(s['help'])}.{default}")
    serve = truth["flags"]["serve"] | {"--help"}
    # Commands without the driver's settings (the demo brings its own array).
    apart = [f"`{path}`" for path in sorted(truth["options"])
             if path != "serve" and not truth["subcommands"].get(path)
             and "--config" not in {f for f, _ in truth["options"][path]}]
    besides = "Besides `serve`" + (f" and {', '.join(apart)}" if apart else "")
    lines += [
        "",
        "## Commands",
        "",
        f"{besides}, each command reads the array settings above and",
        "`--kubeconfig`. Its own options follow its name;",
        "`flashblade-csi <command> --help` describes them. `--output` is",
        "`table` (for people, the default) or `json` (for scripts).",
        "",
    ]
    for path in sorted(truth["options"]):
        if path == "serve" or truth["subcommands"].get(path):
            continue
        own = [f for f, t in truth["options"][path]
               if f not in serve and not (f == "--version" and t.startswith("Print version"))]
        names = []
        for f, t in truth["options"][path]:
            if f in own:
                alias = re.search(r"\[alias(?:es)?: ([^\]]+)\]", t)
                names.append(f"`{f}`" + (f" (alias `{alias.group(1)}`)" if alias else ""))
        opts = f" ({', '.join(names)})" if names else ""
        lines.append(f"- `flashblade-csi {path}`{opts}: {truth['about'][path].rstrip('.')}.")
    by_text = {}
    for path in sorted(truth["options"]):
        if truth["exits"].get(path):
            by_text.setdefault(truth["exits"][path], []).append(f"`{path}`")
    lines.append("")
    for text, paths in by_text.items():
        lines.append(f"{', '.join(paths)}: {text}")
        lines.append("")
    lines.pop()
    lines += [
        "",
        "## Other chart values",
        "",
        f"With their defaults; [values.yaml](../{CHART}/values.yaml) describes",
        "each. `[]` marks a list item; the arrays' and classes' values are",
        "examples. A PSO values file is accepted as well",
        "([migrating from PSO](migrating-from-pso.md)).",
        "",
    ]
    groups = {}
    for path, default, _ in values_leaves(truth["values"], {}):
        if path not in shown:
            # Items of a top-level list (arrays, classes) are examples.
            item = f"`{path}`" if path.split(".")[0].endswith("[]") else f"`{path}={chart_default(default)}`"
            groups.setdefault(path.split(".")[0].split("[")[0], []).append(item)
    for items in groups.values():
        lines.append(f"- {', '.join(items)}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running

class Results:
    def __init__(self, quiet=False):
        self.passed = self.failed = 0
        self.quiet = quiet

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if not self.quiet:
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
        return ok


def word_count(docs):
    """Words (as wc -w counts them) per Markdown file outside test folders."""
    return {d.path: len(d.text.split()) for d in docs
            if not {"test", "tests"} & set(d.path.split("/")[:-1])}


def fmt(item):
    kind, path, line, what = item
    return f"{path}: {kind}: {what}"


def load_known():
    path = os.path.join(ROOT, KNOWN_FILE)
    if not os.path.exists(path):
        return set()
    with open(path) as fh:
        return {x.rstrip("\n") for x in fh if x.strip() and not x.startswith("#")}


def run_checks(docs, truth, r, known=frozenset(), settings_text=None,
               budget=WORD_BUDGET, enforced=BUDGET_ENFORCED):
    seen = set()
    say = (lambda *_: None) if r.quiet else print
    for title, fn in CHECKS:
        f = Findings()
        fn(docs, truth, f)
        new = []
        for item in f.items:
            key = fmt(item)
            seen.add(key)
            if key in known:
                say(f"     known: {key}")
            else:
                new.append(item)
        for kind, path, line, what in new:
            say(f"     {path}:{line}: {kind}: {what}")
        r.check(not new, title)
    for k in sorted(known - seen):
        r.check(False, f"{KNOWN_FILE} lists a finding that no longer occurs (remove it): {k}")
    if settings_text is not None:
        want = render_settings(truth)
        r.check(settings_text == want, f"{SETTINGS_MD} is current (else: scripts/docs-check --write)")
    counts = word_count(docs)
    total = sum(counts.values())
    over = total > budget
    say(f"     words: {total} in {len(counts)} Markdown files (budget {budget})")
    if enforced:
        r.check(not over, f"Markdown within {budget} words")
    elif over:
        say(f"     (not enforced) over budget by {total - budget}")


def load_docs():
    docs = []
    for p in markdown_files():
        with open(os.path.join(ROOT, p)) as fh:
            docs.append(Doc(p, fh.read()))
    return docs


def self_test(truth):
    """Each kind of defect, fed in a small document, must make its check
    fail; the same document without it must pass."""
    r = Results()
    clean = Doc("docs/x.md", """# Clean

Run `flashblade-csi volumes --output json` or see [admin](admin.md).
Set `timeouts.arrayRequest` or `FLASHBLADE_CSI_ARRAY_TIMEOUT`; code in `src/main.rs`.

<!-- not run -->
```sh
flashblade-csi serve --array-timeout 5s
```
""")
    defects = {
        check_cli: [
            "Run `flashblade-csi serve --no-such-flag`.",
            "Set `FLASHBLADE_CSI_NO_SUCH_VAR`.",
            "Run `flashblade-csi frobnicate`.",
            "Mentions `--made-up-flag` in prose.",
        ],
        check_parameters: [
            "```yaml\nkind: StorageClass\napiVersion: storage.k8s.io/v1\nprovisioner: flashblade.csi.dev\nparameters:\n  noSuchKey: x\n```",
            "```yaml\nkind: VolumeAttributesClass\napiVersion: storage.k8s.io/v1\ndriverName: flashblade.csi.dev\nparameters:\n  nfsVersions: '3'\n```",
            "| key | meaning |\n| --- | --- |\n| `bogusKey` | no |",
        ],
        check_dotted: [
            "Set `controller.noSuchValue`.",
            "<!-- not run -->\n```sh\nhelm install x deploy/helm/flashblade-csi --set arrays[0].bogus=1\n```",
            "In the file: `timeouts.no_such_key`.",
        ],
        check_paths: [
            "See [gone](no-such-file.md).",
            "See [anchor](admin.md#no-such-heading-here).",
            "The code is in `src/no_such_file.rs`.",
        ],
        check_rust_paths: [
            "See controller::ids::tombstone_of.",
            "See `volume::rules::no_such_rule`.",
        ],
        check_absolute: [
            "Built in /work/main/target.",
            "Copy it from /home/alice/notes.",
            "Put it in /root/.kube/config.",
        ],
        check_shell_blocks: [
            "```sh\necho unmarked\n```",
            "<!-- walkthrough -->\n```bash\necho walkthrough outside README\n```",
        ],
    }
    names = {fn: title for title, fn in CHECKS}
    for fn, cases in defects.items():
        f = Findings()
        fn([clean], truth, f)
        own = [i for i in f.items if i[1] != "-"]
        r.check(not own, f"{names[fn]}: a clean document passes {[fmt(i) for i in own]}")
        for case in cases:
            f = Findings()
            fn([Doc("docs/x.md", clean.text + "\n" + case + "\n")], truth, f)
            own = [i for i in f.items if i[1] != "-"]
            r.check(bool(own), f"{names[fn]}: catches {case.splitlines()[0][:60]!r}")
    # The other way: something the code has that no document names.
    for label, mutate in [
        ("flag", lambda t: t["flags"]["serve"].add("--undocumented-flag")),
        ("env", lambda t: t["envs"].add("FLASHBLADE_CSI_UNDOCUMENTED")),
        ("subcommand", lambda t: t["subcommands"][""].append("undocumented")),
        ("parameter", lambda t: t["sc_keys"].add("undocumentedKey")),
        ("chart value", lambda t: t["values"].setdefault("undocumentedValue", 1)),
    ]:
        t = {**truth, "flags": {k: set(v) for k, v in truth["flags"].items()}, "envs": set(truth["envs"]),
             "subcommands": {k: list(v) for k, v in truth["subcommands"].items()}, "sc_keys": set(truth["sc_keys"]),
             "values": dict(truth["values"])}
        mutate(t)
        f = Findings()
        {"parameter": check_parameters, "chart value": check_dotted}.get(label, check_cli)(load_docs(), t, f)
        r.check(any(i[0].startswith("undocumented") and "undocumented" in i[3].lower() for i in f.items),
                f"catches an undocumented {label}")
    # The run's own checks, each against the same run without the defect
    # (the clean document alone leaves the code's flags undocumented).
    def failures(**kw):
        sub = Results(quiet=True)
        run_checks([clean], truth, sub, **kw)
        return sub.failed
    base = failures(settings_text=render_settings(truth), budget=10**9, enforced=True)
    r.check(failures(settings_text=render_settings(truth), budget=10**9, enforced=True,
                     known={"docs/x.md: flag: --gone"}) == base + 1,
            "a stale entry in the known list fails")
    page = render_settings(truth)
    # Stale by one setting: its line is gone.
    stale = "".join(x for x in page.splitlines(True) if "`--probe-timeout`" not in x)
    r.check(stale != page and failures(settings_text=stale, budget=10**9, enforced=True) == base + 1,
            f"a stale {SETTINGS_MD} fails")
    # The page leaves nothing out: every flag, variable, file key and
    # chart value.
    names = {x for s in truth["schema"]["settings"] for x in (s["flag"], s["env"], s["fileKey"]) if x}
    names |= set().union(*truth["flags"].values())
    names |= {p for p, _, _ in values_leaves(truth["values"], {})}
    left_out = sorted(x for x in names if f"`{x}`" not in page and f"`{x}=" not in page)
    r.check(not left_out, f"{SETTINGS_MD} names every setting, option and chart value {left_out}")
    r.check(failures(settings_text=render_settings(truth), budget=5, enforced=False) == base,
            "over the word budget only reports while not enforced")
    r.check(failures(settings_text=render_settings(truth), budget=5, enforced=True) == base + 1,
            "over the word budget fails once enforced")
    return r


def main(argv):
    binary = None
    if "--binary" in argv:
        binary = argv[argv.index("--binary") + 1]
    truth = load_truth(find_binary(binary))
    if "--write" in argv:
        with open(os.path.join(ROOT, SETTINGS_MD), "w") as fh:
            fh.write(render_settings(truth))
        print(f"wrote {SETTINGS_MD}")
        return 0
    if "--self-test" in argv:
        r = self_test(truth)
        print(f"docs self-test: {r.passed} passed, {r.failed} failed")
        return 1 if r.failed else 0
    r = Results()
    path = os.path.join(ROOT, SETTINGS_MD)
    text = open(path).read() if os.path.exists(path) else ""
    run_checks(load_docs(), truth, r, known=load_known(), settings_text=text)
    print(f"docs: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
