"""Checks of the rendered chart against what real Kubernetes parts need:
each sidecar's own RBAC file from its release (data in
../shared/reference/kubernetes-csi/rbac/), matched with Kubernetes' RBAC
rules; and the chart's guard against upgrades that would change an
immutable field, run through the real Helm engine with a live object
standing in for the cluster's."""

import copy
import json
import os
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
