//! The metrics endpoint, scraped over HTTP and parsed as OpenMetrics with a
//! grammar-based parser: the values after creates, a fault-injected retry,
//! a re-login, an ABORTED duplicate, publishes and a stat; the node endpoint;
//! that a scrape never calls the array; and that docs/metrics.md lists
//! exactly the families a running driver exports, with their labels.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::exposition::{self, Exposition};
use common::node::*;
use common::{Driver, controller_env, create_req};
use flashblade_csi::config::Settings;
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use mock_flashblade::{FaultKind, ScriptedFault};
use tonic::Code;

const GIB: i64 = 1 << 30;

/// A loopback address with a free port.
fn free_address() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Scrapes the endpoint and parses what it answers.
async fn scrape(address: SocketAddr) -> Exposition {
    // The endpoint is plain HTTP; reqwest still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.unwrap();
    exposition::parse(&text).unwrap_or_else(|e| panic!("the exposition does not parse: {e}\n{text}"))
}

/// The families docs/metrics.md lists: name → (type, labels).
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `flashblade_csi_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        assert!(
            out.insert(name.clone(), (kind, labels)).is_none(),
            "{name} is listed twice"
        );
    }
    assert!(out.len() > 10, "docs/metrics.md: no table found");
    out
}

/// Scrapes until `ready` holds (the space poll runs on its own schedule).
async fn scrape_until(
    address: SocketAddr,
    within: Duration,
    ready: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let start = Instant::now();
    loop {
        let s = scrape(address).await;
        if ready(&s) {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "the scrape never showed what was expected"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn with_metrics(address: SocketAddr, poll: &str) -> impl FnOnce(&mut Settings) {
    let poll = humantime::parse_duration(poll).unwrap();
    move |s: &mut Settings| {
        s.metrics_address = Some(address);
        s.metrics_poll_interval = Some(poll);
    }
}

#[tokio::test]
async fn controller_and_node_metrics_after_real_work() {
    require_root!();
    let address = free_address();
    let ne = node_env(with_metrics(address, "10s")).await;
    let mock = &ne.env.mock;
    let ch = ne.env.driver.channel().await;
    let mut ctl = ControllerClient::new(ch.clone());
    let mut node = NodeClient::new(ch);

    // Creates, the second through one 429 (retried after the array's hint).
    let mut volumes = Vec::new();
    for (i, name) in ["pvc-m1", "pvc-m2", "pvc-m3"].into_iter().enumerate() {
        if i == 1 {
            mock.push_fault(ScriptedFault::new(
                Some("POST"),
                Some("file-systems"),
                FaultKind::RateLimited,
                1,
            ));
        }
        let v = ctl
            .create_volume(create_req(name, (i as i64 + 1) * GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        volumes.push(v);
    }
    // A refused session: one re-login.
    mock.expire_sessions();
    ctl.get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap();

    // A duplicate while the first create is still on the array: ABORTED.
    let mut faults = mock.faults();
    faults.stall_ms = 1500;
    mock.set_faults(faults);
    mock.push_fault(ScriptedFault::new(
        Some("POST"),
        Some("file-systems"),
        FaultKind::Stall,
        1,
    ));
    let mut first = ctl.clone();
    let slow = tokio::spawn(async move { first.create_volume(create_req("pvc-m4", GIB)).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dup = ctl.create_volume(create_req("pvc-m4", GIB)).await.unwrap_err();
    assert_eq!(dup.code(), Code::Aborted, "{dup:?}");
    slow.await.unwrap().unwrap();

    // Stage and publish one volume twice, and a stat.
    let v = &volumes[0];
    let staging = ne
        .kubelet
        .join("plugins/kubernetes.io/csi/flashblade.csi.dev/m1/globalmount");
    let t1 = ne.kubelet.join("pods/p1/volumes/kubernetes.io~csi/pvc-m1/mount");
    let t2 = ne.kubelet.join("pods/p2/volumes/kubernetes.io~csi/pvc-m1/mount");
    node.node_stage_volume(stage_req(v, &staging, 5)).await.unwrap();
    node.node_publish_volume(publish_req(v, &staging, &t1, false, 5))
        .await
        .unwrap();
    node.node_publish_volume(publish_req(v, &staging, &t2, true, 5))
        .await
        .unwrap();
    std::fs::write(t1.join("data.bin"), vec![7u8; 1 << 20]).unwrap();
    let st = stats(&mut node, &v.volume_id, &t1).await;
    assert!(!st.volume_condition.unwrap().abnormal);
    unpublish(&mut node, &v.volume_id, &t2).await;

    // The poll runs at start and every 10s: wait for one that saw the volumes.
    let s = scrape_until(address, Duration::from_secs(30), |s| {
        s.value("flashblade_csi_volume_provisioned_bytes", &[]) > 0.0
            && s.family("flashblade_csi_volume_provisioned_bytes")
                .is_some_and(|f| f.samples.len() == 4)
    })
    .await;

    let calls = |method: &str, code: &str| {
        s.value(
            "flashblade_csi_csi_calls_total",
            &[("method", method), ("grpc_code", code)],
        )
    };
    assert_eq!(calls("CreateVolume", "OK"), 4.0);
    assert_eq!(calls("CreateVolume", "ABORTED"), 1.0);
    assert_eq!(calls("NodeStageVolume", "OK"), 1.0);
    assert_eq!(calls("NodePublishVolume", "OK"), 2.0);
    assert_eq!(calls("NodeGetVolumeStats", "OK"), 1.0);
    assert_eq!(calls("NodeUnpublishVolume", "OK"), 1.0);
    assert_eq!(
        s.value(
            "flashblade_csi_csi_call_duration_seconds",
            &[("method", "CreateVolume")]
        ),
        5.0
    );
    assert_eq!(
        s.value(
            "flashblade_csi_operations_aborted_total",
            &[("service", "controller"), ("operation", "create")]
        ),
        1.0
    );

    // The array side agrees with what the simulator saw.
    let fb = [("array", "fb01")];
    let req = |op: &str, status: &str| {
        s.value(
            "flashblade_csi_array_requests_total",
            &[("array", "fb01"), ("operation", op), ("status", status)],
        )
    };
    let counters = mock.counters();
    assert_eq!(req("POST file-systems", "429"), 1.0);
    assert_eq!(
        req("POST file-systems", "200"),
        counters.count_status("POST", "file-systems", 200) as f64
    );
    assert_eq!(req("POST file-systems", "200"), 4.0);
    assert!(req("GET arrays/space", "200") >= 2.0, "GetCapacity and the poll");
    assert_eq!(req("GET file-systems", "403"), 0.0);
    assert_eq!(
        s.value(
            "flashblade_csi_array_retries_total",
            &[("array", "fb01"), ("reason", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(s.value("flashblade_csi_array_relogins_total", &fb), 1.0);
    assert_eq!(
        s.value(
            "flashblade_csi_array_logins_total",
            &[("array", "fb01"), ("result", "success")]
        ),
        2.0
    );
    assert_eq!(s.value("flashblade_csi_array_requests_in_flight", &fb), 0.0);
    assert_eq!(s.value("flashblade_csi_array_requests_waiting", &fb), 0.0);
    assert!(
        s.value(
            "flashblade_csi_array_request_duration_seconds",
            &[("array", "fb01"), ("operation", "POST file-systems")]
        ) >= 5.0
    );

    // The poll: the array's capacity and each volume by its id.
    assert_eq!(s.value("flashblade_csi_array_reachable", &fb), 1.0);
    assert_eq!(
        s.value("flashblade_csi_array_capacity_bytes", &fb),
        (100i64 << 40) as f64
    );
    for (i, v) in volumes.iter().enumerate() {
        let l = [("array", "fb01"), ("volume_id", v.volume_id.as_str())];
        assert_eq!(
            s.value("flashblade_csi_volume_provisioned_bytes", &l),
            ((i as i64 + 1) * GIB) as f64
        );
        assert_eq!(s.value("flashblade_csi_volume_hard_limit_enabled", &l), 1.0);
        // Only the first volume holds data (1 MiB, written through its mount).
        let used = s.value("flashblade_csi_volume_used_bytes", &l);
        if i == 0 {
            assert!(used >= (1 << 20) as f64, "{used}");
        } else {
            assert!(used < (1 << 20) as f64, "{used}");
        }
    }

    // The node: two binds and a local-bind stage; one normal unmount.
    let mounts = |kind: &str, result: &str| {
        s.value(
            "flashblade_csi_node_mounts_total",
            &[("kind", kind), ("result", result)],
        )
    };
    assert_eq!(mounts("bind", "success"), 3.0);
    assert_eq!(mounts("nfs", "success"), 0.0);
    assert_eq!(
        s.value(
            "flashblade_csi_node_unmount_steps_total",
            &[("step", "normal"), ("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        s.value("flashblade_csi_node_unmount_steps_total", &[("step", "forced")]),
        0.0
    );
    assert_eq!(s.value("flashblade_csi_node_deadlines_exceeded_total", &[]), 0.0);
    assert_eq!(s.value("flashblade_csi_node_volumes_abnormal", &[]), 0.0);

    // docs/metrics.md lists exactly what a driver in `all` mode exports.
    let scraped = s.promql_families();
    let docs = documented();
    for (name, (kind, labels)) in &scraped {
        let d = docs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in docs/metrics.md"));
        assert_eq!(&d.0, kind, "{name}: type in docs/metrics.md");
        assert_eq!(&d.1, labels, "{name}: labels in docs/metrics.md");
    }
    for name in docs.keys() {
        assert!(
            scraped.contains_key(name),
            "docs/metrics.md lists {name}, which the driver does not export"
        );
    }

    unpublish(&mut node, &v.volume_id, &t1).await;
    unstage(&mut node, &v.volume_id, &staging).await;
}

#[tokio::test]
async fn node_endpoint_counts_node_calls_and_nothing_of_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = tempfile::tempdir().unwrap();
    let address = free_address();
    let mut args = common::node_args("node-m");
    args.kubelet_dir = Some(kubelet.path().to_path_buf());
    with_metrics(address, "0s")(&mut args);
    let driver = Driver::start(dir.path(), args).await;
    let mut node = NodeClient::new(driver.channel().await);
    node.node_get_info(csi::NodeGetInfoRequest {}).await.unwrap();
    node.node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
        .await
        .unwrap();
    let missing = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: "fb01/k8s-x/1".into(),
            volume_path: kubelet.path().join("pods/none/mount").to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let s = scrape(address).await;
    let calls = |method: &str, code: &str| {
        s.value(
            "flashblade_csi_csi_calls_total",
            &[("method", method), ("grpc_code", code)],
        )
    };
    assert_eq!(calls("NodeGetInfo", "OK"), 1.0);
    assert_eq!(calls("NodeGetCapabilities", "OK"), 1.0);
    assert_eq!(calls("NodeGetVolumeStats", "NOT_FOUND"), 1.0);
    // A controller method on a node: tonic answers UNIMPLEMENTED; counted.
    let mut ctl = ControllerClient::new(driver.channel().await);
    let e = ctl.create_volume(create_req("pvc-x", GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let s = scrape(address).await;
    assert_eq!(
        s.value(
            "flashblade_csi_csi_calls_total",
            &[("method", "CreateVolume"), ("grpc_code", "UNIMPLEMENTED")]
        ),
        1.0
    );
    // The node families start at zero; no array or volume family at all.
    let families = s.promql_families();
    for name in [
        "flashblade_csi_node_mounts_total",
        "flashblade_csi_node_unmount_steps_total",
        "flashblade_csi_node_deadlines_exceeded_total",
        "flashblade_csi_node_volumes_abnormal",
    ] {
        assert!(families.contains_key(name), "{name} missing: {families:?}");
    }
    assert!(
        families
            .keys()
            .all(|n| !n.starts_with("flashblade_csi_array_") && !n.starts_with("flashblade_csi_volume_")),
        "{families:?}"
    );
    // Health checks are not CSI calls.
    assert_eq!(
        s.value("flashblade_csi_csi_calls_total", &[("method", "Check")]),
        0.0
    );
    driver.stop().await;
}

#[tokio::test]
async fn a_scrape_never_calls_the_array() {
    let address = free_address();
    let env = controller_env(common::ControllerOpts {
        metrics: Some((address, "0s")),
        ..Default::default()
    })
    .await;
    let mut ctl = ControllerClient::new(env.driver.channel().await);
    ctl.create_volume(create_req("pvc-s", GIB)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.mock.reset_counters();
    for _ in 0..5 {
        let s = scrape(address).await;
        assert_eq!(
            s.value(
                "flashblade_csi_csi_calls_total",
                &[("method", "CreateVolume"), ("grpc_code", "OK")]
            ),
            1.0
        );
    }
    let counters = env.mock.counters();
    assert!(
        counters.requests.is_empty() && counters.logins == 0,
        "a scrape reached the array: {counters:?}"
    );
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok =
        "# TYPE a counter\na_total{x=\"1,2\\\"\"} 3\n# TYPE h_seconds histogram\n# UNIT h_seconds seconds\n";
    assert!(exposition::parse("# TYPE a counter\na_total 1\n# EOF\n").is_ok());
    for (bad, why) in [
        ("# TYPE a counter\na_total 1\n", "no EOF"),
        ("# TYPE a counter\na 1\n# EOF\n", "counter sample without _total"),
        ("# TYPE a gauge\nb 1\n# EOF\n", "sample outside its family"),
        ("# TYPE a gauge\na{x=1} 1\n# EOF\n", "unquoted label"),
        ("# TYPE a gauge\na 1\na 2\n# EOF\n", "repeated series"),
        (
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n# EOF\n",
            "split family",
        ),
        (
            "# TYPE a_bytes gauge\n# UNIT a_bytes seconds\n# EOF\n",
            "unit not in the name",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n# EOF\n",
            "falling buckets",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 0\n# EOF\n",
            "count differs",
        ),
    ] {
        assert!(exposition::parse(bad).is_err(), "accepted: {why}");
    }
    let e = exposition::parse(&format!(
        "{ok}h_seconds_bucket{{le=\"0.5\"}} 1\nh_seconds_bucket{{le=\"+Inf\"}} 2\nh_seconds_count 2\nh_seconds_sum 1.5\n# EOF\n"
    ))
    .unwrap();
    assert_eq!(e.value("a_total", &[("x", "1,2\"")]), 3.0);
    assert_eq!(e.value("h_seconds", &[]), 2.0);
    assert_eq!(e.value("h", &[]), 0.0, "no such family");
}

#[tokio::test]
async fn a_metrics_address_in_use_stops_the_start_with_its_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = common::node_args("node-busy");
    args.endpoint = Some(format!("unix://{}", dir.path().join("csi.sock").display()));
    args.kubelet_dir = Some(dir.path().to_path_buf());
    args.metrics_address = Some(taken.local_addr().unwrap());
    let config = flashblade_csi::config::Config::load(&args).unwrap();
    let err = flashblade_csi::app::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("metrics-address 127.0.0.1:"), "{err}");
    // Nothing was served: the socket was never created.
    assert!(!dir.path().join("csi.sock").exists());
}
