//! Configuration: command-line flags and environment variables (through clap)
//! layered over an optional TOML file, validated into one [`Config`].
//!
//! Precedence: flag > environment variable > config file > built-in default.
//! Every validation error names the setting and says what is wrong, and the
//! process exits non-zero before it serves anything.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default CSI driver name; overridable so two installations can coexist.
pub const DEFAULT_DRIVER_NAME: &str = "flashblade.csi.dev";
pub const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";
pub const DEFAULT_NAME_PREFIX: &str = "k8s";
pub const DEFAULT_ARRAY_NAME: &str = "default";

/// Which CSI services this process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub fn runs_controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub fn runs_node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Controller => "controller",
            Mode::Node => "node",
            Mode::All => "all",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A configuration problem: which setting, and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

fn bad(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// One FlashBlade array as the driver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayConfig {
    /// Short name used in volume ids and the `array` StorageClass parameter.
    pub name: String,
    /// Management (REST) URL, e.g. `https://fb01-mgmt.example.com`. Needed by
    /// the controller only.
    pub management_url: Option<reqwest::Url>,
    /// File holding the API token (a mounted Secret). Controller only; read at
    /// login time so a rotated Secret works without a restart.
    pub api_token_file: Option<PathBuf>,
    /// CA bundle that signs the array's certificate.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (logged as a warning). Never the default.
    pub insecure_skip_tls_verify: bool,
    /// Data VIP (host name or address) that nodes mount from.
    pub nfs_endpoint: Option<String>,
    /// File-system name prefix for dynamic volumes.
    pub name_prefix: String,
    /// Export rules for StorageClasses that set neither `exportRules` nor
    /// `exportPolicy`, e.g. `10.0.0.0/16(rw,root_squash)`.
    pub default_export_rules: Option<String>,
    /// Allow a bare `*` client (any host) in export rules.
    pub allow_wildcard_export: bool,
    /// Further name prefixes whose file systems ListVolumes reports (for
    /// StorageClasses with their own `namePrefix`).
    pub extra_name_prefixes: Vec<String>,
}

/// Deadlines. Each is shorter than the sidecar / kubelet timeout it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One REST call to the array, retries included.
    pub array_request: Duration,
    /// One controller RPC, all its array calls included, when the caller
    /// sends no deadline of its own.
    pub rpc: Duration,
    /// One `mount` (the helper process is killed after it).
    pub mount: Duration,
    /// One unmount, all escalation steps included.
    pub unmount: Duration,
    /// One statfs on a volume.
    pub stats: Duration,
    /// The array reachability check behind Probe.
    pub probe: Duration,
    /// How long in-flight RPCs may run after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            // external-provisioner's default --timeout is 10 s in code; our
            // deploy raises it, but stay below the default anyway.
            array_request: Duration::from_secs(8),
            rpc: Duration::from_secs(60),
            // kubelet gives a node RPC 2 minutes; a mount must fail well
            // before so the RPC can answer.
            mount: Duration::from_secs(30),
            unmount: Duration::from_secs(20),
            stats: Duration::from_secs(5),
            probe: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight to one array at once.
    pub max_array_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_array_requests: 16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` env-filter directive, e.g. `info,flashblade_csi=debug`.
    pub filter: String,
}

/// The validated configuration of a `serve` process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// Unix socket path the gRPC server listens on.
    pub socket_path: PathBuf,
    /// Permission bits for the socket file.
    pub socket_mode: u32,
    pub driver_name: String,
    pub node_id: Option<String>,
    pub kubelet_dir: PathBuf,
    /// Development only: NodeStage bind-mounts `<dir>/<fs-name>` instead of NFS.
    pub local_export_root: Option<PathBuf>,
    pub arrays: Vec<ArrayConfig>,
    pub default_array: Option<String>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log: LogConfig,
}

impl Config {
    pub fn array(&self, name: &str) -> Option<&ArrayConfig> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// The array used when a request does not name one.
    pub fn default_array(&self) -> Option<&ArrayConfig> {
        match &self.default_array {
            Some(name) => self.array(name),
            None => self.arrays.first(),
        }
    }
}

/// `serve` flags. Every flag can also come from an environment variable, and
/// most from the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Which services to run: controller, node, or all.
    #[arg(long, env = "FLASHBLADE_CSI_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// gRPC endpoint: unix:///path/csi.sock or an absolute socket path.
    #[arg(long, env = "CSI_ENDPOINT")]
    pub endpoint: Option<String>,
    /// TOML configuration file (arrays, timeouts, limits).
    #[arg(long, env = "FLASHBLADE_CSI_CONFIG")]
    pub config: Option<PathBuf>,
    /// CSI driver name reported by GetPluginInfo.
    #[arg(long, env = "FLASHBLADE_CSI_DRIVER_NAME")]
    pub driver_name: Option<String>,
    /// Node id reported by NodeGetInfo (usually the Kubernetes node name).
    #[arg(long, env = "FLASHBLADE_CSI_NODE_ID")]
    pub node_id: Option<String>,
    /// Name of the array defined by --array-url and friends.
    #[arg(long, env = "FLASHBLADE_CSI_ARRAY_NAME")]
    pub array_name: Option<String>,
    /// Management URL of the array (https://host[:port]).
    #[arg(long, env = "FLASHBLADE_CSI_ARRAY_URL")]
    pub array_url: Option<String>,
    /// File holding the array API token.
    #[arg(long, env = "FLASHBLADE_CSI_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signs the array's certificate. Replaces the
    /// system trust store for this array; without it the system's is used.
    #[arg(long, env = "FLASHBLADE_CSI_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the array's TLS certificate (logs a warning).
    #[arg(long, env = "FLASHBLADE_CSI_INSECURE_SKIP_TLS_VERIFY")]
    pub insecure_skip_tls_verify: bool,
    /// NFS data endpoint (data VIP) that nodes mount from.
    #[arg(long, env = "FLASHBLADE_CSI_NFS_ENDPOINT")]
    pub nfs_endpoint: Option<String>,
    /// File-system name prefix for dynamic volumes.
    #[arg(long, env = "FLASHBLADE_CSI_NAME_PREFIX")]
    pub name_prefix: Option<String>,
    /// Export rules used when a StorageClass sets neither exportRules nor
    /// exportPolicy, e.g. "10.0.0.0/16(rw,root_squash)".
    #[arg(long, env = "FLASHBLADE_CSI_DEFAULT_EXPORT_RULES")]
    pub default_export_rules: Option<String>,
    /// Allow a bare "*" client (any host) in export rules.
    #[arg(long, env = "FLASHBLADE_CSI_ALLOW_WILDCARD_EXPORT")]
    pub allow_wildcard_export: bool,
    /// The only directory tree under which staging and target paths are accepted.
    #[arg(long, env = "FLASHBLADE_CSI_KUBELET_DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// DEVELOPMENT ONLY: bind-mount DIR/<fs-name> instead of NFS-mounting.
    #[arg(long, env = "FLASHBLADE_CSI_LOCAL_EXPORT_ROOT")]
    pub local_export_root: Option<PathBuf>,
    /// Maximum requests in flight to one array.
    #[arg(long, env = "FLASHBLADE_CSI_MAX_ARRAY_REQUESTS")]
    pub max_array_requests: Option<usize>,
    /// Deadline for one array request, e.g. 8s.
    #[arg(long, env = "FLASHBLADE_CSI_ARRAY_TIMEOUT")]
    pub array_timeout: Option<String>,
    /// Deadline for one controller RPC when the caller sends none, e.g. 60s.
    #[arg(long, env = "FLASHBLADE_CSI_RPC_TIMEOUT")]
    pub rpc_timeout: Option<String>,
    /// Deadline for one mount, e.g. 30s.
    #[arg(long, env = "FLASHBLADE_CSI_MOUNT_TIMEOUT")]
    pub mount_timeout: Option<String>,
    /// Deadline for one unmount (all escalation steps), e.g. 20s.
    #[arg(long, env = "FLASHBLADE_CSI_UNMOUNT_TIMEOUT")]
    pub unmount_timeout: Option<String>,
    /// Deadline for one statfs behind NodeGetVolumeStats, e.g. 5s.
    #[arg(long, env = "FLASHBLADE_CSI_STATS_TIMEOUT")]
    pub stats_timeout: Option<String>,
    /// Grace period for in-flight RPCs after SIGTERM, e.g. 20s.
    #[arg(long, env = "FLASHBLADE_CSI_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// Socket file permissions, octal (default 660).
    #[arg(long, env = "FLASHBLADE_CSI_SOCKET_MODE")]
    pub socket_mode: Option<String>,
    /// Log format: human or json.
    #[arg(long, env = "FLASHBLADE_CSI_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing env-filter syntax); falls back to RUST_LOG, then "info".
    #[arg(long, env = "FLASHBLADE_CSI_LOG_FILTER")]
    pub log_filter: Option<String>,
}

/// The TOML file. Unknown keys are an error so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mode: Option<Mode>,
    endpoint: Option<String>,
    driver_name: Option<String>,
    node_id: Option<String>,
    kubelet_dir: Option<PathBuf>,
    local_export_root: Option<PathBuf>,
    default_array: Option<String>,
    socket_mode: Option<String>,
    #[serde(default)]
    array: Vec<FileArray>,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArray {
    name: Option<String>,
    management_url: Option<String>,
    api_token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    nfs_endpoint: Option<String>,
    name_prefix: Option<String>,
    default_export_rules: Option<String>,
    #[serde(default)]
    allow_wildcard_export: bool,
    #[serde(default)]
    extra_name_prefixes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    array_request: Option<String>,
    rpc: Option<String>,
    mount: Option<String>,
    unmount: Option<String>,
    stats: Option<String>,
    probe: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_array_requests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    filter: Option<String>,
}

/// Parses `500ms`, `30s`, `2m`, `1h` (one number, one unit).
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad(setting, format!("{text:?} has no unit; write e.g. 30s or 500ms")))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| bad(setting, format!("{text:?} is not a duration like 30s or 500ms")))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(bad(
                setting,
                format!("{text:?} has unknown unit {unit:?}; use ms, s, m or h"),
            ));
        }
    };
    if d.is_zero() {
        return Err(bad(setting, "must be greater than zero"));
    }
    Ok(d)
}

/// Accepts `unix:///abs/path`, `unix:/abs/path` and a bare absolute path.
pub fn parse_endpoint(text: &str) -> Result<PathBuf, ConfigError> {
    let path = if let Some(rest) = text.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = text.strip_prefix("unix:") {
        rest
    } else if text.contains("://") {
        return Err(bad(
            "endpoint",
            format!("{text:?}: only unix sockets are supported (unix:///path/csi.sock)"),
        ));
    } else {
        text
    };
    if path.is_empty() || !path.starts_with('/') {
        return Err(bad(
            "endpoint",
            format!("{text:?}: the socket path must be absolute, e.g. unix:///csi/csi.sock"),
        ));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if path.len() > 107 {
        return Err(bad(
            "endpoint",
            format!("{text:?}: socket path longer than 107 bytes"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// CSI plugin names: at most 63 characters, first and last a letter (the
/// conformance suite enforces `^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$`).
pub fn validate_driver_name(name: &str) -> Result<(), ConfigError> {
    let b = name.as_bytes();
    let ok = (2..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "driver-name",
            format!(
                "{name:?} must be 2-63 characters of letters, digits, '-', '.', '_', starting and ending with a letter"
            ),
        ))
    }
}

fn validate_array_name(name: &str) -> Result<(), ConfigError> {
    let b = name.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "array name",
            format!(
                "{name:?} must be 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ))
    }
}

/// Prefixes stay short so `<prefix>-<name>` fits FlashBlade's 63 characters,
/// and hold no `-`: the first `-` of a file-system name then always ends the
/// prefix, so two (prefix, name) pairs can never give one file system.
pub fn validate_name_prefix(setting: &str, prefix: &str) -> Result<(), ConfigError> {
    let b = prefix.as_bytes();
    let ok = (1..=20).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            setting,
            format!(
                "{prefix:?} must be 1-20 letters, digits or '_', starting with a letter or digit \
                 ('-' would let two prefixes name the same file system)"
            ),
        ))
    }
}

/// The certificates of a PEM CA bundle; an unreadable file, one that is not
/// PEM, or one without a certificate is refused with a reason.
pub fn load_ca_file(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A host name or IP address safe to put in `server:/path` and mount options.
pub fn validate_host(setting: &str, host: &str) -> Result<(), ConfigError> {
    let ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && !host.starts_with('.')
        && (ipv6
            || host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.')));
    if ok {
        Ok(())
    } else {
        Err(bad(setting, format!("{host:?} is not a host name or IP address")))
    }
}

fn check_file(setting: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(bad(setting, format!("{} is not a regular file", path.display()))),
        Err(e) => Err(bad(setting, format!("cannot read {}: {e}", path.display()))),
    }
}

fn check_dir(setting: &str, path: &Path) -> Result<(), ConfigError> {
    if !path.is_absolute() {
        return Err(bad(
            setting,
            format!("{} must be an absolute path", path.display()),
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad(setting, format!("{} is not a directory", path.display()))),
        Err(e) => Err(bad(setting, format!("cannot use {}: {e}", path.display()))),
    }
}

fn parse_url(setting: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text).map_err(|e| bad(setting, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad(setting, format!("{text:?} must start with https://")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(setting, format!("{text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(setting, "must not carry credentials; use the API token file"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(bad(
            setting,
            format!("{text:?} must be the array's base URL (no path or query)"),
        ));
    }
    Ok(url)
}

impl Config {
    /// Builds the validated configuration from flags/env and the optional file.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| bad("config", format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Configuration for a storage-admin command: the controller's settings
    /// (arrays, timeouts) without a socket to serve on.
    pub fn load_for_admin(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut args = args.clone();
        args.mode = Some(Mode::Controller);
        args.endpoint
            .get_or_insert_with(|| "/run/flashblade-csi/admin-unused.sock".into());
        Self::load(&args)
    }

    /// Builds from a TOML string (used by tests and by `load`).
    pub fn from_parts(args: &ServeArgs, toml_text: &str) -> Result<Config, ConfigError> {
        let file = toml::from_str::<FileConfig>(toml_text).map_err(|e| bad("config", e.to_string()))?;
        Self::merge(args, file)
    }

    fn merge(args: &ServeArgs, file: FileConfig) -> Result<Config, ConfigError> {
        let mode = args
            .mode
            .or(file.mode)
            .ok_or_else(|| bad("mode", "required: controller, node or all"))?;
        let endpoint = args
            .endpoint
            .clone()
            .or(file.endpoint)
            .ok_or_else(|| bad("endpoint", "required, e.g. unix:///csi/csi.sock"))?;
        let socket_path = parse_endpoint(&endpoint)?;
        let socket_mode_text = args
            .socket_mode
            .clone()
            .or(file.socket_mode)
            .unwrap_or_else(|| "660".into());
        let socket_mode = u32::from_str_radix(socket_mode_text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                bad(
                    "socket-mode",
                    format!("{socket_mode_text:?} is not an octal mode like 660"),
                )
            })?;
        if socket_mode & 0o002 != 0 {
            // Whoever can write the socket can drive the plugin (mount,
            // unmount, delete volumes).
            return Err(bad(
                "socket-mode",
                format!("{socket_mode_text:?} lets every local user write the socket; use 660 or stricter"),
            ));
        }

        let driver_name = args
            .driver_name
            .clone()
            .or(file.driver_name)
            .unwrap_or_else(|| DEFAULT_DRIVER_NAME.into());
        validate_driver_name(&driver_name)?;

        let node_id = args.node_id.clone().or(file.node_id);
        let kubelet_dir = args
            .kubelet_dir
            .clone()
            .or(file.kubelet_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBELET_DIR));
        let local_export_root = args.local_export_root.clone().or(file.local_export_root);

        // Arrays from the file, then the flag-defined array merged by name.
        let mut arrays = Vec::new();
        for (i, a) in file.array.into_iter().enumerate() {
            let setting = format!("array[{i}]");
            let name = a.name.ok_or_else(|| bad(format!("{setting}.name"), "required"))?;
            arrays.push(ArrayConfig {
                management_url: a
                    .management_url
                    .map(|u| parse_url(&format!("array {name}: management_url"), &u))
                    .transpose()?,
                api_token_file: a.api_token_file,
                ca_file: a.ca_file,
                insecure_skip_tls_verify: a.insecure_skip_tls_verify,
                nfs_endpoint: a.nfs_endpoint,
                name_prefix: a.name_prefix.unwrap_or_else(|| DEFAULT_NAME_PREFIX.into()),
                default_export_rules: a.default_export_rules,
                allow_wildcard_export: a.allow_wildcard_export,
                extra_name_prefixes: a.extra_name_prefixes,
                name,
            });
        }
        let flag_array_given = args.array_url.is_some()
            || args.default_export_rules.is_some()
            || args.allow_wildcard_export
            || args.api_token_file.is_some()
            || args.ca_file.is_some()
            || args.nfs_endpoint.is_some()
            || args.name_prefix.is_some()
            || args.insecure_skip_tls_verify;
        if flag_array_given || args.array_name.is_some() {
            let name = args
                .array_name
                .clone()
                .or_else(|| (arrays.len() == 1).then(|| arrays[0].name.clone()))
                .unwrap_or_else(|| DEFAULT_ARRAY_NAME.into());
            let idx = match arrays.iter().position(|a| a.name == name) {
                Some(i) => i,
                None => {
                    arrays.push(ArrayConfig {
                        name: name.clone(),
                        management_url: None,
                        api_token_file: None,
                        ca_file: None,
                        insecure_skip_tls_verify: false,
                        nfs_endpoint: None,
                        name_prefix: DEFAULT_NAME_PREFIX.into(),
                        default_export_rules: None,
                        allow_wildcard_export: false,
                        extra_name_prefixes: Vec::new(),
                    });
                    arrays.len() - 1
                }
            };
            let a = &mut arrays[idx];
            if let Some(u) = &args.array_url {
                a.management_url = Some(parse_url("array-url", u)?);
            }
            if let Some(p) = &args.api_token_file {
                a.api_token_file = Some(p.clone());
            }
            if let Some(p) = &args.ca_file {
                a.ca_file = Some(p.clone());
            }
            if args.insecure_skip_tls_verify {
                a.insecure_skip_tls_verify = true;
            }
            if let Some(e) = &args.nfs_endpoint {
                a.nfs_endpoint = Some(e.clone());
            }
            if let Some(p) = &args.name_prefix {
                a.name_prefix = p.clone();
            }
            if let Some(r) = &args.default_export_rules {
                a.default_export_rules = Some(r.clone());
            }
            if args.allow_wildcard_export {
                a.allow_wildcard_export = true;
            }
        }

        let mut timeouts = Timeouts::default();
        let t = &file.timeouts;
        let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or(file.clone());
        if let Some(v) = pick(&args.array_timeout, &t.array_request) {
            timeouts.array_request = parse_duration("array-timeout", &v)?;
        }
        if let Some(v) = pick(&args.rpc_timeout, &t.rpc) {
            timeouts.rpc = parse_duration("rpc-timeout", &v)?;
        }
        if let Some(v) = pick(&args.mount_timeout, &t.mount) {
            timeouts.mount = parse_duration("mount-timeout", &v)?;
        }
        if let Some(v) = pick(&args.unmount_timeout, &t.unmount) {
            timeouts.unmount = parse_duration("unmount-timeout", &v)?;
        }
        if let Some(v) = pick(&args.stats_timeout, &t.stats) {
            timeouts.stats = parse_duration("stats-timeout", &v)?;
        }
        if let Some(v) = &t.probe {
            timeouts.probe = parse_duration("timeouts.probe", v)?;
        }
        if let Some(v) = pick(&args.shutdown_grace, &t.shutdown_grace) {
            timeouts.shutdown_grace = parse_duration("shutdown-grace", &v)?;
        }
        // Node RPCs get 2 minutes from kubelet; ours must answer before that.
        for (setting, d) in [
            ("mount-timeout", timeouts.mount),
            ("unmount-timeout", timeouts.unmount),
            ("stats-timeout", timeouts.stats),
        ] {
            if d > Duration::from_secs(100) {
                return Err(bad(
                    setting,
                    "must be at most 100s so the RPC answers before kubelet's 2-minute deadline",
                ));
            }
        }
        if timeouts.array_request > Duration::from_secs(600) {
            return Err(bad("array-timeout", "must be at most 10m"));
        }

        let max_array_requests = args
            .max_array_requests
            .or(file.limits.max_array_requests)
            .unwrap_or(Limits::default().max_array_requests);
        if !(1..=1024).contains(&max_array_requests) {
            return Err(bad(
                "max-array-requests",
                format!("{max_array_requests} must be between 1 and 1024"),
            ));
        }

        let log = LogConfig {
            format: args.log_format.or(file.log.format).unwrap_or_default(),
            filter: args
                .log_filter
                .clone()
                .or(file.log.filter)
                .or_else(|| std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()))
                .unwrap_or_else(|| "info".into()),
        };

        let config = Config {
            mode,
            socket_path,
            socket_mode,
            driver_name,
            node_id,
            kubelet_dir,
            local_export_root,
            default_array: file.default_array,
            arrays,
            timeouts,
            limits: Limits { max_array_requests },
            log,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for a in &self.arrays {
            validate_array_name(&a.name)?;
            if !names.insert(a.name.as_str()) {
                return Err(bad("array", format!("array {:?} is defined twice", a.name)));
            }
            validate_name_prefix(&format!("array {}: name_prefix", a.name), &a.name_prefix)?;
            if let Some(ep) = &a.nfs_endpoint {
                validate_host(&format!("array {}: nfs-endpoint", a.name), ep)?;
            }
            for p in &a.extra_name_prefixes {
                validate_name_prefix(&format!("array {}: extra_name_prefixes", a.name), p)?;
            }
            if let Some(r) = &a.default_export_rules {
                crate::controller::params::validate_export_rules(r, a.allow_wildcard_export)
                    .map_err(|e| bad(format!("array {}: default-export-rules", a.name), e))?;
            }
            if a.ca_file.is_some() && a.insecure_skip_tls_verify {
                return Err(bad(
                    format!("array {}", a.name),
                    "ca-file and insecure-skip-tls-verify contradict each other; choose one",
                ));
            }
        }
        if let Some(d) = &self.default_array {
            if self.array(d).is_none() {
                return Err(bad("default_array", format!("{d:?} is not a configured array")));
            }
        } else if self.arrays.len() > 1 {
            return Err(bad(
                "default_array",
                "required when more than one array is configured",
            ));
        }

        if self.mode.runs_controller() {
            if self.arrays.is_empty() {
                return Err(bad(
                    "array-url",
                    "the controller needs an array: give --array-url, --api-token-file and --nfs-endpoint, or [[array]] in the config file",
                ));
            }
            for a in &self.arrays {
                let s = |k: &str| format!("array {}: {k}", a.name);
                if a.management_url.is_none() {
                    return Err(bad(
                        s("management_url / --array-url"),
                        "required in controller mode",
                    ));
                }
                match &a.api_token_file {
                    None => {
                        return Err(bad(
                            s("api_token_file / --api-token-file"),
                            "required in controller mode",
                        ));
                    }
                    Some(p) => check_file(&s("api_token_file"), p)?,
                }
                if let Some(p) = &a.ca_file {
                    check_file(&s("ca_file"), p)?;
                    load_ca_file(p).map_err(|e| bad(s("ca_file"), e))?;
                }
                if a.nfs_endpoint.is_none() {
                    return Err(bad(
                        s("nfs_endpoint / --nfs-endpoint"),
                        "required in controller mode (the data VIP nodes mount from)",
                    ));
                }
            }
        }
        if self.mode.runs_node() {
            match &self.node_id {
                None => {
                    return Err(bad(
                        "node-id",
                        "required in node mode (usually the Kubernetes node name)",
                    ));
                }
                Some(id) if id.is_empty() || id.len() > 128 => {
                    return Err(bad("node-id", "must be 1-128 bytes"));
                }
                Some(_) => {}
            }
            if !self.kubelet_dir.is_absolute() {
                return Err(bad("kubelet-dir", "must be an absolute path"));
            }
            if let Some(root) = &self.local_export_root {
                check_dir("local-export-root", root)?;
            }
        } else if self.local_export_root.is_some() {
            return Err(bad("local-export-root", "only meaningful in node or all mode"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            mode: Some(Mode::Node),
            endpoint: Some("unix:///tmp/x.sock".into()),
            node_id: Some("n1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("x", "500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("x", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x", "30").is_err());
        assert!(parse_duration("x", "0s").is_err());
        assert!(parse_duration("x", "5d").is_err());
        assert!(parse_duration("x", "-5s").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse_endpoint("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            parse_endpoint("/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert!(parse_endpoint("tcp://127.0.0.1:10000").is_err());
        assert!(parse_endpoint("csi.sock").is_err());
        assert!(parse_endpoint(&format!("/{}", "a".repeat(120))).is_err());
    }

    #[test]
    fn driver_names_follow_conformance_rule() {
        for ok in ["flashblade.csi.dev", "csi.example.org", "ab", "a_b-c.d"] {
            validate_driver_name(ok).unwrap();
        }
        for not_ok in ["drv-v2", "1abc", "a", "abc-", &"a".repeat(64), "a b", ""] {
            assert!(validate_driver_name(not_ok).is_err(), "{not_ok}");
        }
    }

    #[test]
    fn node_mode_needs_node_id() {
        let mut a = args();
        a.node_id = None;
        let err = Config::from_parts(&a, "").unwrap_err();
        assert_eq!(err.setting, "node-id");
    }

    #[test]
    fn controller_mode_needs_array_and_names_missing_setting() {
        let a = ServeArgs {
            mode: Some(Mode::Controller),
            endpoint: Some("/tmp/c.sock".into()),
            ..Default::default()
        };
        let err = Config::from_parts(&a, "").unwrap_err();
        assert_eq!(err.setting, "array-url");
        let a = ServeArgs {
            array_url: Some("https://fb01.example.com".into()),
            ..a
        };
        let err = Config::from_parts(&a, "").unwrap_err();
        assert!(err.setting.contains("api_token_file"), "{err}");
    }

    #[test]
    fn controller_config_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "T-x").unwrap();
        let toml = format!(
            r#"
            driver_name = "fb.csi.example"
            [[array]]
            name = "fb01"
            management_url = "https://fb01.example.com"
            api_token_file = "{}"
            nfs_endpoint = "10.0.0.10"
            [timeouts]
            array_request = "5s"
            "#,
            token.display()
        );
        let a = ServeArgs {
            mode: Some(Mode::Controller),
            endpoint: Some("/tmp/c.sock".into()),
            // The flag wins over the file.
            name_prefix: Some("hub".into()),
            ..Default::default()
        };
        let c = Config::from_parts(&a, &toml).unwrap();
        assert_eq!(c.driver_name, "fb.csi.example");
        assert_eq!(c.arrays.len(), 1);
        assert_eq!(c.arrays[0].name, "fb01");
        assert_eq!(c.arrays[0].name_prefix, "hub");
        assert_eq!(c.timeouts.array_request, Duration::from_secs(5));
        assert_eq!(c.default_array().unwrap().name, "fb01");
    }

    #[test]
    fn rejects_bad_values_with_setting_names() {
        let cases: Vec<(ServeArgs, &str, &str)> = vec![
            (
                ServeArgs {
                    endpoint: Some("tcp://x:1".into()),
                    ..args()
                },
                "",
                "endpoint",
            ),
            (
                ServeArgs {
                    driver_name: Some("9bad".into()),
                    ..args()
                },
                "",
                "driver-name",
            ),
            (
                ServeArgs {
                    mount_timeout: Some("10x".into()),
                    ..args()
                },
                "",
                "mount-timeout",
            ),
            (
                ServeArgs {
                    mount_timeout: Some("5m".into()),
                    ..args()
                },
                "",
                "mount-timeout",
            ),
            (
                ServeArgs {
                    max_array_requests: Some(0),
                    ..args()
                },
                "",
                "max-array-requests",
            ),
            (
                ServeArgs {
                    socket_mode: Some("999".into()),
                    ..args()
                },
                "",
                "socket-mode",
            ),
            (
                ServeArgs {
                    nfs_endpoint: Some("-o evil".into()),
                    ..args()
                },
                "",
                "array default: nfs-endpoint",
            ),
            (
                ServeArgs {
                    name_prefix: Some("bad prefix".into()),
                    ..args()
                },
                "",
                "array default: name_prefix",
            ),
            (
                ServeArgs {
                    kubelet_dir: Some("rel".into()),
                    ..args()
                },
                "",
                "kubelet-dir",
            ),
            (args(), "unknown_key = 1", "config"),
            (args(), "[[array]]\nname = \"a/b\"", "array name"),
            (args(), "default_array = \"nope\"", "default_array"),
            (
                ServeArgs {
                    array_url: Some("ftp://x".into()),
                    ..args()
                },
                "",
                "array-url",
            ),
            (
                ServeArgs {
                    array_url: Some("https://x/api".into()),
                    ..args()
                },
                "",
                "array-url",
            ),
            (
                ServeArgs {
                    array_url: Some("https://u:p@x".into()),
                    ..args()
                },
                "",
                "array-url",
            ),
        ];
        for (a, toml, setting) in cases {
            let err = Config::from_parts(&a, toml).unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().starts_with("invalid configuration: "));
        }
    }

    #[test]
    fn ca_and_insecure_are_exclusive() {
        let a = ServeArgs {
            ca_file: Some("/etc/hosts".into()),
            insecure_skip_tls_verify: true,
            ..args()
        };
        let err = Config::from_parts(&a, "").unwrap_err();
        assert!(err.problem.contains("contradict"), "{err}");
    }

    #[test]
    fn hosts() {
        for ok in ["10.0.0.1", "fb01-data.example.com", "fd00::1"] {
            validate_host("h", ok).unwrap();
        }
        for not_ok in ["", "-o", "a b", "a,b", "a:/x", "host;rm"] {
            assert!(validate_host("h", not_ok).is_err(), "{not_ok}");
        }
    }
}
