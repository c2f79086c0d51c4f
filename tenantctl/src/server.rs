//! `tenantctl server add|set|list|orphans|adopt`: the database servers tenants are placed
//! on, their capacity, and the objects of ours on them that the catalog does not know.

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
    /// Change a server's capacity: its maximum of tenants, and the connection budget the
    /// routers share on it (applied by running routers at once, no restart).
    Set {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The server's name.
        name: String,
        #[arg(long)]
        max_tenants: Option<u32>,
        #[arg(long)]
        connection_budget: Option<u32>,
    },
    /// List servers with their tenant counts.
    List {
        #[command(flatten)]
        platform: PlatformArgs,
    },
    /// Databases and roles of this installation that the catalog does not know, on every
    /// server, with what the sweep does with them (changes nothing).
    Orphans {
        #[command(flatten)]
        platform: PlatformArgs,
    },
    /// Make a tenant database of this installation that the catalog does not know (say, a
    /// quarantined one after the catalog was restored from an older backup) a tenant again.
    Adopt {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The server it is on.
        #[arg(long)]
        server: String,
        /// The database (as `server orphans` lists it).
        database: String,
        /// The tenant's slug.
        #[arg(long)]
        slug: String,
        /// The tenant's display name.
        #[arg(long)]
        name: String,
        /// The tenant's plan.
        #[arg(long)]
        plan: String,
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
            let server = provisioner::servers::register(
                &platform,
                &crate::admin::operator(),
                provisioner::servers::NewServerRequest {
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
            let server = provisioner::wire::Server::from(server);
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
        ServerCommand::Set {
            platform,
            name,
            max_tenants,
            connection_budget,
        } => {
            let platform = platform.connect().await?;
            let server = provisioner::servers::set_capacity(
                &platform,
                &crate::admin::operator(),
                &name,
                provisioner::servers::CapacityChange {
                    max_tenants: max_tenants.map(i64::from),
                    connection_budget: connection_budget.map(i64::from),
                },
            )
            .await?;
            let server = provisioner::wire::Server::from(server);
            print(
                json,
                &server,
                &["NAME", "TENANTS", "CONNECTIONS"],
                vec![vec![
                    server.name.clone(),
                    format!("{}/{}", server.tenants, server.max_tenants),
                    server.connection_budget.to_string(),
                ]],
            )
        }
        ServerCommand::Orphans { platform } => {
            let platform = platform.connect().await?;
            let orphans = provisioner::sweep::orphans(&platform).await?;
            let rows = orphans
                .iter()
                .map(|orphan| {
                    vec![
                        orphan.server.clone(),
                        orphan.kind.to_owned(),
                        orphan.name.clone(),
                        orphan.created_at.to_rfc3339(),
                        serde_json::to_value(orphan.state)
                            .ok()
                            .and_then(|state| state.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        cell(orphan.drop_after.map(|at| at.to_rfc3339())),
                    ]
                })
                .collect();
            print(
                json,
                &orphans,
                &["SERVER", "KIND", "NAME", "CREATED", "STATE", "DROP AFTER"],
                rows,
            )
        }
        ServerCommand::Adopt {
            platform,
            server,
            database,
            slug,
            name,
            plan,
        } => {
            let platform = platform.connect().await?;
            let tenant = provisioner::tenants::adopt(
                &platform,
                &crate::admin::operator(),
                provisioner::tenants::Adoption {
                    server,
                    database,
                    slug: slug.parse().map_err(|error: tenancy_core::IdError| {
                        anyhow::anyhow!("--slug: {}", error.0)
                    })?,
                    name,
                    plan: plan.parse().map_err(|error: tenancy_core::IdError| {
                        anyhow::anyhow!("--plan: {}", error.0)
                    })?,
                },
            )
            .await?;
            let tenant = provisioner::wire::Tenant::from(tenant);
            print(
                json,
                &tenant,
                &["SLUG", "STATUS", "SERVER", "DATABASE", "SCHEMA"],
                vec![vec![
                    tenant.slug.clone(),
                    tenant.status.to_string(),
                    cell(tenant.server.clone()),
                    cell(tenant.database_name.clone()),
                    cell(tenant.schema_version),
                ]],
            )
        }
        ServerCommand::List { platform } => {
            let platform = platform.connect().await?;
            let servers: Vec<provisioner::wire::Server> = catalog::servers::list(&platform.db)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            let rows = servers
                .iter()
                .map(|server| {
                    vec![
                        server.name.clone(),
                        format!("{}:{}", server.host, server.port),
                        server.status.to_string(),
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
