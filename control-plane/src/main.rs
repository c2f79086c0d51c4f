use std::process::ExitCode;

use clap::Parser;

/// The control plane of the database-per-tenant platform: super-admin API over the catalog.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: control_plane::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    tenancy_core::telemetry::init();
    let cli = Cli::parse();
    match control_plane::run(cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
