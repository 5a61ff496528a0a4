"""The PersistentVolumeClaim and Pod that KubeSpawner itself makes for a
JupyterHub user of the recipe (deploy/examples/jupyterhub/), and the deploy
checks on them.

The recipe's z2jh values are merged over the vendored z2jh defaults
(deploy/test/z2jh/values.yaml) and mapped onto KubeSpawner traits the way
z2jh's hub configuration (jupyterhub_config.py) does; KubeSpawner then
builds the objects with its own get_pvc_manifest / get_pod_manifest (which
call kubespawner.objects.make_pvc / make_pod), and they are turned into the
JSON its API client sends (kubernetes_asyncio's ApiClient.
sanitize_for_serialization). No Kubernetes API is contacted.

The objects are kept as fixtures in tests/fixtures/kubespawner/ for the Rust
test tests/jupyterhub.rs, with the chart's StorageClasses and static
volumes rendered for the recipe's chart values (chart.json). The deploy
run fails when they differ from what KubeSpawner makes now; regenerate with

    target/deploy-venv/bin/python deploy/test/kubespawner_objects.py --write
"""

import asyncio
import json
import os
import re
import sys
import tempfile
import uuid

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "deploy", "examples", "jupyterhub")
Z2JH = os.path.join(ROOT, "deploy", "test", "z2jh")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "kubespawner")
ACCESS_RS = os.path.join(ROOT, "src", "volume", "access.rs")
DRIVER = "flashblade.csi.dev"
# Users of the fixtures: plain names, and one KubeSpawner must escape into a
# DNS label (accent, dot, at sign, too long for its safe slug).
USERS = ["alice", "bob", "Élodie.Smith@uni.example"]
# The recipe's README installs z2jh as release jhub into namespace jhub:
# the hub's POD_NAMESPACE, where KubeSpawner creates the claims and pods.
RELEASE = NAMESPACE = "jhub"
# external-provisioner's mapping of a claim's access modes to CSI's, for a
# driver that does not advertise SINGLE_NODE_MULTI_WRITER (this one does not).
CSI_ACCESS_MODE = {
    "ReadWriteOnce": 1,  # SINGLE_NODE_WRITER
    "ReadWriteOncePod": 1,  # SINGLE_NODE_WRITER without SINGLE_NODE_MULTI_WRITER
    "ReadOnlyMany": 3,  # MULTI_NODE_READER_ONLY
    "ReadWriteMany": 5,  # MULTI_NODE_MULTI_WRITER
}


def coalesce(base, over):
    """Helm's merge of user values over chart defaults: maps merge, lists
    and scalars replace, null deletes the key."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(out[k], v)
        else:
            out[k] = v
    return out


def recipe_values():
    with open(os.path.join(RECIPE, "jupyterhub-values.yaml")) as f:
        return yaml.safe_load(f) or {}


def z2jh_values(recipe):
    """The values the z2jh chart's hub sees: the recipe's over the defaults."""
    with open(os.path.join(Z2JH, "values.yaml")) as f:
        return coalesce(yaml.safe_load(f), recipe)


def chart_version():
    with open(os.path.join(Z2JH, "Chart.yaml")) as f:
        return yaml.safe_load(f)["version"]


def spawner_config(values):
    """KubeSpawner traits from z2jh values, as z2jh's jupyterhub_config.py
    sets them. Mirrored keys (singleuser.X unless absolute):

      nameOverride / Release / Chart       -> common_labels
      uid, fsGid                           -> uid, fs_gid
      allowPrivilegeEscalation             -> allow_privilege_escalation
      extraLabels, extraAnnotations        -> extra_labels, extra_annotations
      extraEnv                             -> environment
      podNameTemplate                      -> pod_name_template
      image.name:image.tag, image.pullPolicy -> image, image_pull_policy
      cmd, defaultUrl                      -> cmd, default_url
      memory.*, cpu.*                      -> mem_*/cpu_* limit and guarantee
      serviceAccountName                   -> service_account
      storage.type dynamic:
        storage.dynamic.pvcNameTemplate    -> pvc_name_template
        storage.dynamic.storageClass       -> storage_class
        storage.dynamic.storageAccessModes -> storage_access_modes
        storage.capacity                   -> storage_capacity
        storage.extraLabels                -> storage_extra_labels
        volumeNameTemplate + homeMountPath -> volumes / volume_mounts (the
                                              home claim {pvc_name})
      storage.extraVolumes / extraVolumeMounts -> appended to volumes /
                                              volume_mounts
      cloudMetadata.blockWithIptables      -> init_containers (a root
                                              iptables container)

    Scheduling keys (scheduler name, affinities, tolerations, priority) are
    not mirrored: they touch neither storage nor the security context."""
    from traitlets.config import Config

    su = values["singleuser"]
    c = Config()
    k = c.KubeSpawner
    k.namespace = NAMESPACE
    name = values.get("nameOverride") or "jupyterhub"
    k.common_labels = {
        "app.kubernetes.io/name": name, "app": name,
        "app.kubernetes.io/instance": RELEASE, "release": RELEASE,
        "helm.sh/chart": f"jupyterhub-{chart_version().replace('+', '_')}",
        "chart": f"jupyterhub-{chart_version().replace('+', '_')}",
        "app.kubernetes.io/managed-by": "kubespawner",
    }

    def put(trait, value):
        # z2jh's set_config_if_not_none.
        if value is not None:
            setattr(k, trait, value)

    put("pod_name_template", su.get("podNameTemplate"))
    put("image_pull_policy", su.get("image", {}).get("pullPolicy"))
    put("extra_labels", su.get("extraLabels"))
    put("extra_annotations", su.get("extraAnnotations"))
    put("uid", su.get("uid"))
    put("fs_gid", su.get("fsGid"))
    put("service_account", su.get("serviceAccountName"))
    put("storage_extra_labels", su.get("storage", {}).get("extraLabels"))
    put("mem_limit", su.get("memory", {}).get("limit"))
    put("mem_guarantee", su.get("memory", {}).get("guarantee"))
    put("cpu_limit", su.get("cpu", {}).get("limit"))
    put("cpu_guarantee", su.get("cpu", {}).get("guarantee"))
    put("environment", su.get("extraEnv"))
    k.allow_privilege_escalation = su.get("allowPrivilegeEscalation")
    image = su.get("image", {})
    if image.get("name"):
        k.image = f"{image['name']}:{image['tag']}" if image.get("tag") else image["name"]
    put("cmd", su.get("cmd"))
    put("default_url", su.get("defaultUrl"))

    storage = su.get("storage", {})
    volumes, mounts = [], []
    if storage.get("type") == "dynamic":
        dyn = storage.get("dynamic", {})
        if dyn.get("pvcNameTemplate"):
            k.pvc_name_template = dyn["pvcNameTemplate"]
        k.storage_pvc_ensure = True
        put("storage_class", dyn.get("storageClass"))
        put("storage_access_modes", dyn.get("storageAccessModes"))
        put("storage_capacity", storage.get("capacity"))
        volumes.append({"name": dyn["volumeNameTemplate"], "persistentVolumeClaim": {"claimName": "{pvc_name}"}})
        mounts.append({"mountPath": storage.get("homeMountPath"), "name": dyn["volumeNameTemplate"], "subPath": dyn.get("subPath")})
    elif storage.get("type") == "static":
        static = storage.get("static", {})
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": static.get("pvcName")}})
        mounts.append({"mountPath": storage.get("homeMountPath"), "name": "home", "subPath": static.get("subPath")})
    volumes += storage.get("extraVolumes") or []
    mounts += storage.get("extraVolumeMounts") or []
    k.volumes = volumes
    k.volume_mounts = mounts

    cloud = su.get("cloudMetadata", {})
    if cloud.get("blockWithIptables"):
        tools = su.get("networkTools", {})
        k.init_containers = [{
            "name": "block-cloud-metadata",
            "image": f"{tools['image']['name']}:{tools['image']['tag']}",
            "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp", "--destination", cloud["ip"],
                        "--destination-port", "80", "--jump", "DROP"],
            "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
            "resources": tools.get("resources") or {},
        }]
    return c


class _Hub:
    # What KubeSpawner and Spawner.get_env read of the hub (z2jh's names).
    public_host = ""
    url = "http://hub:8081/hub/"
    base_url = "/hub/"
    api_url = "http://hub:8081/hub/api"


class _User:
    # What KubeSpawner and Spawner.get_env read of a user.
    def __init__(self, name, uid):
        from urllib.parse import quote

        self.name = name
        self.id = uid
        self.url = f"/user/{quote(name, safe='@~')}/"
        self.progress_url = f"/hub/api/users/{quote(name, safe='@~')}/server/progress"
        self.groups = []
        self.server = None


def claim_uid(namespace, name):
    """A fixed stand-in for the uid the API server gives the claim (the PV
    is pvc-<uid>), so the fixtures are reproducible."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubernetes:{namespace}/persistentvolumeclaims/{name}"))


def generate(values=None, users=USERS):
    """[{username, namespace, claimUid, pvc, pod}] for `users`, from the z2jh
    `values` (default: the recipe's, merged over the z2jh defaults)."""
    values = z2jh_values(recipe_values()) if values is None else values
    config = spawner_config(values)
    # KubeSpawner loads a kubeconfig when it is built; this one names a
    # loopback port it never calls (only the manifests are asked for).
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as kc:
        yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "none",
            "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
            "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
            "users": [{"name": "none", "user": {}}],
        }, kc)
        kc.flush()
        old = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = kc.name
        try:
            return asyncio.run(_generate(config, users))
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old


async def _generate(config, users):
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    out = []
    spawner = None
    async with ApiClient() as api:
        for i, name in enumerate(users, start=1):
            spawner = KubeSpawner(config=config, user=_User(name, i), hub=_Hub())
            pvc = api.sanitize_for_serialization(spawner.get_pvc_manifest())
            pod = api.sanitize_for_serialization(await spawner.get_pod_manifest())
            out.append({"username": name, "namespace": NAMESPACE, "claimUid": claim_uid(NAMESPACE, pvc["metadata"]["name"]),
                        "pvc": pvc, "pod": pod})
    if spawner is not None:
        # The API client KubeSpawner opened (shared, per event loop).
        await spawner.api.api_client.close()
    return out


def recipe_chart_objects():
    """The chart rendered for the recipe's chart values."""
    values = chartlib.load_values(os.path.join(RECIPE, "flashblade-csi-values.yaml"))
    return [o for _, o in chartlib.objects(chartlib.render(values))]


def chart_fixture(chart_objs):
    """What the Rust test needs of the chart: StorageClasses, the static
    volumes and their claims."""
    def kind(k):
        return sorted((o for o in chart_objs if o["kind"] == k), key=lambda o: o["metadata"]["name"])
    return {"storageClasses": kind("StorageClass"), "persistentVolumes": kind("PersistentVolume"),
            "persistentVolumeClaims": kind("PersistentVolumeClaim")}


def dumps(obj):
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def fixture_files(users, chart_objs):
    """{path relative to FIXTURES: text}."""
    files = {f"{u['pvc']['metadata']['name']}.json": dumps(u) for u in users}
    files["chart.json"] = dumps(chart_fixture(chart_objs))
    return files


def write(directory=FIXTURES):
    files = fixture_files(generate(), recipe_chart_objects())
    os.makedirs(directory, exist_ok=True)
    for old in os.listdir(directory):
        if old.endswith(".json") and old not in files:
            os.remove(os.path.join(directory, old))
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    return sorted(files)


# --- Checks ------------------------------------------------------------------


def driver_access_modes(path=ACCESS_RS):
    """The CSI access modes the driver accepts, read from check_capability's
    range in src/volume/access.rs (empty when it cannot be read)."""
    with open(path) as f:
        m = re.search(r"if !\((\d+)\.\.=(\d+)\)\.contains\(&mode\)", f.read())
    return set(range(int(m.group(1)), int(m.group(2)) + 1)) if m else set()


def documented_user(path=os.path.join(RECIPE, "README.md")):
    """(uid, gid) the recipe's README says the notebook runs as."""
    with open(path) as f:
        text = " ".join(f.read().split())
    m = re.search(r"runs as uid (\d+) \(jovyan, group (\d+)\)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def claim_volumes(pod, claim):
    return [v for v in pod["spec"].get("volumes", []) if v.get("persistentVolumeClaim", {}).get("claimName") == claim]


def mounts_of(pod, volume):
    return [m for c in pod["spec"]["containers"] for m in c.get("volumeMounts", []) if m["name"] == volume]


def check_user(r, label, u, values, chart_objs, validate_object, access=None, documented=None):
    """One user's KubeSpawner PVC and pod against the chart rendering
    `chart_objs` and the z2jh `values` they were made from."""
    access = driver_access_modes() if access is None else access
    documented = documented_user() if documented is None else documented
    pvc, pod, name = u["pvc"], u["pod"], u["username"]
    what = f"{label}: {name}"
    for obj in (pvc, pod):
        why = validate_object(obj)
        r.check(why is None, f"{what}: KubeSpawner's {obj['kind']} passes the Kubernetes schemas (strict)" + (f" ({why})" if why else ""))
    cls = pvc["spec"].get("storageClassName")
    classes = {o["metadata"]["name"]: o for o in chart_objs if o["kind"] == "StorageClass"}
    r.check(cls in classes and classes[cls].get("provisioner") == DRIVER,
            f"{what}: the claim's class {cls!r} is a StorageClass the chart renders, provisioned by {DRIVER}")
    modes = pvc["spec"].get("accessModes") or []
    r.check(bool(modes) and all(CSI_ACCESS_MODE.get(m) in access for m in modes),
            f"{what}: the claim's access modes {modes} map to CSI modes the driver serves (src/volume/access.rs)")
    storage = values["singleuser"]["storage"]
    r.check(pvc["spec"].get("resources", {}).get("requests", {}).get("storage") == storage.get("capacity"),
            f"{what}: the claim requests the recipe's capacity {storage.get('capacity')}")
    home = claim_volumes(pod, pvc["metadata"]["name"])
    home_mounts = [m for v in home for m in mounts_of(pod, v["name"])]
    r.check(len(home) == 1 and not home[0]["persistentVolumeClaim"].get("readOnly")
            and [m["mountPath"] for m in home_mounts] == [storage.get("homeMountPath")]
            and not any(m.get("readOnly") for m in home_mounts),
            f"{what}: the pod mounts its claim {pvc['metadata']['name']} read-write at {storage.get('homeMountPath')}")
    static = [o for o in chart_objs if o["kind"] == "PersistentVolumeClaim"]
    r.check(bool(static), f"{what}: the chart renders a dataset claim")
    for claim in static:
        cname = claim["metadata"]["name"]
        vols = claim_volumes(pod, cname)
        ds_mounts = [m for v in vols for m in mounts_of(pod, v["name"])]
        r.check(claim["metadata"].get("namespace") == u["namespace"] and len(vols) == 1 and ds_mounts
                and vols[0]["persistentVolumeClaim"].get("readOnly") is True and all(m.get("readOnly") is True for m in ds_mounts),
                f"{what}: the pod mounts the dataset claim {claim['metadata'].get('namespace')}/{cname} (its own namespace) read-only, volume and every mount")
    notebook = next((c for c in pod["spec"]["containers"] if c["name"] == "notebook"), {})
    uid = (notebook.get("securityContext") or {}).get("runAsUser", (pod["spec"].get("securityContext") or {}).get("runAsUser"))
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    r.check(documented is not None and (uid, fs_group) == documented,
            f"{what}: the notebook runs as uid {uid} with fsGroup {fs_group}, as the recipe's README says {documented}")
    sc = notebook.get("securityContext") or {}
    r.check(sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged"),
            f"{what}: the notebook container is unprivileged without privilege escalation")


def check_users(r, label, users, values, chart_objs, validate_object):
    access, documented = driver_access_modes(), documented_user()
    r.check(bool(access), f"{label}: the driver's access modes read from src/volume/access.rs")
    for u in users:
        check_user(r, label, u, values, chart_objs, validate_object, access, documented)
    names = [u["pvc"]["metadata"]["name"] for u in users]
    r.check(len(set(names)) == len(names) and all(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n) for n in names),
            f"{label}: each user's claim name is a distinct DNS label ({', '.join(names)})")


def check_provisioner_metadata(r, label, chart_objs):
    """The Rust test sends csi.storage.k8s.io/pvc/* keys, which
    external-provisioner adds only with --extra-create-metadata."""
    provisioners = [c for o in chart_objs if o["kind"] == "Deployment"
                    for c in o["spec"]["template"]["spec"]["containers"] if c["name"] == "csi-provisioner"]
    r.check(bool(provisioners) and all("--extra-create-metadata" in c.get("args", []) for c in provisioners),
            f"{label}: csi-provisioner runs with --extra-create-metadata (claim name and namespace in CreateVolume)")


def check_fixtures(r, users, chart_objs, directory=FIXTURES):
    want = fixture_files(users, chart_objs)
    have = {n: open(os.path.join(directory, n)).read() for n in os.listdir(directory) if n.endswith(".json")} if os.path.isdir(directory) else {}
    stale = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    r.check(not stale, f"{os.path.relpath(directory, ROOT)} holds what KubeSpawner makes now"
            + (f" (stale: {', '.join(stale)}; run deploy/test/kubespawner_objects.py --write)" if stale else ""))


def check(r, chart_objs, validate_object, label="jupyterhub (KubeSpawner)", values=None, fixtures=FIXTURES):
    """Every check of this module, against one rendering of the recipe's
    chart values; the fixtures only when `values` is the recipe's."""
    recipe = values is None
    values = z2jh_values(recipe_values()) if recipe else values
    try:
        users = generate(values)
    except Exception as e:  # a KubeSpawner failure is a finding, not a crash
        r.check(False, f"{label}: KubeSpawner makes the claims and pods ({type(e).__name__}: {e})")
        return
    r.check(True, f"{label}: KubeSpawner makes the claims and pods for {len(users)} users")
    check_users(r, label, users, values, chart_objs, validate_object)
    check_provisioner_metadata(r, label, chart_objs)
    if recipe and fixtures:
        check_fixtures(r, users, chart_objs, fixtures)


if __name__ == "__main__":
    if "--write" in sys.argv:
        for name in write():
            print(os.path.relpath(os.path.join(FIXTURES, name), ROOT))
    else:
        print(dumps(generate()), end="")
