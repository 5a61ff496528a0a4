"""The Helm chart through the Helm v4 engine (helm-python-sdk: Helm's Go SDK
as a shared library, no helm binary): render offline with a chosen
Kubernetes version and API list, lint, validate values. Used by
deploy/helm/render-kustomize and deploy/test/validate.py."""

import json
import os

import helm_python as helm
import yaml
from helm_python import _native

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "flashblade-csi")
SNAPSHOT_API = "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"
# Built into Kubernetes 1.34+; helm's own list of built-in APIs may predate
# it, so it is named as a live cluster would report it.
VAC_API = "storage.k8s.io/v1/VolumeAttributesClass"
RELEASE = "flashblade-csi"
NAMESPACE = "flashblade-csi"


def render(values=None, *, kube_version="v1.37.0", api_versions=(SNAPSHOT_API, VAC_API), chart=CHART,
           name=RELEASE, namespace=NAMESPACE):
    """{template path: rendered text}, as `helm template --kube-version
    --api-versions` would give. Chart.render() of helm-python-sdk does not
    pass the capabilities through, so the same native call is made with them
    (kube_version, api_versions are options helm-c-sdk's render reads)."""
    opts = {"name": name, "namespace": namespace, "kube_version": kube_version,
            "api_versions": list(api_versions), "is_install": True}
    with helm.Chart.load(chart) as c:
        out = _native.call_string("helm_render", c._raw(), json.dumps(values or {}), json.dumps(opts))
    return json.loads(out)


def objects(rendered):
    """[(template file name, object)] of every YAML document rendered."""
    out = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                out.append((path.split("/templates/", 1)[-1], doc))
    return out


def validate_values(values, chart=CHART):
    """None when the values pass the chart's values.schema.json (Helm's own
    JSON-schema check, on the values merged over the defaults), else Helm's
    message."""
    with helm.Chart.load(chart) as c:
        try:
            c.validate_schema(c.merge_values(values or {}))
        except helm.HelmValuesError as e:
            return str(e)
    return None


def lint(values=None, *, kube_version="v1.37.0", chart=CHART):
    """helm lint --strict: the findings of severity warning or error."""
    report = helm.lint(chart, values or {}, strict=True, kube_version=kube_version, namespace=NAMESPACE)
    bad = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    bad += [e for e in report.get("errors", []) if not any(e in b for b in bad)]
    return bad


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}
