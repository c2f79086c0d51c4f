use std::process::ExitCode;

use clap::Parser;

/// The tenant router: tenant apps' API, each request on its tenant's database.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    config: tenant_router::Config,
}

/// mimalloc: the router allocates and frees small objects on every request from several
/// threads; glibc's allocator was a fifth of its CPU time under load (measured with perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tenancy_core::telemetry::init();
    let cli = Cli::parse();
    match tenant_router::run(cli.config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
