"""User and group quotas; NFS export policies and their rules."""

import os

import pytest
from pypureclient import flashblade
from pypureclient.exceptions import PureError
from pypureclient.flashblade import FileSystemPost

from conftest import error, items

GiB = 1 << 30


def fs(fb, name):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost(default_user_quota=GiB)))


@pytest.mark.parametrize("kind", ["users", "groups"])
def test_quota_life_cycle(fb, raw, name, kind, mock):
    fs(fb, name)
    ids = "uids" if kind == "users" else "gids"
    post = getattr(fb, f"post_quotas_{kind}")
    get = getattr(fb, f"get_quotas_{kind}")
    patch = getattr(fb, f"patch_quotas_{kind}")
    delete = getattr(fb, f"delete_quotas_{kind}")
    Post = flashblade.UserQuotaPost if kind == "users" else flashblade.GroupQuotaPost
    Patch = flashblade.UserQuotaPatch if kind == "users" else flashblade.GroupQuotaPatch
    (q,) = items(post(file_system_names=[name], **{ids: ["1000"]}, quota=Post(quota=GiB)))
    assert q.quota == GiB
    assert q.file_system.name == name
    principal = q.user if kind == "users" else q.group
    assert principal.id == 1000
    # Usage counts the bytes owned by that id.
    path = os.path.join(mock.data_dir, name, "owned")
    with open(path, "wb") as f:
        f.write(b"\0" * 3000)
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
        (q,) = items(get(file_system_names=[name], **{ids: ["1000"]}))
        assert q.usage == 3000
    if kind == "users":
        assert q.file_system_default_quota == GiB
    (q,) = items(patch(file_system_names=[name], **{ids: ["1000"]}, quota=Patch(quota=2 * GiB)))
    assert q.quota == 2 * GiB
    # Errors: a second POST, quota 0, unknown file system.
    rpost = getattr(raw, f"post_quotas_{kind}")
    error(rpost(file_system_names=[name], **{ids: ["1000"]}, quota=Post(quota=GiB)))
    error(rpost(file_system_names=[name], **{ids: ["1001"]}, quota=Post(quota=0)))
    error(rpost(file_system_names=[name + "-none"], **{ids: ["1001"]}, quota=Post(quota=GiB)))
    assert delete(file_system_names=[name], **{ids: ["1000"]}).status_code == 200
    assert items(get(file_system_names=[name])) == []
    error(getattr(raw, f"delete_quotas_{kind}")(file_system_names=[name], **{ids: ["1000"]}))


def test_quota_by_user_name(fb, raw, name):
    fs(fb, name)
    (q,) = items(fb.post_quotas_users(file_system_names=[name], user_names=["root"], quota=flashblade.UserQuotaPost(quota=GiB)))
    assert q.user.id == 0 and q.user.name == "root"
    error(raw.post_quotas_users(file_system_names=[name], user_names=["no-such-user-x"], quota=flashblade.UserQuotaPost(quota=GiB)))


def test_policy_and_rules(fb, raw, name):
    pol = name + "-pol"
    (p,) = items(
        fb.post_nfs_export_policies(
            names=[pol],
            policy=flashblade.NfsExportPolicyPost(rules=[flashblade.NfsExportPolicyRule(client="*", permission="ro")]),
        )
    )
    assert p.name == pol and p.enabled is True and p.version
    assert [r.client for r in p.rules] == ["*"]
    # Rule defaults: ro, root-squash.
    (r,) = items(
        fb.post_nfs_export_policies_rules(policy_names=[pol], rule=flashblade.NfsExportPolicyRule(client="10.0.0.0/8", permission="rw"))
    )
    assert r.access == "root-squash"
    # IP clients are evaluated before '*': the new rule goes first.
    assert r.index == 1 and r.name == f"{pol}.1"
    rules = items(fb.get_nfs_export_policies_rules(policy_names=[pol]))
    assert [x.client for x in rules] == ["10.0.0.0/8", "*"]
    (r,) = items(
        fb.patch_nfs_export_policies_rules(names=[f"{pol}.1"], rule=flashblade.NfsExportPolicyRule(access="no-squash", anonuid=65534))
    )
    assert r.access == "no-squash" and r.anonuid == 65534
    assert fb.delete_nfs_export_policies_rules(names=[f"{pol}.2"]).status_code == 200
    assert [x.client for x in items(fb.get_nfs_export_policies_rules(policy_names=[pol]))] == ["10.0.0.0/8"]
    # A stale version is refused with 412 (the SDK raises for that status).
    with pytest.raises(PureError):
        fb.patch_nfs_export_policies(names=[pol], versions=["stale"], policy=flashblade.NfsExportPolicy(enabled=False))
    (cur,) = items(fb.get_nfs_export_policies(names=[pol]))
    (p2,) = items(fb.patch_nfs_export_policies(names=[pol], versions=[cur.version], policy=flashblade.NfsExportPolicy(enabled=False)))
    assert p2.enabled is False and p2.version != cur.version
    # In use: cannot delete.
    items(
        fb.post_file_systems(
            names=[name],
            file_system=FileSystemPost(nfs=flashblade.Nfs(v3_enabled=True, export_policy=flashblade.Reference(name=pol))),
        )
    )
    e = error(raw.delete_nfs_export_policies(names=[pol]))
    assert "in use" in e.message
    error(raw.post_nfs_export_policies(names=[pol], policy=flashblade.NfsExportPolicyPost()))


def test_policy_delete_and_invalid_rule(fb, raw, name):
    pol = name + "-p2"
    items(fb.post_nfs_export_policies(names=[pol], policy=flashblade.NfsExportPolicyPost()))
    error(raw.post_nfs_export_policies_rules(policy_names=[pol], rule=flashblade.NfsExportPolicyRule(client="*", permission="rwx")))
    assert fb.delete_nfs_export_policies(names=[pol]).status_code == 200
    error(raw.get_nfs_export_policies(names=[pol]))
