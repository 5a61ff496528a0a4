//! The `flashblade-csi` binary: parses the command line and hands over to the
//! library.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use flashblade_csi::admin::{self, Job, Output};
use flashblade_csi::cluster::ClaimName;
use flashblade_csi::config::{Config, Settings};

const ADMIN_HELP: &str = "\
Exit codes: 0 done; 1 the array or cluster failed; 2 bad arguments or
configuration; 3 not found; 4 refused (unsafe or impossible; nothing changed);
5 the cluster was unreachable (array-side facts printed).
Volumes may be named by PV name, PVC (namespace/name), volume id or
file-system name.";

#[derive(Parser)]
#[command(
    name = "flashblade-csi",
    version,
    about = "Kubernetes CSI driver for Pure Storage FlashBlade"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CSI gRPC services on a unix socket.
    Serve(Settings),
    /// Run the JupyterHub story end to end on this machine, against an
    /// embedded simulated array (mounts need root).
    #[cfg(feature = "demo")]
    Demo(flashblade_csi::demo::DemoArgs),
    /// Inventory of the driver's file systems with their PVs and claims.
    #[command(after_help = ADMIN_HELP)]
    Volumes(AdminOpts),
    /// The arrays: placement labels, capacity, free space, volume count.
    #[command(after_help = ADMIN_HELP)]
    Arrays(AdminOpts),
    /// File systems no PV references, and PVs whose file system is gone.
    #[command(after_help = ADMIN_HELP)]
    Orphans(AdminOpts),
    /// Show or change a volume's hard limit, default and per-user quotas.
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// List soft-deleted volumes, or recover one and give it to a claim.
    #[command(after_help = ADMIN_HELP)]
    Recover(RecoverCmd),
    /// Restore a volume in place from one of its snapshots (discards data
    /// written since the snapshot).
    #[command(after_help = ADMIN_HELP)]
    Restore(RestoreCmd),
    /// Move PSO's (pure-csi) volumes and in-tree NFS volumes of the configured
    /// arrays under this driver, keeping their file systems and claim names.
    /// Dry run unless --apply.
    #[command(after_help = ADOPT_HELP)]
    Adopt(AdoptCmd),
    /// Check, on a throwaway file system of its own, that the array behaves
    /// as the driver assumes; removes everything it made.
    #[command(name = "check-array", after_help = CHECK_HELP)]
    CheckArray(CheckArrayCmd),
    /// List a dataset's versions (its snapshots), or print a read-only static
    /// PV and PVC for one. Uses the same configuration as `serve`.
    Versions(flashblade_csi::admin::versions::VersionsArgs),
    /// The settings and input rules of this build, as JSON (for the Helm
    /// chart's checks).
    #[command(hide = true)]
    Schema,
}

/// What every admin command takes: the output format and the array settings
/// of `serve` (config file, flags, environment).
#[derive(clap::Args)]
struct AdminOpts {
    /// table (for people) or json (for scripts).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum QuotaCmd {
    /// A volume's size, hard limit, default quotas and explicit quotas with usage.
    #[command(after_help = ADMIN_HELP)]
    Show {
        /// PV, namespace/PVC, volume id or file-system name.
        volume: String,
        #[command(flatten)]
        opts: AdminOpts,
    },
    /// Change the hard limit or default quotas (validated as the
    /// StorageClass parameters are), or set one uid's or gid's quota.
    #[command(after_help = ADMIN_HELP)]
    Set {
        volume: String,
        /// Hard limit on the volume's size: true or false.
        #[arg(long)]
        hard_limit: Option<String>,
        /// Default quota for users without their own, e.g. 10Gi (0: none).
        #[arg(long)]
        default_user_quota: Option<String>,
        /// Default quota for groups without their own (0: none).
        #[arg(long)]
        default_group_quota: Option<String>,
        /// Set the quota of this numeric user id (with --quota).
        #[arg(long, conflicts_with = "gid")]
        uid: Option<u32>,
        /// Set the quota of this numeric group id (with --quota).
        #[arg(long)]
        gid: Option<u32>,
        /// The quota for --uid or --gid, e.g. 20Gi.
        #[arg(long)]
        quota: Option<String>,
        #[command(flatten)]
        opts: AdminOpts,
    },
    /// Remove one uid's or gid's quota (the default applies again).
    #[command(after_help = ADMIN_HELP)]
    Remove {
        volume: String,
        /// Remove the quota of this numeric user id.
        #[arg(long, conflicts_with = "gid", required_unless_present = "gid")]
        uid: Option<u32>,
        /// Remove the quota of this numeric group id.
        #[arg(long)]
        gid: Option<u32>,
        #[command(flatten)]
        opts: AdminOpts,
    },
}

#[derive(clap::Args)]
struct RecoverCmd {
    /// The deleted volume: its file-system name (as `recover` lists it), a
    /// tombstone name, or its old volume id. Without it: list them.
    volume: Option<String>,
    /// The array, when the name is not on the default one.
    #[arg(long = "on-array")]
    on_array: Option<String>,
    /// Give it to this claim (namespace/name): print a PV and PVC bound to
    /// each other.
    #[arg(long, requires = "volume")]
    claim: Option<ClaimName>,
    /// Create that PV and PVC in the cluster instead of printing them.
    #[arg(long, requires = "claim")]
    apply: bool,
    /// storageClassName of the PV and PVC (default: none).
    #[arg(long, requires = "claim")]
    storage_class: Option<String>,
    /// Access mode of the PV and PVC.
    #[arg(long, default_value = "ReadWriteOnce", value_parser = ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"])]
    access_mode: String,
    /// NFS versions to turn back on (3, 4.1 or 3,4.1). Default: those the
    /// volume had, as its tombstone records.
    #[arg(long, requires = "volume")]
    nfs_versions: Option<String>,
    /// For a volume exported to nodes: the export options its class set
    /// (exportOptions). Default: root_squash.
    #[arg(long, requires = "volume")]
    export_options: Option<String>,
    #[command(flatten)]
    opts: AdminOpts,
}

const ADOPT_HELP: &str = "\
Steps per volume, each checked first (a rerun resumes; a finished volume is
left alone): the old PV becomes Retain and records its claim; a PV of this
driver for the same file system is created, bound to the claim's name; the
old claim is deleted (refused while a pod uses it); the claim is recreated
with its name, labels and annotations; the old PV object is deleted. File
systems are never changed or deleted. See docs/migrating-from-pso.md.
Exit codes: 0 done (or, in a dry run, nothing refused); 1 a step failed (run
again to resume) or the cluster or array could not be read; 2 bad arguments
or configuration; 3 a --pv that does not exist; 4 a volume was refused (a
pod uses its claim, a name is taken); the others were still adopted.";

#[derive(clap::Args)]
struct AdoptCmd {
    /// Take the steps. Without it: print the plan, change nothing.
    #[arg(long)]
    apply: bool,
    /// The CSI driver whose PersistentVolumes to adopt.
    #[arg(long, default_value = "pure-csi")]
    from_driver: String,
    /// storageClassName of the new PVs and claims of that driver's volumes
    /// (e.g. fb-home; default: keep the old one).
    #[arg(long)]
    storage_class: Option<String>,
    /// storageClassName of the new PVs and claims of in-tree NFS datasets
    /// (default: keep the old one).
    #[arg(long)]
    dataset_storage_class: Option<String>,
    /// Reclaim policy of the new PVs of that driver's volumes (datasets are
    /// always Retain: the driver never deletes a static volume).
    #[arg(long, default_value = "Retain", value_parser = ["Retain", "Delete"])]
    reclaim_policy: String,
    /// Only this old PV (repeat for more; default: every one found).
    #[arg(long = "pv", value_name = "NAME")]
    pvs: Vec<String>,
    /// How long to wait for a deleted claim to disappear.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    claim_timeout: std::time::Duration,
    #[command(flatten)]
    opts: AdminOpts,
}

const CHECK_HELP: &str = "\
Works only on a file system and snapshot named <prefix>-check-<random>,
1 MiB, exported to no one (with --mount: to this node only), and removes
them at the end, after a failure and after Ctrl-C. See docs/check-array.md.
Exit codes: 0 every check passed or was skipped; 6 a check DIFFERS; 1 the
array failed, or something could not be removed (it is listed); 2 bad
arguments or configuration; 130 interrupted (its objects were removed).";

#[derive(clap::Args)]
struct CheckArrayCmd {
    /// The configured array to check (default: the default array).
    #[arg(long = "array", value_name = "NAME")]
    check_array: Option<String>,
    /// Also mount the throwaway file system over NFS (v3 and v4.1) from this
    /// node: root owner and mode, root squashing, .snapshot layout. Needs
    /// root and the array's data address (--nfs-endpoint or the config).
    #[arg(long = "mount", id = "nfs_mount", conflicts_with = "local_export_root")]
    nfs_mount: bool,
    #[command(flatten)]
    opts: AdminOpts,
}

#[derive(clap::Args)]
struct RestoreCmd {
    /// The volume (PV, namespace/PVC, volume id or file-system name).
    #[arg(long, visible_alias = "volume")]
    volume_id: String,
    /// The snapshot (VolumeSnapshotContent status.snapshotHandle).
    #[arg(long)]
    snapshot_id: String,
    /// Show what would be discarded; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore even when the volume may be in use.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    opts: AdminOpts,
}

/// Settings of `serve` that mean nothing to an admin command: accepted (one
/// config file serves both) but not shown in its help.
const NOT_FOR_ADMIN: &[&str] = &[
    "mode",
    "endpoint",
    "socket_mode",
    "node_id",
    "kubelet_dir",
    "local_export_root",
    "local_export_client",
    "export_reconcile_interval",
    "nfs_endpoint",
    "mount",
    "unmount",
    "stats",
    "probe",
    "shutdown_grace",
    "rpc",
];

fn command() -> clap::Command {
    fn hide(mut c: clap::Command) -> clap::Command {
        for id in NOT_FOR_ADMIN {
            if c.get_arguments().any(|a| a.get_id() == *id) {
                c = c.mut_arg(*id, |a| a.hide(true));
            }
        }
        c
    }
    let mut cmd = Cli::command();
    for name in ["arrays", "volumes", "orphans", "recover", "restore"] {
        cmd = cmd.mut_subcommand(name, hide);
    }
    // check-array mounts from the data address (it also takes the
    // development --local-export-root, unlisted).
    cmd = cmd.mut_subcommand("check-array", |mut c| {
        for id in NOT_FOR_ADMIN.iter().filter(|id| **id != "nfs_endpoint") {
            if c.get_arguments().any(|a| a.get_id() == *id) {
                c = c.mut_arg(*id, |a| a.hide(true));
            }
        }
        c
    });
    // adopt writes the arrays' NFS endpoints into the new PVs: it keeps
    // --nfs-endpoint.
    cmd = cmd.mut_subcommand("adopt", |mut c| {
        for id in NOT_FOR_ADMIN.iter().filter(|id| **id != "nfs_endpoint") {
            if c.get_arguments().any(|a| a.get_id() == *id) {
                c = c.mut_arg(*id, |a| a.hide(true));
            }
        }
        c
    });
    cmd.mut_subcommand("quota", |q| {
        q.mut_subcommand("show", hide)
            .mut_subcommand("set", hide)
            .mut_subcommand("remove", hide)
    })
}

fn main() {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Versions(args) => flashblade_csi::admin::versions::main(args),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&flashblade_csi::admin::schema::document()).expect("JSON")
            );
            0
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => flashblade_csi::demo::main(args),
        Command::Volumes(opts) => admin_main(opts, Job::Volumes),
        Command::Arrays(opts) => admin_main(opts, Job::Arrays),
        Command::Orphans(opts) => admin_main(opts, Job::Orphans),
        Command::Quota(QuotaCmd::Show { volume, opts }) => admin_main(opts, Job::QuotaShow { volume }),
        Command::Quota(QuotaCmd::Set {
            volume,
            hard_limit,
            default_user_quota,
            default_group_quota,
            uid,
            gid,
            quota,
            opts,
        }) => admin_main(
            opts,
            Job::QuotaSet {
                volume,
                change: admin::quota::QuotaChange {
                    hard_limit,
                    default_user_quota,
                    default_group_quota,
                    uid,
                    gid,
                    quota,
                },
            },
        ),
        Command::Quota(QuotaCmd::Remove {
            volume,
            uid,
            gid,
            opts,
        }) => admin_main(opts, Job::QuotaRemove { volume, uid, gid }),
        Command::Recover(r) => {
            let job = match r.volume {
                None => Job::RecoverList,
                Some(volume) => Job::Recover {
                    volume,
                    args: admin::recover::RecoverArgs {
                        array: r.on_array,
                        claim: r.claim,
                        storage_class: r.storage_class,
                        access_mode: r.access_mode,
                        nfs_versions: r.nfs_versions,
                        export_options: r.export_options,
                        apply: r.apply,
                    },
                },
            };
            admin_main(r.opts, job)
        }
        Command::CheckArray(mut c) => {
            // A node setting that check-array reads itself (the
            // controller's configuration has no use for it).
            let local = c.opts.settings.local_export_root.take();
            let mount = match (local, c.nfs_mount) {
                (Some(dir), _) => admin::check::MountMode::Local(dir),
                (None, true) => admin::check::MountMode::Nfs {
                    endpoint: c.opts.settings.array.nfs_endpoint.as_ref().map(|h| h.to_string()),
                },
                (None, false) => admin::check::MountMode::None,
            };
            admin_main(
                c.opts,
                Job::CheckArray(admin::check::CheckArgs {
                    array: c.check_array,
                    mount,
                }),
            )
        }
        Command::Adopt(a) => admin_main(
            a.opts,
            Job::Adopt(admin::adopt::AdoptArgs {
                apply: a.apply,
                from_driver: a.from_driver,
                storage_class: a.storage_class,
                dataset_storage_class: a.dataset_storage_class,
                reclaim_policy: a.reclaim_policy,
                pvs: a.pvs,
                claim_timeout: a.claim_timeout,
            }),
        ),
        Command::Restore(r) => admin_main(
            r.opts,
            Job::Restore {
                volume: r.volume_id,
                snapshot_id: r.snapshot_id,
                dry_run: r.dry_run,
                yes: r.yes,
            },
        ),
    };
    std::process::exit(code);
}

/// Loads and validates the configuration, starts logging and a runtime; on
/// failure prints why and returns the exit code.
fn setup(
    config: Result<Config, flashblade_csi::config::ConfigError>,
    multi_thread: bool,
) -> Result<(Config, tokio::runtime::Runtime), i32> {
    let config = config.map_err(|e| {
        eprintln!("flashblade-csi: {e}");
        2
    })?;
    flashblade_csi::telemetry::init(&config.log).map_err(|e| {
        eprintln!("flashblade-csi: {e}");
        2
    })?;
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder.enable_all().build().map_err(|e| {
        eprintln!("flashblade-csi: cannot start runtime: {e}");
        1
    })?;
    Ok((config, runtime))
}

fn serve(args: Settings) -> i32 {
    // Before any thread allocates.
    flashblade_csi::server::tune_heap();
    let (config, runtime) = match setup(Config::load(&args), true) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = match runtime.block_on(async {
        // Handlers first: the socket must not exist before they do.
        let stop = flashblade_csi::server::shutdown_signal();
        flashblade_csi::app::run(config, stop).await
    }) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("flashblade-csi: {e}");
            1
        }
    };
    // Dropping the runtime would wait for every blocking thread, including
    // one stuck in the kernel on a dead NFS server: the server has stopped,
    // so exit now whatever remains.
    runtime.shutdown_background();
    code
}

/// Runs an admin command: the report on stdout, warnings and errors on
/// stderr (and, with `--output json`, an error as JSON on stdout too).
fn admin_main(opts: AdminOpts, job: Job) -> i32 {
    let mut settings = opts.settings;
    // The driver's info lines are noise here; warnings still show. kube
    // logs an unreachable API server as an ERROR line of its own, which the
    // command's error already says (with the cause).
    if settings.log.filter.is_none() && std::env::var_os("RUST_LOG").is_none() {
        settings.log.filter = Some("warn,kube_client=off".into());
    }
    let (config, runtime) = match setup(Config::load_for_admin(&settings), false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match runtime.block_on(admin::run(config, opts.output, job)) {
        Ok(report) => {
            print!("{}", report.stdout);
            for w in &report.warnings {
                eprintln!("flashblade-csi: warning: {w}");
            }
            report.code
        }
        Err(e) => {
            let code = e.exit_code();
            if opts.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({"error": e.to_string(), "exit_code": code})
                );
            }
            eprintln!("flashblade-csi: {e}");
            code
        }
    }
}
