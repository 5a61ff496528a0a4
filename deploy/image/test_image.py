"""Tests of the built flashblade-csi image (deploy/image/build), run by
deploy/image/test as root:

- the image agrees with deploy/Dockerfile (packages, USER, ENTRYPOINT, the
  production build) and with the rendered manifests (entrypoint, labels);
- loaded into podman from the docker-archive, it runs `--version`, carries
  mount.nfs (setuid) and the CA bundle, and has no simulator;
- run as each container of our image is run by the rendered manifests
  (Kustomize production overlay and the Helm chart; users and privileges
  from deploy/test/validate.py's effective_users, not typed here): the
  controller cannot mount; the node plugin can, and its mounts reach the host
  through a shared mount (Bidirectional propagation).

Prints one line per check and 'N passed, N failed'."""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "deploy", "test"))
import chartlib  # noqa: E402
import validate  # noqa: E402
import yaml  # noqa: E402

IMAGE_DIR = os.environ.get("IMAGE_DIR") or os.path.join(ROOT, "target", "image")
NAME = "flashblade-csi"
CONTROLLER = ("Deployment", "flashblade-csi-controller", "flashblade-csi")
NODE = ("DaemonSet", "flashblade-csi-node", "flashblade-csi")

r = validate.Results()


# --- what the two builds say ---------------------------------------------------

def package_list(path=os.path.join(HERE, "packages")):
    with open(path) as f:
        return sorted(w for line in f for w in [line.split("#", 1)[0].strip()] if w)


def dockerfile_final_stage(path=os.path.join(ROOT, "deploy", "Dockerfile")):
    """The instructions that make the default target (the last stage and the
    stages it is built FROM, oldest first), continuation lines joined:
    [(INSTRUCTION, rest)]; plus every instruction of all stages."""
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, everything = {}, []
    chain = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        everything.append((word, rest))
        if word == "FROM":
            words = rest.split()
            parent = stages.get(words[0], [])
            chain = list(parent)
            if len(words) >= 3 and words[1].upper() == "AS":
                stages[words[2]] = chain
        if chain is not None:
            chain.append((word, rest))
    return chain or [], everything


def apt_packages(run):
    """The packages of `apt-get install ...` in a RUN line."""
    out = []
    for cmd in re.split(r"&&|;", run):
        words = cmd.split()
        if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
            out += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return sorted(out)


def build_script_settings(path=os.path.join(HERE, "build")):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^(IMAGE_USER|ENTRYPOINT|NAME)=(\S+)$", line.strip())
            if m:
                out[m.group(1)] = m.group(2)
    return out


def check_agreement():
    stage, everything = dockerfile_final_stage()
    settings = build_script_settings()
    pkgs = package_list()
    df_pkgs = sorted(p for w, rest in stage if w == "RUN" for p in apt_packages(rest))
    r.check(pkgs and df_pkgs == pkgs,
            f"Dockerfile installs the packages of deploy/image/packages ({' '.join(df_pkgs)} vs {' '.join(pkgs)})")
    users = [rest for w, rest in stage if w == "USER"]
    r.check(users[-1:] == [settings.get("IMAGE_USER")],
            f"Dockerfile USER {users[-1:]} is the build script's {settings.get('IMAGE_USER')}")
    eps = [json.loads(rest) for w, rest in stage if w == "ENTRYPOINT"]
    r.check(eps[-1:] == [[settings.get("ENTRYPOINT")]],
            f"Dockerfile ENTRYPOINT {eps[-1:]} is the build script's [{settings.get('ENTRYPOINT')}]")
    copies = [rest.split() for w, rest in stage if w == "COPY"]
    r.check(any(c[-1] == settings.get("ENTRYPOINT") for c in copies),
            "Dockerfile copies the binary to the ENTRYPOINT path")
    r.check(not any("mock-flashblade" in " ".join(c) for c in copies),
            "Dockerfile's final stage has no mock-flashblade")
    build_inputs = [rest.split()[0] for w, rest in everything if w == "COPY" and "--from" not in rest]
    r.check("link" in build_inputs and "proto" in build_inputs,
            f"Dockerfile copies what build.rs reads: proto/ and link/ (the hot-code linker script) ({build_inputs})")
    builds = [rest for w, rest in everything if w == "RUN" and "cargo build" in rest]
    r.check(builds and all("--no-default-features" in b for b in builds if "--bin flashblade-csi" in b),
            "Dockerfile builds flashblade-csi with --no-default-features (no demo simulator)")
    r.check(validate.dockerfile_user() == int(settings.get("IMAGE_USER", "x:").split(":")[0] or -1),
            "validate.py's image user (deploy/Dockerfile) is the build script's")
    return settings


# --- the built image -------------------------------------------------------------

def oci_config(oci):
    def blob(digest):
        with open(os.path.join(oci, "blobs", *digest.split(":", 1))) as f:
            return json.load(f)
    with open(os.path.join(oci, "index.json")) as f:
        index = json.load(f)
    manifest = blob(index["manifests"][0]["digest"])
    return index["manifests"][0].get("annotations", {}), blob(manifest["config"]["digest"]), manifest


def cargo_version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def cargo_repository():
    """The `repository` of Cargo.toml, or None while the project has none
    (then the image has no source label)."""
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        m = re.search(r'^repository\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1) if m else None


def check_config(settings, version):
    annotations, cfg, manifest = oci_config(os.path.join(IMAGE_DIR, "oci"))
    c = cfg.get("config", {})
    r.check(annotations.get("org.opencontainers.image.ref.name") == version, f"OCI layout tagged {version}")
    r.check(c.get("User") == settings["IMAGE_USER"], f"image USER {c.get('User')}")
    r.check(c.get("Entrypoint") == [settings["ENTRYPOINT"]], f"image ENTRYPOINT {c.get('Entrypoint')}")
    labels = c.get("Labels") or {}
    want = {"org.opencontainers.image.version": version, "org.opencontainers.image.licenses": "Apache-2.0"}
    r.check(all(labels.get(k) == v for k, v in want.items())
            and re.match(r"^[0-9a-f]{40}(-dirty)?$", labels.get("org.opencontainers.image.revision", ""))
            and labels.get("org.opencontainers.image.source") == cargo_repository(),
            f"image labels {labels}")
    r.check(cfg.get("os") == "linux" and cfg.get("architecture") == "amd64", "image is linux/amd64")
    return manifest


def rendered_manifests():
    """{source name: [objects]}: the production Kustomize overlay and the
    Helm chart with its defaults."""
    out = {}
    k = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "deploy/kubernetes/overlays/production")],
                       capture_output=True, text=True, check=True).stdout
    out["kustomize production"] = [o for o in yaml.safe_load_all(k) if o]
    out["helm"] = [o for _, o in chartlib.objects(chartlib.render({}))]
    return out


def own_containers(objs):
    for o in objs:
        if o.get("kind") in validate.WORKLOAD_KINDS:
            spec = validate.pod_spec_of(o)
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                if validate.is_own_image(c.get("image", "")):
                    yield (o["kind"], o["metadata"]["name"], c["name"]), spec, c


def check_manifests_use_entrypoint(sources, settings):
    for name, objs in sources.items():
        own = list(own_containers(objs))
        r.check(any(k == NODE for k, _, _ in own) and any(k == CONTROLLER for k, _, _ in own),
                f"{name}: renders the controller and node containers of our image")
        for key, _, c in own:
            cmd = c.get("command")
            r.check(cmd is None or cmd == [settings["ENTRYPOINT"]],
                    f"{name}: {key[0]}/{key[1]} {key[2]} runs the image's ENTRYPOINT (command {cmd})")


# --- running it ------------------------------------------------------------------

class Podman:
    """podman with its configuration and storage under a scratch directory
    (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF): runc, cgroupfs, a file
    events log, ulimits within this machine's hard limits."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "containers.conf"), "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/storage/libpod"
volume_path = "{d}/storage/volumes"
""")
        with open(os.path.join(d, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/storage"\nrunroot = "{d}/run"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=os.path.join(d, "containers.conf"),
                        CONTAINERS_STORAGE_CONF=os.path.join(d, "storage.conf"))

    def __call__(self, *args, timeout=120):
        p = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip()

    def run(self, image, flags, entrypoint, *args):
        return self("run", "--rm", "--network", "none", *flags, "--entrypoint", entrypoint, image, *args)


def podman_flags(u, container):
    """podman run flags for a container as Kubernetes would run it, from
    validate.effective_user() and the container's securityContext."""
    flags = []
    if not u["source"].startswith("image USER"):
        flags += ["--user", str(u["uid"])]
    if u["privileged"]:
        flags.append("--privileged")
    for cap in u["drop"]:
        flags += ["--cap-drop", cap]
    for cap in u["add"]:
        flags += ["--cap-add", cap]
    if u["allowPrivilegeEscalation"] is False:
        flags += ["--security-opt", "no-new-privileges"]
    if (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    return flags


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def mounts_under(d):
    return {fields[4]: fields[fields.index("-") + 1] for fields in mountinfo()
            if fields[4] == d or fields[4].startswith(d + "/")}


def umount_under(d):
    for target in sorted(mounts_under(d), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def check_running(pm, image, settings, version, sources, image_uid):
    rc, out = pm("load", "-q", "-i", os.path.join(IMAGE_DIR, f"{NAME}.tar"))
    r.check(rc == 0 and f"{NAME}:{version}" in out, f"podman load of the docker-archive: {out[-200:]}")
    rc, out = pm("image", "inspect", image)
    cfg = json.loads(out)[0]["Config"] if rc == 0 else {}
    r.check(cfg.get("User") == settings["IMAGE_USER"] and cfg.get("Entrypoint") == [settings["ENTRYPOINT"]],
            f"loaded image: User {cfg.get('User')}, Entrypoint {cfg.get('Entrypoint')}")

    rc, out = pm("run", "--rm", "--network", "none", image, "--version")
    r.check(rc == 0 and out == f"flashblade-csi {version}", f"`{image} --version` (image USER): {out!r}")
    rc, out = pm("run", "--rm", "--network", "none", image, "demo", "--help")
    r.check(rc != 0 and "unrecognized subcommand" in out,
            "no `demo` subcommand: the production build, without the simulator")
    rc, out = pm("run", "--rm", "--network", "none", image, "serve", "--mode", "node", "--node-id", "n1",
                 "--endpoint", "unix:///tmp/csi.sock", "--local-export-root", "/tmp")
    r.check(rc == 2 and "development option that this build leaves out" in out,
            f"the production node plugin refuses development staging: {out[-200:]!r}")
    # A message only the simulator's client (src/node/local_export.rs) has.
    rc, out = pm.run(image, ["--user", "0"], "/usr/bin/grep", "-c", "the client for the simulator's mount endpoint",
                     "/usr/local/bin/flashblade-csi")
    r.check(out.strip() == "0", f"no simulator client in the binary (its message appears {out.strip()!r} times)")
    rc, out = pm.run(image, ["--user", "0"], "/usr/bin/find", "/", "-xdev", "(", "-name", "mock-flashblade*",
                     "-o", "-name", "mock_flashblade*", ")")
    r.check(rc == 0 and out == "", f"no mock-flashblade in the image {out[:200]!r}")
    rc, out = pm.run(image, ["--user", "0"], "/usr/bin/stat", "-c", "%n %a %u %s",
                     "/sbin/mount.nfs", "/bin/mount", "/bin/umount", "/etc/ssl/certs/ca-certificates.crt")
    st = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("/")}
    for helper in ("/sbin/mount.nfs", "/bin/mount", "/bin/umount"):
        r.check(st.get(helper, [None, None])[:2] == ["4755", "0"], f"{helper} present, setuid root: {st.get(helper)}")
    rc2, out2 = pm.run(image, [], "/bin/ls", "/etc/protocols", "/etc/rpc", "/etc/netconfig")
    r.check(rc2 == 0, f"the RPC lookup files of NFSv3 mounts are present (/etc/protocols, /etc/rpc, /etc/netconfig): {out2[-200:]!r}")
    ca = st.get("/etc/ssl/certs/ca-certificates.crt")
    r.check(rc == 0 and ca is not None and int(ca[2]) > 100000, f"CA bundle present: {ca}")

    scratch = tempfile.mkdtemp(prefix="propagation-", dir=IMAGE_DIR)
    try:
        for name, objs in sources.items():
            users = validate.effective_users(objs, image_uid)
            specs = {k: c for k, _, c in own_containers(objs)}
            # The controller: must not be able to mount anything.
            u = users.get(CONTROLLER)
            if not r.check(u is not None and CONTROLLER in specs, f"{name}: controller container rendered"):
                continue
            flags = podman_flags(u, specs[CONTROLLER])
            rc, out = pm.run(image, flags, "/bin/sh", "-c", "id -u; mount -t tmpfs tmpfs /mnt; echo rc=$?; "
                             "/sbin/mount.nfs 127.0.0.1:/x /mnt -o vers=4.1; echo rc=$?")
            lines = out.splitlines()
            r.check(lines[:1] == [str(u["uid"])] and u["uid"] != 0,
                    f"{name}: controller runs as uid {lines[:1]} ({u['source']}; {' '.join(flags)})")
            r.check(out.count("rc=0") == 0 and out.count("rc=") == 2,
                    f"{name}: controller user cannot mount (tmpfs, mount.nfs): {' | '.join(lines[1:])[:300]}")

            # The node plugin: root, privileged, kubelet's directory shared.
            u = users.get(NODE)
            if not r.check(u is not None and NODE in specs, f"{name}: node plugin container rendered"):
                continue
            c = specs[NODE]
            flags = podman_flags(u, c)
            kubelet = validate.kubelet_dir(c)
            bidir = [m for m in c.get("volumeMounts", []) if m.get("mountPropagation") == "Bidirectional"]
            r.check([m["mountPath"] for m in bidir] == [kubelet],
                    f"{name}: node plugin mounts {kubelet} with Bidirectional propagation")
            script = (f"set -e; id -u; cd {shlex.quote(kubelet)}; mkdir -p src bound tmp; echo hello > src/f; "
                      "mount --bind src bound; mount -t tmpfs -o size=1m tmpfs tmp; echo mounted")
            for shared in (True, False):
                host = os.path.join(scratch, f"{name.replace(' ', '-')}-{'shared' if shared else 'private'}")
                os.makedirs(host)
                subprocess.run(["mount", "--bind", host, host], check=True)
                subprocess.run(["mount", "--make-shared" if shared else "--make-private", host], check=True)
                prop = "rshared" if shared else "rprivate"
                rc, out = pm.run(image, flags + ["--mount", f"type=bind,src={host},dst={kubelet},bind-propagation={prop}"],
                                 "/bin/sh", "-c", script)
                seen = mounts_under(host)
                reached = seen.get(host + "/bound") is not None and seen.get(host + "/tmp") == "tmpfs"
                if shared:
                    r.check(rc == 0 and out.splitlines()[:1] == ["0"] and out.endswith("mounted"),
                            f"{name}: node plugin as uid 0, {' '.join(flags)}: bind and tmpfs mounts work ({out[-200:]!r})")
                    r.check(reached and open(os.path.join(host, "bound", "f")).read() == "hello\n",
                            f"{name}: its mounts reach the host through the shared mount (Bidirectional)")
                else:
                    # The control: the same run against a private host
                    # directory must not show the mounts, or the check above
                    # proves nothing.
                    r.check(rc == 0 and not reached,
                            f"{name}: control: with a private host directory the mounts stay in the container")
                umount_under(host)
            rc, out = pm.run(image, flags, "/sbin/mount.nfs", "127.0.0.1:/x", "/mnt", "-o", "vers=4.1,timeo=10,retrans=1")
            r.check(not re.search(r"superuser|not permitted|ermission denied|fstab options", out),
                    f"{name}: node plugin's mount.nfs gets past the permission checks ({out[-160:]!r}; "
                    "NFS itself is the VM tier's)")
    finally:
        umount_under(scratch)
        subprocess.run(["rm", "-rf", "--one-file-system", scratch], check=False)


def main():
    version = cargo_version()
    image = f"{NAME}:{version}"
    settings = check_agreement()
    check_config(settings, version)
    sources = rendered_manifests()
    check_manifests_use_entrypoint(sources, settings)
    pm = Podman(os.path.join(IMAGE_DIR, "podman"))
    try:
        check_running(pm, image, settings, version, sources, validate.dockerfile_user())
    finally:
        pm("rmi", "-a", "-f")
    print(f"image: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
