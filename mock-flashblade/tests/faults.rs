//! Fault injection, sessions, counters, the control endpoint and persistence,
//! exercised over the simulator's real TLS socket.

mod common;

use std::time::{Duration, Instant};

use common::Api;
use mock_flashblade::{FaultKind, Faults, MockConfig, ScriptedFault, TlsMode};
use serde_json::json;

async fn mock() -> mock_flashblade::MockHandle {
    mock_flashblade::start(MockConfig::default()).await.unwrap()
}

#[tokio::test]
async fn login_session_and_counters() {
    let m = mock().await;
    let mut api = Api::new(&m);
    // No session yet.
    let r = api.call("GET", "file-systems", None).await;
    assert_eq!(r.status, 401);
    // Wrong token.
    let r = api
        .client
        .post(format!("{}/api/login", m.url))
        .header("api-token", "T-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    api.login().await;
    let r = api.call("GET", "file-systems", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total_item_count"], 0);
    let c = m.counters();
    assert_eq!(c.logins, 1);
    assert_eq!(c.failed_logins, 1);
    assert_eq!(c.live_sessions, 1);
    assert_eq!(c.count("GET", "file-systems"), 2);
    assert_eq!(c.count_status("GET", "file-systems", 401), 1);
    // The versioned login path works too, and logout ends the session.
    let r = api
        .client
        .post(format!("{}/api/2.17/login", m.url))
        .header("api-token", &m.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api
        .client
        .post(format!("{}/api/logout", m.url))
        .header("x-auth-token", api.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api.call("GET", "file-systems", None).await.status, 403);
    assert_eq!(m.counters().logouts, 1);
}

#[tokio::test]
async fn expired_sessions_answer_403_with_both_body_shapes() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    assert_eq!(m.expire_sessions(), 1);
    let r = api.call("GET", "arrays", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["message"], "Session has expired.");
    assert_eq!(r.body["errors"][0]["message"], "Session has expired.");
    api.login().await;
    assert_eq!(api.call("GET", "arrays", None).await.status, 200);
}

#[tokio::test]
async fn sessions_expire_by_ttl() {
    let m = mock_flashblade::start(MockConfig {
        session_ttl: Some(Duration::from_millis(200)),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    assert_eq!(api.call("GET", "arrays", None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.call("GET", "arrays", None).await.status, 403);
}

#[tokio::test]
async fn rate_limit_headers_are_always_sent() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    let r = api.call("GET", "arrays", None).await;
    assert_eq!(r.headers["ratelimit-limit"], "100000;w=1;burst=100000");
    assert!(r.headers.contains_key("ratelimit-remaining"));
    assert!(r.headers.contains_key("ratelimit-reset"));
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    let r = api
        .client
        .get(format!("{}/api/2.17/arrays", m.url))
        .header("x-auth-token", api.token.clone().unwrap())
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let r = api.call("GET", "arrays", None).await;
    assert!(!r.headers["x-request-id"].is_empty());
}

#[tokio::test]
async fn latency_and_limited_concurrency() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.set_faults(Faults {
        latency_ms: 100,
        max_concurrency: Some(2),
        ..Default::default()
    });
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, url, token) = (
            api.client.clone(),
            format!("{}/api/2.17/arrays", m.url),
            api.token.clone().unwrap(),
        );
        set.spawn(async move {
            client
                .get(url)
                .header("x-auth-token", token)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    // Six requests, two at a time, 100 ms each: at least three waves.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(m.counters().peak_in_flight, 2);
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.set_faults(Faults {
        rate_limit: Some(5.0),
        rate_burst: Some(3),
        ..Default::default()
    });
    let mut limited = None;
    for _ in 0..10 {
        let r = api.call("GET", "arrays", None).await;
        assert!(r.headers.contains_key("ratelimit-limit"));
        assert!(r.headers.contains_key("ratelimit-remaining"));
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("some request was rate limited");
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    assert!(r.body["message"].as_str().unwrap().contains("rate limit"));
    assert!(m.counters().rate_limited >= 1);
    assert!(m.counters().count_status("GET", "arrays", 429) >= 1);
}

#[tokio::test]
async fn random_errors_at_full_rate() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.set_faults(Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..12 {
        match api.try_call("GET", "arrays", None).await {
            Ok(r) => assert!([500, 502, 503, 504].contains(&r.status), "{}", r.status),
            Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
        }
    }
    assert_eq!(m.counters().injected_faults, 12);
    m.set_faults(Faults::default());
    assert_eq!(api.call("GET", "arrays", None).await.status, 200);
}

#[tokio::test]
async fn scripted_busy_then_success() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.push_fault(ScriptedFault::new(
        Some("POST"),
        Some("file-systems"),
        FaultKind::Busy,
        1,
    ));
    // A GET does not match the scripted POST fault.
    assert_eq!(api.call("GET", "file-systems", None).await.status, 200);
    let r = api.call("POST", "file-systems?names=fs1", Some(json!({}))).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["errors"][0]["message"], "Server is busy");
    // Nothing was created by the busy answer.
    assert!(m.with_state(|s| s.file_systems.is_empty()));
    let r = api.call("POST", "file-systems?names=fs1", Some(json!({}))).await;
    assert_eq!(r.status, 200);
    assert!(m.faults().script.is_empty());
}

#[tokio::test]
async fn ambiguous_failures_commit_the_change() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.push_fault(ScriptedFault::new(Some("POST"), None, FaultKind::Ambiguous500, 1));
    let r = api.call("POST", "file-systems?names=amb1", Some(json!({}))).await;
    assert_eq!(r.status, 500);
    assert!(m.with_state(|s| s.file_systems.contains_key("amb1")));
    assert!(m.fs_dir("amb1").is_dir());

    m.push_fault(ScriptedFault::new(
        Some("POST"),
        None,
        FaultKind::AmbiguousReset,
        1,
    ));
    let r = api
        .try_call("POST", "file-systems?names=amb2", Some(json!({})))
        .await;
    assert!(r.is_err(), "connection dropped");
    assert!(m.with_state(|s| s.file_systems.contains_key("amb2")));
    let c = m.counters();
    assert_eq!(c.count_status("POST", "file-systems", 0), 1);
    assert_eq!(c.count_status("POST", "file-systems", 500), 1);
}

#[tokio::test]
async fn reset_drops_the_connection_without_effect() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.push_fault(ScriptedFault::new(Some("POST"), None, FaultKind::Reset, 1));
    assert!(
        api.try_call("POST", "file-systems?names=r1", Some(json!({})))
            .await
            .is_err()
    );
    assert!(m.with_state(|s| s.file_systems.is_empty()));
    // The client recovers on a fresh connection.
    assert_eq!(
        api.call("POST", "file-systems?names=r1", Some(json!({})))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn stalls_delay_then_succeed_and_session_expiry_can_be_scripted() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    m.set_faults(Faults {
        stall_ms: 300,
        script: vec![ScriptedFault::new(None, Some("arrays"), FaultKind::Stall, 1)],
        ..Default::default()
    });
    let start = Instant::now();
    assert_eq!(api.call("GET", "arrays", None).await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    m.push_fault(ScriptedFault::new(None, None, FaultKind::SessionExpired, 1));
    assert_eq!(api.call("GET", "arrays", None).await.status, 403);
    // The session is really gone.
    assert_eq!(api.call("GET", "arrays", None).await.status, 403);
}

#[tokio::test]
async fn control_endpoint_over_http() {
    let m = mock().await;
    let mut api = Api::new(&m);
    api.login().await;
    let c = &api.client;
    let counters: serde_json::Value = c
        .get(format!("{}/mock/counters", m.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["logins"], 1);
    let r = c
        .put(format!("{}/mock/faults", m.url))
        .json(&json!({"script": [{"method": "GET", "path": "arrays", "kind": "unavailable", "times": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api.call("GET", "arrays", None).await.status, 503);
    assert_eq!(api.call("GET", "arrays", None).await.status, 503);
    assert_eq!(api.call("GET", "arrays", None).await.status, 200);
    let r = c
        .put(format!("{}/mock/faults", m.url))
        .json(&json!({"bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r: serde_json::Value = c
        .post(format!("{}/mock/sessions/expire", m.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["expired"], 1);
    c.post(format!("{}/mock/counters/reset", m.url))
        .send()
        .await
        .unwrap();
    assert_eq!(m.counters().total(), 0);
    // Control requests are not counted as API requests.
    assert_eq!(m.counters().count("GET", "counters"), 0);
}

#[tokio::test]
async fn state_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MockConfig {
        state_dir: Some(dir.path().to_path_buf()),
        tls: TlsMode::Plain,
        ..Default::default()
    };
    let (token, id) = {
        let m = mock_flashblade::start(cfg.clone()).await.unwrap();
        assert!(m.url.starts_with("http://"));
        let mut api = Api::new(&m);
        api.login().await;
        let r = api
            .call(
                "POST",
                "file-systems?names=keep",
                Some(json!({"provisioned": 1024})),
            )
            .await;
        std::fs::write(m.fs_dir("keep").join("f"), b"data").unwrap();
        (
            m.api_token.clone(),
            r.body["items"][0]["id"].as_str().unwrap().to_string(),
        )
    };
    let m = mock_flashblade::start(cfg).await.unwrap();
    assert_eq!(m.api_token, token, "the generated token is kept");
    let mut api = Api::new(&m);
    api.login().await;
    let r = api.call("GET", "file-systems?names=keep", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"][0]["id"], id.as_str());
    assert_eq!(r.body["items"][0]["space"]["virtual"], 4);
}

#[tokio::test]
async fn destroyed_file_systems_are_eradicated_after_the_delay() {
    let m = mock_flashblade::start(MockConfig {
        eradication_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut api = Api::new(&m);
    api.login().await;
    api.call("POST", "file-systems?names=gone", Some(json!({}))).await;
    api.call(
        "POST",
        "file-system-snapshots?source_names=gone",
        Some(json!({"suffix": "s1"})),
    )
    .await;
    let r = api
        .call(
            "PATCH",
            "file-systems?names=gone",
            Some(json!({"destroyed": true})),
        )
        .await;
    assert_eq!(r.status, 200);
    let tr = r.body["items"][0]["time_remaining"].as_i64().unwrap();
    assert!(tr > 0 && tr <= 400, "{tr}");
    // Its snapshot shows as destroyed with it.
    let r = api
        .call("GET", "file-system-snapshots?names_or_owner_names=gone", None)
        .await;
    assert_eq!(r.body["items"][0]["destroyed"], true);
    assert_eq!(r.body["items"][0]["owner_destroyed"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.with_state(|s| s.file_systems.contains_key("gone")) {
        assert!(Instant::now() < deadline, "never eradicated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!m.fs_dir("gone").exists());
    assert!(m.with_state(|s| s.snapshots.is_empty()));
}

#[tokio::test]
async fn binary_prints_one_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-flashblade"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .args([
            "--api-token",
            "T-11111111-2222-3333-4444-555555555555",
            "--latency",
            "1ms",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("{\"url\":\"https://127.0.0.1:"), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["api_token"], "T-11111111-2222-3333-4444-555555555555");
    let ca = dir.path().canonicalize().unwrap().join("ca.pem");
    assert_eq!(v["ca_file"], ca.to_str().unwrap());
    assert_eq!(
        v["data_dir"],
        dir.path().canonicalize().unwrap().join("fs").to_str().unwrap()
    );
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    child.kill().await.unwrap();
    // Nothing else on stdout.
    assert!(lines.next_line().await.unwrap().is_none());
}
