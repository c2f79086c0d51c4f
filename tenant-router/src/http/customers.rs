//! Customers: list (cursor, search), get, create. Every write is audited in the tenant's
//! own audit log, in the same transaction.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tenancy_http::Path;
use tokio_postgres::Row;
use uuid::Uuid;

use super::input::{ListParams, Page, Problems, path_id, violated};
use super::table::Routes;
use crate::audit::Change;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/customers", list)
        .post("/v1/customers", create)
        .get("/v1/customers/{id}", show)
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

async fn list(
    tenant: Tenant,
    Query(params): Query<ListParams>,
) -> RouterResult<Json<Page<Customer>>> {
    let listing = params.check()?;
    let (after_time, after_id) = listing.after.unzip();
    let connection = tenant.access("customers.read").await?;
    // Statements are prepared once per connection (deadpool-postgres' statement cache).
    // A search matches a code exactly or a name by prefix, case-insensitively.
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
            &[
                &after_time,
                &after_id,
                &listing.search,
                &listing.pattern,
                &listing.limit,
            ],
        )
        .await?;
    let items: Vec<Customer> = rows.iter().map(Customer::from).collect();
    let next_cursor = listing.next_cursor(&items, |customer| (customer.created_at, customer.id));
    Ok(Json(Page { items, next_cursor }))
}

fn not_found() -> RouterError {
    RouterError::NotFound {
        code: "customer_not_found",
        detail: "no such customer".to_owned(),
    }
}

async fn show(tenant: Tenant, Path(id): Path<String>) -> RouterResult<Json<Customer>> {
    let id: Uuid = path_id(&id, not_found)?;
    let connection = tenant.access("customers.read").await?;
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
    let mut problems = Problems::new();
    problems.length("code", Some(customer.code.trim()), 1, 50);
    problems.length("name", Some(customer.name.trim()), 1, 200);
    problems.length("email", customer.email.as_deref(), 3, 254);
    problems.length("phone", customer.phone.as_deref(), 1, 50);
    problems.length("address", customer.address.as_deref(), 1, 1000);
    problems.length("tax_id", customer.tax_id.as_deref(), 1, 50);
    problems.finish()
}

async fn create(tenant: Tenant, Json(body): Json<NewCustomer>) -> RouterResult<impl IntoResponse> {
    check(&body)?;
    let mut connection = tenant.access_write("customers.write").await?;
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
        Err(error) if violated(&error) == Some("customers_code_key") => {
            return Err(RouterError::Conflict {
                code: "customer_exists",
                detail: format!("a customer with code `{}` exists", body.code.trim()),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let customer = Customer::from(&row);
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("customer.create", "customer", customer.id).after(&customer),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/customers/{}", customer.id))],
        Json(customer),
    ))
}
