//! Connecting to the catalog with the catalog key, for commands that act on tenants and
//! servers through the same code as the control plane.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub catalog: crate::CatalogArgs,

    /// How long a deleted tenant's database is kept before it is dropped.
    #[arg(long, env = "TENANCY_DELETE_GRACE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub delete_grace: Duration,

    /// A directory of tenant schema migrations (`V<n>__<name>.sql`) to use instead of the
    /// ones built into this binary. It must start with the built-in steps, unchanged.
    #[arg(long, env = "TENANCY_TENANT_MIGRATIONS")]
    pub tenant_migrations: Option<PathBuf>,

    #[command(flatten)]
    pub s3: provisioner::backups::S3Args,

    #[command(flatten)]
    pub sweep: provisioner::sweep::SweepArgs,

    /// How long a restore keeps the database it replaced.
    #[arg(long, env = "TENANCY_RESTORE_KEEP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub restore_keep: Duration,
}

impl PlatformArgs {
    /// The tenant migrations this command works with.
    pub fn migrations(&self) -> anyhow::Result<tenant_schema::MigrationSet> {
        Ok(tenant_schema::MigrationSet::load(
            self.tenant_migrations.as_deref(),
        )?)
    }

    pub async fn connect(&self) -> anyhow::Result<provisioner::Platform> {
        let sealer = self.catalog.sealer()?;
        let options = self.catalog.connect_options()?;
        let db = catalog::connect(options, 10)
            .await
            .context("connect to the catalog database")?;
        catalog::migrate(&db)
            .await
            .context("apply the catalog migrations")?;
        provisioner::Platform::new(
            db,
            sealer,
            provisioner::Settings {
                delete_grace: self.delete_grace,
                warm_pool_size: 0,
                fault_after_step: None,
                migrations: self.migrations()?,
                backup_store: provisioner::backups::Store::from_args(&self.s3)?,
                scheduled_backups: false,
                sweep: self.sweep.settings(),
                restore_keep: self.restore_keep,
            },
        )
        .await
        .context("read the installation id from the catalog")
    }
}
