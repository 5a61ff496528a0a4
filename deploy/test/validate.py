"""Validates deploy/: every kustomization and every rendering of the Helm
chart (the Helm v4 engine, through deploy/test/chartlib.py) passes the
Kubernetes schemas in strict mode and helm lint --strict; the values schema
refuses typos; the driver, JupyterHub and Zero-to-JupyterHub wiring is
consistent; every container runs as the user it must; every workload meets
the Pod Security level of its namespace (podsecurity.py). Prints one line per
check and 'N passed, N failed' at the end.

--self-test feeds deliberately broken inputs to the checks and expects each
to be caught, so a check that cannot fail is itself a failure."""

import base64
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartlib  # noqa: E402
import kubecheck  # noqa: E402
import podsecurity  # noqa: E402
import kubespawner_objects  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helm"))
import render_kustomize  # noqa: E402

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


def render(rel):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, rel)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# Built-in APIs newer than the oldest version validated: checked only
# against the versions that serve them (the chart renders them only there).
SERVED_FROM = {("storage.k8s.io/v1", "VolumeAttributesClass"): (1, 34)}


def validate_object(obj):
    """Returns None when valid, else the reason."""
    since = SERVED_FROM.get((obj.get("apiVersion"), obj.get("kind")))
    for version in K8S_VERSIONS:
        if since and tuple(int(x) for x in version.split(".")) < since:
            continue
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


def kubelet_dir(container):
    for a in container.get("args", []):
        if a.startswith("--kubelet-dir="):
            return a.split("=", 1)[1]
    return "/var/lib/kubelet"


def driver_config(objs):
    """The parsed config.toml of a rendering (None when it has none)."""
    for cm in objs:
        if cm["kind"] == "ConfigMap" and "config.toml" in cm.get("data", {}):
            return tomllib.loads(cm["data"]["config.toml"])
    return None


# --- the driver's config.toml ---------------------------------------------------
#
# The driver refuses unknown keys (serde deny_unknown_fields). The keys it
# knows are read from its own source, src/config.rs (the File* structs), so
# the chart can never emit a key the driver would refuse, and no second list
# is kept here.
DURATION_RE = re.compile(r"[0-9]+(ms|s|m|h)")


def driver_binary():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "debug", "flashblade-csi")


_SCHEMA = {}


def driver_schema():
    """What `flashblade-csi schema` prints: the config file's keys and the
    input rules of the build (scripts/test builds it before these checks);
    a message when it cannot be had."""
    if "doc" not in _SCHEMA:
        try:
            out = subprocess.run([driver_binary(), "schema"], capture_output=True, text=True, check=True)
            _SCHEMA["doc"] = json.loads(out.stdout)
        except (OSError, subprocess.CalledProcessError, ValueError) as e:
            _SCHEMA["doc"] = f"cannot run {driver_binary()} schema (build the driver first): {e}"
    return _SCHEMA["doc"]


def driver_config_keys():
    """{section: set of keys} of config.toml, from the driver itself."""
    doc = driver_schema()
    if isinstance(doc, str):
        return doc
    return {section: set(keys) for section, keys in doc["config"].items()}


def check_config(r, name, cfg, keys):
    if not r.check(cfg is not None, f"{name}: has the driver's config.toml"):
        return
    if not r.check(isinstance(keys, dict), f"{name}: the driver's config keys are known ({keys if isinstance(keys, str) else 'flashblade-csi schema'})"):
        return
    unknown = [k for k in cfg if k not in keys[""]]
    for section in ("timeouts", "limits", "log"):
        unknown += [f"{section}.{k}" for k in cfg.get(section, {}) if k not in keys[section]]
    for a in cfg.get("array", []):
        unknown += [f"array[{a.get('name')}].{k}" for k in a if k not in keys["array"]]
    r.check(not unknown, f"{name}: config.toml has only keys the driver knows" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    bad = [f"{k}={v}" for k, v in cfg.get("timeouts", {}).items() if not DURATION_RE.fullmatch(str(v))]
    r.check(not bad, f"{name}: config.toml timeouts are durations" + (f" ({', '.join(bad)})" if bad else ""))
    names = [a.get("name") for a in cfg.get("array", [])]
    r.check(len(names) == len(set(names)), f"{name}: array names are unique")
    if len(names) > 1 or "default_array" in cfg:
        r.check(cfg.get("default_array") in names, f"{name}: default_array names a configured array (required with several)")


def check_credentials(r, name, objs, cfg):
    """Every token / CA file the config names is a key of a Secret mounted
    at that directory in the controller's driver container; no token value
    appears in a ConfigMap."""
    dep = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "flashblade-csi-controller"), None)
    if dep is None or cfg is None:
        return
    spec = pod_spec_of(dep)
    driver = next(c for c in spec["containers"] if c["name"] == "flashblade-csi")
    mounts = {m["mountPath"]: m["name"] for m in driver.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    for a in cfg.get("array", []):
        for key in ("api_token_file", "ca_file"):
            path = a.get(key)
            if path is None:
                r.check(key == "ca_file", f"{name}: array {a.get('name')} has an api_token_file")
                continue
            directory, file = os.path.split(path)
            vol = volumes.get(mounts.get(directory), {})
            secret_name = vol.get("secret", {}).get("secretName")
            ok = secret_name is not None
            where = f"Secret {secret_name}"
            if ok and secret_name in secrets:
                s = secrets[secret_name]
                ok = file in s.get("data", {}) or file in s.get("stringData", {})
            elif ok:
                where += " (made by the admin)"
            r.check(ok, f"{name}: array {a.get('name')} {key} {path} is a key of the {where} mounted in the controller")
    tokens = []
    for s in secrets.values():
        for k, v in s.get("data", {}).items():
            if k == "api-token":
                tokens.append(base64.b64decode(v).decode(errors="replace"))
        if "api-token" in s.get("stringData", {}):
            tokens.append(s["stringData"]["api-token"])
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        text = json.dumps(cm)
        r.check(not any(t and t in text for t in tokens) and "api_token =" not in text,
                f"{name}: ConfigMap {cm['metadata']['name']} holds no API token")


def check_rendered(r, name, objs):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    for o in objs:
        why = validate_object(o)
        r.check(why is None, f"{name}: {o['kind']}/{o['metadata'].get('name')} is valid" + (f" ({why})" if why else ""))
    drivers = {o["metadata"]["name"] for o in by_kind.get("CSIDriver", [])} or {DRIVER}
    for sc in by_kind.get("StorageClass", []):
        r.check(sc.get("provisioner") in drivers, f"{name}: StorageClass {sc['metadata']['name']} uses the driver")
        rules = sc.get("parameters", {}).get("exportRules", "")
        r.check(not wildcard(rules), f"{name}: StorageClass {sc['metadata']['name']} has no wildcard export rule")
    for vsc in by_kind.get("VolumeSnapshotClass", []):
        r.check(vsc.get("driver") in drivers, f"{name}: VolumeSnapshotClass {vsc['metadata']['name']} uses the driver")
    for cr in by_kind.get("ClusterRole", []):
        secrets = [rule for rule in cr.get("rules", []) if "secrets" in rule.get("resources", [])]
        r.check(not secrets, f"{name}: ClusterRole {cr['metadata']['name']} grants no cluster-wide Secret access")
    cfg = driver_config(objs)
    for a in (cfg or {}).get("array", []):
        r.check(not a.get("allow_wildcard_export", False), f"{name}: array {a.get('name')} forbids wildcard exports")
        r.check(not wildcard(a.get("default_export_rules", "")), f"{name}: array {a.get('name')} default rules are not a wildcard")
    if by_kind.get("Deployment") or by_kind.get("DaemonSet"):
        check_config(r, name, cfg, driver_config_keys())
        check_credentials(r, name, objs, cfg)
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
    for ds in by_kind.get("DaemonSet", []):
        spec, cs = containers(ds)
        driver = cs[0]
        kdir = kubelet_dir(driver)
        r.check(spec.get("hostNetwork") is True, f"{name}: node plugin uses the host network")
        r.check(driver.get("securityContext", {}).get("privileged") is True, f"{name}: node driver container is privileged")
        props = [m.get("mountPropagation") for m in driver.get("volumeMounts", []) if m["mountPath"] == kdir]
        r.check(props == ["Bidirectional"], f"{name}: kubelet dir {kdir} is mounted at the same path with Bidirectional propagation")
        host = {v["name"]: v.get("hostPath", {}).get("path") for v in spec.get("volumes", [])}
        mount_of = {m["name"]: m["mountPath"] for m in driver.get("volumeMounts", [])}
        r.check(host.get(next((n for n, p in mount_of.items() if p == kdir), None)) == kdir,
                f"{name}: the kubelet dir mount is the host's {kdir}")
        registrar = next((c for c in cs if c["name"] == "node-driver-registrar"), {})
        reg_path = next((a.split("=", 1)[1] for a in registrar.get("args", []) if a.startswith("--kubelet-registration-path=")), "")
        r.check(reg_path.startswith(kdir + "/plugins/") and host.get("socket-dir") == os.path.dirname(reg_path),
                f"{name}: the registration path {reg_path} is the host path of the plugin's socket directory")
        r.check(host.get("registration-dir") == kdir + "/plugins_registry", f"{name}: registrar writes to {kdir}/plugins_registry")
        r.check(not any("secret" in v for v in spec.get("volumes", [])), f"{name}: node plugin mounts no Secret")
    check_users(r, name, objs, dockerfile_user())
    for o in by_kind.get("Deployment", []) + by_kind.get("DaemonSet", []):
        for c in pod_spec_of(o).get("initContainers", []) + containers(o)[1]:
            image = c["image"]
            pinned = "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"))
            r.check(pinned, f"{name}: image {image} is pinned")


def jupyterhub_wiring(r, objs, label="jupyterhub"):
    """The recipe's static dataset volume. What a user's claim and pod ask
    of it is checked on KubeSpawner's own objects (kubespawner_objects)."""
    pvs = [o for o in objs if o["kind"] == "PersistentVolume"]
    pvcs = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    if not r.check(len(pvs) == 1 and len(pvcs) == 1, f"{label}: one dataset PV and one PVC"):
        return
    static_volume_checks(r, label, pvs[0], pvcs[0])


def static_volume_checks(r, label, pv, pvc):
    what = f"{label}: dataset {pv['metadata']['name']}"
    ref = pv["spec"].get("claimRef", {})
    r.check(
        ref.get("name") == pvc["metadata"]["name"] and ref.get("namespace") == pvc["metadata"].get("namespace"),
        f"{what}: PV claimRef names the dataset PVC",
    )
    r.check(pvc["spec"].get("volumeName") == pv["metadata"]["name"], f"{what}: PVC volumeName names the PV")
    r.check(pv["spec"].get("accessModes") == ["ReadOnlyMany"], f"{what}: PV is ReadOnlyMany")
    r.check(pvc["spec"].get("accessModes") == ["ReadOnlyMany"], f"{what}: PVC is ReadOnlyMany")
    r.check(pv["spec"].get("persistentVolumeReclaimPolicy") == "Retain", f"{what}: PV is Retain")
    r.check(pv["spec"].get("storageClassName") == "" and pvc["spec"].get("storageClassName") == "", f"{what}: static binding (no class)")
    csi = pv["spec"].get("csi", {})
    r.check(csi.get("driver") == DRIVER and csi.get("readOnly") is True, f"{what}: PV is a read-only volume of the driver")
    r.check(re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62}/)?[A-Za-z0-9][A-Za-z0-9_-]{0,62}", csi.get("volumeHandle", "")) is not None,
            f"{what}: volumeHandle is <array>/<fs-name> or <fs-name>")


DOCS = ["deploy/README.md", "deploy/examples/jupyterhub/README.md", "deploy/helm/flashblade-csi/README.md", "docs/migrating-from-pso.md"]
COMMAND_WORDS = ("kubectl ", "helm ", "bash ", "deploy/", "docker ", "kind ")
# Commands that need nothing but this checkout, run as written. The rest
# need a cluster (or an engine): for those every deploy/ path must exist.
OFFLINE = ("kubectl kustomize deploy/", "deploy/helm/template")


def doc_commands(path):
    """Shell commands in a Markdown file's indented code blocks, with
    backslash continuations joined."""
    cmds, pending = [], ""
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            if not line.startswith("    ") and not pending:
                continue
            text = line.strip()
            if pending:
                text = pending + " " + text
            elif not text.startswith(COMMAND_WORDS):
                continue
            if text.endswith("\\"):
                pending = text[:-1].strip()
                continue
            pending = ""
            cmds.append(text)
    return cmds


def check_doc_commands(r, docs=DOCS):
    for doc in docs:
        for cmd in doc_commands(doc):
            paths = [p.rstrip(".,;:)`'") for p in re.findall(r"(?<![\w/.-])deploy/[^\s'\"`]*", cmd)]
            missing = [p for p in paths if not os.path.exists(os.path.join(ROOT, p))]
            r.check(not missing, f"{doc}: `{cmd[:70]}` names existing paths" + (f" (missing: {', '.join(missing)})" if missing else ""))
            if cmd.startswith(OFFLINE):
                out = subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True, text=True)
                r.check(out.returncode == 0 and out.stdout.strip() != "",
                        f"{doc}: `{cmd[:70]}` runs here" + (f" ({out.stderr.strip()[-200:]})" if out.returncode else ""))


def token_scan(r, files):
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        r.check(TOKEN_RE.search(text) is None, f"no real-looking API token in {os.path.relpath(path, ROOT)}")


def load_values():
    with open(os.path.join(DEPLOY, "examples", "jupyterhub", "jupyterhub-values.yaml")) as f:
        return yaml.safe_load(f)


# --- Kustomize -----------------------------------------------------------------

SNAPSHOT_OVERLAY = "target/deploy-kustomize/production-with-snapshots"


def kustomizations():
    """Every kustomization under deploy/ (components are rendered through
    the overlay below), plus the production overlay with the snapshots
    component, as an admin with the snapshot CRDs would use it."""
    found = []
    for path in glob.glob(os.path.join(DEPLOY, "**", "kustomization.yaml"), recursive=True):
        with open(path) as f:
            if (yaml.safe_load(f) or {}).get("kind") == "Component":
                continue
        found.append(os.path.relpath(os.path.dirname(path), ROOT))
    overlay = os.path.join(ROOT, SNAPSHOT_OVERLAY)
    os.makedirs(overlay, exist_ok=True)
    with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
        up = os.path.relpath(ROOT, overlay)
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                f"resources:\n  - {up}/deploy/kubernetes/overlays/production\n"
                f"components:\n  - {up}/deploy/kubernetes/components/snapshots\n"
                f"  - {up}/deploy/kubernetes/components/volume-attributes-classes\n")
    return sorted(found) + [SNAPSHOT_OVERLAY]


# --- Helm ----------------------------------------------------------------------

def helm_value_sets():
    """(label, values) the chart is rendered with: its defaults, every file
    in deploy/test/values/, and the JupyterHub recipe's chart values."""
    sets = [("defaults", {})]
    for path in sorted(glob.glob(os.path.join(DEPLOY, "test", "values", "*.yaml"))):
        sets.append((os.path.basename(path)[:-5], chartlib.load_values(path)))
    sets.append(("jupyterhub recipe", chartlib.load_values(os.path.join(DEPLOY, "examples", "jupyterhub", "flashblade-csi-values.yaml"))))
    return sets


def merged_values(values, chart=None):
    with helm.Chart.load(chart or chartlib.CHART) as c:
        return c.merge_values(values)


def expected_image(v):
    with helm.Chart.load(chartlib.CHART) as c:
        app = c.metadata.get("appVersion")
    img = v["image"]
    # PSO's image block (image.name) carries PSO's version in image.tag.
    tag = "" if "name" in img else img.get("tag")
    return f"{img['repository']}@{img['digest']}" if img.get("digest") else f"{img['repository']}:{tag or app}"


# --- PSO values ------------------------------------------------------------------
#
# The chart accepts a PSO 5.x (pure-csi) values file as it is
# (docs/migrating-from-pso.md). What it must make of one is computed here a
# second time, in Python, from the merged values, and compared with the
# rendering: the arrays, the kubelet dir, the log filter, the classes, the
# keys NOTES must list as ignored.

def is_pso(v):
    return isinstance(v.get("arrays"), dict)


def pso_arrays(v):
    """Our arrays list for PSO values (the values unchanged otherwise)."""
    if not is_pso(v):
        return v["arrays"]
    prefix = str((v.get("namespace") or {}).get("pure", "k8s"))
    rules = (v.get("flashblade") or {}).get("exportRules")
    names = (v.get("pso") or {}).get("arrayNames") or []
    extra = []
    for sc in v["storageClasses"]:
        p = sc["parameters"].get("namePrefix")
        if p and p != prefix and p not in extra:
            extra.append(p)
    out = []
    for i, fb in enumerate(v["arrays"].get("FlashBlades") or []):
        mgmt = str(fb["MgmtEndPoint"])
        if mgmt.count(":") > 1 and not mgmt.startswith("["):
            mgmt = f"[{mgmt}]"
        a = {"name": names[i] if names else f"fb{i + 1}", "managementUrl": f"https://{mgmt}",
             "nfsEndpoint": str(fb.get("NFSEndPoint") or fb.get("NfsEndPoint")), "existingSecret": "",
             "apiToken": str(fb["APIToken"]), "namePrefix": prefix}
        if extra:
            a["extraNamePrefixes"] = extra
        if rules:
            a["defaultExportRules"] = rules
        if fb.get("Labels"):
            # PSO allowed numbers (and YAML booleans) as label values; Go prints them so.
            a["labels"] = {k: (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in fb["Labels"].items()}
        out.append(a)
    return out


def expected_kubelet_dir(v):
    return ((v.get("orchestrator") or {}).get("basePath") or "").rstrip("/") or v["node"]["kubeletDir"]


def expected_log_filter(v):
    debug = (v.get("app") or {}).get("debug") is True
    return "info,flashblade_csi=debug" if debug and v["log"]["level"] == "info" else v["log"]["level"]


def expected_classes(v):
    """{class name: (snapshotDirectory parameter or None, is default)}."""
    snap = (v.get("flashblade") or {}).get("snapshotDirectoryEnabled")
    snap = None if snap is None else str(snap).lower()
    sc = v.get("storageclass") or {}
    make_default = sc.get("isPureDefault") is True and sc.get("pureBackend") == "file" \
        and not any(c.get("isDefault") for c in v["storageClasses"])
    out = {}
    for i, c in enumerate(v["storageClasses"]):
        p = c["parameters"].get("snapshotDirectory")
        p = snap if p is None else str(p).lower()
        out[c["name"]] = (p, bool(c.get("isDefault")) or (make_default and i == 0))
    return out


def pso_ignored(v):
    """The PSO keys present in the values that the chart ignores."""
    out = []
    if "name" in v["image"]:
        out.append("image.name")
        if v["image"].get("tag"):
            out.append("image.tag")
    if is_pso(v) and "FlashArrays" in v["arrays"]:
        out.append("arrays.FlashArrays")
    out += [k for k in ("csi", "storagetopology", "clusterrolebinding", "flasharray") if k in v]
    sc = v.get("storageclass") or {}
    if "createBuiltIn" in sc:
        out.append("storageclass.createBuiltIn")
    if sc.get("isPureDefault") and sc.get("pureBackend") != "file":
        out.append("storageclass.isPureDefault")
    elif "pureBackend" in sc and not sc.get("isPureDefault"):
        out.append("storageclass.pureBackend")
    if "name" in (v.get("orchestrator") or {}):
        out.append("orchestrator.name")
    return out


def notes_ignored(notes):
    """The keys NOTES.txt lists under "PSO keys ignored by this chart"."""
    lines = notes.splitlines()
    heading = "PSO keys ignored by this chart (docs/migrating-from-pso.md):"
    if heading not in lines:
        return []
    start = lines.index(heading) + 1
    keys = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        keys.append(line.split()[0])
    return keys


def check_pso(r, name, v, objs, notes):
    """PSO values: each FlashBlade is an [[array]] with the mapped fields,
    its token is in the Secret mounted for it and in no ConfigMap, the
    classes carry PSO's snapshotDirectory default (and default class), the
    pods PSO's placement, and NOTES lists exactly the ignored keys present."""
    cfg = driver_config(objs) or {}
    arrays = {a["name"]: a for a in cfg.get("array", [])}
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "flashblade-csi-controller")
    ds = next(o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "flashblade-csi-node")
    mounts = {m["mountPath"]: m["name"] for m in pod_spec_of(dep)["containers"][0].get("volumeMounts", [])}
    volumes = {x["name"]: x for x in pod_spec_of(dep).get("volumes", [])}
    secrets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}
    configmaps = json.dumps([o for o in objs if o["kind"] == "ConfigMap"])
    for want in pso_arrays(v):
        got = arrays.get(want["name"])
        what = f"{name}: PSO FlashBlade {want['name']}"
        if not r.check(got is not None, f"{what} is an [[array]] of config.toml"):
            continue
        r.check(got.get("management_url") == want["managementUrl"], f"{what}: management_url {want['managementUrl']}")
        r.check(got.get("nfs_endpoint") == want["nfsEndpoint"], f"{what}: nfs_endpoint {want['nfsEndpoint']}")
        r.check(got.get("name_prefix") == want["namePrefix"], f"{what}: name_prefix {want['namePrefix']} (namespace.pure)")
        r.check(got.get("labels", {}) == want.get("labels", {}), f"{what}: labels {want.get('labels', {})}")
        r.check(got.get("default_export_rules") == want.get("defaultExportRules"),
                f"{what}: default_export_rules {want.get('defaultExportRules')} (flashblade.exportRules)")
        r.check(got.get("extra_name_prefixes", []) == want.get("extraNamePrefixes", []),
                f"{what}: extra_name_prefixes are the classes' other prefixes")
        directory, key = os.path.split(got.get("api_token_file", ""))
        secret = secrets.get(volumes.get(mounts.get(directory), {}).get("secret", {}).get("secretName"), {})
        token = base64.b64decode(secret.get("data", {}).get(key, "")).decode(errors="replace")
        r.check(token == want["apiToken"], f"{what}: its APIToken is the {key} of the Secret mounted at {directory}")
        r.check(want["apiToken"] not in configmaps, f"{what}: its APIToken is in no ConfigMap")
    r.check(len(arrays) == len(pso_arrays(v)), f"{name}: one [[array]] per FlashBlade, none for FlashArrays")
    classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "StorageClass"}
    for cname, (snap, default) in expected_classes(v).items():
        sc = classes.get(cname, {})
        r.check(sc.get("parameters", {}).get("snapshotDirectory") == snap,
                f"{name}: StorageClass {cname} snapshotDirectory {snap} (flashblade.snapshotDirectoryEnabled unless the class sets it)")
        is_default = sc.get("metadata", {}).get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        r.check(is_default is default, f"{name}: StorageClass {cname} {'is' if default else 'is not'} the default class")
    for kind_, obj, pso_key in (("node", ds, "mounter"), ("controller", dep, "provisioner")):
        spec = pod_spec_of(obj)
        for field in ("nodeSelector", "tolerations"):
            want = (v.get(pso_key) or {}).get(field) or v[kind_][field]
            r.check((spec.get(field) or type(want)()) == want, f"{name}: {kind_} {field} from {pso_key}.{field} when set, else {kind_}.{field}")
    check_notes_ignored(r, name, v, notes)


def check_notes_ignored(r, name, v, notes):
    r.check(sorted(notes_ignored(notes)) == sorted(pso_ignored(v)),
            f"{name}: NOTES lists the ignored PSO keys present {pso_ignored(v)} (lists {notes_ignored(notes)})")


def check_values_wiring(r, name, v, objs):
    """What the values ask for is what the rendering has."""
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    class_to = {c["name"]: (c.get("parameters") or {}).get("exportTo", v["exportTo"]) for c in v["storageClasses"]}
    nodes_mode = "nodes" in class_to.values()
    csidriver = by_kind.get("CSIDriver", [{}])[0]
    r.check(csidriver.get("metadata", {}).get("name") == v["driverName"], f"{name}: CSIDriver is {v['driverName']}")
    r.check(csidriver.get("spec", {}).get("attachRequired") is nodes_mode,
            f"{name}: CSIDriver attachRequired is {nodes_mode} (classes' exportTo: {sorted(set(class_to.values()))})")
    dep = next(o for o in by_kind["Deployment"] if o["metadata"]["name"] == "flashblade-csi-controller")
    ds = next(o for o in by_kind["DaemonSet"] if o["metadata"]["name"] == "flashblade-csi-node")
    cnames = [c["name"] for c in pod_spec_of(dep)["containers"]]
    r.check(("csi-attacher" in cnames) is nodes_mode, f"{name}: csi-attacher sidecar {'present' if nodes_mode else 'absent'}")
    # The controller's role; the admins' read-only role lists them anyway.
    ctl_rules = [rule for cr in by_kind.get("ClusterRole", []) if cr["metadata"]["name"] == "flashblade-csi-controller"
                 for rule in cr.get("rules", [])]
    # csi-provisioner watches VolumeAttachments in every mode (the driver
    # can always ControllerPublish); only csi-attacher writes them.
    r.check(kubecheck.allows(ctl_rules, "storage.k8s.io", "volumeattachments", "watch"),
            f"{name}: the controller may watch VolumeAttachments (csi-provisioner)")
    writes = kubecheck.allows(ctl_rules, "storage.k8s.io", "volumeattachments", "patch")
    r.check(writes is nodes_mode, f"{name}: the controller {'may' if nodes_mode else 'may not'} patch VolumeAttachments")
    for sc in by_kind.get("StorageClass", []):
        want = class_to.get(sc["metadata"]["name"]) == "nodes"
        r.check(((sc.get("parameters") or {}).get("exportTo") == "nodes") is want,
                f"{name}: StorageClass {sc['metadata']['name']} {'has' if want else 'has no'} exportTo: nodes")
    r.check(sorted(sc["metadata"]["name"] for sc in by_kind.get("StorageClass", [])) == sorted(c["name"] for c in v["storageClasses"]),
            f"{name}: one StorageClass per storageClasses entry")
    snap = v["snapshots"]["enabled"]
    r.check(("csi-snapshotter" in cnames) is snap, f"{name}: csi-snapshotter sidecar {'present' if snap else 'absent'}")
    r.check(len(by_kind.get("VolumeSnapshotClass", [])) == (1 if snap else 0),
            f"{name}: {'one' if snap else 'no'} VolumeSnapshotClass with the snapshot API served")
    image = expected_image(v)
    for o in (dep, ds):
        c = next(c for c in pod_spec_of(o)["containers"] if c["name"] == "flashblade-csi")
        r.check(c["image"] == image, f"{name}: {o['kind']} driver image is {image}")
        metrics = [a for a in c.get("args", []) if a.startswith("--metrics-address=")]
        ports = [p["name"] for p in c.get("ports", [])]
        on = v["metrics"]["enabled"]
        r.check(bool(metrics) is on and ("metrics" in ports) is on,
                f"{name}: {o['kind']} metrics {'on' if on else 'off'}")
        if on and metrics:
            # The flag's port, the named port and the scrape annotation agree.
            want = v["metrics"]["controllerPort" if o["kind"] == "Deployment" else "nodePort"]
            flag_port = int(metrics[0].rsplit(":", 1)[1])
            named = [p["containerPort"] for p in c.get("ports", []) if p["name"] == "metrics"]
            notes = o["spec"]["template"]["metadata"].get("annotations", {})
            r.check(flag_port == want and named == [want] and notes.get("prometheus.io/port") == str(want)
                    and notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/path") == "/metrics",
                    f"{name}: {o['kind']} serves metrics on {want}: flag, port 'metrics' and prometheus.io annotations agree")
            poll = [a for a in c.get("args", []) if a.startswith("--metrics-poll-interval=")]
            expected = [f"--metrics-poll-interval={v['metrics']['pollInterval']}"] if o["kind"] == "Deployment" else []
            r.check(poll == expected, f"{name}: {o['kind']} space poll {'every ' + v['metrics']['pollInterval'] if expected else 'not set (node)'}")
        pulls = [s["name"] for s in pod_spec_of(o).get("imagePullSecrets", [])]
        r.check(pulls == v["image"]["pullSecrets"], f"{name}: {o['kind']} image pull Secrets are {v['image']['pullSecrets']}")
    r.check(dep["spec"]["replicas"] == v["controller"]["replicas"], f"{name}: controller replicas {v['controller']['replicas']}")
    # A lecture logging in: every sidecar sets its Kubernetes client rate
    # (client-go's default, 5/s, made 300 claims take minutes), the
    # provisioner as docs/benchmarks.md says.
    for c in pod_spec_of(dep)["containers"]:
        if c["name"] not in ("csi-provisioner", "csi-resizer", "csi-snapshotter", "csi-attacher"):
            continue
        flags = dict(a.split("=", 1) for a in c.get("args", []) if a.startswith("--kube-api-"))
        r.check("--kube-api-qps" in flags and "--kube-api-burst" in flags,
                f"{name}: {c['name']} sets its client QPS and burst")
        if c["name"] == "csi-provisioner":
            want = v["controller"]["provisioner"]
            r.check(flags.get("--kube-api-qps") == str(want["kubeApiQps"]) and flags.get("--kube-api-burst") == str(want["kubeApiBurst"]),
                    f"{name}: csi-provisioner client QPS/burst {want['kubeApiQps']}/{want['kubeApiBurst']} from the values")
    le = v["controller"]["leaderElection"]["enabled"]
    for c in pod_spec_of(dep)["containers"]:
        if c["name"] in ("csi-provisioner", "csi-resizer", "csi-snapshotter", "csi-attacher"):
            r.check(("--leader-election" in c.get("args", [])) is le, f"{name}: {c['name']} leader election {'on' if le else 'off'}")
    kdir = kubelet_dir(pod_spec_of(ds)["containers"][0])
    r.check(kdir == expected_kubelet_dir(v), f"{name}: node plugin's kubelet dir is {expected_kubelet_dir(v)}")
    cfg = driver_config(objs)
    r.check(cfg["log"] == {"format": v["log"]["format"], "filter": expected_log_filter(v)}, f"{name}: log settings reach config.toml")
    r.check([a["name"] for a in cfg["array"]] == [a["name"] for a in pso_arrays(v)], f"{name}: one [[array]] per arrays entry")
    secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    for a in pso_arrays(v):
        if a.get("apiToken"):
            r.check(f"flashblade-csi-array-{a['name']}" in secrets, f"{name}: array {a['name']}'s token value becomes a Secret")
    pvcs = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in by_kind.get("PersistentVolumeClaim", [])}
    pvs = {o["metadata"]["name"]: o for o in by_kind.get("PersistentVolume", [])}
    r.check(len(pvs) == len(v["datasets"]) == len(pvcs), f"{name}: one PV and one PVC per dataset")
    for d in v["datasets"]:
        pv, pvc = pvs.get(d["name"]), pvcs.get((d["claim"]["namespace"], d["claim"]["name"]))
        if r.check(pv is not None and pvc is not None, f"{name}: dataset {d['name']} rendered"):
            static_volume_checks(r, name, pv, pvc)


# Values the schema must refuse, each with the key its message must name.
TYPOS = [
    ({"imagee": {"repository": "x"}}, "imagee"),
    ({"controller": {"replcas": 3}}, "replcas"),
    ({"arrays": [{"name": "fb01", "managmentUrl": "https://x", "managementUrl": "https://x", "nfsEndpoint": "x", "existingSecret": "s"}]}, "managmentUrl"),
    ({"storageClasses": [{"name": "fb-home", "parameters": {"hardlimit": True}}]}, "hardlimit"),
    ({"snapshots": {"enabled": True, "className": "x", "parameters": {"deletepolicy": "destroy"}}}, "deletepolicy"),
    ({"datasets": [{"name": "d", "fileSystem": "d", "capacity": "1Ti", "claim": {"namespace": "a", "name": "b", "nmespace": "c"}}]}, "nmespace"),
    ({"node": {"resources": {"driver": {"limits": {"memry": "1Gi"}}}}}, "memry"),
    # PSO values: the keys the chart reads are closed too.
    ({"arrays": {"FlashBlades": [{"MgmtEndPoint": "fb.example.com", "APIToken": "t", "NfsEndpoint": "d.example.com"}]}}, "NfsEndpoint"),
    ({"arrays": {"FlashBlade": [{"MgmtEndPoint": "fb.example.com", "APIToken": "t", "NFSEndPoint": "d.example.com"}]}}, "FlashBlade"),
    ({"flashblade": {"snapshotDirectoryEnable": "true"}}, "snapshotDirectoryEnable"),
    ({"pso": {"arrayName": ["a"]}}, "arrayName"),
]
PSO_FB = {"MgmtEndPoint": "fb.example.com", "APIToken": "t", "NFSEndPoint": "fb-data.example.com"}
# Values the templates must refuse (the schema cannot say these), with a
# fragment of the message.
REFUSED = [
    ({"arrays": [{"name": "a", "managementUrl": "https://x", "nfsEndpoint": "x", "existingSecret": "s", "apiToken": "t"}]}, "not both"),
    ({"arrays": [{"name": "a", "managementUrl": "https://x", "nfsEndpoint": "x"}]}, "API token is missing"),
    ({"arrays": [{"name": "a", "managementUrl": "https://x", "nfsEndpoint": "x", "existingSecret": "s"},
                 {"name": "a", "managementUrl": "https://y", "nfsEndpoint": "y", "existingSecret": "s"}]}, "used twice"),
    ({"defaultArray": "nope"}, "defaultArray"),
    ({"storageClasses": [{"name": "x", "parameters": {"array": "nope"}}]}, "is not one of arrays"),
    ({"storageClasses": [{"name": "x", "parameters": {"exportRules": "10.0.0.0/8(rw)", "exportPolicy": "p"}}]}, "exclusive"),
    ({"exportTo": "nodes", "storageClasses": [{"name": "x", "parameters": {"exportRules": "10.0.0.0/8(rw)"}}]}, "exportTo: nodes"),
    ({"controller": {"replicas": 2, "leaderElection": {"enabled": False}}}, "leaderElection"),
    ({"node": {"healthPort": 9808}}, "must differ"),
    # PSO values that cannot be carried over.
    ({"arrays": {"FlashBlades": [{"MgmtEndPoint": "fb.example.com", "APIToken": "t", "NFSEndPoint": "d1.example.com",
                                  "NfsEndPoint": "d2.example.com"}]}}, "NFSEndPoint \"d1.example.com\" and NfsEndPoint \"d2.example.com\" differ"),
    ({"namespace": {"pure": "k8s-prod"}, "arrays": {"FlashBlades": [PSO_FB]}}, "namespace.pure \"k8s-prod\" cannot be kept"),
    ({"arrays": {"FlashArrays": [{"MgmtEndPoint": "fa.example.com", "APIToken": "t"}]}}, "FlashArrays only"),
    ({"arrays": {"FlashBlades": []}}, "no FlashBlade"),
    ({"arrays": {"FlashBlades": [{"MgmtEndPoint": "fb.example.com", "APIToken": "t"}]}}, "NFSEndPoint (or NfsEndPoint)"),
    ({"arrays": {"FlashBlades": [PSO_FB]}, "flashblade": {"exportRules": "*(rw,no_root_squash)"}}, "admits every host"),
    ({"arrays": {"FlashBlades": [PSO_FB]}, "pso": {"arrayNames": ["a", "b"]}}, "pso.arrayNames has 2 names for 1"),
    ({"arrays": {"FlashBlades": [dict(PSO_FB, Labels={"rack": "7 b"})]}}, "is not a label value"),
    ({"arrays": {"FlashBlades": [PSO_FB]}, "orchestrator": {"basePath": "/opt/kubelet"}, "node": {"kubeletDir": "/var/lib/k0s/kubelet"}},
     "orchestrator.basePath"),
]


def schema_holes(node, path="values"):
    """Paths of object schemas that accept keys they do not name."""
    holes = []
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            extra = node.get("additionalProperties")
            if extra is not False and not isinstance(extra, dict):
                holes.append(path)
        for k, sub in node.get("properties", {}).items():
            holes += schema_holes(sub, f"{path}.{k}")
        for key in ("oneOf", "anyOf", "allOf"):
            for i, sub in enumerate(node.get(key, [])):
                holes += schema_holes(sub, f"{path}.{key}[{i}]")
        # A map whose key names are closed (propertyNames) may hold opaque
        # Kubernetes objects (affinity): kubernetes-validate checks those
        # after rendering.
        for key in ("items",) if "propertyNames" in node else ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                holes += schema_holes(node[key], f"{path}.{key}")
    return holes


# Where the values schema holds a rule the driver owns: (path, rule, may
# the value be empty). `flashblade-csi schema` prints the rules.
SCHEMA_RULES = [
    ("properties.driverName", "driverName", False),
    ("properties.arrays.oneOf.0.items.properties.name", "arrayName", False),
    ("properties.defaultArray", "arrayName", True),
    ("properties.datasets.items.properties.array", "arrayName", True),
    ("properties.pso.properties.arrayNames.items", "arrayName", False),
    ("properties.arrays.oneOf.0.items.properties.namePrefix", "namePrefix", False),
    ("properties.arrays.oneOf.0.items.properties.extraNamePrefixes.items", "namePrefix", False),
    ("properties.storageClasses.items.properties.parameters.properties.namePrefix", "namePrefix", False),
    ("properties.datasets.items.properties.fileSystem", "fileSystemName", False),
    ("properties.storageClasses.items.properties.parameters.properties.rootOwner", "rootOwner", False),
    ("properties.storageClasses.items.properties.parameters.properties.rootMode", "rootMode", False),
]
SCHEMA_ENUMS = [
    ("properties.storageClasses.items.properties.parameters.properties.nfsVersions", "nfsVersions"),
    ("properties.datasets.items.properties.nfsVersions", "nfsVersions"),
]


def schema_at(schema, path):
    node = schema
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def check_schema_rules(r, schema=None, doc=None):
    """The values schema holds each rule the driver owns exactly as the
    driver does, and names no StorageClass parameter the driver lacks."""
    doc = doc if doc is not None else driver_schema()
    if not r.check(isinstance(doc, dict), f"values schema: the driver's rules are known ({doc if isinstance(doc, str) else 'flashblade-csi schema'})"):
        return
    if schema is None:
        with open(os.path.join(chartlib.CHART, "values.schema.json")) as f:
            schema = json.load(f)
    rules = doc["rules"]
    for path, rule, optional in SCHEMA_RULES:
        want = rules[rule]["pattern"]
        if optional:
            want = "^(" + want[1:-1] + ")?$"
        have = schema_at(schema, path).get("pattern")
        r.check(have == want, f"values schema: {path} is the driver's {rule} rule ({want}; the schema has {have})")
    for path, rule in SCHEMA_ENUMS:
        have = sorted(schema_at(schema, path).get("enum", []))
        r.check(have == sorted(rules[rule]["enum"]), f"values schema: {path} lists the driver's {rule} ({have})")
    params = set(schema_at(schema, "properties.storageClasses.items.properties.parameters.properties"))
    unknown = sorted(params - set(doc["storageClassParameters"]))
    r.check(not unknown, "values schema: every StorageClass parameter is one the driver takes" + (f" (unknown: {unknown})" if unknown else ""))


def check_schema(r, chart=None):
    chart = chart or chartlib.CHART
    with open(os.path.join(chart, "values.schema.json")) as f:
        schema = json.load(f)
    holes = schema_holes(schema)
    r.check(not holes, "helm: values.schema.json refuses unknown keys at every level" + (f" (open: {', '.join(holes)})" if holes else ""))
    for values, key in TYPOS:
        why = chartlib.validate_values(values, chart=chart)
        r.check(why is not None and f"'{key}'" in why, f"helm: a typo '{key}' fails the schema naming the key" + (f" ({why.strip().splitlines()[-1]})" if why else " (accepted)"))
        try:
            chartlib.render(values, chart=chart)
            rendered = "rendered"
        except helm.HelmError as e:
            rendered = str(e)
        r.check(f"'{key}'" in rendered, f"helm: rendering with the typo '{key}' fails too (as helm install would)")


def check_refusals(r, chart=None):
    for values, fragment in REFUSED:
        try:
            chartlib.render(values, chart=chart or chartlib.CHART)
            msg = "rendered without complaint"
        except helm.HelmError as e:
            msg = str(e)
        r.check(fragment in msg, f"helm: refuses {json.dumps(values)[:90]}: {msg.splitlines()[-1][-110:]}")


def check_kube_versions(r, chart=None):
    """The chart's kubeVersion floor is the oldest Kubernetes we validate
    against (K8S_VERSIONS), and the documented one."""
    chart = chart or chartlib.CHART
    with helm.Chart.load(chart) as c:
        kv = c.metadata.get("kubeVersion", "")
    r.check(kv == f">={K8S_VERSIONS[0]}.0-0", f"helm: Chart.yaml kubeVersion {kv!r} is >={K8S_VERSIONS[0]}.0-0, the oldest version validated")
    with open(os.path.join(DEPLOY, "README.md")) as f:
        r.check(f"Kubernetes {K8S_VERSIONS[0]} or newer" in f.read(), f"helm: deploy/README.md says Kubernetes {K8S_VERSIONS[0]} or newer")


def helm_main(r):
    check_schema(r)
    check_schema_rules(r)
    check_refusals(r)
    check_kube_versions(r)
    renderings = {}
    for label, values in helm_value_sets():
        name = f"helm {label}"
        why = chartlib.validate_values(values)
        r.check(why is None, f"{name}: values pass values.schema.json" + (f" ({why})" if why else ""))
        bad = chartlib.lint(values, kube_version=f"v{K8S_VERSIONS[-1]}.0")
        r.check(not bad, f"{name}: helm lint --strict is clean" + (f" ({'; '.join(bad)})" if bad else ""))
        outs = {}
        for kv in K8S_VERSIONS:
            try:
                outs[kv] = chartlib.render(values, kube_version=f"v{kv}.0")
                r.check(True, f"{name}: renders for Kubernetes {kv}")
            except helm.HelmError as e:
                r.check(False, f"{name}: renders for Kubernetes {kv}: {e}")
        if len(outs) != len(K8S_VERSIONS):
            continue
        # Every object is validated against every K8S_VERSIONS schema below.
        objs = [o for _, o in chartlib.objects(outs[K8S_VERSIONS[-1]])]
        renderings[label] = objs
        check_rendered(r, name, objs)
        kubecheck.check_sidecar_rbac(r, name, objs)
        merged = merged_values(values)
        check_values_wiring(r, name, merged, objs)
        podsecurity.check(r, name, objs, podsecurity.assumed_levels(merged, chartlib.NAMESPACE))
        podsecurity.check_network_policy(r, name, objs, merged)
        notes = next((text for path, text in outs[K8S_VERSIONS[-1]].items() if path.endswith("/NOTES.txt")), "")
        if is_pso(merged):
            check_pso(r, name, merged, objs, notes)
        else:
            check_notes_ignored(r, name, merged, notes)
            r.check("PSO" not in notes or pso_ignored(merged), f"{name}: NOTES say nothing of PSO")
    r.check(any(label.startswith("pso-") for label, _ in helm_value_sets()), "helm: PSO values files are rendered (deploy/test/values/pso-*.yaml)")
    entries = kubecheck.load_requests()
    kubecheck.check_traffic_schemas(r, entries, K8S_VERSIONS)
    for label in ("defaults", "mixed-export", "jupyterhub recipe"):
        if label in renderings:
            seen = kubecheck.check_requests(r, f"helm {label}", renderings[label], entries)
            kubecheck.check_least_privilege(r, f"helm {label}", renderings[label], seen)
    if "range-export" in renderings and "defaults" in renderings:
        kubecheck.check_upgrade_guard(r, renderings["range-export"], renderings["defaults"])
    else:
        r.check(False, "helm: the range-export and defaults renderings exist for the upgrade checks")
    for label in ("defaults", "jupyterhub recipe"):
        check_first_login(r, f"helm {label}", renderings.get(label, []))
    # The snapshot class exists only where the snapshot API is served.
    without = [o for _, o in chartlib.objects(chartlib.render({}, api_versions=()))]
    r.check(not any(o["kind"] == "VolumeSnapshotClass" for o in without), "helm defaults: no VolumeSnapshotClass without the snapshot API")
    r.check(any(o["kind"] == "VolumeSnapshotClass" for o in renderings.get("defaults", [])), "helm defaults: a VolumeSnapshotClass with the snapshot API")
    # VolumeAttributesClasses exist only where storage.k8s.io/v1 serves them.
    oldest = [o for _, o in chartlib.objects(chartlib.render({}, kube_version=f"v{K8S_VERSIONS[0]}.0"))]
    r.check(not any(o["kind"] == "VolumeAttributesClass" for o in oldest),
            f"helm defaults: no VolumeAttributesClass on Kubernetes {K8S_VERSIONS[0]} (storage.k8s.io/v1 is 1.34+)")
    vacs = [o for o in renderings.get("defaults", []) if o["kind"] == "VolumeAttributesClass"]
    r.check({o["metadata"]["name"] for o in vacs} >= {"home-strict"} and all(o["driverName"] == DRIVER for o in vacs),
            f"helm defaults: VolumeAttributesClasses (home-strict, ...) of the driver on Kubernetes {K8S_VERSIONS[-1]}")
    ctl = next((o for o in renderings.get("defaults", []) if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-controller"), {})
    r.check(any("volumeattributesclasses" in rule.get("resources", []) and set(rule.get("verbs", [])) == {"get", "list", "watch"} for rule in ctl.get("rules", [])),
            "helm defaults: the csi-resizer may read VolumeAttributesClasses (ControllerModifyVolume)")
    admin = next((o for o in renderings.get("defaults", []) if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-admin"), None)
    r.check(admin is not None and all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in admin["rules"]),
            "helm defaults: the admin ClusterRole flashblade-csi-admin is read-only")
    return renderings


def z2jh_user(values=None):
    """(uid, gid) of the notebook as z2jh runs it: singleuser.uid and
    fsGid of the recipe's values over the z2jh defaults."""
    with open(os.path.join(Z2JH, "values.yaml")) as f:
        su = helm_merge(yaml.safe_load(f), values if values is not None else load_values())["singleuser"]
    return su["uid"], su["fsGid"]


def check_first_login(r, name, objs, user=None):
    """fb-home gives a new home to the notebook user in the worst case (a
    root:root 0755 root, root squashed for the node network): exported to
    the pod's node alone, whose root may chown it there, and the owner and
    mode the node sets at the first stage of an empty home."""
    uid, gid = user or z2jh_user()
    sc = next((o for o in objs if o["kind"] == "StorageClass" and o["metadata"]["name"] == "fb-home"), None)
    if not r.check(sc is not None and sc.get("provisioner") == DRIVER, f"{name}: fb-home is a class of the driver"):
        return
    p = sc.get("parameters") or {}
    what = f"{name}: fb-home"
    r.check(p.get("exportTo") == "nodes" and "exportRules" not in p and "exportPolicy" not in p,
            f"{what} exports each home only to the node its pod runs on (exportTo: nodes; no range)")
    opts = (p.get("exportOptions") or "root_squash").split(",")
    r.check("no_root_squash" in opts and "root_squash" not in opts and "all_squash" not in opts,
            f"{what}: that node's root may chown the new root (exportOptions {p.get('exportOptions')!r})")
    r.check(p.get("rootOwner") == f"{uid}:{gid}", f"{what}: a new home's root goes to the notebook user {uid}:{gid} (rootOwner {p.get('rootOwner')!r})")
    mode = p.get("rootMode")
    ok = mode is not None and re.fullmatch(r"[0-7]{1,4}", mode) and int(mode, 8) & 0o700 == 0o700 and not int(mode, 8) & 0o002
    r.check(bool(ok), f"{what}: rootMode {mode!r} lets the owner in and others not write")
    drv = next((o for o in objs if o["kind"] == "CSIDriver"), {})
    r.check(drv.get("spec", {}).get("attachRequired") is True, f"{name}: attachRequired, so ControllerPublish exports fb-home's volumes to the node")


# --- Zero to JupyterHub ----------------------------------------------------------

Z2JH = os.path.join(DEPLOY, "test", "z2jh")


def helm_merge(base, over):
    """Helm's coalescing of user values over chart defaults: maps merge,
    lists and scalars replace, null deletes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = helm_merge(out[k], v)
        else:
            out[k] = v
    return out


def check_z2jh(r, values):
    with open(os.path.join(Z2JH, "values.yaml")) as f:
        defaults = yaml.safe_load(f)
    with open(os.path.join(Z2JH, "values.schema.yaml")) as f:
        schema = yaml.safe_load(f)
    with open(os.path.join(Z2JH, "Chart.yaml")) as f:
        version = yaml.safe_load(f).get("appVersion")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(helm_merge(defaults, values)), key=lambda e: list(e.absolute_path))
    first = f" ({errors[0].message} at {'.'.join(map(str, errors[0].absolute_path))})" if errors else ""
    r.check(not errors, f"jupyterhub: the recipe's z2jh values merged over the z2jh {version} defaults pass its values schema{first}")


# --- Monitoring ------------------------------------------------------------------

MONITORING = os.path.join(DEPLOY, "examples", "monitoring")
METRIC_RE = re.compile(r"\bflashblade_csi_[A-Za-z0-9_]+")


def documented_metrics(path=None):
    """{name: type} from the table in docs/metrics.md, which tests/metrics.rs
    checks against a scrape of a running driver (both ways)."""
    path = path or os.path.join(ROOT, "docs", "metrics.md")
    out = {}
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 3 and cells[1].startswith("`flashblade_csi_"):
                out[cells[1].strip("`")] = cells[2]
    return out


def unknown_metric(name, families):
    """None when `name` is what PromQL sees of a documented family, else why not."""
    if name in families:
        return None
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and families.get(base) == "histogram":
            return None
    return f"{name} is not a metric the driver exports (docs/metrics.md)"


def promql_strings(node, out=None):
    """Every query a dashboard holds: the values of its expr / query / definition keys."""
    out = [] if out is None else out
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                out.append(v)
            elif k == "query" and isinstance(v, str):
                out.append(v)
            else:
                promql_strings(v, out)
    elif isinstance(node, list):
        for v in node:
            promql_strings(v, out)
    return out


def check_monitoring(r, directory=MONITORING, docs=None, base_objs=None):
    """The dashboard and the alerts are well-formed and name only metrics
    the driver exports; the PodMonitor selects the driver's pods by a port
    they have."""
    families = documented_metrics(docs)
    r.check(len(families) > 10, f"docs/metrics.md lists the metric families ({len(families)})")
    try:
        with open(os.path.join(directory, "dashboard.json")) as f:
            dash = json.load(f)
        r.check(True, "monitoring: dashboard.json is JSON")
    except (OSError, ValueError) as e:
        r.check(False, f"monitoring: dashboard.json is JSON ({e})")
        dash = {}
    try:
        with open(os.path.join(directory, "alerts.yaml")) as f:
            alerts = yaml.safe_load(f)
        r.check(isinstance(alerts, dict) and isinstance(alerts.get("groups"), list), "monitoring: alerts.yaml is a rule file (groups)")
    except (OSError, yaml.YAMLError) as e:
        r.check(False, f"monitoring: alerts.yaml is YAML ({e})")
        alerts = {}
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    r.check(bool(dash.get("uid")) and bool(panels) and all(p.get("targets") for p in panels),
            f"monitoring: the dashboard has a uid and {len(panels)} panels, each with a query")
    rules = [rule for g in (alerts or {}).get("groups", []) for rule in g.get("rules", [])]
    r.check(bool(rules) and all(rule.get("alert") and rule.get("expr") and rule.get("labels", {}).get("severity")
                                and rule.get("annotations", {}).get("summary") for rule in rules),
            f"monitoring: {len(rules)} alerts, each with an expr, a severity and a summary")
    queries = [("dashboard.json", q) for q in promql_strings(dash)] + [("alerts.yaml", rule.get("expr", "")) for rule in rules]
    named = set()
    for where, q in queries:
        for name in METRIC_RE.findall(q):
            named.add(name)
            why = unknown_metric(name, families)
            if why:
                r.check(False, f"monitoring: {where}: {why}")
    r.check(bool(named) and all(unknown_metric(n, families) is None for n in named),
            f"monitoring: all {len(named)} metric names in the dashboard and the alerts are exported")
    with open(os.path.join(directory, "podmonitor.yaml")) as f:
        pm = yaml.safe_load(f)
    sel = pm["spec"]["selector"]["matchExpressions"][0]
    pods = [o for o in (base_objs or []) if o["kind"] in ("Deployment", "DaemonSet")]
    for o in pods:
        labels = o["spec"]["template"]["metadata"]["labels"]
        ports = [p["name"] for c in pod_spec_of(o)["containers"] for p in c.get("ports", [])]
        r.check(labels.get(sel["key"]) in sel["values"] and all(e["port"] in ports for e in pm["spec"]["podMetricsEndpoints"]),
                f"monitoring: the PodMonitor selects {o['metadata']['name']} and scrapes a port it has")


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
        podsecurity.check(r, k, objs)
    r.check(not any(o["kind"] == "VolumeSnapshotClass" for o in rendered.get("deploy/kubernetes/overlays/production", [])),
            "the production overlay applies without the snapshot CRDs (no VolumeSnapshotClass)")
    r.check(any(o["kind"] == "VolumeSnapshotClass" for o in rendered.get(SNAPSHOT_OVERLAY, [])),
            "production + components/snapshots has the VolumeSnapshotClass")
    r.check(not any(o["kind"] == "VolumeAttributesClass" for o in rendered.get("deploy/kubernetes/overlays/production", [])),
            "the production overlay applies before Kubernetes 1.34 (no VolumeAttributesClass)")
    vacs = [o for o in rendered.get(SNAPSHOT_OVERLAY, []) if o["kind"] == "VolumeAttributesClass"]
    r.check(bool(vacs) and all(o.get("driverName") == DRIVER for o in vacs),
            "production + components/volume-attributes-classes has VolumeAttributesClasses of the driver")
    with open(os.path.join(DEPLOY, "kubernetes", "overlays", "production", "secret.example.yaml")) as f:
        example = yaml.safe_load(f)
    why = validate_object(example)
    r.check(why is None, "secret.example.yaml is a valid Secret" + (f" ({why})" if why else ""))
    r.check(all("REPLACE" in v for v in example.get("stringData", {}).values()), "secret.example.yaml holds placeholders only")
    base_files = glob.glob(os.path.join(DEPLOY, "kubernetes", "base", "*"))
    placeholders = [os.path.relpath(p, ROOT) for p in base_files if "REPLACE" in open(p).read()]
    r.check(not placeholders, "nothing in the Kustomize base is to be edited (no REPLACE)" + (f" ({', '.join(placeholders)})" if placeholders else ""))
    kustomized_jh = rendered.get("deploy/examples/jupyterhub", [])
    jupyterhub_wiring(r, kustomized_jh, "jupyterhub (kustomize)")
    kubespawner_objects.check(r, rendered.get("deploy/kubernetes/base", []) + kustomized_jh, validate_object,
                              "jupyterhub (kustomize, KubeSpawner)", values=kubespawner_objects.z2jh_values(load_values()))
    helm_renders = helm_main(r)
    jh = helm_renders.get("jupyterhub recipe", [])
    jupyterhub_wiring(r, jh, "jupyterhub (helm)")
    kubespawner_objects.check(r, jh, validate_object, "jupyterhub (helm, KubeSpawner)")
    check_z2jh(r, load_values())
    check_doc_commands(r)
    check_monitoring(r, base_objs=rendered.get("deploy/kubernetes/base", []))
    files = [p for p in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True) if os.path.isfile(p)]
    token_scan(r, files)
    print(f"deploy: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


def self_test():
    """Each broken input must make at least one check fail."""
    kustomizations()  # writes the production-with-snapshots overlay
    base = render(SNAPSHOT_OVERLAY)
    jh = render("deploy/examples/jupyterhub")
    values = load_values()
    cases = []

    def broken_jh(mutate):
        # The recipe broken in its objects or its z2jh values: KubeSpawner
        # makes the users' claims and pods from the broken values.
        objs, vals = copy.deepcopy(jh), copy.deepcopy(values)
        mutate(objs, vals)
        return lambda r: (jupyterhub_wiring(r, objs), kubespawner_objects.check(
            r, base + objs, validate_object, "self-test", values=kubespawner_objects.z2jh_values(vals)))

    def pvc(objs):
        return next(o for o in objs if o["kind"] == "PersistentVolumeClaim")

    def base_copy(objs):
        # The Deployments of `base` copied into objs: a case edits its copy.
        copies = [copy.deepcopy(d) for d in base if d["kind"] == "Deployment"]
        objs.extend(copies)
        return copies

    def pv(objs):
        return next(o for o in objs if o["kind"] == "PersistentVolume")

    cases.append(("claimRef names another claim", broken_jh(lambda o, v: pv(o)["spec"]["claimRef"].update(name="other"))))
    cases.append(("PVC renamed", broken_jh(lambda o, v: pvc(o)["metadata"].update(name="renamed"))))
    cases.append(("dataset mounted read-write", broken_jh(lambda o, v: v["singleuser"]["storage"]["extraVolumeMounts"][0].update(readOnly=False))))
    cases.append(("values claim name differs", broken_jh(lambda o, v: v["singleuser"]["storage"]["extraVolumes"][0]["persistentVolumeClaim"].update(claimName="data"))))
    cases.append(("PV read-write", broken_jh(lambda o, v: pv(o)["spec"].update(accessModes=["ReadWriteMany"]))))
    cases.append(("homes on a class the chart lacks", broken_jh(lambda o, v: v["singleuser"]["storage"]["dynamic"].update(storageClass="standard"))))
    cases.append(("notebook as root", broken_jh(lambda o, v: v["singleuser"].update(uid=0))))
    cases.append(("notebook fsGroup not the documented group", broken_jh(lambda o, v: v["singleuser"].update(fsGid=1000))))
    cases.append(("dataset claim in another namespace", broken_jh(lambda o, v: pvc(o)["metadata"].update(namespace="data"))))
    cases.append(("no --extra-create-metadata", broken_jh(lambda o, v: [c["args"].remove("--extra-create-metadata") for d in base_copy(o)
                                                                       for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "csi-provisioner"])))
    spawned = kubespawner_objects.generate()
    recipe_z2jh = kubespawner_objects.z2jh_values(values)

    def broken_user(mutate, access=None):
        u = copy.deepcopy(spawned[0])
        mutate(u)
        return lambda r: kubespawner_objects.check_user(r, "self-test", u, recipe_z2jh, base + jh, validate_object, access)

    def notebook(u):
        return next(c for c in u["pod"]["spec"]["containers"] if c["name"] == "notebook")

    cases.append(("KubeSpawner pod with an unknown field (strict)", broken_user(lambda u: u["pod"]["spec"].update(bogusField=1))))
    cases.append(("home mounted read-only", broken_user(lambda u: notebook(u)["volumeMounts"][0].update(readOnly=True))))
    cases.append(("home mounted elsewhere", broken_user(lambda u: notebook(u)["volumeMounts"][0].update(mountPath="/home/user"))))
    cases.append(("dataset volume writable", broken_user(lambda u: u["pod"]["spec"]["volumes"][1]["persistentVolumeClaim"].pop("readOnly"))))
    cases.append(("claim asks less than the recipe's capacity", broken_user(lambda u: u["pvc"]["spec"]["resources"]["requests"].update(storage="1Gi"))))
    cases.append(("driver without single-node writers", broken_user(lambda u: None, access={3, 5})))

    def stale_fixture(r):
        tree = os.path.join(ROOT, "target", "selftest-fixtures")
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree(kubespawner_objects.FIXTURES, tree)
        path = os.path.join(tree, "claim-alice.json")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('"ReadWriteOnce"', '"ReadWriteMany"'))
        kubespawner_objects.check_fixtures(r, spawned, [o for _, o in chartlib.objects(chartlib.render(chartlib.load_values(
            os.path.join(DEPLOY, "examples", "jupyterhub", "flashblade-csi-values.yaml"))))], tree)
        shutil.rmtree(tree)

    cases.append(("KubeSpawner fixture edited by hand", stale_fixture))

    def broken_base(mutate, objs=None):
        objs = copy.deepcopy(objs if objs is not None else base)
        mutate(objs)
        return lambda r: check_rendered(r, "self-test", objs)

    def sc(objs):
        return next(o for o in objs if o["kind"] == "StorageClass")

    def kind(objs, k):
        return next(x for x in objs if x["kind"] == k)

    cases.append(("wildcard export rule", broken_base(lambda o: sc(o)["parameters"].update(exportRules="*(rw,no_root_squash)"))))
    cases.append(("unknown field (strict)", broken_base(lambda o: sc(o).update(bogusField=1))))
    cases.append(("secrets in a ClusterRole", broken_base(
        lambda o: kind(o, "ClusterRole")["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}))))
    cases.append(("writable controller root", broken_base(
        lambda o: kind(o, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False))))
    cases.append(("bad snapshot class", broken_base(lambda o: kind(o, "VolumeSnapshotClass").update(deletionPolicy="Sometimes"))))
    cases.append(("unpinned image", broken_base(
        lambda o: kind(o, "DaemonSet")["spec"]["template"]["spec"]["containers"][1].update(image="registry.k8s.io/sig-storage/csi-node-driver-registrar:latest"))))

    def node_plugin(o):
        ds = kind(o, "DaemonSet")
        return next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "flashblade-csi")

    def controller_pod(o):
        return kind(o, "Deployment")["spec"]["template"]["spec"]

    def set_config(o, edit):
        cm = next(x for x in o if x["kind"] == "ConfigMap" and "config.toml" in x.get("data", {}))
        cm["data"]["config.toml"] = edit(cm["data"]["config.toml"])

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
        lambda o: next(c for c in kind(o, "DaemonSet")["spec"]["template"]["spec"]["containers"]
                       if c["name"] == "node-driver-registrar")["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]))))
    cases.append(("kubelet dir mounted elsewhere", broken_base(
        lambda o: next(m for m in node_plugin(o)["volumeMounts"] if m["name"] == "kubelet-dir").update(mountPath="/kubelet"))))
    cases.append(("config key the driver does not know", broken_base(
        lambda o: set_config(o, lambda t: t.replace("[limits]", "[limits]\nmax_inflight = 3")))))
    cases.append(("config duration without a unit", broken_base(
        lambda o: set_config(o, lambda t: t.replace('mount = "60s"', 'mount = "60"')))))
    cases.append(("token file not mounted", broken_base(
        lambda o: next(m for m in controller_pod(o)["containers"][0]["volumeMounts"] if m["name"].startswith("credentials")).update(mountPath="/elsewhere"))))

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

    def with_token(r):
        path = os.path.join(ROOT, "target", "token-selftest.txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("api-token: T-" + "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b")
        token_scan(r, [path])
        os.remove(path)

    cases.append(("real-looking token", with_token))

    # Helm renderings, broken after the engine produced them.
    sets = dict(helm_value_sets())
    helm_objs = {k: [o for _, o in chartlib.objects(chartlib.render(v))] for k, v in sets.items()}

    def broken_helm(label, mutate):
        objs = copy.deepcopy(helm_objs[label])
        mutate(objs)
        merged = merged_values(sets[label])
        return lambda r: (check_rendered(r, "self-test", objs), check_values_wiring(r, "self-test", merged, objs))

    def sidecar_rbac(label, mutate):
        objs = copy.deepcopy(helm_objs[label])
        mutate(objs)
        return lambda r: kubecheck.check_sidecar_rbac(r, "self-test", objs)

    def drop_rule(resource, verb):
        def edit(objs):
            for o in objs:
                if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-controller":
                    for rule in o["rules"]:
                        if resource in rule["resources"] and verb in rule["verbs"]:
                            rule["verbs"].remove(verb)
        return edit

    entries = kubecheck.load_requests()

    def driver_rbac(label, mutate):
        objs = copy.deepcopy(helm_objs[label])
        mutate(objs)
        return lambda r: kubecheck.check_least_privilege(
            r, "self-test", objs, kubecheck.check_requests(r, "self-test", objs, entries))

    def grant(resource, verb, group=""):
        def edit(objs):
            role = next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-controller")
            role["rules"].append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
        return edit

    def bad_traffic(edit):
        sample = copy.deepcopy(next(e for e in entries if e["method"] == "POST" and isinstance(e.get("sent"), dict)))
        edit(sample)
        return lambda r: kubecheck.check_traffic_schemas(r, [sample], K8S_VERSIONS)

    cases.append(("an unknown field in an object the driver sends", bad_traffic(lambda e: e["sent"]["spec"].update(bogus=1))))
    cases.append(("a wrong type in an object the fake answers", bad_traffic(lambda e: e["answer"].update(metadata={"name": 5}))))
    def schema_rule_edit(path, pattern):
        def run(r):
            with open(os.path.join(chartlib.CHART, "values.schema.json")) as f:
                schema = json.load(f)
            schema_at(schema, path)["pattern"] = pattern
            check_schema_rules(r, schema=schema)
        return run

    cases.append(("the chart allows longer array names than the driver", schema_rule_edit(
        "properties.arrays.oneOf.0.items.properties.name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")))
    cases.append(("the chart's rootMode rule drifts", schema_rule_edit(
        "properties.storageClasses.items.properties.parameters.properties.rootMode", "^[0-7]{1,4}$")))
    cases.append(("the driver's node reads removed from the chart", driver_rbac("defaults", drop_rule("nodes", "get"))))
    cases.append(("the admin role cannot list claims", driver_rbac("defaults", lambda o: next(
        x for x in o if x["kind"] == "ClusterRole" and x["metadata"]["name"] == "flashblade-csi-admin")["rules"][0]["verbs"].remove("list"))))
    cases.append(("an unused verb granted to the controller", driver_rbac("defaults", grant("configmaps", "get"))))
    cases.append(("an unused verb granted to the admin role", driver_rbac("defaults", lambda o: next(
        x for x in o if x["kind"] == "ClusterRole" and x["metadata"]["name"] == "flashblade-csi-admin")["rules"][0]["verbs"].append("watch"))))
    cases.append(("provisioner cannot list VolumeAttachments", sidecar_rbac("defaults", drop_rule("volumeattachments", "list"))))
    cases.append(("attacher cannot patch VolumeAttachment status", sidecar_rbac("mixed-export", drop_rule("volumeattachments/status", "patch"))))
    cases.append(("resizer cannot patch claim status", sidecar_rbac("defaults", drop_rule("persistentvolumeclaims/status", "patch"))))
    cases.append(("provisioner with capacity tracking but no RBAC for it", sidecar_rbac("defaults", lambda o: controller_pod(o)["containers"][1]["args"].append("--enable-capacity"))))
    cases.append(("provisioner at client-go's default rate", broken_helm("defaults", lambda o: controller_pod(o)["containers"][1].update(
        args=[a for a in controller_pod(o)["containers"][1]["args"] if not a.startswith("--kube-api-")]))))
    cases.append(("mixed classes without attachRequired", broken_helm("mixed-export", lambda o: kind(o, "CSIDriver")["spec"].update(attachRequired=False))))
    cases.append(("range class rendered with exportTo: nodes", broken_helm("mixed-export", lambda o: next(
        x for x in o if x["kind"] == "StorageClass" and x["metadata"]["name"] == "fb-shared")["parameters"].update(exportTo="nodes"))))
    cases.append(("exportTo nodes without attachRequired", broken_helm("export-to-nodes", lambda o: kind(o, "CSIDriver")["spec"].update(attachRequired=False))))
    cases.append(("exportTo nodes without csi-attacher", broken_helm("export-to-nodes", lambda o: controller_pod(o)["containers"].pop(
        next(i for i, c in enumerate(controller_pod(o)["containers"]) if c["name"] == "csi-attacher")))))
    cases.append(("attacher in range-export mode", broken_helm("defaults", lambda o: controller_pod(o)["containers"].append(
        {"name": "csi-attacher", "image": "registry.k8s.io/sig-storage/csi-attacher:v4.13.0"}))))
    cases.append(("token value in a ConfigMap", broken_helm("two-arrays", lambda o: kind(o, "ConfigMap")["data"].update(
        leak="not-a-real-token-only-for-rendering"))))
    cases.append(("two arrays without default_array", broken_helm("two-arrays", lambda o: set_config(
        o, lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("default_array"))))))
    cases.append(("generated Secret lacks the token key", broken_helm("two-arrays", lambda o: next(
        x for x in o if x["kind"] == "Secret")["data"].pop("api-token"))))
    cases.append(("dataset PV writable", broken_helm("two-arrays", lambda o: kind(o, "PersistentVolume")["spec"]["csi"].update(readOnly=False))))
    # PSO values: the mapping checks catch a wrong mapping.
    pso_notes = {k: next(t for p, t in chartlib.render(sets[k]).items() if p.endswith("/NOTES.txt"))
                 for k in sets if k.startswith("pso-")}

    def broken_pso(label, mutate=lambda o: None, notes_edit=lambda n: n):
        objs = copy.deepcopy(helm_objs[label])
        mutate(objs)
        return lambda r: check_pso(r, "self-test", merged_values(sets[label]), objs, notes_edit(pso_notes[label]))

    cases.append(("PSO: token in the ConfigMap", broken_pso("pso-origin", lambda o: kind(o, "ConfigMap")["data"].update(
        token="T-not-a-real-token-only-for-rendering"))))
    cases.append(("PSO: token not in the mounted Secret", broken_pso("pso-origin", lambda o: kind(o, "Secret")["data"].update(
        **{"api-token": base64.b64encode(b"other").decode()}))))
    cases.append(("PSO: management URL without https://", broken_pso("pso-origin", lambda o: set_config(
        o, lambda t: t.replace('"https://fb-mgmt.example.com"', '"fb-mgmt.example.com"')))))
    cases.append(("PSO: namespace.pure not the prefix", broken_pso("pso-origin", lambda o: set_config(
        o, lambda t: t.replace('name_prefix = "k8s"', 'name_prefix = "pso"')))))
    cases.append(("PSO: a label value lost", broken_pso("pso-two-flashblades", lambda o: set_config(
        o, lambda t: t.replace('"rack" = "22"', '"rack" = "2"')))))
    cases.append(("PSO: snapshotDirectoryEnabled not applied", broken_pso("pso-origin", lambda o: sc(o)["parameters"].update(
        snapshotDirectory="true"))))
    cases.append(("PSO: isPureDefault not applied", broken_pso("pso-origin", lambda o: sc(o)["metadata"]["annotations"].pop(
        "storageclass.kubernetes.io/is-default-class"))))
    cases.append(("PSO: mounter.nodeSelector not applied", broken_pso("pso-two-flashblades", lambda o: kind(o, "DaemonSet")["spec"]["template"]["spec"].pop(
        "nodeSelector"))))
    cases.append(("PSO: NOTES miss an ignored key", broken_pso("pso-origin", notes_edit=lambda n: n.replace("  flasharray\n", ""))))
    cases.append(("PSO: NOTES list a key not present", broken_pso("pso-two-flashblades", notes_edit=lambda n: n.replace(
        "  image.name\n", "  image.name\n  csi\n"))))
    cases.append(("metrics flag while metrics are off", broken_helm("two-arrays", lambda o: controller_pod(o)["containers"][0]["args"].append(
        "--metrics-address=0.0.0.0:9810"))))
    cases.append(("metrics port unnamed", broken_helm("defaults", lambda o: next(
        p for p in controller_pod(o)["containers"][0]["ports"] if p["name"] == "metrics").update(name="prom"))))
    cases.append(("annotation names another port", broken_helm("defaults", lambda o: kind(o, "DaemonSet")["spec"]["template"]["metadata"]["annotations"].update(
        {"prometheus.io/port": "9999"}))))
    cases.append(("poll interval not passed", broken_helm("defaults", lambda o: controller_pod(o)["containers"][0]["args"].remove(
        "--metrics-poll-interval=60s"))))

    # A chart whose schema lets a typo through, and one without a kubeVersion floor.
    def loose_chart(edit):
        def run(r):
            copy_dir = os.path.join(ROOT, "target", "selftest-chart")
            shutil.rmtree(copy_dir, ignore_errors=True)
            shutil.copytree(chartlib.CHART, copy_dir)
            edit(copy_dir)
            check_schema(r, chart=copy_dir)
            check_kube_versions(r, chart=copy_dir)
            shutil.rmtree(copy_dir)
        return run

    def open_controller(d):
        path = os.path.join(d, "values.schema.json")
        with open(path) as f:
            schema = json.load(f)
        schema["properties"]["controller"].pop("additionalProperties")
        with open(path, "w") as f:
            json.dump(schema, f)

    def no_floor(d):
        path = os.path.join(d, "Chart.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('kubeVersion: ">=1.31.0-0"', 'kubeVersion: ">=1.20.0-0"'))

    cases.append(("schema open at controller", loose_chart(open_controller)))
    cases.append(("kubeVersion floor below the validated versions", loose_chart(no_floor)))

    def template_accepts(r):
        # A refusal the templates no longer make is caught.
        REFUSED.append(({"controller": {"replicas": 1}}, "some refusal"))
        try:
            check_refusals(r)
        finally:
            REFUSED.pop()

    cases.append(("a refusal that does not happen", template_accepts))

    def monitoring_with(edit_file, name):
        def run(r):
            tree = os.path.join(ROOT, "target", "selftest-monitoring")
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(MONITORING, tree)
            path = os.path.join(tree, name)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(edit_file(text))
            check_monitoring(r, tree, base_objs=base)
        return run

    cases.append(("dashboard names a metric that does not exist", monitoring_with(
        lambda t: t.replace("flashblade_csi_array_retries_total", "flashblade_csi_array_retry_total", 1), "dashboard.json")))
    cases.append(("alert names a metric that does not exist", monitoring_with(
        lambda t: t.replace("flashblade_csi_volume_hard_limit_enabled", "flashblade_csi_volume_hard_limit", 1), "alerts.yaml")))
    cases.append(("histogram suffix on a counter", monitoring_with(
        lambda t: t.replace("flashblade_csi_csi_calls_total[10m]", "flashblade_csi_csi_calls_bucket[10m]", 1), "alerts.yaml")))
    cases.append(("dashboard JSON broken", monitoring_with(lambda t: t[:-3], "dashboard.json")))
    cases.append(("PodMonitor scrapes a port the pods lack", monitoring_with(
        lambda t: t.replace("port: metrics", "port: prom"), "podmonitor.yaml")))

    def z2jh_typo(r):
        v = copy.deepcopy(values)
        v["singleuser"]["storage"]["capacityy"] = "10Gi"
        check_z2jh(r, v)

    cases.append(("z2jh values typo", z2jh_typo))

    recipe = chartlib.load_values(os.path.join(DEPLOY, "examples", "jupyterhub", "flashblade-csi-values.yaml"))
    recipe_objs = [o for _, o in chartlib.objects(chartlib.render(recipe, kube_version=f"v{K8S_VERSIONS[-1]}.0"))]

    def first_login_with(edit):
        def run(r):
            objs = copy.deepcopy(recipe_objs)
            edit(next(o for o in objs if o["kind"] == "StorageClass" and o["metadata"]["name"] == "fb-home")["parameters"])
            check_first_login(r, "self-test", objs)
        return run

    cases.append(("fb-home without rootOwner", first_login_with(lambda p: p.pop("rootOwner"))))
    cases.append(("fb-home root squashed for the node", first_login_with(lambda p: p.update(exportOptions="root_squash"))))
    cases.append(("fb-home exported to a range", first_login_with(
        lambda p: (p.pop("exportTo"), p.pop("exportOptions"), p.update(exportRules="10.20.0.0/16(rw,no_root_squash)")))))
    cases.append(("fb-home root world-writable", first_login_with(lambda p: p.update(rootMode="0777"))))
    cases.append(("fb-home root for another user", first_login_with(lambda p: p.update(rootOwner="0:0"))))

    def doc_with_bad_path(r):
        path = os.path.join(ROOT, "target", "README-selftest.md")
        with open(path, "w") as f:
            f.write("Install:\n\n    kubectl apply -k deploy/kubernetes/overlays/prod\n    deploy/helm/template -f deploy/nothing.yaml\n")
        check_doc_commands(r, [os.path.relpath(path, ROOT)])
        os.remove(path)

    cases.append(("README command naming a missing path", doc_with_bad_path))

    def stale_generated(r):
        # render-kustomize --check on a copy whose base file was hand-edited.
        tree = os.path.join(ROOT, "target", "selftest-tree")
        shutil.rmtree(tree, ignore_errors=True)
        generated = render_kustomize.expected()
        for path in generated:
            os.makedirs(os.path.dirname(os.path.join(tree, path)), exist_ok=True)
            shutil.copy(os.path.join(ROOT, path), os.path.join(tree, path))
        if render_kustomize.stale_files(tree):
            return  # the copy itself is stale: the main run reports it
        edited = os.path.join(tree, "deploy", "kubernetes", "base", "node.yaml")
        with open(edited, "a") as f:
            f.write("# a hand edit\n")
        r.check(not render_kustomize.stale_files(tree), "self-test: generated files are current")
        shutil.rmtree(tree)

    cases.append(("generated Kustomize files missing or edited", stale_generated))

    # Pod Security: each broken workload or namespace against its level.
    def pss(label, mutate, kustomize=False):
        objs = copy.deepcopy(base if kustomize else helm_objs[label])
        mutate(objs)
        merged = merged_values(sets[label]) if not kustomize else {}
        assumed = None if kustomize else podsecurity.assumed_levels(merged, chartlib.NAMESPACE)
        return lambda r: (podsecurity.check(r, "self-test", objs, assumed),
                          podsecurity.check_network_policy(r, "self-test", objs, merged) if not kustomize else None)

    def ctl_container(objs, i=0):
        return controller_pod(objs)["containers"][i]

    def node_pod(objs):
        return kind(objs, "DaemonSet")["spec"]["template"]["spec"]

    def egress(objs):
        return kind(objs, "NetworkPolicy")["spec"]["egress"]

    lp = "least-privilege"
    cases.append(("PSS restricted: hostPath volume in the controller", pss(lp, lambda o: controller_pod(o)["volumes"].append(
        {"name": "host", "hostPath": {"path": "/"}}))))
    cases.append(("PSS restricted: nfs volume in the controller", pss(lp, lambda o: controller_pod(o)["volumes"].append(
        {"name": "n", "nfs": {"server": "fb", "path": "/x"}}))))
    cases.append(("PSS restricted: privilege escalation allowed", pss(lp, lambda o: ctl_container(o)["securityContext"].update(
        allowPrivilegeEscalation=True))))
    cases.append(("PSS restricted: a container may run as root", pss(lp, lambda o: (controller_pod(o)["securityContext"].pop("runAsNonRoot"),
                                                                                     ctl_container(o)["securityContext"].pop("runAsNonRoot", None)))))
    cases.append(("PSS restricted: runAsUser 0", pss(lp, lambda o: ctl_container(o, 1)["securityContext"].update(runAsUser=0))))
    cases.append(("PSS restricted: no seccomp profile", pss(lp, lambda o: controller_pod(o)["securityContext"].pop("seccompProfile"))))
    cases.append(("PSS baseline: seccomp Unconfined", pss(lp, lambda o: ctl_container(o)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}))))
    cases.append(("PSS restricted: capability added", pss(lp, lambda o: ctl_container(o)["securityContext"]["capabilities"].update(
        add=["SYS_ADMIN"]))))
    cases.append(("PSS baseline: hostPort", pss(lp, lambda o: ctl_container(o)["ports"][0].update(hostPort=9808))))
    cases.append(("PSS baseline: unsafe sysctl", pss(lp, lambda o: controller_pod(o)["securityContext"].update(
        sysctls=[{"name": "kernel.msgmax", "value": "1"}]))))
    cases.append(("PSS baseline: SELinux user", pss(lp, lambda o: controller_pod(o)["securityContext"].update(
        seLinuxOptions={"user": "system_u"}))))
    cases.append(("PSS: node plugin in the restricted namespace", pss(lp, lambda o: kind(o, "DaemonSet")["metadata"].update(
        namespace=chartlib.NAMESPACE))))
    cases.append(("PSS: node namespace not labelled", pss(lp, lambda o: kind(o, "Namespace")["metadata"]["labels"].pop(
        podsecurity.ENFORCE))))
    cases.append(("PSS: a namespace more open than needed", pss(lp, lambda o: o.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": chartlib.NAMESPACE, "labels": {podsecurity.ENFORCE: "privileged"}}}))))
    cases.append(("PSS: controller not restricted in a privileged namespace", pss("defaults", lambda o: ctl_container(o, 2)[
        "securityContext"].update(allowPrivilegeEscalation=True))))
    cases.append(("PSS: registrar root file system writable", pss("defaults", lambda o: node_pod(o)["containers"][1][
        "securityContext"].update(readOnlyRootFilesystem=False))))
    cases.append(("PSS: livenessprobe keeps its capabilities", pss("defaults", lambda o: node_pod(o)["containers"][2][
        "securityContext"]["capabilities"].update(drop=[]))))
    cases.append(("PSS (kustomize): base namespace restricted with the node plugin", pss(None, lambda o: kind(o, "Namespace")[
        "metadata"]["labels"].update({podsecurity.ENFORCE: "restricted"}), kustomize=True)))
    cases.append(("NetworkPolicy: egress open to everything", pss(lp, lambda o: egress(o).append({}))))
    cases.append(("NetworkPolicy: an array address the values do not name", pss(lp, lambda o: egress(o)[0]["to"][0]["ipBlock"].update(
        cidr="0.0.0.0/0"))))
    cases.append(("NetworkPolicy: missing", pss(lp, lambda o: o.remove(kind(o, "NetworkPolicy")))))
    cases.append(("NetworkPolicy: rendered while off", pss("defaults", lambda o: o.append(copy.deepcopy(kind(helm_objs[lp], "NetworkPolicy"))))))
    cases.append(("NetworkPolicy: controller reachable on any port", pss(lp, lambda o: kind(o, "NetworkPolicy")["spec"]["ingress"].append({}))))

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
