"""File-system snapshots, clones from a snapshot, and in-place restore."""

import os

from pypureclient import flashblade
from pypureclient.flashblade import (
    FileSystemPatch,
    FileSystemPost,
    FileSystemSnapshot,
    FileSystemSnapshotPost,
    Reference,
)

from conftest import error, items


def write(mock, fs, rel, data):
    path = os.path.join(mock.data_dir, fs, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def read(mock, fs, rel):
    with open(os.path.join(mock.data_dir, fs, rel)) as f:
        return f.read()


def snap(fb, fs, suffix):
    (s,) = items(
        fb.post_file_system_snapshots(source_names=[fs], file_system_snapshot=FileSystemSnapshotPost(suffix=suffix))
    )
    return s


def test_create_list_and_duplicate(fb, raw, name):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    s = snap(fb, name, "snap1")
    assert s.name == f"{name}.snap1"
    assert s.suffix == "snap1"
    assert s.owner.name == name
    assert s.source.name == name
    assert s.destroyed is False and s.created > 0
    # By owner name, by snapshot name, by id, by filter.
    assert [x.name for x in items(fb.get_file_system_snapshots(names_or_owner_names=[name]))] == [s.name]
    assert [x.id for x in items(fb.get_file_system_snapshots(names_or_owner_names=[s.name]))] == [s.id]
    assert [x.name for x in items(fb.get_file_system_snapshots(ids=[s.id]))] == [s.name]
    assert [x.name for x in items(fb.get_file_system_snapshots(filter=f"suffix='snap1' and owner.name='{name}'"))] == [
        s.name
    ]
    error(raw.post_file_system_snapshots(source_names=[name], file_system_snapshot=FileSystemSnapshotPost(suffix="snap1")))
    error(raw.get_file_system_snapshots(names_or_owner_names=[name + "-none"]))
    # Without a suffix the array picks one.
    (auto,) = items(fb.post_file_system_snapshots(source_names=[name]))
    assert auto.name.startswith(name + ".") and auto.suffix


def test_snapshot_paging(fb, name):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    for i in range(5):
        snap(fb, name, f"s{i}")
    r = fb.get_file_system_snapshots(names_or_owner_names=[name], limit=2)
    assert r.total_item_count == 5 and len(items(r)) == 2
    rest = fb.get_file_system_snapshots(names_or_owner_names=[name], continuation_token=r.continuation_token)
    assert len(items(rest)) == 3 and rest.continuation_token is None


def test_destroy_then_eradicate(fb, raw, name):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    s = snap(fb, name, "d1")
    e = error(raw.delete_file_system_snapshots(names=[s.name]))
    assert "destroyed" in e.message
    (d,) = items(fb.patch_file_system_snapshots(names=[s.name], file_system_snapshot=FileSystemSnapshot(destroyed=True)))
    assert d.destroyed is True and d.time_remaining > 0
    assert [x.name for x in items(fb.get_file_system_snapshots(names_or_owner_names=[name], destroyed=True))] == [s.name]
    assert items(fb.get_file_system_snapshots(names_or_owner_names=[name], destroyed=False)) == []
    (r,) = items(fb.patch_file_system_snapshots(ids=[s.id], file_system_snapshot=FileSystemSnapshot(destroyed=False)))
    assert r.destroyed is False
    items(fb.patch_file_system_snapshots(names=[s.name], file_system_snapshot=FileSystemSnapshot(destroyed=True)))
    assert fb.delete_file_system_snapshots(names=[s.name]).status_code == 200
    assert items(fb.get_file_system_snapshots(names_or_owner_names=[name])) == []


def test_snapshots_of_a_destroyed_file_system_go_with_it(fb, raw, name):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    s = snap(fb, name, "x")
    items(fb.patch_file_systems(names=[name], file_system=FileSystemPatch(destroyed=True)))
    (got,) = items(fb.get_file_system_snapshots(names_or_owner_names=[s.name]))
    assert got.destroyed is True and got.owner_destroyed is True
    assert items(fb.get_file_system_snapshots(names_or_owner_names=[name], destroyed=False)) == []
    error(raw.post_file_system_snapshots(source_names=[name], file_system_snapshot=FileSystemSnapshotPost(suffix="y")))
    assert fb.delete_file_systems(names=[name]).status_code == 200
    assert items(fb.get_file_system_snapshots(filter=f"owner.name='{name}'")) == []


def test_snapshot_freezes_content_and_clone_copies_it(fb, raw, name, mock):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    write(mock, name, "notebooks/a.ipynb", "version 1")
    s = snap(fb, name, "v1")
    write(mock, name, "notebooks/a.ipynb", "version 2")
    (clone,) = items(
        fb.post_file_systems(names=[name + "-clone"], file_system=FileSystemPost(source=Reference(name=s.name)))
    )
    assert clone.source.name == s.name
    assert read(mock, name + "-clone", "notebooks/a.ipynb") == "version 1"
    assert read(mock, name, "notebooks/a.ipynb") == "version 2"
    # Clone by snapshot id works too; a missing snapshot is refused.
    items(fb.post_file_systems(names=[name + "-clone2"], file_system=FileSystemPost(source=Reference(id=s.id))))
    error(raw.post_file_systems(names=[name + "-c3"], file_system=FileSystemPost(source=Reference(name="no.such"))))


def test_restore_in_place(fb, raw, name, mock):
    items(fb.post_file_systems(names=[name], file_system=FileSystemPost()))
    write(mock, name, "keep.txt", "original")
    s = snap(fb, name, "r1")
    write(mock, name, "keep.txt", "overwritten")
    write(mock, name, "new.txt", "not in the snapshot")
    # overwrite without discard_non_snapshotted_data is refused and changes nothing.
    error(raw.post_file_systems(names=[name], overwrite=True, file_system=FileSystemPost(source=Reference(name=s.name))))
    assert read(mock, name, "keep.txt") == "overwritten"
    # The name exists: without overwrite it is a conflict.
    error(raw.post_file_systems(names=[name], file_system=FileSystemPost(source=Reference(name=s.name))))
    (fs,) = items(
        fb.post_file_systems(
            names=[name],
            overwrite=True,
            discard_non_snapshotted_data=True,
            file_system=FileSystemPost(source=Reference(name=s.name)),
        )
    )
    assert fs.name == name
    assert read(mock, name, "keep.txt") == "original"
    assert not os.path.exists(os.path.join(mock.data_dir, name, "new.txt"))
