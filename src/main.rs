//! The `flashblade-csi` binary: parses the command line and hands over to the
//! library.

use clap::{Parser, Subcommand};
use flashblade_csi::config::{Config, Settings};

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
    /// Restore a volume in place from one of its snapshots (discards data
    /// written since the snapshot). Uses the same configuration as `serve`.
    Restore(RestoreArgs),
    /// List a dataset's versions (its snapshots), or print a read-only static
    /// PV and PVC for one. Uses the same configuration as `serve`.
    Versions(flashblade_csi::admin_versions::VersionsArgs),
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The volume (PersistentVolume spec.csi.volumeHandle).
    #[arg(long)]
    volume_id: String,
    /// The snapshot (VolumeSnapshotContent status.snapshotHandle).
    #[arg(long)]
    snapshot_id: String,
    #[command(flatten)]
    serve: Settings,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Restore(args) => restore(args),
        Command::Versions(args) => flashblade_csi::admin_versions::main(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => flashblade_csi::demo::main(args),
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
    let (config, runtime) = match setup(Config::load(&args), true) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = match runtime.block_on(flashblade_csi::app::run(
        config,
        flashblade_csi::server::shutdown_signal(),
    )) {
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

fn restore(args: RestoreArgs) -> i32 {
    let (config, runtime) = match setup(Config::load_for_admin(&args.serve), false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match runtime.block_on(flashblade_csi::admin::restore(
        config,
        &args.volume_id,
        &args.snapshot_id,
    )) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("flashblade-csi: restore failed: {e}");
            1
        }
    }
}
