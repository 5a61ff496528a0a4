//! mock-flashblade: a faithful, fault-injectable Pure Storage FlashBlade REST
//! 2.x simulator.
//!
//! It serves the API-token login and session flow, file systems, file-system
//! snapshots, user and group quotas, NFS export policies and rules, `arrays`
//! and `arrays/space`, with FlashBlade's envelopes, error bodies and status
//! codes. Each file system is a real directory under the data dir, so mounts
//! and usage figures are real. Faults (latency, limited concurrency, rate
//! limits, random errors, ambiguous failures, stalls, session expiry) can be
//! set at start or at runtime, and counters record every request.
//!
//! Start it in-process with [`start`]; the returned [`MockHandle`] stops it
//! when dropped.

mod api;
mod control;
mod data;
mod faults;
mod filter;
mod gate;
mod limits;
mod login;
mod mountd;
mod quirks;
mod server;
mod sessions;
mod shared;
mod state;
pub mod tls;

pub use limits::{BtrfsScratch, NoHardLimits, ScratchError};

/// An error and its causes on one line, outermost first: "a: b: c".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use faults::{Counters, FaultKind, Faults, RequestCount, ScriptedFault};
pub use quirks::Quirks;
use sessions::Sessions;
use shared::Shared;
use state::Array;
/// The array model [`MockHandle::with_state`] shows.
pub use state::{ArrayState, FileSystem, FsRoot, Nfs, Policy, Quota, Rule, Snapshot};

/// How the management port does TLS.
#[derive(Clone, Debug, Default)]
pub enum TlsMode {
    /// A generated CA and server certificate; the CA goes to `state_dir/ca.pem`.
    #[default]
    SelfSigned,
    /// A supplied certificate chain and key (PEM).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP.
    Plain,
}

/// Start-up settings.
#[derive(Clone, Debug)]
pub struct MockConfig {
    pub listen: SocketAddr,
    /// Where state, certificates and data live; a temporary directory (removed
    /// with the handle) when `None`.
    pub state_dir: Option<PathBuf>,
    /// The API token to accept; reused from `state_dir/api-token` or generated
    /// when `None`.
    pub api_token: Option<String>,
    pub tls: TlsMode,
    /// Extra subject alternative names for the generated certificate.
    pub tls_sans: Vec<String>,
    pub faults: Faults,
    /// Destroyed objects are eradicated after this long (FlashBlade: 24 h).
    pub eradication_delay: Duration,
    /// Sessions expire this long after login.
    pub session_ttl: Option<Duration>,
    /// Keep array state in `state_dir/state.json` across restarts.
    pub persist: bool,
    /// Array capacity in bytes.
    pub capacity: i64,
    /// Owner and mode of a new file system's root directory (the owner is
    /// applied only when the simulator runs as root).
    pub fs_root: FsRoot,
    /// Where the simulator departs from the documented behaviour.
    pub quirks: Quirks,
}

/// The simulator's defaults, written once: `MockConfig::default()` and the
/// command line's defaults both come from here.
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "127.0.0.1:0";
    pub const ERADICATION_DELAY: Duration = Duration::from_secs(24 * 3600);
    pub const ERADICATION_DELAY_TEXT: &str = "24h";
    pub const CAPACITY: i64 = 100 << 40;
    pub const CAPACITY_TEXT: &str = "100T";
    pub const STALL_TEXT: &str = "20s";
    /// What `admins` reports as the token's role unless told otherwise.
    pub const TOKEN_ROLE: &str = "array_admin";
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: defaults::LISTEN.parse().expect("a socket address"),
            state_dir: None,
            api_token: None,
            tls: TlsMode::SelfSigned,
            tls_sans: Vec::new(),
            faults: Faults::default(),
            eradication_delay: defaults::ERADICATION_DELAY,
            session_ttl: None,
            persist: true,
            capacity: defaults::CAPACITY,
            fs_root: FsRoot::default(),
            quirks: Quirks::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state dir {}", path.display())]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS")]
    Tls(#[from] tls::TlsError),
}

/// A running simulator. Dropping it stops the server.
pub struct MockHandle {
    pub url: String,
    pub addr: SocketAddr,
    pub api_token: String,
    /// PEM of the CA that signs the server certificate (generated TLS only).
    pub ca_pem: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Whether a write past a file system's hard limit fails with EDQUOT
    /// (the data directory is on btrfs); `Err` says why not.
    pub hard_limits: Result<(), NoHardLimits>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    _tempdir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("url", &self.url)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl MockHandle {
    /// `host:port` as the Python SDK's `target` wants it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    pub fn counters(&self) -> Counters {
        let live = self.shared.sessions.len();
        self.shared.counters.lock().unwrap().snapshot(live)
    }

    pub fn reset_counters(&self) {
        *self.shared.counters.lock().unwrap() = Default::default();
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().unwrap().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Adds a deterministic fault for the next matching request(s).
    pub fn push_fault(&self, fault: ScriptedFault) {
        self.shared.faults.lock().unwrap().script.push(fault);
    }

    /// Accepts only `token` from now on (an admin rotating the API token).
    /// Existing sessions stay valid until they expire.
    pub fn set_api_token(&self, token: &str) {
        self.shared.sessions.set_api_token(token);
    }

    /// Ends every session, as an array restart or idle timeout would.
    pub fn expire_sessions(&self) -> usize {
        self.shared.sessions.expire_all()
    }

    /// The session tokens currently issued (for tests that check a client
    /// never leaks them).
    pub fn session_tokens(&self) -> Vec<String> {
        self.shared.sessions.tokens()
    }

    /// Runs the eradication sweep now.
    pub fn sweep(&self) {
        self.shared.sweep();
    }

    /// The directory holding a file system's content.
    pub fn fs_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// Reads the array model (for assertions).
    pub fn with_state<R>(&self, f: impl FnOnce(&ArrayState) -> R) -> R {
        f(&self.shared.array.lock().unwrap().st)
    }

    /// The ready line the binary prints.
    pub fn ready_line(&self) -> String {
        // Fields in the documented order (serde_json would sort them).
        let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        format!(
            "{{\"url\":{},\"api_token\":{},\"ca_file\":{},\"data_dir\":{}}}",
            s(&self.url),
            s(&self.api_token),
            self.ca_file
                .as_ref()
                .map_or("null".to_string(), |p| s(&p.to_string_lossy())),
            s(&self.data_dir.to_string_lossy()),
        )
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.shared.array.lock().unwrap().flush();
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Ok(mut a) = self.shared.array.lock() {
            a.flush();
        }
    }
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> StartError + '_ {
    move |source| StartError::StateDir {
        path: path.to_path_buf(),
        source,
    }
}

/// Starts the simulator; returns once it accepts connections.
pub async fn start(config: MockConfig) -> Result<MockHandle, StartError> {
    let (state_dir, tempdir) = match &config.state_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("mock-flashblade-")
                .tempdir()
                .map_err(io(std::path::Path::new("/tmp")))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&state_dir).map_err(io(&state_dir))?;
    let state_dir = state_dir.canonicalize().map_err(io(&state_dir))?;
    let data_dir = state_dir.join("fs");
    let snap_dir = state_dir.join("snapshots");
    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    std::fs::create_dir_all(&snap_dir).map_err(io(&snap_dir))?;

    let token_file = state_dir.join("api-token");
    let api_token = match &config.api_token {
        Some(t) => t.clone(),
        None => match std::fs::read_to_string(&token_file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = format!("T-{}", state::new_id());
                std::fs::write(&token_file, &t).map_err(io(&token_file))?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600));
                t
            }
        },
    };

    let persist_path = state_dir.join("state.json");
    let st = if config.persist {
        Array::load(&persist_path).unwrap_or_else(|| ArrayState::new(config.capacity))
    } else {
        ArrayState::new(config.capacity)
    };
    let mut array = Array::new(
        st,
        data_dir.clone(),
        snap_dir,
        config.eradication_delay.as_millis() as i64,
    );
    let (limits, why_not) = limits::Limits::detect(&data_dir);
    array.limits = limits;
    array.fs_root = config.fs_root;
    array.quirks = config.quirks.clone();
    match &why_not {
        Ok(()) => {
            tracing::info!(dir = %data_dir.display(), "hard limits are enforced on writes (btrfs qgroups)")
        }
        Err(why) => {
            tracing::info!(dir = %data_dir.display(), "hard limits are not enforced on writes: {}", error_chain(why))
        }
    }
    if config.persist {
        array.persist_path = Some(persist_path);
        array.save();
        array.flush();
    }

    let (tls, ca_pem) = match &config.tls {
        TlsMode::Plain => (None, None),
        TlsMode::SelfSigned => {
            let t = tls::generate(&config.tls_sans)?;
            (Some(t.config), t.ca_pem)
        }
        TlsMode::Files { cert, key } => {
            let t = tls::load(cert, key)?;
            (Some(t.config), None)
        }
    };
    let ca_file = match (&ca_pem, &config.tls) {
        (Some(pem), _) => {
            let p = state_dir.join("ca.pem");
            std::fs::write(&p, pem).map_err(io(&p))?;
            Some(p)
        }
        (None, TlsMode::Files { cert, .. }) => Some(cert.clone()),
        _ => None,
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host = match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".into(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let url = format!("{scheme}://{host}:{}", addr.port());

    let shared = Arc::new(Shared::new(
        array,
        Sessions::new(api_token.clone(), config.session_ttl),
        config.faults.clone(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(server::serve(listener, acceptor, shared.clone(), stop_rx.clone()));

    // Auto-eradication of destroyed objects.
    let sweeper = shared.clone();
    let mut stop_sweep = stop_rx;
    let period = (config.eradication_delay / 4).clamp(Duration::from_millis(50), Duration::from_millis(250));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop_sweep.changed() => break,
            }
            // Eradicate what is due, then write the state if anything changed
            // (writes are batched so a burst of changes costs one write).
            let s = sweeper.clone();
            let _ = tokio::task::spawn_blocking(move || s.sweep()).await;
        }
    });

    Ok(MockHandle {
        url,
        addr,
        api_token,
        ca_pem,
        ca_file,
        data_dir,
        state_dir,
        hard_limits: why_not,
        shared,
        stop: stop_tx,
        _tempdir: tempdir,
    })
}
