//! The sweep: what to do with the tenant and warm databases and tenant roles on a server
//! that the catalog does not know.
//!
//! It only ever touches objects that carry this installation's ownership mark
//! ([`crate::Mark`]); everything else (another installation's, the operator's, an
//! object whose mark is gone) is left alone. An unknown object of ours is never dropped at
//! once: it is reported, then (in `quarantine` mode, once older than the minimum age and
//! with nobody connected) quarantined (no connections, no logins, the time in its mark),
//! and dropped only when still unknown after the quarantine period. An object the catalog
//! knows again is released; a known object without a mark (created before marks existed,
//! or a crash between creating and marking it) is marked.
//!
//! The decisions are a pure function ([`plan`]) of what the server holds and what the
//! catalog knows; [`sweep_server`] lists the server first and reads the catalog after, so
//! an object created after its catalog row is always seen as known.

use std::collections::HashSet;
use std::time::Duration;

use crate::{DatabaseName, Installation, Mark, RoleName, TenantObjects};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tenancy_core::TenantId;

use crate::error::OpsResult;
use crate::platform::Platform;

/// `TENANCY_SWEEP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SweepMode {
    /// No sweep at all.
    Off,
    /// Unknown objects of ours are logged and counted; nothing is changed.
    Report,
    /// Unknown objects of ours are quarantined, then dropped after the quarantine period.
    Quarantine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    pub mode: SweepMode,
    /// How long an object stays quarantined before it is dropped.
    pub quarantine: Duration,
    /// Objects younger than this (by their mark) are not quarantined.
    pub min_age: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            mode: SweepMode::Quarantine,
            quarantine: Duration::from_secs(7 * 86_400),
            min_age: Duration::from_secs(3_600),
        }
    }
}

/// What the sweep does with databases and roles that carry this installation's mark but
/// that the catalog does not know.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// `off`: no sweep; `report`: log and count them; `quarantine`: also close them to
    /// connections, and drop them once quarantined for TENANCY_SWEEP_QUARANTINE.
    #[arg(long = "sweep", env = "TENANCY_SWEEP", default_value = "quarantine")]
    pub mode: SweepMode,

    /// How long an object stays quarantined (and can be adopted back) before it is dropped.
    #[arg(long = "sweep-quarantine", env = "TENANCY_SWEEP_QUARANTINE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub quarantine: Duration,

    /// Objects younger than this (by their mark) are never quarantined.
    #[arg(long = "sweep-min-age", env = "TENANCY_SWEEP_MIN_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
}

impl SweepArgs {
    pub fn settings(&self) -> SweepSettings {
        SweepSettings {
            mode: self.mode,
            quarantine: self.quarantine,
            min_age: self.min_age,
        }
    }
}

/// What the catalog knows about a server's objects (read after listing the server).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Tenants that are not `deleted`: their role is known.
    pub tenants: HashSet<TenantId>,
    /// Databases in use, being restored, kept after a restore, or in the warm pool.
    pub databases: HashSet<String>,
}

/// A database or a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Database(DatabaseName),
    Role(RoleName),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Role(_) => "role",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Database(name) => name.as_str(),
            Self::Role(name) => name.as_str(),
        }
    }

    pub fn tenant(&self) -> Option<TenantId> {
        match self {
            Self::Database(name) => name.tenant(),
            Self::Role(name) => name.tenant(),
        }
    }
}

/// What an unknown object of ours is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanState {
    /// Younger than the minimum age: left alone for now.
    Young,
    /// Somebody is connected to it: not quarantined while in use.
    InUse,
    /// Reported only (`TENANCY_SWEEP=report`).
    Reported,
    /// Quarantined now or earlier; dropped at `drop_after` if still unknown.
    Quarantined,
    /// Its quarantine is over: dropped now.
    Dropped,
}

/// One decision of the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Known, without a mark: write ours.
    Stamp(Object),
    /// Known again while quarantined: lift the quarantine.
    Release(Object, Mark),
    /// Unknown, ours, left as it is for now.
    Leave(Object, Mark, OrphanState),
    /// Unknown, ours, not quarantined yet: quarantine it.
    Quarantine(Object, Mark),
    /// Unknown, ours, quarantined for the whole period: drop it.
    Drop(Object, Mark),
}

/// Decides what to do with every object on a server. Pure: the same inputs, the same plan.
pub fn plan(
    objects: &TenantObjects,
    known: &Known,
    installation: Installation,
    settings: &SweepSettings,
    now: DateTime<Utc>,
) -> Vec<Action> {
    if settings.mode == SweepMode::Off {
        return Vec::new();
    }
    let mut actions = Vec::new();
    let databases = objects.databases.iter().map(|database| {
        let known = known.databases.contains(database.name.as_str());
        (
            Object::Database(database.name.clone()),
            database.mark,
            known,
            database.sessions > 0,
        )
    });
    let roles = objects.roles.iter().map(|role| {
        let known = role
            .name
            .tenant()
            .is_some_and(|tenant| known.tenants.contains(&tenant));
        (Object::Role(role.name.clone()), role.mark, known, false)
    });
    for (object, mark, known, in_use) in databases.chain(roles) {
        let action = match (mark, known) {
            // Not ours (another installation's, or never marked and unknown): untouched.
            (Some(mark), _) if !mark.is_of(installation) => continue,
            (None, false) => continue,
            (None, true) => Action::Stamp(object),
            (Some(mark), true) if mark.quarantined_at.is_some() => Action::Release(object, mark),
            (Some(_), true) => continue,
            (Some(mark), false) => orphan(object, mark, in_use, settings, now),
        };
        actions.push(action);
    }
    actions
}

fn orphan(
    object: Object,
    mark: Mark,
    in_use: bool,
    settings: &SweepSettings,
    now: DateTime<Utc>,
) -> Action {
    let age = (now - mark.created_at).to_std().unwrap_or_default();
    match mark.quarantined_at {
        Some(since) => {
            let quarantined_for = (now - since).to_std().unwrap_or_default();
            if settings.mode == SweepMode::Quarantine && quarantined_for >= settings.quarantine {
                Action::Drop(object, mark)
            } else {
                Action::Leave(object, mark, OrphanState::Quarantined)
            }
        }
        None if settings.mode == SweepMode::Report => {
            Action::Leave(object, mark, OrphanState::Reported)
        }
        None if age < settings.min_age => Action::Leave(object, mark, OrphanState::Young),
        None if in_use => Action::Leave(object, mark, OrphanState::InUse),
        None => Action::Quarantine(object, mark),
    }
}

/// An unknown object of ours, as `tenantctl server orphans` and the logs show it.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    pub server: String,
    pub kind: &'static str,
    pub name: String,
    pub tenant_id: Option<TenantId>,
    pub created_at: DateTime<Utc>,
    pub state: OrphanState,
    pub quarantined_at: Option<DateTime<Utc>>,
    /// When it will be dropped if still unknown then.
    pub drop_after: Option<DateTime<Utc>>,
}

/// What one pass over a server did.
#[derive(Debug, Clone, Default)]
pub struct ServerSweep {
    pub orphans: Vec<Orphan>,
    pub stamped: usize,
    pub released: usize,
}

/// The catalog's view of what may exist on the servers. Global, not per server: names
/// derive from globally unique ids, and a server registered twice must not make one
/// registration's objects look unknown to the other.
pub async fn known(platform: &Platform) -> OpsResult<Known> {
    let tenants = catalog::tenants::known_ids(&platform.db).await?;
    let databases = catalog::tenants::known_databases(&platform.db).await?;
    Ok(Known {
        tenants: tenants.into_iter().collect(),
        databases: databases.into_iter().collect(),
    })
}

/// Lists a server, reads the catalog, and carries out the plan (`act`), or only reports
/// it. Returns what it found.
pub async fn sweep_server(
    platform: &Platform,
    server_name: &str,
    admin: &tokio_postgres::Client,
    act: bool,
) -> OpsResult<ServerSweep> {
    let settings = platform.settings.sweep;
    // The server first, the catalog after: an object created after its row is known.
    let objects = crate::tenant::list_objects(admin)
        .await
        .map_err(crate::tenants::unavailable_server)?;
    let known = known(platform).await?;
    let now = Utc::now();
    let actions = plan(&objects, &known, platform.installation, &settings, now);
    let mut result = ServerSweep::default();
    for action in actions {
        // Changes are logged as warnings; what stays as it was, at debug (every round).
        let changes = matches!(action, Action::Quarantine(..) | Action::Drop(..));
        let outcome = if act {
            apply(admin, &action, platform.installation).await
        } else {
            Ok(action_state(&action))
        };
        match outcome {
            Ok(Some((object, mark, state))) => {
                let quarantined_at = match state {
                    OrphanState::Quarantined if mark.quarantined_at.is_none() => Some(now),
                    _ => mark.quarantined_at,
                };
                let orphan = Orphan {
                    server: server_name.to_owned(),
                    kind: object.kind(),
                    name: object.name().to_owned(),
                    tenant_id: object.tenant(),
                    created_at: mark.created_at,
                    state,
                    quarantined_at,
                    drop_after: quarantined_at.map(|at| at + settings.quarantine),
                };
                if act {
                    log_orphan(&orphan, changes);
                }
                result.orphans.push(orphan);
            }
            Ok(None) => match action {
                Action::Stamp(_) => result.stamped += 1,
                Action::Release(..) => result.released += 1,
                _ => {}
            },
            Err(error) => {
                tracing::warn!(server = server_name, object = action_object(&action).name(), %error, "sweep: could not act on an object; retried next round");
            }
        }
    }
    Ok(result)
}

fn action_object(action: &Action) -> &Object {
    match action {
        Action::Stamp(object)
        | Action::Release(object, _)
        | Action::Leave(object, ..)
        | Action::Quarantine(object, _)
        | Action::Drop(object, _) => object,
    }
}

/// What a plan would do to an orphan, without doing it.
fn action_state(action: &Action) -> Option<(Object, Mark, OrphanState)> {
    match action {
        Action::Stamp(_) | Action::Release(..) => None,
        Action::Leave(object, mark, state) => Some((object.clone(), *mark, *state)),
        Action::Quarantine(object, mark) => Some((object.clone(), *mark, OrphanState::Quarantined)),
        Action::Drop(object, mark) => Some((object.clone(), *mark, OrphanState::Dropped)),
    }
}

async fn apply(
    admin: &tokio_postgres::Client,
    action: &Action,
    installation: Installation,
) -> Result<Option<(Object, Mark, OrphanState)>, crate::ProvisionError> {
    use crate::tenant;
    let result = match action {
        Action::Stamp(Object::Database(name)) => {
            crate::mark::mark_database(admin, name, &Mark::new(installation)).await
        }
        Action::Stamp(Object::Role(name)) => {
            crate::mark::mark_role(admin, name, &Mark::new(installation)).await
        }
        Action::Release(Object::Database(name), mark) => {
            tenant::release_database(admin, name, *mark).await
        }
        Action::Release(Object::Role(name), mark) => tenant::release_role(admin, name, *mark).await,
        Action::Leave(..) => Ok(()),
        Action::Quarantine(Object::Database(name), mark) => {
            tenant::quarantine_database(admin, name, *mark)
                .await
                .map(drop)
        }
        Action::Quarantine(Object::Role(name), mark) => {
            tenant::quarantine_role(admin, name, *mark).await.map(drop)
        }
        Action::Drop(Object::Database(name), _) => {
            tenant::drop_database(admin, name, installation).await
        }
        Action::Drop(Object::Role(name), _) => tenant::drop_role(admin, name, installation).await,
    };
    match result {
        Ok(()) => Ok(action_state(action)),
        // Gone meanwhile (a warm database renamed for a tenant, a drop elsewhere).
        Err(error) if gone(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn gone(error: &crate::ProvisionError) -> bool {
    // 3D000: database does not exist; 42704: role does not exist.
    matches!(error.sql_state(), Some("3D000" | "42704"))
}

fn log_orphan(orphan: &Orphan, changed: bool) {
    if !changed {
        tracing::debug!(server = %orphan.server, kind = orphan.kind, name = %orphan.name, state = ?orphan.state, "sweep: an unknown object of this installation");
        return;
    }
    match orphan.state {
        OrphanState::Dropped => tracing::warn!(
            server = %orphan.server, kind = orphan.kind, name = %orphan.name,
            quarantined_at = ?orphan.quarantined_at,
            "sweep: dropped an object of this installation that the catalog has not known for the whole quarantine"
        ),
        state => tracing::warn!(
            server = %orphan.server, kind = orphan.kind, name = %orphan.name, ?state,
            drop_after = ?orphan.drop_after,
            "sweep: quarantined an object of this installation that the catalog does not know (`tenantctl server orphans`, `tenantctl server adopt`)"
        ),
    }
}

/// Reads (and records, the first time) each server's cluster identity, and returns the
/// servers to sweep: one per cluster. A server whose cluster is registered under another
/// name too (registered before identities were checked) is skipped with an error in the
/// log, so one cluster is never swept twice with two views.
pub async fn servers_by_cluster(
    platform: &Platform,
) -> OpsResult<Vec<(catalog::servers::ServerSecret, String)>> {
    let mut seen = HashSet::new();
    let mut servers = Vec::new();
    for secret in catalog::servers::all_secrets(&platform.db).await? {
        let name = secret.name.clone();
        let address = crate::servers::to_address(platform, secret.clone())?;
        let identity = match secret.system_identifier.clone() {
            Some(identity) => identity,
            None => {
                let Ok(admin) = address.connect("postgres").await else {
                    continue;
                };
                let identity = crate::mark::system_identifier(&admin)
                    .await
                    .map_err(crate::tenants::unavailable_server)?;
                match catalog::servers::set_system_identifier(&platform.db, secret.id, &identity)
                    .await
                {
                    Ok(()) => identity,
                    Err(error) if is_unique_violation(&error) => {
                        tracing::error!(server = %name, "server is a cluster registered under another name too; it is not swept (remove one of the two registrations)");
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        if seen.insert(identity.clone()) {
            servers.push((secret, identity));
        }
    }
    Ok(servers)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| error.is_unique_violation())
}

/// Every unknown object of ours on every server, without changing anything.
pub async fn orphans(platform: &Platform) -> OpsResult<Vec<Orphan>> {
    let mut all = Vec::new();
    for (secret, _) in servers_by_cluster(platform).await? {
        let name = secret.name.clone();
        let address = crate::servers::to_address(platform, secret)?;
        let admin = address
            .connect("postgres")
            .await
            .map_err(crate::tenants::unavailable_server)?;
        all.extend(sweep_server(platform, &name, &admin, false).await?.orphans);
    }
    Ok(all)
}

#[cfg(test)]
mod tests;
