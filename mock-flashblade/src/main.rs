//! The `mock-flashblade` binary: starts the simulator, prints one JSON ready
//! line on stdout, logs to stderr, and runs until SIGTERM / SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mock_flashblade::{Faults, MockConfig, TlsMode, defaults};

/// A fault-injectable FlashBlade REST 2.x simulator.
#[derive(Parser, Debug)]
#[command(name = "mock-flashblade", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = defaults::LISTEN)]
    listen: SocketAddr,
    /// Directory for state, certificates and file-system data.
    #[arg(long)]
    state_dir: PathBuf,
    /// API token to accept (default: reuse STATE_DIR/api-token or generate one).
    #[arg(long, env = "MOCK_FLASHBLADE_API_TOKEN")]
    api_token: Option<String>,
    /// Serve plain HTTP instead of TLS.
    #[arg(long)]
    plain_http: bool,
    /// Serve TLS with this certificate chain (PEM) instead of a generated one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra DNS name or IP for the generated certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Delay added to every API request, e.g. 20ms.
    #[arg(long, value_parser = parse_duration)]
    latency: Option<Duration>,
    /// Up to this much extra random delay, e.g. 5ms.
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Requests beyond N wait for a slot.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Rate limit, e.g. 100/s (429 with Retry-After beyond it).
    #[arg(long, value_parser = parse_rate)]
    rate_limit: Option<f64>,
    /// Token-bucket burst for --rate-limit (default: one second's worth).
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Probability (0-1) of a random 500 busy / 502 / 503 / 504 / reset.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    error_rate: f64,
    /// Probability (0-1) that a change is committed and then answered with a
    /// 500 or a dropped connection.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    ambiguous_rate: f64,
    /// Probability (0-1) of a stall of --stall before a request is handled.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    stall_rate: f64,
    /// Length of a stall, e.g. 20s.
    #[arg(long, value_parser = parse_duration, default_value = defaults::STALL_TEXT)]
    stall: Duration,
    /// Sessions expire this long after login, e.g. 1h.
    #[arg(long, value_parser = parse_duration)]
    session_ttl: Option<Duration>,
    /// Destroyed file systems and snapshots are eradicated after this, e.g. 24h.
    #[arg(long, value_parser = parse_duration, default_value = defaults::ERADICATION_DELAY_TEXT)]
    eradication_delay: Duration,
    /// Do not keep array state in STATE_DIR/state.json.
    #[arg(long)]
    no_persist: bool,
    /// Array capacity, e.g. 100T (binary units).
    #[arg(long, value_parser = parse_bytes, default_value = defaults::CAPACITY_TEXT)]
    capacity: i64,
    /// Owner UID:GID of a new file system's root directory (applied when
    /// the simulator runs as root).
    #[arg(long, value_name = "UID:GID", value_parser = parse_owner, default_value = "0:0")]
    fs_root_owner: (u32, u32),
    /// Mode (octal, up to 7777) of a new file system's root directory.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, default_value = "755")]
    fs_root_mode: u32,
    /// Simulate an array that differs from the driver's assumptions: error
    /// messages without "does not exist", "already exists" or "busy".
    #[arg(long)]
    other_error_texts: bool,
    /// Simulate an array that refuses `name>'…'` / `name<'…'` in list
    /// filters (no keyset paging).
    #[arg(long)]
    no_keyset_paging: bool,
    /// Simulate an array that refuses one PATCH renaming and destroying a
    /// file system together.
    #[arg(long)]
    no_rename_with_destroy: bool,
    /// Show snapshots under `.snapshot/` by their full name, not their suffix.
    #[arg(long)]
    snapshot_entry_full_name: bool,
    /// The role `admins` reports for the API token's user.
    #[arg(long, default_value = defaults::TOKEN_ROLE)]
    token_role: String,
}

/// A flag's value that does not parse: what was given and what was wanted.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{given:?} is not {wanted}")]
struct BadValue {
    given: String,
    wanted: &'static str,
}

fn bad(given: impl Into<String>, wanted: &'static str) -> BadValue {
    BadValue {
        given: given.into(),
        wanted,
    }
}

fn parse_duration(s: &str) -> Result<Duration, BadValue> {
    const WANTED: &str = "a duration with a unit (ms, s, m, h, d), like 500ms";
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad(s, WANTED))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad(s, WANTED))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return Err(bad(s, WANTED)),
    })
}

fn parse_rate(s: &str) -> Result<f64, BadValue> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.parse::<f64>()
        .ok()
        .filter(|r| *r > 0.0)
        .ok_or_else(|| bad(s, "a rate like 100/s"))
}

fn parse_bytes(s: &str) -> Result<i64, BadValue> {
    let (n, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        Some('P') => (&s[..s.len() - 1], 1 << 50),
        _ => (s, 1),
    };
    n.parse::<i64>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .filter(|v| *v > 0)
        .ok_or_else(|| bad(s, "a size like 100T"))
}

fn parse_owner(s: &str) -> Result<(u32, u32), BadValue> {
    let id = |v: &str| {
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u32>().ok())
            .flatten()
    };
    s.split_once(':')
        .and_then(|(u, g)| Some((id(u)?, id(g)?)))
        .ok_or_else(|| bad(s, "UID:GID in decimal, like 0:0"))
}

fn parse_mode(s: &str) -> Result<u32, BadValue> {
    (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(s, 8).ok())
        .flatten()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| bad(s, "an octal mode up to 7777, like 755"))
}

/// A `--*-rate` flag's value: a probability.
fn parse_probability(s: &str) -> Result<f64, BadValue> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| bad(s, "a probability between 0 and 1"))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in a redirected log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let faults = Faults {
        latency_ms: args.latency.map_or(0, |d| d.as_millis() as u64),
        jitter_ms: args.jitter.map_or(0, |d| d.as_millis() as u64),
        max_concurrency: args.max_concurrency,
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst,
        error_rate: args.error_rate,
        ambiguous_rate: args.ambiguous_rate,
        stall_rate: args.stall_rate,
        stall_ms: args.stall.as_millis() as u64,
        script: Vec::new(),
    };
    let tls = if args.plain_http {
        TlsMode::Plain
    } else if let (Some(cert), Some(key)) = (args.tls_cert.clone(), args.tls_key.clone()) {
        TlsMode::Files { cert, key }
    } else {
        TlsMode::SelfSigned
    };
    let config = MockConfig {
        listen: args.listen,
        state_dir: Some(args.state_dir.clone()),
        api_token: args.api_token.clone(),
        tls,
        tls_sans: args.tls_sans.clone(),
        faults,
        eradication_delay: args.eradication_delay,
        session_ttl: args.session_ttl,
        persist: !args.no_persist,
        capacity: args.capacity,
        fs_root: mock_flashblade::FsRoot {
            uid: args.fs_root_owner.0,
            gid: args.fs_root_owner.1,
            mode: args.fs_root_mode,
        },
        quirks: mock_flashblade::Quirks {
            other_error_texts: args.other_error_texts,
            no_keyset_paging: args.no_keyset_paging,
            no_rename_with_destroy: args.no_rename_with_destroy,
            snapshot_entry_full_name: args.snapshot_entry_full_name,
            token_role: Some(args.token_role),
        },
    };
    let handle = match mock_flashblade::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mock-flashblade: {}", mock_flashblade::error_chain(&e));
            std::process::exit(1);
        }
    };
    tracing::info!(url = %handle.url, data_dir = %handle.data_dir.display(), "mock-flashblade ready");
    // Exactly one line on stdout, for scripts and the demo.
    println!("{}", handle.ready_line());

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    handle.stop();
}

#[cfg(test)]
mod tests {
    /// The command line's defaults are the library's: a simulator started
    /// with no options behaves as `MockConfig::default()` does.
    #[test]
    fn command_line_defaults_are_the_librarys() {
        let a = Args::parse_from(["mock-flashblade", "--state-dir", "/tmp/x"]);
        let d = MockConfig::default();
        assert_eq!(a.listen, d.listen);
        assert_eq!(a.eradication_delay, d.eradication_delay);
        assert_eq!(a.capacity, d.capacity);
        assert_eq!(a.fs_root_owner, (d.fs_root.uid, d.fs_root.gid));
        assert_eq!(a.fs_root_mode, d.fs_root.mode);
        assert_eq!(a.token_role, defaults::TOKEN_ROLE);
    }

    use super::*;

    #[test]
    fn root_owner_and_mode_flags() {
        assert_eq!(parse_owner("0:0"), Ok((0, 0)));
        assert_eq!(parse_owner("1000:100"), Ok((1000, 100)));
        for bad in [
            "",
            "1000",
            "1000:",
            ":100",
            "-1:0",
            "+1:0",
            "a:b",
            "1:2:3",
            "4294967296:0",
        ] {
            assert!(parse_owner(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("02775"), Ok(0o2775));
        assert_eq!(parse_mode("7777"), Ok(0o7777));
        for bad in ["", "8", "0o755", "17777", "777777", "-755"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }
}
