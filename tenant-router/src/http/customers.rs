//! Customers: list (cursor, search), get, create. Every write is audited in the tenant's
//! own audit log, in the same transaction.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenancy_http::Path;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", get(list).post(create))
        .route("/v1/customers/{id}", get(show))
}

#[derive(Debug, Serialize)]
pub struct Customer {
    id: Uuid,
    code: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    tax_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, code, name, email, phone, address, tax_id, created_at, updated_at";

impl From<&Row> for Customer {
    fn from(row: &Row) -> Self {
        Self {
            id: row.get("id"),
            code: row.get("code"),
            name: row.get("name"),
            email: row.get("email"),
            phone: row.get("phone"),
            address: row.get("address"),
            tax_id: row.get("tax_id"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
    q: Option<String>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<Customer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn decode_cursor(cursor: &str) -> RouterResult<(DateTime<Utc>, Uuid)> {
    tenancy_core::cursor::decode(cursor).ok_or_else(|| {
        RouterError::BadRequest("`cursor` is not a cursor this API gave out".to_owned())
    })
}

async fn list(tenant: Tenant, Query(params): Query<ListParams>) -> RouterResult<Json<Page>> {
    tenant.require("customers.read")?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(RouterError::BadRequest(
            "`limit` must be between 1 and 500".to_owned(),
        ));
    }
    if params.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(RouterError::BadRequest(
            "`q` must be at most 200 characters".to_owned(),
        ));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let (after_time, after_id) = after.unzip();
    // A search matches a code exactly or a name by prefix, case-insensitively.
    let search = params
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_lowercase);
    let pattern = search.as_deref().map(|q| {
        format!(
            "{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let connection = tenant.connection().await?;
    // Statements are prepared once per connection (deadpool-postgres' statement cache).
    let statement = connection
        .client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers \
             WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2)) \
               AND ($3::text IS NULL OR lower(code) = $3 OR lower(name) LIKE $4) \
             ORDER BY created_at, id LIMIT $5"
        ))
        .await?;
    let rows = connection
        .client
        .query(
            &statement,
            &[&after_time, &after_id, &search, &pattern, &limit],
        )
        .await?;
    let items: Vec<Customer> = rows.iter().map(Customer::from).collect();
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| items.last())
        .flatten()
        .map(|last| tenancy_core::cursor::encode(last.created_at, last.id));
    Ok(Json(Page { items, next_cursor }))
}

fn not_found() -> RouterError {
    RouterError::NotFound {
        code: "customer_not_found",
        detail: "no such customer".to_owned(),
    }
}

async fn show(tenant: Tenant, Path(id): Path<String>) -> RouterResult<Json<Customer>> {
    tenant.require("customers.read")?;
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let connection = tenant.connection().await?;
    let statement = connection
        .client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = $1"))
        .await?;
    let row = connection
        .client
        .query_opt(&statement, &[&id])
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Customer::from(&row)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    code: String,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    tax_id: Option<String>,
}

fn check(customer: &NewCustomer) -> RouterResult<()> {
    let mut problems = Vec::new();
    let mut length = |field: &str, value: Option<&str>, low: usize, high: usize| {
        if let Some(value) = value {
            let count = value.chars().count();
            if !(low..=high).contains(&count) {
                problems.push(format!("{field}: must be {low} to {high} characters"));
            }
        }
    };
    length("code", Some(customer.code.trim()), 1, 50);
    length("name", Some(customer.name.trim()), 1, 200);
    length("email", customer.email.as_deref(), 3, 254);
    length("phone", customer.phone.as_deref(), 1, 50);
    length("address", customer.address.as_deref(), 1, 1000);
    length("tax_id", customer.tax_id.as_deref(), 1, 50);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RouterError::Invalid {
            code: "validation_failed",
            detail: problems.join("; "),
        })
    }
}

async fn create(
    State(_state): State<AppState>,
    tenant: Tenant,
    Json(body): Json<NewCustomer>,
) -> RouterResult<impl IntoResponse> {
    tenant.require_write("customers.write")?;
    check(&body)?;
    let mut connection = tenant.connection().await?;
    let transaction = connection.client.transaction().await?;
    let inserted = transaction
        .query_one(
            &format!(
                "INSERT INTO customers (code, name, email, phone, address, tax_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[
                &body.code.trim(),
                &body.name.trim(),
                &body.email,
                &body.phone,
                &body.address,
                &body.tax_id,
            ],
        )
        .await;
    let row = match inserted {
        Ok(row) => row,
        Err(error)
            if error.as_db_error().and_then(|db| db.constraint()) == Some("customers_code_key") =>
        {
            return Err(RouterError::Conflict {
                code: "customer_exists",
                detail: format!("a customer with code `{}` exists", body.code.trim()),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let customer = Customer::from(&row);
    let after = serde_json::to_value(&customer).unwrap_or_default();
    transaction
        .execute(
            "INSERT INTO audit_log (actor, action, entity_type, entity_id, after) VALUES ($1, 'customer.create', 'customer', $2, $3)",
            &[&tenant.actor(), &customer.id.to_string(), &after],
        )
        .await?;
    transaction.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/customers/{}", customer.id))],
        Json(customer),
    ))
}
