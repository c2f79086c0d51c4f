//! `tenantctl tenant create|list|show|suspend|resume|delete`, over the control plane's code.

use anyhow::anyhow;
use catalog::tenants::Status;
use provisioner::tenants::{Created, ListQuery, NewTenant};
use provisioner::wire::Tenant;

use crate::output::{cell, print};
use crate::platform::PlatformArgs;

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and wait until it is routable. The first admin's password is read
    /// from stdin when it is not a terminal, otherwise prompted for.
    Create {
        #[command(flatten)]
        platform: PlatformArgs,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "trial")]
        plan: String,
        /// The tenant's first admin user.
        #[arg(long)]
        admin_email: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        platform: PlatformArgs,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        plan: Option<String>,
    },
    /// Show one tenant.
    Show {
        #[command(flatten)]
        platform: PlatformArgs,
        slug: String,
    },
    /// Suspend an active tenant.
    Suspend {
        #[command(flatten)]
        platform: PlatformArgs,
        slug: String,
    },
    /// Resume a suspended tenant.
    Resume {
        #[command(flatten)]
        platform: PlatformArgs,
        slug: String,
    },
    /// Delete a tenant: its database is dropped after the grace period, once a final
    /// backup of it is complete (refused when backups are not configured, unless
    /// `--no-final-backup`).
    Delete {
        #[command(flatten)]
        platform: PlatformArgs,
        slug: String,
        /// Drop the database without a final backup (recorded in the audit log).
        #[arg(long)]
        no_final_backup: bool,
    },
    /// Fill a tenant with realistic sample data (customers, suppliers, products, purchase
    /// orders in every status) through the tenant router's API.
    Seed(crate::seed::SeedArgs),
}

fn parse<T: std::str::FromStr<Err = tenancy_core::IdError>>(
    what: &str,
    value: &str,
) -> anyhow::Result<T> {
    value
        .parse()
        .map_err(|error: tenancy_core::IdError| anyhow!("{what}: {}", error.0))
}

const HEADERS: [&str; 6] = ["SLUG", "NAME", "PLAN", "STATUS", "SERVER", "SCHEMA"];

fn row(tenant: &Tenant) -> Vec<String> {
    vec![
        tenant.slug.clone(),
        tenant.name.clone(),
        tenant.plan.clone(),
        tenant.status.to_string(),
        cell(tenant.server.clone()),
        cell(tenant.schema_version),
    ]
}

fn one(json: bool, tenant: catalog::tenants::Tenant) -> anyhow::Result<()> {
    let tenant = Tenant::from(tenant);
    print(json, &tenant, &HEADERS, vec![row(&tenant)])
}

pub async fn run(command: TenantCommand, json: bool) -> anyhow::Result<()> {
    let actor = crate::admin::operator();
    match command {
        TenantCommand::Create {
            platform,
            slug,
            name,
            plan,
            admin_email,
        } => {
            let new = NewTenant {
                slug: parse("slug", &slug)?,
                name,
                plan: parse("plan", &plan)?,
                admin_email: parse("admin e-mail", &admin_email)?,
                admin_password: crate::admin::read_password()?,
            };
            let platform = platform.connect().await?;
            match provisioner::tenants::create(&platform, &actor, new, None).await? {
                Created::New(tenant) | Created::Replayed(tenant) => one(json, tenant),
                Created::Pending(tenant) => {
                    one(json, tenant.clone())?;
                    Err(anyhow!(
                        "the tenant is still being provisioned by another worker"
                    ))
                }
            }
        }
        TenantCommand::List {
            platform,
            status,
            plan,
        } => {
            let platform = platform.connect().await?;
            let mut items = Vec::new();
            let mut cursor = None;
            loop {
                let page = provisioner::tenants::list(
                    &platform,
                    ListQuery {
                        status: status.clone(),
                        plan: plan.clone(),
                        server: None,
                        live_only: false,
                        q: None,
                        limit: Some(500),
                        cursor: cursor.take(),
                    },
                )
                .await?;
                items.extend(page.items.into_iter().map(Tenant::from));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let rows = items.iter().map(row).collect();
            print(json, &items, &HEADERS, rows)
        }
        TenantCommand::Show { platform, slug } => {
            let platform = platform.connect().await?;
            one(json, provisioner::tenants::get(&platform, &slug).await?)
        }
        TenantCommand::Suspend { platform, slug } => {
            let platform = platform.connect().await?;
            one(
                json,
                provisioner::tenants::transition(&platform, &actor, &slug, Status::Suspended)
                    .await?,
            )
        }
        TenantCommand::Resume { platform, slug } => {
            let platform = platform.connect().await?;
            one(
                json,
                provisioner::tenants::transition(&platform, &actor, &slug, Status::Active).await?,
            )
        }
        TenantCommand::Delete {
            platform,
            slug,
            no_final_backup,
        } => {
            let platform = platform.connect().await?;
            let final_backup = if no_final_backup {
                provisioner::tenants::FinalBackup::Waived
            } else {
                provisioner::tenants::FinalBackup::Required
            };
            one(
                json,
                provisioner::tenants::delete(&platform, &actor, &slug, final_backup).await?,
            )
        }
        TenantCommand::Seed(args) => crate::seed::run(args, json).await,
    }
}
