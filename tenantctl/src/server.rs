//! `tenantctl server add|list`: the database servers tenants are placed on.

use secrecy::SecretString;

use crate::output::{cell, print};
use crate::platform::PlatformArgs;

#[derive(Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// Register a server: checked, prepared for tenants, then recorded. The admin password
    /// comes from TENANCY_SERVER_ADMIN_PASSWORD or stdin.
    Add {
        #[command(flatten)]
        platform: PlatformArgs,
        /// A short name for the server (a-z, 0-9, '-').
        #[arg(long)]
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 5432)]
        port: u16,
        /// A role with CREATEDB and CREATEROLE (a superuser is simplest).
        #[arg(long, default_value = "postgres")]
        admin_user: String,
        #[arg(long, default_value_t = 500)]
        max_tenants: u32,
        /// Connections the routers may open to this server, all tenants together.
        #[arg(long, default_value_t = 200)]
        connection_budget: u32,
    },
    /// List servers with their tenant counts.
    List {
        #[command(flatten)]
        platform: PlatformArgs,
    },
}

pub async fn run(command: ServerCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ServerCommand::Add {
            platform,
            name,
            host,
            port,
            admin_user,
            max_tenants,
            connection_budget,
        } => {
            let password = match std::env::var("TENANCY_SERVER_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => crate::admin::read_password()?,
            };
            let platform = platform.connect().await?;
            let server = control_plane::servers::register(
                &platform,
                &crate::admin::operator(),
                control_plane::servers::NewServerRequest {
                    name,
                    host,
                    port: i64::from(port),
                    admin_user,
                    admin_password: SecretString::from(password),
                    max_tenants: i64::from(max_tenants),
                    connection_budget: i64::from(connection_budget),
                },
            )
            .await?;
            print(
                json,
                &server,
                &["ID", "NAME", "ENDPOINT", "SCHEMA"],
                vec![vec![
                    server.id.to_string(),
                    server.name.clone(),
                    format!("{}:{}", server.host, server.port),
                    cell(server.schema_version),
                ]],
            )
        }
        ServerCommand::List { platform } => {
            let platform = platform.connect().await?;
            let servers = catalog::servers::list(&platform.db).await?;
            let rows = servers
                .iter()
                .map(|server| {
                    vec![
                        server.name.clone(),
                        format!("{}:{}", server.host, server.port),
                        server.status.clone(),
                        format!("{}/{}", server.tenants, server.max_tenants),
                        server.connection_budget.to_string(),
                        cell(server.schema_version),
                    ]
                })
                .collect();
            print(
                json,
                &servers,
                &[
                    "NAME",
                    "ENDPOINT",
                    "STATUS",
                    "TENANTS",
                    "CONNECTIONS",
                    "SCHEMA",
                ],
                rows,
            )
        }
    }
}
