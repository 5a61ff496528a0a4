//! How many requests per second mock-flashblade serves with no injected
//! latency, over TLS with connection reuse, at a given concurrency.
//!
//! Run: `cargo bench -p mock-flashblade --bench throughput`
//! (set BENCH_REQUESTS / BENCH_CONCURRENCY to change the load).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mock_flashblade::{MockConfig, start};

fn client(pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let total = env("BENCH_REQUESTS", 4000);
    let concurrency = env("BENCH_CONCURRENCY", 32);
    let m = start(MockConfig {
        persist: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(m.ca_pem.as_deref().unwrap());
    let login = c
        .post(format!("{}/api/login", m.url))
        .header("api-token", &m.api_token)
        .send()
        .await
        .unwrap();
    let token = login.headers()["x-auth-token"].to_str().unwrap().to_string();
    println!(
        "mock-flashblade throughput: {total} requests per phase, concurrency {concurrency}, TLS, no injected latency"
    );

    for phase in [
        "POST file-systems",
        "GET file-systems?names=",
        "PATCH file-systems (resize)",
        "GET file-systems (filter)",
        "CreateVolume mix (filter + POST)",
    ] {
        let start_at = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let per_worker = total / concurrency;
        for w in 0..concurrency {
            let (c, url, token) = (c.clone(), m.url.clone(), token.clone());
            set.spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                for i in 0..per_worker {
                    let name = format!("bench-{w}-{i}");
                    let t = Instant::now();
                    if phase.starts_with("CreateVolume") {
                        // What the driver sends per new volume: a look-up by
                        // name, then the create.
                        let name = format!("mix-{w}-{i}");
                        let r = c
                            .get(format!("{url}/api/2.17/file-systems?filter=name%3D%27{name}%27"))
                            .header("x-auth-token", &token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let _ = r.bytes().await.unwrap();
                        let r = c
                            .post(format!("{url}/api/2.17/file-systems?names={name}"))
                            .header("content-type", "application/json")
                            .header("x-auth-token", &token)
                            .body(r#"{"provisioned":10737418240,"hard_limit_enabled":true}"#)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let _ = r.bytes().await.unwrap();
                        lat.push(t.elapsed());
                        continue;
                    }
                    let rb = match phase {
                        "POST file-systems" => c
                            .post(format!("{url}/api/2.17/file-systems?names={name}"))
                            .header("content-type", "application/json")
                            .body(r#"{"provisioned":10737418240,"hard_limit_enabled":true,"nfs":{"v3_enabled":true,"v4_1_enabled":true,"rules":"10.0.0.0/8(rw,root_squash)"}}"#),
                        "GET file-systems?names=" => c.get(format!("{url}/api/2.17/file-systems?names={name}")),
                        "PATCH file-systems (resize)" => c
                            .patch(format!("{url}/api/2.17/file-systems?names={name}"))
                            .header("content-type", "application/json")
                            .body(r#"{"provisioned":21474836480}"#),
                        _ => c.get(format!("{url}/api/2.17/file-systems?filter=name%3D%27{name}%27")),
                    };
                    let r = rb.header("x-auth-token", &token).send().await.unwrap();
                    assert_eq!(r.status(), 200, "{phase}");
                    let _ = r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            });
        }
        let mut lat = Vec::new();
        while let Some(r) = set.join_next().await {
            lat.extend(r.unwrap());
        }
        let secs = start_at.elapsed().as_secs_f64();
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        // The mix sends two requests per iteration.
        let per = if phase.starts_with("CreateVolume") {
            2.0
        } else {
            1.0
        };
        println!(
            "  {phase:<34} {:>8.0} req/s   p50 {:>7.2?}   p99 {:>7.2?}",
            per * lat.len() as f64 / secs,
            p(0.50),
            p(0.99)
        );
    }
}
