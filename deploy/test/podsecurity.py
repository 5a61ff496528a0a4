"""Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards)
applied to rendered manifests, as the Pod Security admission controller
applies them to a namespace's pods: every workload must meet the level its
namespace enforces (pod-security.kubernetes.io/enforce). On top of the
standard, for this chart's least privilege:

- a namespace is privileged only if a workload in it needs that (fails
  baseline), and restricted wherever all its workloads meet restricted;
- the controller meets restricted in every rendering;
- every container that is not privileged has a read-only root file system,
  drops ALL capabilities and cannot gain privileges;
- the controller's NetworkPolicy, when rendered, lets it reach only the
  addresses the values name (arrays, API server) and cluster DNS."""

import ipaddress

LEVELS = ("privileged", "baseline", "restricted")
ENFORCE = "pod-security.kubernetes.io/enforce"
WORKLOADS = {"Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob", "ReplicationController"}
CONTROLLER = "flashblade-csi-controller"

# Baseline: capabilities that may be added (the container runtimes' defaults).
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
# Restricted: the only volume types (everything else is a host or
# network volume a pod could use to get around its limits).
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def pod_template(obj):
    """(metadata, spec) of the pods a workload object makes."""
    if obj["kind"] == "Pod":
        return obj.get("metadata", {}), obj.get("spec", {})
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    tmpl = spec.get("template", {})
    return tmpl.get("metadata", {}), tmpl.get("spec", {})


def all_containers(spec):
    return [(kind, c) for kind in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(kind, [])]


def baseline(meta, spec):
    why = []
    psc = spec.get("securityContext", {})
    cs = all_containers(spec)
    scs = [(f"{k}/{c['name']}", c.get("securityContext", {})) for k, c in cs]
    for where, sc in [("pod", psc)] + scs:
        if sc.get("windowsOptions", {}).get("hostProcess"):
            why.append(f"{where}: HostProcess")
        se = sc.get("seLinuxOptions", {})
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            why.append(f"{where}: SELinux options {se}")
        if sc.get("seccompProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            why.append(f"{where}: seccomp profile {sc['seccompProfile']['type']}")
        if sc.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
            why.append(f"{where}: AppArmor profile {sc['appArmorProfile']['type']}")
    for ns in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(ns):
            why.append(f"pod: {ns}")
    for where, sc in scs:
        if sc.get("privileged"):
            why.append(f"{where}: privileged")
        extra = set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPS
        if extra:
            why.append(f"{where}: adds capabilities {sorted(extra)}")
        if sc.get("procMount", "Default") != "Default":
            why.append(f"{where}: procMount {sc['procMount']}")
    for k, c in cs:
        if any(p.get("hostPort") for p in c.get("ports", [])):
            why.append(f"{k}/{c['name']}: hostPort")
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            why.append(f"volume {v['name']}: hostPath")
    for key, val in meta.get("annotations", {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and \
                not (val == "runtime/default" or val.startswith("localhost/")):
            why.append(f"annotation {key}: {val}")
    for s in psc.get("sysctls", []):
        if s.get("name") not in SAFE_SYSCTLS:
            why.append(f"pod: sysctl {s.get('name')}")
    return why


def restricted(meta, spec):
    why = baseline(meta, spec)
    psc = spec.get("securityContext", {})
    for v in spec.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            why.append(f"volume {v['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_seccomp = psc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
    if psc.get("runAsUser") == 0:
        why.append("pod: runAsUser 0")
    for k, c in all_containers(spec):
        where, sc = f"{k}/{c['name']}", c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            why.append(f"{where}: allowPrivilegeEscalation is not false")
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and not pod_nonroot):
            why.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            why.append(f"{where}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type")
        if seccomp is None and not pod_seccomp:
            why.append(f"{where}: no seccomp profile (RuntimeDefault or Localhost)")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            why.append(f"{where}: does not drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            why.append(f"{where}: adds {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}")
    return why


def violations(meta, spec, level):
    """What keeps a pod from meeting `level` (empty: it meets it)."""
    if level == "privileged":
        return []
    return restricted(meta, spec) if level == "restricted" else baseline(meta, spec)


def strictest(meta, spec):
    """The strictest level a pod meets."""
    return next(lv for lv in reversed(LEVELS) if not violations(meta, spec, lv))


def declared_levels(objs):
    return {o["metadata"]["name"]: o["metadata"].get("labels", {}).get(ENFORCE)
            for o in objs if o["kind"] == "Namespace"}


def assumed_levels(values, release_namespace):
    """The levels an install with these chart values is documented to need
    where the chart renders no Namespace: the release namespace is
    restricted when the node plugin has its own namespace."""
    node_ns = (values.get("podSecurity") or {}).get("nodeNamespace") or release_namespace
    levels = {release_namespace: "restricted" if node_ns != release_namespace else "privileged"}
    levels.setdefault(node_ns, "privileged")
    return levels


def check(r, name, objs, assumed=None):
    levels = dict(assumed or {})
    levels.update({ns: lv for ns, lv in declared_levels(objs).items() if lv})
    for ns, lv in declared_levels(objs).items():
        r.check(lv in LEVELS, f"{name}: namespace {ns} declares a Pod Security level ({ENFORCE}: {lv})")
    strictest_in = {}
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        meta, spec = pod_template(o)
        ns = o["metadata"].get("namespace")
        what = f"{name}: {o['kind']}/{o['metadata']['name']}"
        level = levels.get(ns)
        if not r.check(level in LEVELS, f"{what}: its namespace {ns} has a Pod Security level"):
            continue
        why = violations(meta, spec, level)
        r.check(not why, f"{what} meets Pod Security '{level}' of namespace {ns}" + (f" ({'; '.join(why)})" if why else ""))
        best = strictest(meta, spec)
        strictest_in[ns] = min(strictest_in.get(ns, best), best, key=LEVELS.index)
        if o["metadata"]["name"] == CONTROLLER:
            why = restricted(meta, spec)
            r.check(not why, f"{what} meets Pod Security 'restricted'" + (f" ({'; '.join(why)})" if why else ""))
        for k, c in all_containers(spec):
            sc = c.get("securityContext", {})
            if sc.get("privileged"):
                continue
            r.check(sc.get("readOnlyRootFilesystem") is True and "ALL" in sc.get("capabilities", {}).get("drop", [])
                    and sc.get("allowPrivilegeEscalation") is False,
                    f"{what}: {k}/{c['name']} has a read-only root, drops ALL capabilities, cannot escalate")
    # No namespace more open than its workloads need.
    for ns, need in strictest_in.items():
        r.check(levels.get(ns) == need,
                f"{name}: namespace {ns} enforces the strictest level its workloads meet ({need}; declared {levels.get(ns)})")


def _cidrs(entries):
    return sorted((str(ipaddress.ip_network(e["cidr"], strict=False)), e.get("port")) for e in entries)


def check_network_policy(r, name, objs, values):
    """The controller's NetworkPolicy is there exactly when the values ask,
    and lets the controller reach only what they name."""
    want = (values.get("networkPolicy") or {})
    pols = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if not want.get("enabled"):
        r.check(not pols, f"{name}: no NetworkPolicy unless networkPolicy.enabled")
        return
    pol = next((p for p in pols if p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == CONTROLLER), None)
    if not r.check(pol is not None, f"{name}: a NetworkPolicy selects the controller pods"):
        return
    spec = pol["spec"]
    r.check(set(spec.get("policyTypes", [])) == {"Ingress", "Egress"}, f"{name}: the controller's NetworkPolicy limits ingress and egress")
    blocks, dns, open_rules = [], [], []
    for rule in spec.get("egress", []):
        peers, ports = rule.get("to", []), rule.get("ports", [])
        if not peers or not ports:
            open_rules.append(rule)
            continue
        for peer in peers:
            if "ipBlock" in peer and not peer["ipBlock"].get("except"):
                blocks += [{"cidr": peer["ipBlock"]["cidr"], "port": p.get("port")} for p in ports]
            elif "podSelector" in peer and "namespaceSelector" in peer and {p.get("port") for p in ports} == {53}:
                dns.append(peer)
            else:
                open_rules.append(rule)
    r.check(not open_rules, f"{name}: every egress rule of the controller names its peers and ports" + (f" ({open_rules})" if open_rules else ""))
    expected = [{"cidr": a["cidr"], "port": a.get("port", 443)} for a in want.get("arrays", [])] + \
               [{"cidr": a["cidr"], "port": a.get("port", 6443)} for a in want.get("apiServer", [])]
    r.check(_cidrs(blocks) == _cidrs(expected),
            f"{name}: the controller may reach exactly the arrays and the API server the values name ({_cidrs(blocks)} vs {_cidrs(expected)})")
    r.check(bool(dns) == bool(want.get("dns")), f"{name}: DNS egress exactly when networkPolicy.dns is set")
    ingress = spec.get("ingress", [])
    metrics_only = all(rule.get("ports") and all(p.get("port") == "metrics" for p in rule["ports"]) for rule in ingress)
    r.check(metrics_only and (bool(ingress) == bool((values.get("metrics") or {}).get("enabled"))),
            f"{name}: ingress to the controller only on the metrics port, only when metrics are on")
    node_selected = [p["metadata"]["name"] for p in pols
                     if p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "flashblade-csi-node"]
    r.check(not node_selected, f"{name}: no NetworkPolicy for the node plugin (host network: it would not apply)")
