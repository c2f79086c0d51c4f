//! `Idempotency-Key` on the POSTs that create something (customers, suppliers, products,
//! purchase orders, an order's line).
//!
//! The key is taken (one row per principal and key) in the request's own transaction
//! before anything is written, so a concurrent retry waits on the row and then replays the
//! first answer; the answer is stored in the same transaction as the write, so either both
//! happen or neither. The same key on another route or with another body is 422
//! `idempotency_key_reused`. Keys are kept a day: each keyed request forgets up to 500
//! older ones (rows another request holds are skipped, never waited for).

use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::resources::{Versioned, bad};
use crate::error::{RouterError, RouterResult};

/// Longest key accepted.
const MAX_KEY: usize = 200;

/// A request's key (if it sent one), route and body hash.
pub(super) struct Idempotency {
    key: Option<String>,
    /// `POST <path>`, the path as requested (so a key cannot replay another order's line).
    route: String,
    request_hash: [u8; 32],
}

impl Idempotency {
    pub(super) fn of(headers: &HeaderMap, path: &str, body: &Value) -> RouterResult<Self> {
        let key = match headers.get("idempotency-key") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .filter(|key| (1..=MAX_KEY).contains(&key.len()))
                    .ok_or_else(|| {
                        bad(format!(
                            "`Idempotency-Key` must be 1 to {MAX_KEY} visible characters"
                        ))
                    })?
                    .to_owned(),
            ),
        };
        Ok(Self {
            key,
            route: format!("POST {path}"),
            // serde_json's maps are ordered by key, so the same JSON hashes the same.
            request_hash: Sha256::digest(body.to_string().as_bytes()).into(),
        })
    }

    /// Takes the key for `actor`; the first answer when this is a replay.
    pub(super) async fn take(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        actor: &str,
    ) -> RouterResult<Option<Versioned>> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        transaction
            .execute(
                "DELETE FROM idempotency_keys WHERE (actor, key) IN (SELECT actor, key \
                   FROM idempotency_keys WHERE created_at < now() - interval '1 day' \
                   LIMIT 500 FOR UPDATE SKIP LOCKED)",
                &[],
            )
            .await?;
        let taken = transaction
            .execute(
                "INSERT INTO idempotency_keys (actor, key, route, request_hash, status, body) \
                 VALUES ($1, $2, $3, $4, 0, 'null') ON CONFLICT DO NOTHING",
                &[&actor, key, &self.route, &self.request_hash.as_slice()],
            )
            .await?;
        if taken == 1 {
            return Ok(None);
        }
        let row = transaction
            .query_one(
                "SELECT route, request_hash, status, body FROM idempotency_keys \
                 WHERE actor = $1 AND key = $2",
                &[&actor, key],
            )
            .await?;
        let route: String = row.get(0);
        let stored: Vec<u8> = row.get(1);
        if route != self.route || stored != self.request_hash {
            return Err(RouterError::Invalid {
                code: "idempotency_key_reused",
                detail: format!(
                    "this Idempotency-Key was used with another {}",
                    if route == self.route {
                        "body"
                    } else {
                        "request"
                    }
                ),
            });
        }
        let status: i32 = row.get(2);
        let body: Value = row.get(3);
        let status = u16::try_from(status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .unwrap_or(StatusCode::OK);
        let location = (status == StatusCode::CREATED)
            .then(|| body["id"].as_str().map(|id| self.location(id)))
            .flatten();
        Ok(Some(Versioned {
            status,
            version: body["version"].as_i64().unwrap_or(1),
            location,
            body,
        }))
    }

    /// Stores `answer` under the key, in the transaction that made it.
    pub(super) async fn record(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        actor: &str,
        answer: &Versioned,
    ) -> RouterResult<()> {
        if let Some(key) = &self.key {
            transaction
                .execute(
                    "UPDATE idempotency_keys SET status = $3, body = $4 \
                     WHERE actor = $1 AND key = $2",
                    &[
                        &actor,
                        key,
                        &i32::from(answer.status.as_u16()),
                        &answer.body,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// Where a created item lives: the collection's path and its id.
    fn location(&self, id: &str) -> String {
        let path = self.route.trim_start_matches("POST ");
        format!("{path}/{id}")
    }
}

/// A JSON body as `T`, the problem naming the field that does not fit.
pub(super) fn parse<T: DeserializeOwned>(raw: &Value) -> RouterResult<T> {
    serde_path_to_error::deserialize(raw.clone()).map_err(|error| RouterError::Invalid {
        code: "invalid_body",
        detail: format!("{}: {}", error.path(), error.inner()),
    })
}
