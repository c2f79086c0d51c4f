//! Service tokens for tenant apps: what a token may say, and minting one (validated,
//! for an active tenant, audited). Signing is the caller's: the control plane holds the key.

use catalog::audit::{Actor, Change};
use catalog::plans::FieldError;
use catalog::tenants::Status;
use chrono::Utc;
use tenancy_core::TenantId;
use tenancy_core::claims::{SCOPES, TENANT_AUDIENCE, TenantClaims};

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

/// The longest a service token may live.
pub const MAX_TTL_SECONDS: i64 = 90 * 24 * 3600;
/// A service token's lifetime when none is asked for.
pub const DEFAULT_TTL_SECONDS: i64 = 3600;

/// The claims of a service token for `tenant`: `sub` is `service:<uuid>` (or `sub` when
/// given), scopes sorted and without duplicates.
pub fn service_claims(
    issuer: &str,
    tenant: TenantId,
    sub: Option<&str>,
    mut scopes: Vec<String>,
    ttl_seconds: i64,
) -> TenantClaims {
    scopes.sort();
    scopes.dedup();
    let now = Utc::now().timestamp();
    TenantClaims {
        sub: sub.map_or_else(
            || format!("service:{}", uuid::Uuid::new_v4()),
            str::to_owned,
        ),
        iss: issuer.to_owned(),
        aud: TENANT_AUDIENCE.to_owned(),
        iat: now,
        exp: now + ttl_seconds,
        jti: uuid::Uuid::new_v4(),
        tenant,
        scopes,
    }
}

/// Checks a request for a token: known scopes, at least one, a lifetime in range.
pub fn check(scopes: &[String], ttl_seconds: Option<i64>) -> OpsResult<i64> {
    let mut errors = Vec::new();
    let unknown: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|scope| !SCOPES.contains(scope))
        .collect();
    if !unknown.is_empty() {
        errors.push(FieldError::new(
            "scopes",
            format!("unknown scopes: {}", unknown.join(", ")),
        ));
    }
    if scopes.is_empty() {
        errors.push(FieldError::new("scopes", "name at least one scope"));
    }
    let ttl = ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(60..=MAX_TTL_SECONDS).contains(&ttl) {
        errors.push(FieldError::new(
            "ttl",
            format!("must be between 60 and {MAX_TTL_SECONDS} seconds"),
        ));
    }
    if errors.is_empty() {
        Ok(ttl)
    } else {
        Err(OpsError::validation(errors))
    }
}

/// Mints a service token for the active tenant `slug`: checks the request, signs the
/// claims with `sign`, records `tenant.token` in the audit log (its id, subject, scopes and
/// expiry; never the token). Returns the token and its claims.
pub async fn mint(
    platform: &Platform,
    actor: &Actor,
    slug: &str,
    scopes: Vec<String>,
    ttl_seconds: Option<i64>,
    issuer: &str,
    sign: impl FnOnce(&TenantClaims) -> anyhow::Result<String>,
) -> OpsResult<(String, TenantClaims)> {
    let ttl = check(&scopes, ttl_seconds)?;
    let tenant = crate::tenants::get(platform, slug).await?;
    if tenant.status != Status::Active {
        return Err(OpsError::conflict(
            "tenant_not_active",
            format!(
                "tokens are issued for active tenants; `{slug}` is `{}`",
                tenant.status
            ),
        ));
    }
    let claims = service_claims(issuer, tenant.id, None, scopes, ttl);
    let token =
        sign(&claims).map_err(|error| OpsError::Internal(error.context("sign a tenant token")))?;
    let mut transaction = platform.db.begin().await?;
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "tenant.token",
            entity_type: "tenant",
            entity_id: &tenant.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "jti": claims.jti, "sub": claims.sub, "scopes": claims.scopes, "exp": claims.exp
            })),
        },
    )
    .await?;
    transaction.commit().await?;
    Ok((token, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_known_scopes_and_a_lifetime_in_range() {
        let scopes = |names: &[&str]| {
            names
                .iter()
                .map(|&name| name.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(check(&scopes(&["customers.read"]), None).ok(), Some(3600));
        assert_eq!(check(&scopes(&["customers.read"]), Some(60)).ok(), Some(60));
        for (names, ttl) in [
            (scopes(&[]), None),
            (scopes(&["customers.read", "root"]), None),
            (scopes(&["customers.read"]), Some(59)),
            (scopes(&["customers.read"]), Some(MAX_TTL_SECONDS + 1)),
        ] {
            assert!(
                matches!(check(&names, ttl), Err(OpsError::Validation { .. })),
                "{names:?} {ttl:?}"
            );
        }
        let claims = service_claims(
            "issuer",
            TenantId::new(),
            None,
            scopes(&["orders.read", "customers.read", "orders.read"]),
            60,
        );
        assert_eq!(claims.scopes, scopes(&["customers.read", "orders.read"]));
        assert_eq!(claims.exp - claims.iat, 60);
        assert!(claims.sub.starts_with("service:"));
        assert_eq!(claims.aud, TENANT_AUDIENCE);
    }
}
