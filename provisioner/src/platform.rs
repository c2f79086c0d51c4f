//! What every operation needs: the catalog, the key that seals passwords in it, this
//! installation's id, the operating settings, and the gate on password hashing. Built by
//! the control plane and by `tenantctl`; cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tenancy_core::sealing::Sealer;

/// What the tenant and server operations need: the catalog, the key that seals passwords in
/// it, and the operating settings. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub db: PgPool,
    pub sealer: Sealer,
    /// This installation's id: the ownership mark of everything it creates on servers.
    pub installation: crate::Installation,
    pub settings: Arc<Settings>,
    /// Bounds the password hashing and checking in flight (logins, new tenants' admins).
    pub hashes: Arc<tenancy_core::hash_gate::HashGate>,
    /// Work that outlives the request that started it (a backup, a provisioning whose
    /// client left): a shutdown waits for it ([`Platform::finish_tasks`]).
    pub tasks: tokio_util::task::TaskTracker,
}

impl Platform {
    /// A platform on `db`: its installation id comes from the catalog.
    pub async fn new(db: PgPool, sealer: Sealer, settings: Settings) -> Result<Self, sqlx::Error> {
        let installation = crate::Installation(catalog::installation::id(&db).await?);
        Ok(Self {
            db,
            sealer,
            installation,
            settings: Arc::new(settings),
            hashes: Arc::new(tenancy_core::hash_gate::HashGate::for_this_machine()),
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Runs `work` in a task of its own that a shutdown waits for.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(work)
    }

    /// At shutdown: no new tracked work, and the work in flight gets `grace` to finish.
    /// Returns whether all of it did.
    pub async fn finish_tasks(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a deleted tenant's database is kept before it is dropped.
    pub delete_grace: Duration,
    /// Databases each server keeps cloned ahead of demand.
    pub warm_pool_size: u32,
    /// Test-only: abort the process right after this provisioning step.
    pub fault_after_step: Option<String>,
    /// The tenant schema migrations templates are prepared with and fleet runs apply.
    pub migrations: tenant_schema::MigrationSet,
    /// Where backups go; None when no bucket is configured.
    pub backup_store: Option<crate::backups::Store>,
    /// Whether the background jobs back tenants up (each plan says how often) and apply
    /// the plans' retention.
    pub scheduled_backups: bool,
    /// What the sweep may do with objects of ours that the catalog does not know.
    pub sweep: crate::sweep::SweepSettings,
    /// How long a restore keeps the database it replaced.
    pub restore_keep: Duration,
}
