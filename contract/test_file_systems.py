"""File systems: create, list (filters, paging, sort), modify, destroy,
recover, eradicate, and the documented errors."""

import os

import pytest
from pypureclient import flashblade
from pypureclient.flashblade import FileSystemPatch, FileSystemPost, Nfs, NfsPatch, Reference

from conftest import error, items

GiB = 1 << 30


def create(fb, name, **kw):
    (fs,) = items(fb.post_file_systems(names=[name], file_system=FileSystemPost(**kw)))
    return fs


def test_create_with_every_field(fb, name, mock):
    fs = create(
        fb,
        name,
        provisioned=5 * GiB,
        hard_limit_enabled=True,
        snapshot_directory_enabled=False,
        default_user_quota=GiB,
        default_group_quota=2 * GiB,
        nfs=Nfs(v3_enabled=True, v4_1_enabled=True, rules="10.0.0.0/8(rw,root_squash)"),
    )
    assert fs.name == name and fs.id
    assert fs.provisioned == 5 * GiB
    assert fs.hard_limit_enabled is True
    assert fs.snapshot_directory_enabled is False
    assert fs.default_user_quota == GiB and fs.default_group_quota == 2 * GiB
    assert fs.nfs.v3_enabled and fs.nfs.v4_1_enabled
    assert fs.nfs.rules == "10.0.0.0/8(rw,root_squash)"
    assert fs.destroyed is False and fs.time_remaining is None
    assert fs.created > 0
    assert os.path.isdir(os.path.join(mock.data_dir, name))


def test_defaults(fb, name):
    fs = create(fb, name)
    assert fs.provisioned is None  # unlimited
    assert fs.hard_limit_enabled is False
    assert fs.snapshot_directory_enabled is True
    assert fs.nfs.rules == "*(rw,no_root_squash)"


def test_default_exports_none_means_no_rules(fb, name):
    (fs,) = items(fb.post_file_systems(names=[name], default_exports=[""], file_system=FileSystemPost()))
    assert fs.nfs.rules == ""


def test_duplicate_and_invalid_names(raw, name):
    create(raw, name)
    e = error(raw.post_file_systems(names=[name], file_system=FileSystemPost()))
    assert e.message == "File system already exists."
    assert e.context == name
    error(raw.post_file_systems(names=["bad.name"], file_system=FileSystemPost()))
    error(raw.post_file_systems(names=["x" * 64], file_system=FileSystemPost()))


def test_get_by_name_id_and_missing(fb, raw, name):
    fs = create(fb, name)
    (got,) = items(fb.get_file_systems(names=[name]))
    assert got.id == fs.id
    (got,) = items(fb.get_file_systems(ids=[fs.id]))
    assert got.name == name
    e = error(raw.get_file_systems(names=[name, name + "-missing"]))
    assert e.message == "File system does not exist."
    assert e.context == name + "-missing"


def test_filters(fb, name):
    for s in ("a", "b", "c"):
        create(fb, f"{name}-{s}")
    got = lambda f: sorted(x.name for x in items(fb.get_file_systems(filter=f)))  # noqa: E731
    assert got(f"name='{name}-a'") == [f"{name}-a"]
    assert got(f"contains(name,'{name}-')") == [f"{name}-a", f"{name}-b", f"{name}-c"]
    assert got(f"name=('{name}-a','{name}-c')") == [f"{name}-a", f"{name}-c"]
    assert got(f"contains(name,'{name}-') and not(name='{name}-b')") == [f"{name}-a", f"{name}-c"]
    assert got(f"name='{name}-*'") == [f"{name}-a", f"{name}-b", f"{name}-c"]
    # A filter that matches nothing is an empty answer, not an error.
    assert got("name='does-not-exist'") == []


def test_paging_with_continuation_tokens(fb, name):
    for i in range(7):
        create(fb, f"{name}-p{i}")
    flt = f"contains(name,'{name}-p')"
    seen, token = [], None
    while True:
        r = fb.get_file_systems(filter=flt, limit=3, continuation_token=token)
        assert r.total_item_count == 7
        seen += [x.name for x in items(r)]
        token = r.continuation_token
        if not token:
            break
    assert sorted(seen) == [f"{name}-p{i}" for i in range(7)]
    assert len(seen) == 7


def test_offset_sort_and_total_only(fb, name):
    for i in range(4):
        create(fb, f"{name}-s{i}", provisioned=(i + 1) * GiB)
    flt = f"contains(name,'{name}-s')"
    r = fb.get_file_systems(filter=flt, sort=["provisioned-"], limit=2, offset=1)
    assert [x.name for x in items(r)] == [f"{name}-s2", f"{name}-s1"]
    r = fb.get_file_systems(filter=flt, total_only=True)
    assert list(r.items) == []
    assert r.total_item_count == 4


def test_destroyed_filter(fb, raw, name):
    create(fb, name)
    items(fb.patch_file_systems(names=[name], file_system=FileSystemPatch(destroyed=True)))
    assert name in [x.name for x in items(fb.get_file_systems(destroyed=True))]
    assert name not in [x.name for x in items(fb.get_file_systems(destroyed=False))]
    error(raw.get_file_systems(names=[name], destroyed=False))


def test_resize_and_hard_limit_usage_rule(fb, raw, name, mock):
    create(fb, name, provisioned=GiB, hard_limit_enabled=True)
    (fs,) = items(fb.patch_file_systems(names=[name], file_system=FileSystemPatch(provisioned=2 * GiB)))
    assert fs.provisioned == 2 * GiB
    with open(os.path.join(mock.data_dir, name, "data"), "wb") as f:
        f.write(b"\0" * 5000)
    e = error(raw.patch_file_systems(names=[name], file_system=FileSystemPatch(provisioned=4096)))
    assert e.message == "Requested size is below current usage."
    (fs,) = items(
        fb.patch_file_systems(names=[name], ignore_usage=True, file_system=FileSystemPatch(provisioned=4096))
    )
    assert fs.provisioned == 4096
    # Without the hard limit a smaller size is allowed.
    create(fb, name + "-soft", provisioned=GiB)
    with open(os.path.join(mock.data_dir, name + "-soft", "data"), "wb") as f:
        f.write(b"\0" * 5000)
    items(fb.patch_file_systems(names=[name + "-soft"], file_system=FileSystemPatch(provisioned=4096)))
    # Enabling the hard limit while over it needs ignore_usage.
    error(raw.patch_file_systems(names=[name + "-soft"], file_system=FileSystemPatch(hard_limit_enabled=True)))


def test_nfs_rules_add_remove(fb, raw, name):
    create(fb, name, nfs=Nfs(v3_enabled=True, rules="10.0.0.0/8(rw,root_squash)"))
    (fs,) = items(
        fb.patch_file_systems(
            names=[name], file_system=FileSystemPatch(nfs=NfsPatch(add_rules="10.1.0.0/16(ro) 10.2.0.0/16(ro)"))
        )
    )
    assert fs.nfs.rules == "10.0.0.0/8(rw,root_squash) 10.1.0.0/16(ro) 10.2.0.0/16(ro)"
    (fs,) = items(
        fb.patch_file_systems(
            names=[name], file_system=FileSystemPatch(nfs=NfsPatch(remove_rules="10.1.0.0/16(ro)"))
        )
    )
    assert fs.nfs.rules == "10.0.0.0/8(rw,root_squash) 10.2.0.0/16(ro)"
    (fs,) = items(
        fb.patch_file_systems(names=[name], file_system=FileSystemPatch(nfs=NfsPatch(rules="*(ro)", v4_1_enabled=True)))
    )
    assert fs.nfs.rules == "*(ro)" and fs.nfs.v4_1_enabled
    error(raw.patch_file_systems(names=[name], file_system=FileSystemPatch(nfs=NfsPatch(rules="10.0.0.0/8(bogus)"))))


def test_export_policy_and_rules_are_exclusive(fb, raw, name):
    items(fb.post_nfs_export_policies(names=[name + "-pol"], policy=flashblade.NfsExportPolicyPost(rules=[])))
    fs = create(fb, name, nfs=Nfs(v3_enabled=True, export_policy=Reference(name=name + "-pol")))
    assert fs.nfs.export_policy.name == name + "-pol"
    assert fs.nfs.rules == ""
    error(
        raw.post_file_systems(
            names=[name + "-2"],
            file_system=FileSystemPost(nfs=Nfs(rules="*(ro)", export_policy=Reference(name=name + "-pol"))),
        )
    )
    # add_rules fails while a policy is attached.
    error(raw.patch_file_systems(names=[name], file_system=FileSystemPatch(nfs=NfsPatch(add_rules="*(ro)"))))
    # A missing policy is refused.
    error(
        raw.post_file_systems(
            names=[name + "-3"], file_system=FileSystemPost(nfs=Nfs(export_policy=Reference(name="nope")))
        )
    )


def test_destroy_recover_eradicate(fb, raw, name, mock):
    create(fb, name, nfs=Nfs(v3_enabled=True, v4_1_enabled=True))
    e = error(raw.delete_file_systems(names=[name]))
    assert e.message == "File system must be destroyed before it can be eradicated."
    (fs,) = items(
        fb.patch_file_systems(
            names=[name],
            file_system=FileSystemPatch(
                destroyed=True,
                nfs=NfsPatch(v3_enabled=False, v4_1_enabled=False),
                smb=flashblade.Smb(enabled=False),
                http=flashblade.Http(enabled=False),
            ),
        )
    )
    assert fs.destroyed is True
    assert 0 < fs.time_remaining <= 3600 * 1000
    assert not fs.nfs.v3_enabled
    e = error(raw.patch_file_systems(names=[name], file_system=FileSystemPatch(provisioned=GiB)))
    assert e.message == "Cannot modify a destroyed file system."
    # A destroyed name is still taken.
    error(raw.post_file_systems(names=[name], file_system=FileSystemPost()))
    (fs,) = items(fb.patch_file_systems(ids=[fs.id], file_system=FileSystemPatch(destroyed=False)))
    assert fs.destroyed is False and fs.time_remaining is None
    items(fb.patch_file_systems(names=[name], file_system=FileSystemPatch(destroyed=True)))
    r = fb.delete_file_systems(names=[name])
    assert isinstance(r, flashblade.ValidResponse) and r.status_code == 200
    assert not os.path.exists(os.path.join(mock.data_dir, name))
    error(raw.get_file_systems(names=[name]))


def test_rename(fb, name, mock):
    create(fb, name)
    (fs,) = items(fb.patch_file_systems(names=[name], file_system=FileSystemPatch(name=name + "-new")))
    assert fs.name == name + "-new"
    assert os.path.isdir(os.path.join(mock.data_dir, name + "-new"))
