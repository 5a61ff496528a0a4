//! The compiled proto has the wire shape of CSI v1.12.0: spot checks of the
//! services, field numbers, types and custom options that clients depend on.

use std::collections::HashMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

fn csi_file() -> prost_types::FileDescriptorProto {
    let set = FileDescriptorSet::decode(flashblade_csi::csi::FILE_DESCRIPTOR_SET).unwrap();
    set.file.into_iter().find(|f| f.name() == "csi.proto").unwrap()
}

fn messages(file: &prost_types::FileDescriptorProto) -> HashMap<String, DescriptorProto> {
    fn walk(prefix: &str, m: &DescriptorProto, out: &mut HashMap<String, DescriptorProto>) {
        let name = format!("{prefix}{}", m.name());
        for n in &m.nested_type {
            walk(&format!("{name}."), n, out);
        }
        out.insert(name, m.clone());
    }
    let mut out = HashMap::new();
    for m in &file.message_type {
        walk("", m, &mut out);
    }
    out
}

fn field(m: &DescriptorProto, name: &str) -> (i32, Type, Label, String) {
    let f = m
        .field
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no field {name}"));
    (f.number(), f.r#type(), f.label(), f.type_name().to_string())
}

#[test]
fn package_services_and_methods() {
    let file = csi_file();
    assert_eq!(file.package(), "csi.v1");
    assert_eq!(file.syntax(), "proto3");
    let services: Vec<(&str, usize)> = file.service.iter().map(|s| (s.name(), s.method.len())).collect();
    assert_eq!(
        services,
        vec![
            ("Identity", 3),
            ("Controller", 15),
            ("GroupController", 4),
            ("SnapshotMetadata", 2),
            ("Node", 8)
        ]
    );
    let md = &file
        .service
        .iter()
        .find(|s| s.name() == "SnapshotMetadata")
        .unwrap()
        .method;
    assert!(md.iter().all(|m| m.server_streaming()));
}

#[test]
fn message_and_field_counts() {
    let msgs = messages(&csi_file());
    // Map entries count as nested messages.
    let total: usize = msgs.len();
    let fields: usize = msgs.values().map(|m| m.field.len()).sum();
    assert_eq!(total, 134, "message count");
    assert_eq!(fields, 276, "field count");
}

#[test]
fn key_fields_have_spec_numbers_and_types() {
    let msgs = messages(&csi_file());
    let m = |n: &str| msgs.get(n).unwrap_or_else(|| panic!("no message {n}"));
    assert_eq!(
        field(m("CreateVolumeRequest"), "name"),
        (1, Type::String, Label::Optional, String::new())
    );
    assert_eq!(field(m("CreateVolumeRequest"), "mutable_parameters").0, 8);
    assert_eq!(
        field(m("CreateVolumeRequest"), "accessibility_requirements").3,
        ".csi.v1.TopologyRequirement"
    );
    assert_eq!(
        field(m("Volume"), "accessible_topology"),
        (5, Type::Message, Label::Repeated, ".csi.v1.Topology".into())
    );
    assert_eq!(
        field(m("VolumeCapability.MountVolume"), "volume_mount_group").0,
        3
    );
    assert_eq!(field(m("NodePublishVolumeRequest"), "volume_context").0, 8);
    assert_eq!(
        field(m("NodePublishVolumeRequest"), "readonly"),
        (6, Type::Bool, Label::Optional, String::new())
    );
    assert_eq!(field(m("Snapshot"), "group_snapshot_id").0, 6);
    assert_eq!(
        field(m("Snapshot"), "creation_time").3,
        ".google.protobuf.Timestamp"
    );
    assert_eq!(
        field(m("GetCapacityResponse"), "minimum_volume_size").3,
        ".google.protobuf.Int64Value"
    );
    assert_eq!(
        field(m("NodeGetInfoResponse"), "max_volumes_per_node").1,
        Type::Int64
    );
    assert_eq!(field(m("ListVolumesRequest"), "max_entries").1, Type::Int32);
    assert_eq!(field(m("GetMetadataDeltaRequest"), "secrets").0, 5);
}

#[test]
fn enum_values() {
    let msgs = messages(&csi_file());
    let values = |msg: &str, e: &str| -> Vec<(String, i32)> {
        msgs[msg]
            .enum_type
            .iter()
            .find(|x| x.name() == e)
            .unwrap()
            .value
            .iter()
            .map(|v| (v.name().to_string(), v.number()))
            .collect()
    };
    let ctrl = values("ControllerServiceCapability.RPC", "Type");
    assert_eq!(ctrl.len(), 16);
    assert_eq!(ctrl[14], ("MODIFY_VOLUME".into(), 14));
    assert_eq!(ctrl[15], ("GET_SNAPSHOT".into(), 15));
    let modes = values("VolumeCapability.AccessMode", "Mode");
    assert_eq!(
        modes.last().unwrap(),
        &("SINGLE_NODE_MULTI_WRITER".to_string(), 7)
    );
    let node = values("NodeServiceCapability.RPC", "Type");
    assert_eq!(node.last().unwrap(), &("VOLUME_MOUNT_GROUP".to_string(), 6));
    let plugin = values("PluginCapability.Service", "Type");
    assert_eq!(
        plugin.last().unwrap(),
        &("SNAPSHOT_METADATA_SERVICE".to_string(), 4)
    );
}

/// Custom options survive in the raw descriptor: every `secrets` map carries
/// `(csi_secret) = true` (field 1059 on FieldOptions: tag bytes 0x98 0x42).
#[test]
fn custom_options_are_present() {
    let raw = flashblade_csi::csi::FILE_DESCRIPTOR_SET;
    let count = |needle: &[u8]| raw.windows(needle.len()).filter(|w| *w == needle).count();
    // csi_secret = true, as a field option.
    assert_eq!(count(&[0x98, 0x42, 0x01]), 19);
    // alpha_* = true (number 1060), on fields, messages, enum values, methods and the service.
    assert_eq!(count(&[0xa0, 0x42, 0x01]), 21);
    let file = csi_file();
    let ext: Vec<(&str, i32)> = file.extension.iter().map(|x| (x.name(), x.number())).collect();
    assert!(ext.contains(&("csi_secret", 1059)));
    assert!(ext.contains(&("alpha_service", 1060)));
    assert_eq!(ext.len(), 7);
}
