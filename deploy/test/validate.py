"""Validates deploy/: every kustomization renders, every object passes the
Kubernetes schemas in strict mode, and the driver and JupyterHub wiring is
consistent. Prints one line per check and 'N passed, N failed' at the end.

--self-test feeds deliberately broken inputs to the checks and expects each
to be caught, so a check that cannot fail is itself a failure."""

import copy
import glob
import json
import os
import re
import subprocess
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
K8S_VERSIONS = ["1.31", "1.37"]
DRIVER = "flashblade.csi.dev"
LOCAL_SCHEMAS = {
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"): "volumesnapshotclass-snapshot-v1.json",
}
TOKEN_RE = re.compile(r"T-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Results:
    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet

    def check(self, ok, what):
        if ok:
            self.passed += 1
            if not self.quiet:
                print(f"ok   {what}")
        else:
            self.failed += 1
            if not self.quiet:
                print(f"FAIL {what}")
        return ok


def kustomizations():
    found = []
    for path in glob.glob(os.path.join(DEPLOY, "**", "kustomization.yaml"), recursive=True):
        found.append(os.path.relpath(os.path.dirname(path), ROOT))
    return sorted(found)


def render(rel):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, rel)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_object(obj):
    """Returns None when valid, else the reason."""
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            local = LOCAL_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
            if local is None:
                return f"no schema for {obj.get('apiVersion')}/{obj.get('kind')}"
            with open(os.path.join(DEPLOY, "test", "schemas", local)) as f:
                try:
                    jsonschema.validate(obj, json.load(f))
                except jsonschema.ValidationError as e:
                    return f"{e.message} at {list(e.absolute_path)}"
        except kubernetes_validate.ValidationError as e:
            return f"k8s {version}: {e.message} at {list(e.path)}"
    return None


def export_clients(rules):
    for entry in rules.split():
        yield entry.split("(", 1)[0]


def wildcard(rules):
    return any(c == "*" or c.endswith("/0") for c in export_clients(rules))


def containers(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec, spec.get("containers", [])


# --- effective users ---------------------------------------------------------
#
# Kubernetes runs a container's process as: the container securityContext's
# runAsUser, else the pod securityContext's, else the image's USER (root when
# the image sets none). For our own image the USER is read from
# deploy/Dockerfile. For the upstream sidecar images we do not guess: every
# container that is not ours must get its user from the manifests (container
# or pod runAsUser), so the answer never depends on how someone else built an
# image, and a sidecar bump cannot silently change it.
#
# Root is allowed exactly where it is needed, each for a stated reason, with
# the least it needs; everything else must be non-root with runAsNonRoot true
# (so kubelet refuses to start it as root should the user ever go missing).
OWN_IMAGE = "flashblade-csi"
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod")
ROOT_POLICY = {
    # (workload kind, workload name, container name): (policy, why)
    ("DaemonSet", "flashblade-csi-node", "flashblade-csi"): (
        "mount", "it makes NFS and bind mounts"),
    ("DaemonSet", "flashblade-csi-node", "node-driver-registrar"): (
        "root-no-caps", "it creates its socket in kubelet's root-owned plugins_registry directory"),
    ("Deployment", "mock-flashblade", "state-dir-owner"): (
        "root-chown", "it hands the root-created hostPath state directory to the simulator's user"),
}


def dockerfile_user(path=None):
    """The uid of the USER in the final stage of a Dockerfile (0 if none)."""
    path = path or os.path.join(DEPLOY, "Dockerfile")
    user = None
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0].upper() == "FROM":
                user = None  # a new stage starts as root
            elif words[0].upper() == "USER" and len(words) > 1:
                user = words[1]
    if user is None:
        return 0
    uid = user.split(":", 1)[0]
    if not uid.isdigit():
        raise ValueError(f"{path}: USER {user} is not numeric; kubelet cannot prove a name is non-root")
    return int(uid)


def is_own_image(image):
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0]
    return last == OWN_IMAGE


def pod_spec_of(obj):
    if obj["kind"] == "Pod":
        return obj.get("spec", {})
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj.get("spec", {}).get("template", {}).get("spec", {})


def effective_user(pod_spec, container, image_uid):
    """What Kubernetes would run the container as: uid (None when it cannot
    be known from the manifests and our Dockerfile), where that came from,
    runAsNonRoot, and the privilege settings."""
    csc = container.get("securityContext") or {}
    psc = pod_spec.get("securityContext") or {}
    if "runAsUser" in csc:
        uid, source = csc["runAsUser"], "container runAsUser"
    elif "runAsUser" in psc:
        uid, source = psc["runAsUser"], "pod runAsUser"
    elif is_own_image(container.get("image", "")):
        uid, source = image_uid, "image USER in deploy/Dockerfile"
    else:
        uid, source = None, f"unknown: no runAsUser and {container.get('image')} is not our image"
    non_root = csc["runAsNonRoot"] if "runAsNonRoot" in csc else psc.get("runAsNonRoot")
    caps = csc.get("capabilities") or {}
    return {
        "uid": uid,
        "source": source,
        "runAsNonRoot": non_root,
        "privileged": csc.get("privileged") is True,
        "allowPrivilegeEscalation": csc.get("allowPrivilegeEscalation"),
        "drop": caps.get("drop") or [],
        "add": caps.get("add") or [],
    }


def effective_users(objs, image_uid):
    """{(kind, workload, container): effective_user(...)} for every container,
    init containers included."""
    out = {}
    for o in objs:
        if o.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec_of(o)
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            out[(o["kind"], o["metadata"]["name"], c["name"])] = effective_user(spec, c, image_uid)
    return out


def check_users(r, name, objs, image_uid):
    users = effective_users(objs, image_uid)
    if any(k[0] == "DaemonSet" for k in users):
        node = ("DaemonSet", "flashblade-csi-node", "flashblade-csi")
        r.check(node in users, f"{name}: the node DaemonSet has the flashblade-csi node-plugin container")
    for key, u in sorted(users.items()):
        what = f"{name}: {key[0]}/{key[1]} container {key[2]}"
        desc = f"uid {u['uid']} from {u['source']}, runAsNonRoot {u['runAsNonRoot']}"
        if u["runAsNonRoot"] is True and u["uid"] == 0:
            r.check(False, f"{what} would not start: runAsNonRoot with uid 0")
            continue
        policy = ROOT_POLICY.get(key)
        if policy is None:
            r.check(u["uid"] is not None and u["uid"] != 0 and u["runAsNonRoot"] is True and not u["privileged"],
                    f"{what} runs as non-root ({desc})")
            continue
        kind, why = policy
        # Root must be asked for explicitly, never inherited from an image.
        explicit_root = u["uid"] == 0 and u["source"] == "container runAsUser" and u["runAsNonRoot"] is False
        if kind == "mount":
            r.check(explicit_root and u["privileged"], f"{what} runs as root, privileged: {why} ({desc})")
        else:
            allowed_add = ["CHOWN"] if kind == "root-chown" else []
            r.check(explicit_root and not u["privileged"] and u["allowPrivilegeEscalation"] is False
                    and u["drop"] == ["ALL"] and sorted(u["add"]) == allowed_add,
                    f"{what} is root with capabilities {allowed_add or 'none'} only: {why} ({desc})")


def check_rendered(r, name, objs):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    for o in objs:
        why = validate_object(o)
        r.check(why is None, f"{name}: {o['kind']}/{o['metadata'].get('name')} is valid" + (f" ({why})" if why else ""))
    for sc in by_kind.get("StorageClass", []):
        r.check(sc.get("provisioner") == DRIVER, f"{name}: StorageClass {sc['metadata']['name']} uses {DRIVER}")
        rules = sc.get("parameters", {}).get("exportRules", "")
        r.check(not wildcard(rules), f"{name}: StorageClass {sc['metadata']['name']} has no wildcard export rule")
    for vsc in by_kind.get("VolumeSnapshotClass", []):
        r.check(vsc.get("driver") == DRIVER, f"{name}: VolumeSnapshotClass {vsc['metadata']['name']} uses {DRIVER}")
    for cr in by_kind.get("ClusterRole", []):
        secrets = [rule for rule in cr.get("rules", []) if "secrets" in rule.get("resources", [])]
        r.check(not secrets, f"{name}: ClusterRole {cr['metadata']['name']} grants no cluster-wide Secret access")
    for cm in by_kind.get("ConfigMap", []):
        if "config.toml" in cm.get("data", {}):
            cfg = tomllib.loads(cm["data"]["config.toml"])
            for a in cfg.get("array", []):
                r.check(not a.get("allow_wildcard_export", False), f"{name}: array {a.get('name')} forbids wildcard exports")
                r.check(not wildcard(a.get("default_export_rules", "")), f"{name}: array {a.get('name')} default rules are not a wildcard")
    for d in by_kind.get("Deployment", []):
        if d["metadata"]["name"] != "flashblade-csi-controller":
            continue
        spec, cs = containers(d)
        r.check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: controller runs as non-root")
        for c in cs:
            sc = c.get("securityContext", {})
            r.check(
                sc.get("readOnlyRootFilesystem") is True and sc.get("capabilities", {}).get("drop") == ["ALL"],
                f"{name}: controller container {c['name']} is read-only with capabilities dropped",
            )
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        r.check("secret" in volumes.get("credentials", {}), f"{name}: controller gets the token as a mounted Secret")
    for ds in by_kind.get("DaemonSet", []):
        spec, cs = containers(ds)
        driver = cs[0]
        r.check(spec.get("hostNetwork") is True, f"{name}: node plugin uses the host network")
        r.check(driver.get("securityContext", {}).get("privileged") is True, f"{name}: node driver container is privileged")
        props = [m.get("mountPropagation") for m in driver.get("volumeMounts", []) if m["mountPath"] == "/var/lib/kubelet"]
        r.check(props == ["Bidirectional"], f"{name}: kubelet dir is mounted with Bidirectional propagation")
        r.check(not any("secret" in v for v in spec.get("volumes", [])), f"{name}: node plugin mounts no Secret")
    check_users(r, name, objs, dockerfile_user())
    for o in by_kind.get("Deployment", []) + by_kind.get("DaemonSet", []):
        for c in containers(o)[1]:
            image = c["image"]
            pinned = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
            if name.endswith("base") and image == "flashblade-csi":
                continue  # the overlays set it
            r.check(pinned, f"{name}: image {image} is pinned")


def jupyterhub_wiring(r, objs, values, storage_classes):
    pvs = [o for o in objs if o["kind"] == "PersistentVolume"]
    pvcs = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    if not r.check(len(pvs) == 1 and len(pvcs) == 1, "jupyterhub: one dataset PV and one PVC"):
        return
    pv, pvc = pvs[0], pvcs[0]
    ref = pv["spec"].get("claimRef", {})
    r.check(
        ref.get("name") == pvc["metadata"]["name"] and ref.get("namespace") == pvc["metadata"].get("namespace"),
        "jupyterhub: PV claimRef names the dataset PVC",
    )
    r.check(pvc["spec"].get("volumeName") == pv["metadata"]["name"], "jupyterhub: PVC volumeName names the PV")
    r.check(pv["spec"].get("accessModes") == ["ReadOnlyMany"], "jupyterhub: PV is ReadOnlyMany")
    r.check(pvc["spec"].get("accessModes") == ["ReadOnlyMany"], "jupyterhub: PVC is ReadOnlyMany")
    r.check(pv["spec"].get("persistentVolumeReclaimPolicy") == "Retain", "jupyterhub: PV is Retain")
    r.check(pv["spec"].get("storageClassName") == "" and pvc["spec"].get("storageClassName") == "", "jupyterhub: static binding (no class)")
    csi = pv["spec"].get("csi", {})
    r.check(csi.get("driver") == DRIVER and csi.get("readOnly") is True, "jupyterhub: PV is a read-only volume of the driver")
    r.check(re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,19}/)?[A-Za-z0-9][A-Za-z0-9_-]{0,62}", csi.get("volumeHandle", "")) is not None,
            "jupyterhub: volumeHandle is <array>/<fs-name> or <fs-name>")
    storage = values.get("singleuser", {}).get("storage", {})
    r.check(storage.get("dynamic", {}).get("storageClass") == "fb-home", "jupyterhub: homes use fb-home")
    r.check("fb-home" in storage_classes, "jupyterhub: fb-home is a StorageClass of the driver")
    vols = [v for v in storage.get("extraVolumes", []) if v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]]
    if not r.check(len(vols) == 1, "jupyterhub: values mount the dataset PVC by its claim name"):
        return
    r.check(vols[0]["persistentVolumeClaim"].get("readOnly") is True, "jupyterhub: dataset volume is read-only in values")
    mounts = [m for m in storage.get("extraVolumeMounts", []) if m.get("name") == vols[0]["name"]]
    r.check(len(mounts) >= 1 and all(m.get("readOnly") is True for m in mounts), "jupyterhub: every dataset mount is read-only")


def token_scan(r, files):
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        r.check(TOKEN_RE.search(text) is None, f"no real-looking API token in {os.path.relpath(path, ROOT)}")


def load_values():
    with open(os.path.join(DEPLOY, "examples", "jupyterhub", "values.yaml")) as f:
        return yaml.safe_load(f)


def main():
    r = Results()
    rendered = {}
    for k in kustomizations():
        try:
            rendered[k] = render(k)
            r.check(True, f"{k} renders")
        except RuntimeError as e:
            r.check(False, f"{k} renders: {e}")
    for k, objs in rendered.items():
        check_rendered(r, k, objs)
    with open(os.path.join(DEPLOY, "kubernetes", "base", "secret.example.yaml")) as f:
        example = yaml.safe_load(f)
    why = validate_object(example)
    r.check(why is None, "secret.example.yaml is a valid Secret" + (f" ({why})" if why else ""))
    r.check(all("REPLACE" in v for v in example.get("stringData", {}).values()), "secret.example.yaml holds placeholders only")
    classes = {o["metadata"]["name"] for o in rendered.get("deploy/kubernetes/base", []) if o["kind"] == "StorageClass"}
    jupyterhub_wiring(r, rendered.get("deploy/examples/jupyterhub", []), load_values(), classes)
    files = [p for p in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True) if os.path.isfile(p)]
    token_scan(r, files)
    print(f"deploy: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


def self_test():
    """Each broken input must make at least one check fail."""
    base = render("deploy/kubernetes/base")
    jh = render("deploy/examples/jupyterhub")
    values = load_values()
    classes = {"fb-home"}
    cases = []

    def broken_jh(mutate):
        objs, vals = copy.deepcopy(jh), copy.deepcopy(values)
        mutate(objs, vals)
        return lambda r: jupyterhub_wiring(r, objs, vals, classes)

    def pvc(objs):
        return next(o for o in objs if o["kind"] == "PersistentVolumeClaim")

    def pv(objs):
        return next(o for o in objs if o["kind"] == "PersistentVolume")

    cases.append(("claimRef names another claim", broken_jh(lambda o, v: pv(o)["spec"]["claimRef"].update(name="other"))))
    cases.append(("PVC renamed", broken_jh(lambda o, v: pvc(o)["metadata"].update(name="renamed"))))
    cases.append(("dataset mounted read-write", broken_jh(lambda o, v: v["singleuser"]["storage"]["extraVolumeMounts"][0].update(readOnly=False))))
    cases.append(("values claim name differs", broken_jh(lambda o, v: v["singleuser"]["storage"]["extraVolumes"][0]["persistentVolumeClaim"].update(claimName="data"))))
    cases.append(("PV read-write", broken_jh(lambda o, v: pv(o)["spec"].update(accessModes=["ReadWriteMany"]))))

    def broken_base(mutate):
        objs = copy.deepcopy(base)
        mutate(objs)
        return lambda r: check_rendered(r, "self-test", objs)

    def sc(objs):
        return next(o for o in objs if o["kind"] == "StorageClass")

    cases.append(("wildcard export rule", broken_base(lambda o: sc(o)["parameters"].update(exportRules="*(rw,no_root_squash)"))))
    cases.append(("unknown field (strict)", broken_base(lambda o: sc(o).update(bogusField=1))))
    cases.append(("secrets in a ClusterRole", broken_base(
        lambda o: next(x for x in o if x["kind"] == "ClusterRole")["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}))))
    cases.append(("writable controller root", broken_base(
        lambda o: next(x for x in o if x["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False))))
    def node_plugin(o):
        ds = next(x for x in o if x["kind"] == "DaemonSet")
        return next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "flashblade-csi")

    def controller_pod(o):
        return next(x for x in o if x["kind"] == "Deployment")["spec"]["template"]["spec"]

    # The image's USER (65532) applies when the manifest says nothing.
    cases.append(("node plugin without runAsUser 0", broken_base(lambda o: node_plugin(o)["securityContext"].pop("runAsUser"))))
    cases.append(("node plugin runAsUser 1000", broken_base(lambda o: node_plugin(o)["securityContext"].update(runAsUser=1000))))
    cases.append(("node plugin not privileged", broken_base(lambda o: node_plugin(o)["securityContext"].update(privileged=False))))
    cases.append(("controller pod as root", broken_base(lambda o: controller_pod(o)["securityContext"].update(runAsUser=0, runAsNonRoot=False))))
    cases.append(("controller container as root", broken_base(
        lambda o: controller_pod(o)["containers"][0]["securityContext"].update(runAsUser=0, runAsNonRoot=False))))
    cases.append(("controller sidecar without a user", broken_base(
        lambda o: [controller_pod(o)["securityContext"].pop(k) for k in ("runAsUser", "runAsNonRoot")])))
    cases.append(("registrar with a capability", broken_base(
        lambda o: next(c for c in next(x for x in o if x["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"]
                       if c["name"] == "node-driver-registrar")["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]))))

    def root_image(r):
        # Our image without a USER line is root: the controller (which has a
        # pod runAsUser) stays fine, a container relying on the image is not.
        objs = copy.deepcopy(base)
        controller_pod(objs)["securityContext"].pop("runAsUser")
        path = os.path.join(ROOT, "target", "Dockerfile-selftest")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("FROM debian:bookworm-slim AS build\nUSER 65532\nFROM debian:bookworm-slim\nENTRYPOINT [\"x\"]\n")
        uid = dockerfile_user(path)
        os.remove(path)
        check_users(r, "self-test", objs, uid)

    cases.append(("image USER missing in the final stage", root_image))
    cases.append(("bad snapshot class", broken_base(lambda o: next(x for x in o if x["kind"] == "VolumeSnapshotClass").update(deletionPolicy="Sometimes"))))

    def with_token(r):
        path = os.path.join(ROOT, "target", "token-selftest.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("api-token: T-" + "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b")
        token_scan(r, [path])
        os.remove(path)

    cases.append(("real-looking token", with_token))
    bad = 0
    for what, run in cases:
        r = Results(quiet=True)
        run(r)
        if r.failed == 0:
            print(f"self-test: the checks missed: {what}")
            bad += 1
    print(f"deploy self-test: {len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(self_test() if "--self-test" in sys.argv else main())
