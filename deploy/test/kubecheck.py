"""Checks of the rendered chart against what real Kubernetes parts need:
each sidecar's own RBAC file from its release (data in
../shared/reference/kubernetes-csi/rbac/), matched with Kubernetes' RBAC
rules; and the chart's guard against upgrades that would change an
immutable field, run through the real Helm engine with a live object
standing in for the cluster's."""

import copy
import functools
import glob
import json
import os
import re
import shutil
import tempfile

import helm_python as helm
import yaml

import chartlib

ROOT = chartlib.ROOT
RBAC_DIR = os.path.join(os.path.dirname(ROOT), "shared", "reference", "kubernetes-csi", "rbac")

# Sidecar container name -> its release's RBAC file.
SIDECAR_RBAC = {
    "csi-provisioner": "csi-provisioner.yaml",
    "csi-resizer": "csi-resizer.yaml",
    "csi-snapshotter": "csi-snapshotter.yaml",
    "csi-attacher": "csi-attacher.yaml",
}

# Rules of a sidecar's file that only an optional feature uses, with the flag
# that turns the feature on. The exemption holds only while the chart does
# not pass that flag.
LEADER_ELECTION = [("coordination.k8s.io", "leases", "--leader-election")]
OPTIONAL = {
    "csi-resizer": LEADER_ELECTION,
    "csi-attacher": LEADER_ELECTION,
    "csi-provisioner": LEADER_ELECTION + [
        # Storage capacity tracking (the CSIDriver has storageCapacity: false).
        ("storage.k8s.io", "csistoragecapacities", "--enable-capacity"),
        ("", "pods", "--enable-capacity"),
        ("apps", "replicasets", "--enable-capacity"),
    ],
    "csi-snapshotter": LEADER_ELECTION + [
        # Volume group snapshots (the driver has no group controller).
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", "--feature-gates=CSIVolumeGroupSnapshot=true"),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "--feature-gates=CSIVolumeGroupSnapshot=true"),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status", "--feature-gates=CSIVolumeGroupSnapshot=true"),
    ],
}


def allows(rules, group, resource, verb, name=None):
    """Kubernetes' RBAC match of one request against a list of PolicyRules:
    apiGroups, resources (with "group/subresource" forms) and verbs, each
    with "*"; resourceNames restrict a rule to those names."""
    for rule in rules:
        groups = rule.get("apiGroups", [])
        resources = rule.get("resources", [])
        verbs = rule.get("verbs", [])
        names = rule.get("resourceNames", [])
        if "*" not in groups and group not in groups:
            continue
        base, _, sub = resource.partition("/")
        if not ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources)):
            continue
        if "*" not in verbs and verb not in verbs:
            continue
        if names and (name is None or name not in names):
            continue
        return True
    return False


def granted(objs, account, namespace):
    """(cluster-wide rules, rules in `namespace`) the ServiceAccount gets
    from the rendered Roles, ClusterRoles and their bindings."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o.get("rules", [])
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    cluster, local = [], []
    for b in objs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account and s.get("namespace", b["metadata"].get("namespace")) == namespace
                   for s in b.get("subjects", [])):
            continue
        ref = b["roleRef"]
        if ref["kind"] == "ClusterRole":
            rules = roles.get(("ClusterRole", None, ref["name"]), [])
        else:
            rules = roles.get(("Role", b["metadata"].get("namespace"), ref["name"]), [])
        if b["kind"] == "ClusterRoleBinding":
            cluster += rules
        elif b["metadata"].get("namespace") == namespace:
            local += rules
    return cluster, local


def sidecar_needs(file_name):
    """(cluster rules, namespaced rules) that a sidecar's RBAC file grants."""
    with open(os.path.join(RBAC_DIR, file_name)) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cluster = [r for d in docs if d["kind"] == "ClusterRole" for r in d.get("rules", [])]
    local = [r for d in docs if d["kind"] == "Role" for r in d.get("rules", [])]
    return cluster, local


def requests(rules):
    for rule in rules:
        for g in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    yield g, res, v


def check_sidecar_rbac(r, label, objs):
    """Every sidecar in the controller pod gets at least what its release's
    RBAC file grants (names and namespaces aside), less the rules of
    optional features the chart does not turn on."""
    dep = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "flashblade-csi-controller"), None)
    if dep is None:
        return
    spec = dep["spec"]["template"]["spec"]
    account = spec.get("serviceAccountName")
    namespace = dep["metadata"].get("namespace", chartlib.NAMESPACE)
    cluster, local = granted(objs, account, namespace)
    if not r.check(os.path.isdir(RBAC_DIR), f"{label}: the sidecars' RBAC files are at {RBAC_DIR}"):
        return
    for c in spec["containers"]:
        file_name = SIDECAR_RBAC.get(c["name"])
        if file_name is None:
            continue
        args = c.get("args", [])
        optional = [(g, res) for g, res, flag in OPTIONAL.get(c["name"], []) if flag not in args]
        need_cluster, need_local = sidecar_needs(file_name)
        missing = []
        for scope, need, have in (("cluster", need_cluster, cluster), ("namespace", need_local, cluster + local)):
            for g, res, v in requests(need):
                if (g, res) in optional:
                    continue
                if not allows(have, g, res, v):
                    missing.append(f"{v} {res}{'.' + g if g else ''} ({scope})")
        r.check(not missing, f"{label}: {c['name']} gets what its RBAC file ({file_name}) grants"
                + (f"; missing: {', '.join(missing)}" if missing else ""))


# --- the upgrade guard ---------------------------------------------------------

# Calls the guard exactly as csidriver.yaml and storageclasses.yaml do, with
# the live object's fields given instead of looked up.
GUARD_TEMPLATE = """{{{{- include "fb.immutable" (`{args}` | fromJson) }}}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: guard-passed
"""


def guard_render(have, want, kind="CSIDriver", how="kubectl delete csidriver x"):
    """None when the chart's fb.immutable lets the upgrade through, else
    Helm's error text: a copy of the chart with one more template that
    calls the guard, rendered by the Helm engine."""
    tmp = tempfile.mkdtemp(prefix="guard-")
    try:
        chart = os.path.join(tmp, "flashblade-csi")
        shutil.copytree(chartlib.CHART, chart)
        args = json.dumps({"kind": kind, "name": "x", "have": have, "want": want, "how": how})
        with open(os.path.join(chart, "templates", "guard-test.yaml"), "w") as f:
            f.write(GUARD_TEMPLATE.format(args=args))
        try:
            out = chartlib.render({}, chart=chart)
        except helm.HelmError as e:
            return str(e)
        return None if any("guard-passed" in t for t in out.values()) else "the guard template rendered nothing"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_upgrade_guard(r, objs_rules, objs_nodes):
    """Switching the install between range and node-following classes flips
    the CSIDriver's attachRequired and the classes' parameters, which
    Kubernetes will not patch: the guard stops the upgrade with the command
    that clears the way, and lets an unchanged one through."""
    def csidriver(objs):
        return next(o for o in objs if o["kind"] == "CSIDriver")

    def sc(objs, name):
        return next(o for o in objs if o["kind"] == "StorageClass" and o["metadata"]["name"] == name)

    old, new = csidriver(objs_rules)["spec"], csidriver(objs_nodes)["spec"]
    r.check(old["attachRequired"] is False and new["attachRequired"] is True,
            "upgrade: a node-following class turns attachRequired on")
    have = {"attachRequired": old["attachRequired"]}
    want = {"attachRequired": new["attachRequired"]}
    why = guard_render(have, want)
    r.check(why is not None and "kubectl delete csidriver x" in why and "attachRequired" in why,
            f"upgrade: the guard stops an attachRequired change and says what to run ({why})")
    r.check(guard_render(have, have) is None, "upgrade: the guard lets an unchanged CSIDriver through")
    r.check(guard_render({}, want) is None, "upgrade: the guard lets a first install through")
    name = "fb-home"
    fields = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")
    before = {k: sc(objs_rules, name).get(k) for k in fields}
    after = {k: sc(objs_nodes, name).get(k) for k in fields}
    why = guard_render(before, after, kind="StorageClass", how=f"kubectl delete storageclass {name}")
    r.check(before != after and why is not None and f"kubectl delete storageclass {name}" in why,
            f"upgrade: the guard stops a StorageClass parameter change ({why})")
    r.check(guard_render(before, copy.deepcopy(before), kind="StorageClass") is None,
            "upgrade: the guard lets an unchanged StorageClass through")


# --- the driver's own requests ---------------------------------------------------
#
# The Rust tests' fake API server (tests/common/fake_kube.rs) records every
# request with the identity its token stands for. Each identity runs with a
# role this project ships or documents; every request must be allowed by it
# (Kubernetes' matching rules), and every rule granted to the driver must be
# used by some request or needed by a sidecar.

def request_log_dir():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "tmp", "kube-requests")


def load_requests(directory=None):
    directory = directory or request_log_dir()
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path) as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


def attributes(entry):
    """(verb, group, resource incl. subresource, namespace, name) of a
    recorded request, as the API server's authorizer sees it; None for a
    non-resource URL (/version, which every user may read)."""
    parts = [p for p in entry["path"].split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else None
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    query = entry.get("query", "")
    method = entry["method"]
    if method == "GET":
        watch = any(q in ("watch=true", "watch=1") for q in query.split("&"))
        verb = "get" if name else ("watch" if watch else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[method]
    return verb, group, resource, namespace, name


def doc_cluster_role(path, name):
    """The rules of the ClusterRole `name` in a YAML block of a doc."""
    with open(path) as f:
        text = f.read()
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("kind") == "ClusterRole" and doc["metadata"]["name"] == name:
            return doc["rules"]
    return None


# Writes a storage admin makes with their own credentials, as docs/admin.md
# says (`recover --apply`); the admin role stays read-only.
ADMIN_OWN_WRITES = {("create", "", "persistentvolumes"), ("create", "", "persistentvolumeclaims")}


def identities(objs):
    """identity -> (rules for cluster-scoped requests, rules per namespace
    function) as the chart (and the docs) grant them."""
    dep = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "flashblade-csi-controller"), None)
    account = dep["spec"]["template"]["spec"]["serviceAccountName"] if dep else None
    namespace = dep["metadata"].get("namespace", chartlib.NAMESPACE) if dep else chartlib.NAMESPACE
    cluster, local = granted(objs, account, namespace)
    admin = next((o.get("rules", []) for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-admin"), [])
    adopt = doc_cluster_role(os.path.join(ROOT, "docs", "migrating-from-pso.md"), "flashblade-csi-adopt") or []
    return {
        "controller": lambda ns: cluster + (local if ns == namespace else []),
        "admin": lambda ns: admin,
        "adopt": lambda ns: adopt,
    }


def check_requests(r, label, objs, entries):
    """Every recorded request is allowed to the identity that made it."""
    roles = identities(objs)
    refused, seen = {}, set()
    for e in entries:
        a = attributes(e)
        if a is None:
            continue
        verb, group, resource, ns, name = a
        who = e["who"]
        seen.add((who, verb, group, resource))
        if who == "admin" and (verb, group, resource) in ADMIN_OWN_WRITES:
            continue
        rules = roles.get(who)
        if rules is None or not allows(rules(ns), group, resource, verb, name):
            refused.setdefault((who, verb, group, resource), e["path"])
    r.check(bool(entries), f"{label}: the Rust tests' Kubernetes requests are recorded ({request_log_dir()}; run cargo test first)")
    r.check(not refused, f"{label}: every recorded Kubernetes request is allowed to the identity that made it"
            + (f"; refused: {', '.join(f'{w} {v} {res}{chr(46) + g if g else str()} ({p})' for (w, v, g, res), p in sorted(refused.items()))}" if refused else ""))
    return seen


def unused_grants(objs, seen):
    """Rules the chart grants the controller that neither a sidecar it runs
    (its release's RBAC file, less the optional features left off) nor the
    driver's recorded requests use; and the same for the admin role."""
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "flashblade-csi-controller")
    spec = dep["spec"]["template"]["spec"]
    needed = []
    for c in spec["containers"]:
        file_name = SIDECAR_RBAC.get(c["name"])
        if not file_name:
            continue
        optional = [(g, res) for g, res, flag in OPTIONAL.get(c["name"], []) if flag not in c.get("args", [])]
        need_cluster, need_local = sidecar_needs(file_name)
        needed += [rule for rule in need_cluster + need_local
                   if not any((g, res) in optional for g in rule.get("apiGroups", []) for res in rule.get("resources", []))]
    used_by = {"controller": [(v, g, res) for who, v, g, res in seen if who == "controller"],
               "admin": [(v, g, res) for who, v, g, res in seen if who == "admin"]}
    extra = []
    cluster, local = granted(objs, spec["serviceAccountName"], dep["metadata"].get("namespace", chartlib.NAMESPACE))
    for g, res, v in requests(cluster + local):
        if allows(needed, g, res, v) or (v, g, res) in used_by["controller"]:
            continue
        extra.append(f"controller {v} {res}{'.' + g if g else ''}")
    admin = next((o.get("rules", []) for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "flashblade-csi-admin"), [])
    for g, res, v in requests(admin):
        if (v, g, res) not in used_by["admin"]:
            extra.append(f"admin {v} {res}{'.' + g if g else ''}")
    return extra


def check_least_privilege(r, label, objs, seen):
    extra = unused_grants(objs, seen)
    r.check(not extra, f"{label}: every rule granted to the controller and the admin role is used"
            + (f"; unused: {', '.join(sorted(set(extra)))}" if extra else ""))


@functools.lru_cache(maxsize=None)
def _status_validator(version):
    """kube-apiserver's Status (meta/v1), which kubernetes-validate does not
    look up by kind: its strict schema, with its references resolved from
    the same local copy."""
    import jsonschema
    import kubernetes_validate
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{version}.0-local-strict")
    with open(os.path.join(base, "status-meta-v1.json")) as f:
        schema = json.load(f)
    with open(os.path.join(base, "_definitions.json")) as f:
        definitions = json.load(f)
    resolver = jsonschema.RefResolver.from_schema(schema, store={definitions["$id"]: definitions})
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, resolver=resolver)


def check_traffic_schemas(r, entries, versions):
    """Every object the fake API server answered and every object the driver
    or an admin command sent in full (create, replace) validates against the
    Kubernetes schemas (strict: no unknown field)."""
    import jsonschema
    import kubernetes_validate
    bad, seen, count = {}, set(), 0
    for e in entries:
        parts = [("answer", e.get("answer"))]
        if e["method"] in ("POST", "PUT"):
            parts.append(("sent", e.get("sent")))
        for which, obj in parts:
            if not isinstance(obj, dict) or "kind" not in obj:
                continue
            key = json.dumps(obj, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            count += 1
            for version in versions:
                try:
                    if obj["kind"] == "Status":
                        _status_validator(version).validate(obj)
                    else:
                        kubernetes_validate.validate(obj, version, strict=True)
                except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as ex:
                    bad.setdefault(f"{which} {obj['kind']} ({e['method']} {e['path']})", f"k8s {version}: {ex.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    bad.setdefault(f"{which} {obj['kind']} ({e['method']} {e['path']})", f"k8s {version}: no schema")
    r.check(count > 0 and not bad, f"the fake API server's traffic ({count} distinct objects) validates against the Kubernetes schemas"
            + (f"; invalid: {'; '.join(f'{k}: {v}' for k, v in sorted(bad.items()))}" if bad else ""))
