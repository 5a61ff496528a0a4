//! Trust for the array's certificate: the system trust store by default,
//! `--ca-file` instead of it, precise errors for a bad CA file. (Its own test
//! binary: it sets SSL_CERT_FILE, which the whole process sees.)

mod common;

use common::{Driver, create_req};
use flashblade_csi::config::{Mode, Settings};
use flashblade_csi::csi::controller_client::ControllerClient;
use tonic::Code;

fn args(mock: &mock_flashblade::MockHandle, token: &std::path::Path) -> Settings {
    Settings {
        mode: Some(Mode::Controller),
        array: flashblade_csi::config::ArraySettings {
            management_url: Some(mock.url.clone()),
            api_token_file: Some(token.to_path_buf()),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            default_export_rules: Some("10.0.0.0/16(rw,root_squash)".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn the_system_trust_store_is_used_without_a_ca_file() {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &mock.api_token).unwrap();

    // The simulator's CA is in no trust store: refused, and the error says
    // what to do.
    let d1 = dir.path().join("a");
    std::fs::create_dir(&d1).unwrap();
    let untrusted = Driver::start(&d1, args(&mock, &token)).await;
    let e = ControllerClient::new(untrusted.channel().await)
        .create_volume(create_req("pvc-tls", 1 << 30))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("--ca-file"), "{}", e.message());
    untrusted.stop().await;

    // The same CA in the system trust store (as an enterprise CA would be):
    // no --ca-file needed.
    // SAFETY: this test binary runs this one test; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("SSL_CERT_FILE", mock.ca_file.as_ref().unwrap()) };
    let d2 = dir.path().join("b");
    std::fs::create_dir(&d2).unwrap();
    let trusted = Driver::start(&d2, args(&mock, &token)).await;
    let v = ControllerClient::new(trusted.channel().await)
        .create_volume(create_req("pvc-tls", 1 << 30))
        .await
        .unwrap()
        .into_inner();
    assert!(v.volume.is_some());
    trusted.stop().await;
}

#[test]
fn a_bad_ca_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "T-x").unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (file, words) in [
        (empty.clone(), "no PEM certificate"),
        (garbage, "not a PEM file"),
        (dir.path().join("missing.pem"), "ca_file"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args([
                "serve",
                "--mode",
                "controller",
                "--array-url",
                "https://127.0.0.1:9",
            ])
            .arg("--endpoint")
            .arg(format!("unix://{}", dir.path().join("s.sock").display()))
            .arg("--api-token-file")
            .arg(&token)
            .arg("--ca-file")
            .arg(&file)
            .args(["--nfs-endpoint", "127.0.0.1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{err}");
        assert_eq!(err.matches(words).count(), 1, "printed more than once: {err}");
    }
}

/// The array's certificate is replaced by one from a new CA, and the CA
/// file (a mounted Secret) is replaced with it: the running controller
/// verifies the array again without a restart.
#[tokio::test]
async fn a_replaced_ca_file_is_read_again_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token_value = "T-0a1b2c3d-0000-4000-8000-00000000ca01";
    let first = mock_flashblade::start(mock_flashblade::MockConfig {
        api_token: Some(token_value.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let listen: std::net::SocketAddr = first.url.trim_start_matches("https://").parse().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, token_value).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(first.ca_file.as_ref().unwrap(), &ca).unwrap();
    let mut settings = args(&first, &token);
    settings.array.ca_file = Some(ca.clone());
    let d = dir.path().join("driver");
    std::fs::create_dir(&d).unwrap();
    let driver = Driver::start(&d, settings).await;
    let mut client = ControllerClient::new(driver.channel().await);
    client
        .create_volume(create_req("pvc-ca-1", 1 << 30))
        .await
        .unwrap();

    // A new array certificate from a new CA, at the same address.
    first.stop();
    drop(first);
    // The old listener closes asynchronously: try the port for a while.
    let mut tries = 0;
    let second = loop {
        match mock_flashblade::start(mock_flashblade::MockConfig {
            listen,
            api_token: Some(token_value.into()),
            ..Default::default()
        })
        .await
        {
            Ok(m) => break m,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let e = client
        .create_volume(create_req("pvc-ca-2", 1 << 30))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // The Secret is updated: the next call verifies against the new CA.
    std::fs::copy(second.ca_file.as_ref().unwrap(), &ca).unwrap();
    let v = client
        .create_volume(create_req("pvc-ca-2", 1 << 30))
        .await
        .unwrap()
        .into_inner();
    assert!(v.volume.is_some());
    driver.stop().await;
}
