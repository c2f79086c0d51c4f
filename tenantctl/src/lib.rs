//! `tenantctl`, the operators' CLI: one subcommand module per noun.

mod admin;
mod backup;
#[cfg(feature = "dev")]
mod dev;
mod migrate;
mod output;
mod platform;
mod seed;
mod server;
mod tenant;

use clap::{Parser, Subcommand};

/// Operate the database-per-tenant platform: admins, tenants, migrations, backups, and a
/// local development platform.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version)]
pub struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Super-admins of the control plane.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Database servers that tenants are placed on.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Tenants: create, list, show, suspend, resume, delete.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Tenant backups in S3: create, list, verify.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Tenant schema migrations across the fleet: status, plan, run.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Run the whole platform locally on an embedded PostgreSQL and S3 endpoint.
    #[cfg(feature = "dev")]
    Dev(dev::DevArgs),
}

pub use catalog::CatalogArgs;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Admin(command) => admin::run(command, cli.json).await,
        Command::Server(command) => server::run(command, cli.json).await,
        Command::Tenant(command) => tenant::run(command, cli.json).await,
        Command::Migrate(command) => migrate::run(command, cli.json).await,
        Command::Backup(command) => backup::run(command, cli.json).await,
        #[cfg(feature = "dev")]
        Command::Dev(args) => dev::run(args).await,
    }
}
