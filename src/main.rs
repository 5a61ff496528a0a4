//! The `flashblade-csi` binary: parses the command line and hands over to the
//! library.

use clap::{Parser, Subcommand};
use flashblade_csi::config::{Config, ServeArgs};

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
    Serve(ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(args),
    };
    std::process::exit(code);
}

fn serve(args: ServeArgs) -> i32 {
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashblade-csi: {e}");
            return 2;
        }
    };
    if let Err(e) = flashblade_csi::telemetry::init(&config.log) {
        eprintln!("flashblade-csi: {e}");
        return 2;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flashblade-csi: cannot start runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(flashblade_csi::app::run(
        config,
        flashblade_csi::server::shutdown_signal(),
    )) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("flashblade-csi: {e}");
            1
        }
    }
}
