//! The tenant's audit log: every write records who did it, from where, and the entity
//! before and after, in the same transaction as the write. The tenant's role can append to
//! the log but never change or delete an entry (the provisioner's grants).

use std::net::IpAddr;

use serde_json::Value;

use crate::ids::UserId;

/// Who acts and from where, for the audit log.
#[derive(Debug, Clone)]
pub struct AuditContext {
    /// `user:<id>` or `service:<id>`.
    pub actor: String,
    /// The user's id, for a user.
    pub actor_id: Option<UserId>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// One audited change: what was done to which entity, and how it looked before and after.
pub struct Change {
    action: &'static str,
    entity_type: &'static str,
    entity_id: String,
    before: Option<Value>,
    after: Option<Value>,
}

impl Change {
    pub fn new(action: &'static str, entity_type: &'static str, id: impl ToString) -> Self {
        Self {
            action,
            entity_type,
            entity_id: id.to_string(),
            before: None,
            after: None,
        }
    }

    /// The entity before the change (JSON).
    pub fn before(mut self, before: impl serde::Serialize) -> Self {
        self.before = serde_json::to_value(before).ok();
        self
    }

    /// The entity after the change (JSON).
    pub fn after(mut self, after: impl serde::Serialize) -> Self {
        self.after = serde_json::to_value(after).ok();
        self
    }
}

impl AuditContext {
    /// Appends `change` to the log in the write's own transaction, and commits both.
    pub async fn commit(
        &self,
        transaction: deadpool_postgres::Transaction<'_>,
        change: Change,
    ) -> Result<(), tokio_postgres::Error> {
        let statement = transaction
            .prepare_cached(
                "INSERT INTO audit_log (actor, actor_id, action, entity_type, entity_id, before, after, \
                   request_id, client_ip, user_agent) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await?;
        transaction
            .execute(
                &statement,
                &[
                    &self.actor,
                    &self.actor_id,
                    &change.action,
                    &change.entity_type,
                    &change.entity_id,
                    &change.before,
                    &change.after,
                    &self.request_id,
                    &self.client_ip,
                    &self.user_agent,
                ],
            )
            .await?;
        transaction.commit().await
    }
}

/// The user agent as stored: at most 512 characters.
pub fn clip_user_agent(agent: &str) -> String {
    agent.chars().take(512).collect()
}
