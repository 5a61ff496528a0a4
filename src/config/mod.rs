//! Configuration: every setting is declared once, in [`Settings`], which clap
//! reads (flags and their environment variables) and serde reads (the TOML
//! file). The two are layered generically — a flag or variable that is set
//! replaces the file's value — so "flag > environment > file > default" holds
//! for every setting by construction, and a setting cannot exist in one
//! source only. [`Config::load`] then validates the result into one
//! [`Config`]: every error names the setting, and the process exits 2 before
//! it serves anything.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::volume::{ArrayName, Host, Labels, NamePrefix};

mod checks;
pub use checks::CaFileError;
use checks::{Purpose, check_dir, check_file, parse_url};
pub(crate) use checks::{load_ca_file, parse_endpoint, validate_driver_name};

/// Default CSI driver name; overridable so two installations can coexist.
pub(crate) const DEFAULT_DRIVER_NAME: &str = "flashblade.csi.dev";
pub(crate) const DEFAULT_KUBELET_DIR: &str = "/var/lib/kubelet";
pub(crate) const DEFAULT_NAME_PREFIX: &str = "k8s";
pub(crate) const DEFAULT_ARRAY_NAME: &str = "default";

/// Which CSI services this process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub(crate) fn runs_controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub(crate) fn runs_node(self) -> bool {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A configuration problem: which setting, and what is wrong with it; the
/// io, parse or TOML error behind it as the source.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

fn bad(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
        source: None,
    }
}

/// Equal when they name the same setting and problem: the cause is the
/// problem's detail, and io errors have no equality.
impl PartialEq for ConfigError {
    fn eq(&self, other: &Self) -> bool {
        self.setting == other.setting && self.problem == other.problem
    }
}

impl Eq for ConfigError {}

impl ConfigError {
    /// The same problem, caused by `e`.
    fn because(mut self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(e.into());
        self
    }
}

/// A `true`/`false` flag that a later source can turn either way:
/// `--flag`, `--flag=false`, or `FLAG_VAR=0` in the environment.
macro_rules! bool_arg {
    () => {
        clap::builder::BoolishValueParser::new()
    };
}

/// Every setting of `serve` (and of the admin commands, which use the array
/// part). The doc comment of each field is its `--help` text; the field name
/// is its key in the TOML file; `long` and `env` name the flag and variable.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file (arrays, timeouts, limits).
    #[arg(long, env = "FLASHBLADE_CSI_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Which services to run: controller, node, or all (required).
    #[arg(long, env = "FLASHBLADE_CSI_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// gRPC endpoint: unix:///path/csi.sock or an absolute socket path
    /// (required).
    #[arg(long, env = "CSI_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Socket file permissions, octal (default 660).
    #[arg(long, env = "FLASHBLADE_CSI_SOCKET_MODE")]
    pub socket_mode: Option<String>,
    /// CSI driver name reported by GetPluginInfo (default flashblade.csi.dev).
    #[arg(long, env = "FLASHBLADE_CSI_DRIVER_NAME")]
    pub driver_name: Option<String>,
    /// Node id reported by NodeGetInfo (usually the Kubernetes node name).
    #[arg(long, env = "FLASHBLADE_CSI_NODE_ID")]
    pub node_id: Option<String>,
    /// The only directory tree under which staging and target paths are
    /// accepted (default /var/lib/kubelet).
    #[arg(long, env = "FLASHBLADE_CSI_KUBELET_DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// DEVELOPMENT ONLY: bind-mount DIR/<fs-name> instead of NFS-mounting.
    #[arg(long, env = "FLASHBLADE_CSI_LOCAL_EXPORT_ROOT")]
    pub local_export_root: Option<PathBuf>,
    /// DEVELOPMENT ONLY, with --local-export-root: the address this node
    /// presents to the array; before each staging bind the node asks the
    /// simulated array (mock-flashblade's /mock/mount) whether its export
    /// rules admit it, and binds read-only when they say ro.
    #[arg(long, env = "FLASHBLADE_CSI_LOCAL_EXPORT_CLIENT", value_name = "IP")]
    pub local_export_client: Option<std::net::IpAddr>,
    /// The array used when a StorageClass or static volume names none
    /// (required with more than one array).
    #[arg(long, env = "FLASHBLADE_CSI_DEFAULT_ARRAY")]
    pub default_array: Option<ArrayName>,
    /// Kubeconfig file for the admin commands' view of the cluster (PVs,
    /// PVCs, VolumeAttachments). Without it: $KUBECONFIG, ~/.kube/config,
    /// then the in-cluster service account.
    #[arg(long, env = "FLASHBLADE_CSI_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDRESS/metrics, e.g. 0.0.0.0:9810
    /// (default: off).
    #[arg(long, env = "FLASHBLADE_CSI_METRICS_ADDRESS", value_name = "ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// How often the controller repairs node-following exports (exportTo:
    /// nodes): re-adds rules of live VolumeAttachments, removes rules of
    /// addresses no node has (default 5m; 0 turns it off; at least 1s).
    #[arg(long, env = "FLASHBLADE_CSI_EXPORT_RECONCILE_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub export_reconcile_interval: Option<Duration>,
    /// How often the controller reads volume and array space from the
    /// arrays for the metrics (default 60s; 0 turns the poll off; at least 10s).
    #[arg(long, env = "FLASHBLADE_CSI_METRICS_POLL_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub metrics_poll_interval: Option<Duration>,
    /// The array that the array flags define; merged by name into the
    /// file's `[[array]]` list (or the file's only array when no name is given).
    #[command(flatten)]
    #[serde(skip)]
    pub array: ArraySettings,
    /// The file's arrays (`[[array]]` tables).
    #[arg(skip)]
    #[serde(default, rename = "array", skip_serializing_if = "Vec::is_empty")]
    pub arrays: Vec<ArraySettings>,
    #[command(flatten)]
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitSettings,
    #[command(flatten)]
    #[serde(default)]
    pub log: LogSettings,
}

/// One array's settings.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySettings {
    /// Name of the array defined by --array-url and friends (default
    /// "default", or the config file's only array).
    #[arg(long = "array-name", env = "FLASHBLADE_CSI_ARRAY_NAME")]
    pub name: Option<ArrayName>,
    /// Management URL of the array (https://host[:port]).
    #[arg(long = "array-url", env = "FLASHBLADE_CSI_ARRAY_URL")]
    pub management_url: Option<String>,
    /// File holding the array API token (read at every login, so a rotated
    /// Secret works without a restart).
    #[arg(long, env = "FLASHBLADE_CSI_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signs the array's certificate. Replaces the
    /// system trust store for this array; without it the system's is used.
    #[arg(long, env = "FLASHBLADE_CSI_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the array's TLS certificate; logs a warning (default
    /// false).
    #[arg(long, env = "FLASHBLADE_CSI_INSECURE_SKIP_TLS_VERIFY", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg!())]
    pub insecure_skip_tls_verify: Option<bool>,
    /// NFS data endpoint (data VIP) that nodes mount from.
    #[arg(long, env = "FLASHBLADE_CSI_NFS_ENDPOINT")]
    pub nfs_endpoint: Option<Host>,
    /// File-system name prefix for dynamic volumes (default k8s).
    #[arg(long, env = "FLASHBLADE_CSI_NAME_PREFIX")]
    pub name_prefix: Option<NamePrefix>,
    /// Export rules used when a StorageClass sets neither exportRules nor
    /// exportPolicy, e.g. "10.0.0.0/16(rw,root_squash)".
    #[arg(long, env = "FLASHBLADE_CSI_DEFAULT_EXPORT_RULES")]
    pub default_export_rules: Option<String>,
    /// Allow a bare "*" client (any host) in export rules (default false).
    #[arg(long, env = "FLASHBLADE_CSI_ALLOW_WILDCARD_EXPORT", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true", value_parser = bool_arg!())]
    pub allow_wildcard_export: Option<bool>,
    /// Labels for placement (`array: auto` StorageClasses pick arrays by
    /// them), e.g. "rack=7b,env=prod".
    #[arg(long = "array-labels", env = "FLASHBLADE_CSI_ARRAY_LABELS")]
    pub labels: Option<Labels>,
    /// Further name prefixes whose file systems ListVolumes reports (for
    /// StorageClasses with their own namePrefix), comma-separated.
    #[arg(long, env = "FLASHBLADE_CSI_EXTRA_NAME_PREFIXES", value_delimiter = ',')]
    pub extra_name_prefixes: Option<Vec<NamePrefix>>,
}

/// Deadlines, written like `500ms`, `30s`, `2m`.
#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSettings {
    /// Deadline for one array request, retries included (default 8s).
    #[arg(long = "array-timeout", env = "FLASHBLADE_CSI_ARRAY_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub array_request: Option<Duration>,
    /// Deadline for one controller RPC when the caller sends none (default 60s).
    #[arg(long = "rpc-timeout", env = "FLASHBLADE_CSI_RPC_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub rpc: Option<Duration>,
    /// Deadline for one mount (default 30s).
    #[arg(long = "mount-timeout", env = "FLASHBLADE_CSI_MOUNT_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub mount: Option<Duration>,
    /// Deadline for one unmount, all escalation steps (default 20s).
    #[arg(long = "unmount-timeout", env = "FLASHBLADE_CSI_UNMOUNT_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub unmount: Option<Duration>,
    /// Deadline for one statfs behind NodeGetVolumeStats (default 5s).
    #[arg(long = "stats-timeout", env = "FLASHBLADE_CSI_STATS_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub stats: Option<Duration>,
    /// Deadline for the array check behind Probe (default 3s).
    #[arg(long = "probe-timeout", env = "FLASHBLADE_CSI_PROBE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub probe: Option<Duration>,
    /// Grace period for in-flight RPCs after SIGTERM (default 20s).
    #[arg(long = "shutdown-grace", env = "FLASHBLADE_CSI_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Maximum requests in flight to one array (default 32).
    #[arg(long, env = "FLASHBLADE_CSI_MAX_ARRAY_REQUESTS")]
    pub max_array_requests: Option<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Log format: human or json (default human).
    #[arg(long = "log-format", env = "FLASHBLADE_CSI_LOG_FORMAT", value_enum)]
    pub format: Option<LogFormat>,
    /// Log filter, tracing env-filter syntax (default: RUST_LOG, else info).
    #[arg(long = "log-filter", env = "FLASHBLADE_CSI_LOG_FILTER")]
    pub filter: Option<String>,
}

/// Lays `top` over `base`: objects merge key by key, a `null` in `top`
/// (an unset flag) keeps `base`, anything else replaces it.
fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (_, Value::Null) => {}
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                overlay(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, t) => *b = t,
    }
}

impl Settings {
    /// These settings (from flags and environment) over `file`'s.
    pub(crate) fn over(&self, file: Settings) -> Result<Settings, ConfigError> {
        let mut merged = json(&file)?;
        overlay(&mut merged, json(self)?);
        let mut out: Settings =
            serde_json::from_value(merged).map_err(|e| bad("config", e.to_string()).because(e))?;
        out.config = self.config.clone().or(file.config);

        // The flag-defined array, laid over the file's array of that name.
        let flags = json(&self.array)?;
        if flags
            .as_object()
            .is_some_and(|o| o.values().any(|v| !v.is_null()))
        {
            let name = self
                .array
                .name
                .clone()
                .or_else(|| {
                    (out.arrays.len() == 1)
                        .then(|| out.arrays[0].name.clone())
                        .flatten()
                })
                .unwrap_or_else(|| DEFAULT_ARRAY_NAME.parse().expect("valid"));
            let idx = match out.arrays.iter().position(|a| a.name.as_ref() == Some(&name)) {
                Some(i) => i,
                None => {
                    out.arrays.push(ArraySettings {
                        name: Some(name.clone()),
                        ..Default::default()
                    });
                    out.arrays.len() - 1
                }
            };
            let mut target = json(&out.arrays[idx])?;
            overlay(&mut target, flags);
            out.arrays[idx] =
                serde_json::from_value(target).map_err(|e| bad("config", e.to_string()).because(e))?;
            out.arrays[idx].name = Some(name);
        }
        Ok(out)
    }
}

fn json<T: Serialize>(value: &T) -> Result<Value, ConfigError> {
    serde_json::to_value(value).map_err(|e| bad("config", e.to_string()).because(e))
}

/// One FlashBlade array as the driver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayConfig {
    /// Short name used in volume ids and the `array` StorageClass parameter.
    pub name: ArrayName,
    /// Management (REST) URL. Needed by the controller only.
    pub management_url: Option<reqwest::Url>,
    /// File holding the API token (a mounted Secret). Controller only.
    pub api_token_file: Option<PathBuf>,
    /// CA bundle that signs the array's certificate.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification (logged as a warning). Never the default.
    pub insecure_skip_tls_verify: bool,
    /// Data VIP (host name or address) that nodes mount from.
    pub nfs_endpoint: Option<Host>,
    /// File-system name prefix for dynamic volumes.
    pub name_prefix: NamePrefix,
    /// Export rules for StorageClasses that set neither `exportRules` nor
    /// `exportPolicy`.
    pub default_export_rules: Option<String>,
    /// Allow a bare `*` client (any host) in export rules.
    pub allow_wildcard_export: bool,
    /// Further name prefixes whose file systems ListVolumes reports.
    pub extra_name_prefixes: Vec<NamePrefix>,
    /// Labels that `array: auto` StorageClasses select arrays by.
    pub labels: Labels,
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
            // Twice a FlashBlade's usual REST parallelism, so its queue
            // never runs dry between one answer and our next request (at
            // exactly its parallelism each slot idles for our turnaround);
            // the array's own 429/503 back-pressure is honoured beyond that.
            max_array_requests: 32,
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
    /// Development only: the address the node presents to the simulated
    /// array, which decides by its export rules whether the node may stage.
    pub local_export_client: Option<std::net::IpAddr>,
    pub arrays: Vec<ArrayConfig>,
    pub default_array: Option<ArrayName>,
    /// Kubeconfig for the cluster view; `None`: kube's own inference.
    pub kubeconfig: Option<PathBuf>,
    /// Interval of the node-exports reconcile; zero: none.
    pub export_reconcile_interval: Duration,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

/// The metrics endpoint and the array poll behind its space figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served; `None`: no endpoint.
    pub address: Option<std::net::SocketAddr>,
    /// Interval of the controller's space poll; zero: no poll.
    pub poll_interval: Duration,
}

/// How often node-following exports are repaired, unless configured.
pub(crate) const DEFAULT_EXPORT_RECONCILE: Duration = Duration::from_secs(300);
/// The shortest reconcile interval (a pass is a few API listings and one
/// array read per node-exported volume).
pub(crate) const MIN_EXPORT_RECONCILE: Duration = Duration::from_secs(1);

/// The shortest poll interval: one listing per array at most this often.
pub(crate) const MIN_METRICS_POLL: Duration = Duration::from_secs(10);

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: None,
            poll_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    pub(crate) fn array(&self, name: &str) -> Option<&ArrayConfig> {
        self.arrays.iter().find(|a| a.name == name)
    }

    /// The array used when a request does not name one.
    pub(crate) fn default_array(&self) -> Option<&ArrayConfig> {
        match &self.default_array {
            Some(name) => self.array(name),
            None => self.arrays.first(),
        }
    }

    /// Builds the validated configuration from flags/env and the file they name.
    pub fn load(args: &Settings) -> Result<Config, ConfigError> {
        let text = match &args.config {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())).because(e))?,
            None => String::new(),
        };
        Self::from_parts(args, &text).map_err(|mut e| {
            if let (Some(path), "config") = (&args.config, e.setting.as_str()) {
                e.problem = format!("{}: {}", path.display(), e.problem);
            }
            e
        })
    }

    /// Configuration for a storage-admin command: the controller's settings
    /// (arrays, timeouts) without a socket to serve on.
    /// Only the array settings are needed: no NFS endpoint (nothing is
    /// mounted or provisioned), no node settings.
    pub fn load_for_admin(args: &Settings) -> Result<Config, ConfigError> {
        let mut args = args.clone();
        args.mode = Some(Mode::Controller);
        args.endpoint
            .get_or_insert_with(|| "/run/flashblade-csi/admin-unused.sock".into());
        let text = match &args.config {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())).because(e))?,
            None => String::new(),
        };
        let file: Settings = toml::from_str(&text).map_err(|e| bad("config", e.to_string()).because(e))?;
        Self::from_settings(args.over(file)?, Purpose::Admin)
    }

    /// Builds from flags/env and the text of a TOML file.
    pub fn from_parts(args: &Settings, toml_text: &str) -> Result<Config, ConfigError> {
        let file: Settings =
            toml::from_str(toml_text).map_err(|e| bad("config", e.to_string()).because(e))?;
        Self::from_settings(args.over(file)?, Purpose::Serve)
    }

    fn from_settings(s: Settings, purpose: Purpose) -> Result<Config, ConfigError> {
        let mode = s
            .mode
            .ok_or_else(|| bad("mode", "required: controller, node or all"))?;
        let endpoint = s
            .endpoint
            .ok_or_else(|| bad("endpoint", "required, e.g. unix:///csi/csi.sock"))?;
        let socket_path = parse_endpoint(&endpoint)?;
        let socket_mode_text = s.socket_mode.unwrap_or_else(|| "660".into());
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
        let driver_name = s.driver_name.unwrap_or_else(|| DEFAULT_DRIVER_NAME.into());
        validate_driver_name(&driver_name)?;

        let mut arrays = Vec::new();
        for (i, a) in s.arrays.into_iter().enumerate() {
            let name = a
                .name
                .ok_or_else(|| bad(format!("array[{i}].name"), "required"))?;
            let setting = |k: &str| format!("array {name}: {k}");
            arrays.push(ArrayConfig {
                management_url: a
                    .management_url
                    .map(|u| parse_url(&setting("management_url / --array-url"), &u))
                    .transpose()?,
                api_token_file: a.api_token_file,
                ca_file: a.ca_file,
                insecure_skip_tls_verify: a.insecure_skip_tls_verify.unwrap_or(false),
                nfs_endpoint: a.nfs_endpoint,
                name_prefix: a
                    .name_prefix
                    .unwrap_or_else(|| DEFAULT_NAME_PREFIX.parse().expect("valid")),
                default_export_rules: a.default_export_rules,
                allow_wildcard_export: a.allow_wildcard_export.unwrap_or(false),
                extra_name_prefixes: a.extra_name_prefixes.unwrap_or_default(),
                labels: a.labels.unwrap_or_default(),
                name,
            });
        }

        let d = Timeouts::default();
        let t = s.timeouts;
        let pick = |setting: &str, v: Option<Duration>, default: Duration| match v {
            Some(v) if v.is_zero() => Err(bad(setting, "must be greater than zero")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let timeouts = Timeouts {
            array_request: pick("array-timeout", t.array_request, d.array_request)?,
            rpc: pick("rpc-timeout", t.rpc, d.rpc)?,
            mount: pick("mount-timeout", t.mount, d.mount)?,
            unmount: pick("unmount-timeout", t.unmount, d.unmount)?,
            stats: pick("stats-timeout", t.stats, d.stats)?,
            probe: pick("probe-timeout", t.probe, d.probe)?,
            shutdown_grace: pick("shutdown-grace", t.shutdown_grace, d.shutdown_grace)?,
        };
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

        let max_array_requests = s
            .limits
            .max_array_requests
            .unwrap_or(Limits::default().max_array_requests);
        if !(1..=1024).contains(&max_array_requests) {
            return Err(bad(
                "max-array-requests",
                format!("{max_array_requests} must be between 1 and 1024"),
            ));
        }

        let log = LogConfig {
            format: s.log.format.unwrap_or_default(),
            filter: s
                .log
                .filter
                .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
                .unwrap_or_else(|| "info".into()),
        };

        let export_reconcile_interval = s.export_reconcile_interval.unwrap_or(DEFAULT_EXPORT_RECONCILE);
        if !export_reconcile_interval.is_zero() && export_reconcile_interval < MIN_EXPORT_RECONCILE {
            return Err(bad(
                "export-reconcile-interval",
                format!(
                    "{} is too often: at least {}s (or 0 to turn the reconcile off)",
                    humantime::format_duration(export_reconcile_interval),
                    MIN_EXPORT_RECONCILE.as_secs()
                ),
            ));
        }
        let poll_interval = s
            .metrics_poll_interval
            .unwrap_or(MetricsConfig::default().poll_interval);
        if !poll_interval.is_zero() && poll_interval < MIN_METRICS_POLL {
            return Err(bad(
                "metrics-poll-interval",
                format!(
                    "{} is too often: at least {}s (or 0 to turn the poll off)",
                    humantime::format_duration(poll_interval),
                    MIN_METRICS_POLL.as_secs()
                ),
            ));
        }
        let metrics = MetricsConfig {
            address: s.metrics_address,
            poll_interval,
        };

        let config = Config {
            mode,
            socket_path,
            socket_mode,
            driver_name,
            node_id: s.node_id,
            kubelet_dir: s
                .kubelet_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBELET_DIR)),
            local_export_root: s.local_export_root,
            local_export_client: s.local_export_client,
            default_array: s.default_array,
            kubeconfig: s.kubeconfig,
            export_reconcile_interval,
            arrays,
            timeouts,
            limits: Limits { max_array_requests },
            log,
            metrics,
        };
        config.validate(purpose)?;
        Ok(config)
    }

    fn validate(&self, purpose: Purpose) -> Result<(), ConfigError> {
        if let Some(p) = &self.kubeconfig {
            check_file("kubeconfig", p)?;
        }
        let mut names = BTreeSet::new();
        for a in &self.arrays {
            if !names.insert(a.name.as_str()) {
                return Err(bad("array", format!("array {:?} is defined twice", a.name)));
            }
            if let Some(r) = &a.default_export_rules {
                crate::volume::exports::validate_export_rules(r, a.allow_wildcard_export).map_err(|e| {
                    bad(format!("array {}: default-export-rules", a.name), e.to_string()).because(e)
                })?;
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
                    load_ca_file(p).map_err(|e| bad(s("ca_file"), e.to_string()).because(e))?;
                }
                if a.nfs_endpoint.is_none() && purpose == Purpose::Serve {
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
                if !cfg!(feature = "dev-staging") {
                    return Err(bad(
                        "local-export-root",
                        "is a development option that this build leaves out (release images do): mount real NFS exports, or build with the default features to stage against mock-flashblade",
                    ));
                }
                check_dir("local-export-root", root)?;
            }
            if self.local_export_client.is_some() {
                if self.local_export_root.is_none() {
                    return Err(bad(
                        "local-export-client",
                        "only meaningful with local-export-root (development staging against mock-flashblade)",
                    ));
                }
                if !self.arrays.iter().any(|a| a.management_url.is_some()) {
                    return Err(bad(
                        "local-export-client",
                        "the node asks the simulated array's /mock/mount: give the array's management URL (--array-url)",
                    ));
                }
            }
        } else if self.local_export_root.is_some() {
            return Err(bad("local-export-root", "only meaningful in node or all mode"));
        } else if self.local_export_client.is_some() {
            return Err(bad("local-export-client", "only meaningful in node or all mode"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Settings {
        Settings {
            mode: Some(Mode::Node),
            endpoint: Some("unix:///tmp/x.sock".into()),
            node_id: Some("n1".into()),
            ..Default::default()
        }
    }

    /// Settings as clap reads them from a command line (no environment).
    fn cli(argv: &[&str]) -> Result<Settings, clap::Error> {
        use clap::{Args, FromArgMatches};
        let cmd = Settings::augment_args(clap::Command::new("t").no_binary_name(true));
        let m = cmd.try_get_matches_from(argv)?;
        Settings::from_arg_matches(&m)
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
        for ok in ["flashblade.csi.dev", "csi.example.org", "ab", "a-b-c.d"] {
            validate_driver_name(ok).unwrap();
        }
        // '_' is the conformance suite's, not the CSI spec's or Kubernetes'.
        for not_ok in ["drv-v2", "1abc", "a", "abc-", &"a".repeat(64), "a b", "", "a_b"] {
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
    fn local_export_client_needs_local_staging_and_the_arrays_url() {
        let mut a = args();
        a.local_export_client = Some("10.0.0.5".parse().unwrap());
        let err = Config::from_parts(&a, "").unwrap_err();
        assert_eq!(err.setting, "local-export-client");
        assert!(err.problem.contains("local-export-root"), "{err}");
        a.local_export_root = Some(std::env::temp_dir());
        let err = Config::from_parts(&a, "").unwrap_err();
        assert!(err.problem.contains("--array-url"), "{err}");
        a.array.management_url = Some("https://127.0.0.1:8443".into());
        let c = Config::from_parts(&a, "").unwrap();
        assert_eq!(c.local_export_client, Some("10.0.0.5".parse().unwrap()));
        // IPv6 too; anything else is refused by the parser.
        assert!(cli(&["--local-export-client", "fd00::5"]).is_ok());
        assert!(cli(&["--local-export-client", "node-1"]).is_err());
    }

    #[test]
    fn controller_mode_needs_array_and_names_missing_setting() {
        let a = Settings {
            mode: Some(Mode::Controller),
            endpoint: Some("/tmp/c.sock".into()),
            ..Default::default()
        };
        let err = Config::from_parts(&a, "").unwrap_err();
        assert_eq!(err.setting, "array-url");
        let mut a = a;
        a.array.management_url = Some("https://fb01.example.com".into());
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
            insecure_skip_tls_verify = true
            [timeouts]
            array_request = "5s"
            "#,
            token.display()
        );
        // The flags win over the file, including a boolean turned off.
        let mut a = cli(&[
            "--mode",
            "controller",
            "--endpoint",
            "/tmp/c.sock",
            "--name-prefix",
            "hub",
            "--insecure-skip-tls-verify=false",
        ])
        .unwrap();
        let c = Config::from_parts(&a, &toml).unwrap();
        assert_eq!(c.driver_name, "fb.csi.example");
        assert_eq!(c.arrays.len(), 1);
        assert_eq!(c.arrays[0].name, "fb01");
        assert_eq!(c.arrays[0].name_prefix, "hub");
        assert!(!c.arrays[0].insecure_skip_tls_verify);
        assert_eq!(c.timeouts.array_request, Duration::from_secs(5));
        assert_eq!(c.default_array().unwrap().name, "fb01");
        // Without the flag the file's true holds.
        a.array.insecure_skip_tls_verify = None;
        let c = Config::from_parts(&a, &toml).unwrap();
        assert!(c.arrays[0].insecure_skip_tls_verify);
    }

    #[test]
    fn durations() {
        let c = Config::from_parts(
            &cli(&[
                "--mode",
                "node",
                "--endpoint",
                "/tmp/x.sock",
                "--node-id",
                "n",
                "--mount-timeout",
                "500ms",
            ])
            .unwrap(),
            "",
        )
        .unwrap();
        assert_eq!(c.timeouts.mount, Duration::from_millis(500));
        for bad in ["30", "5d x", "-5s"] {
            assert!(cli(&["--mount-timeout", bad]).is_err(), "{bad}");
        }
        let err = Config::from_parts(&args(), "[timeouts]\nmount = \"0s\"").unwrap_err();
        assert_eq!(err.setting, "mount-timeout");
        let err = Config::from_parts(&args(), "[timeouts]\nmount = \"30\"").unwrap_err();
        assert_eq!(err.setting, "config");
    }

    #[test]
    fn rejects_bad_values_with_setting_names() {
        let cases: Vec<(&[&str], &str, &str)> = vec![
            (&["--endpoint", "tcp://x:1"], "", "endpoint"),
            (&["--driver-name", "9bad"], "", "driver-name"),
            (&["--mount-timeout", "5m"], "", "mount-timeout"),
            (&["--max-array-requests", "0"], "", "max-array-requests"),
            (&["--socket-mode", "999"], "", "socket-mode"),
            (&["--kubelet-dir", "rel"], "", "kubelet-dir"),
            (&["--metrics-poll-interval", "2s"], "", "metrics-poll-interval"),
            (&[], "unknown_key = 1", "config"),
            (&[], "[[array]]\nname = \"a/b\"", "config"),
            (&[], "[[array]]\nname = \"aaaaaaaaaaaaaaaaaaaaa\"", "config"),
            (&[], "default_array = \"nope\"", "default_array"),
            (
                &["--array-url", "ftp://x"],
                "",
                "array default: management_url / --array-url",
            ),
            (
                &["--array-url", "https://x/api"],
                "",
                "array default: management_url / --array-url",
            ),
            (
                &["--array-url", "https://u:p@x"],
                "",
                "array default: management_url / --array-url",
            ),
        ];
        for (argv, toml, setting) in cases {
            let mut a = cli(argv).unwrap();
            let base = args();
            a.mode = a.mode.or(base.mode);
            a.endpoint = a.endpoint.or(base.endpoint);
            a.node_id = a.node_id.or(base.node_id);
            let err = Config::from_parts(&a, toml).unwrap_err();
            assert_eq!(err.setting, setting, "{argv:?} {toml:?}: {err}");
            assert!(err.to_string().starts_with("invalid configuration: "));
        }
        // Names the domain types refuse never get past the command line.
        for argv in [
            &["--nfs-endpoint=-o evil"][..],
            &["--name-prefix=bad prefix"],
            &["--name-prefix=k8s-col"],
            &["--array-name=aaaaaaaaaaaaaaaaaaaaa"],
        ] {
            let err = cli(argv).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{argv:?}");
        }
    }

    #[test]
    fn ca_and_insecure_are_exclusive() {
        let mut a = args();
        a.array.ca_file = Some("/etc/hosts".into());
        a.array.insecure_skip_tls_verify = Some(true);
        let err = Config::from_parts(&a, "").unwrap_err();
        assert!(err.problem.contains("contradict"), "{err}");
    }
}
