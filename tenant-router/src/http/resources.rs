//! Customers, suppliers and products: one implementation of list, show, create, change and
//! delete over a description of each resource's fields.
//!
//! Column names only ever come from these descriptions, never from a request. Values are
//! bound as text and cast by PostgreSQL to the column's type; money and quantities travel
//! as strings both ways (`"10.30"`), never as JSON numbers. Every row carries a version
//! (bumped by a trigger on any update): responses send it as `ETag`, and `PATCH` and
//! `DELETE` honour `If-Match` (412 on a stale version).

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use tenancy_http::Path;
use uuid::Uuid;

use super::idempotency::Idempotency;
use super::input::{Problems, path_id, search_pattern, violated};
use super::table::Routes;
use crate::audit::Change;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};

/// What a field holds, and how it is checked.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text of `min` to `max` characters.
    Text { min: usize, max: usize },
    /// An e-mail address.
    Email,
    /// A non-negative decimal with at most 4 places, as a string.
    Money,
    /// An ISO 4217 currency code.
    Currency,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Must be given on create.
    pub required: bool,
    /// May be set to null.
    pub nullable: bool,
}

const fn text(name: &'static str, min: usize, max: usize, required: bool, nullable: bool) -> Field {
    Field {
        name,
        kind: Kind::Text { min, max },
        required,
        nullable,
    }
}

/// A resource: its table (and path, and permission prefix), entity name, unique key and
/// fields.
#[derive(Debug)]
pub struct Resource {
    pub plural: &'static str,
    pub entity: &'static str,
    /// The business key, unique per tenant (`code`, `sku`).
    pub key: &'static str,
    pub fields: &'static [Field],
    /// The code of a 404 for it.
    missing: &'static str,
    read: &'static str,
    write: &'static str,
    /// `show`'s statement, built on first use.
    show_sql: OnceLock<String>,
}

const PARTNER_FIELDS: &[Field] = &[
    text("code", 1, 50, true, false),
    text("name", 1, 200, true, false),
    Field {
        name: "email",
        kind: Kind::Email,
        required: false,
        nullable: true,
    },
    text("phone", 1, 50, false, true),
    text("address", 1, 1000, false, true),
    text("tax_id", 1, 50, false, true),
];

pub static CUSTOMERS: Resource = Resource {
    plural: "customers",
    entity: "customer",
    missing: "customer_not_found",
    key: "code",
    fields: PARTNER_FIELDS,
    read: "customers.read",
    write: "customers.write",
    show_sql: OnceLock::new(),
};

pub static SUPPLIERS: Resource = Resource {
    plural: "suppliers",
    entity: "supplier",
    missing: "supplier_not_found",
    key: "code",
    fields: PARTNER_FIELDS,
    read: "suppliers.read",
    write: "suppliers.write",
    show_sql: OnceLock::new(),
};

pub static PRODUCTS: Resource = Resource {
    plural: "products",
    entity: "product",
    missing: "product_not_found",
    key: "sku",
    fields: &[
        text("sku", 1, 64, true, false),
        text("name", 1, 200, true, false),
        text("description", 0, 4000, false, false),
        text("unit", 1, 20, false, false),
        Field {
            name: "unit_price",
            kind: Kind::Money,
            required: true,
            nullable: false,
        },
        Field {
            name: "currency",
            kind: Kind::Currency,
            required: false,
            nullable: false,
        },
    ],
    read: "products.read",
    write: "products.write",
    show_sql: OnceLock::new(),
};

pub fn routes() -> Routes {
    routes_of(&CUSTOMERS, "/v1/customers", "/v1/customers/{id}")
        .merge(routes_of(&SUPPLIERS, "/v1/suppliers", "/v1/suppliers/{id}"))
        .merge(routes_of(&PRODUCTS, "/v1/products", "/v1/products/{id}"))
}

/// A resource's five routes: its collection and its items.
fn routes_of(resource: &'static Resource, collection: &'static str, item: &'static str) -> Routes {
    Routes::new()
        .get(collection, move |tenant, query| {
            list(resource, tenant, query)
        })
        .post(collection, move |tenant, headers, body| {
            create(resource, tenant, headers, body)
        })
        .get(item, move |tenant, id| show(resource, tenant, id))
        .patch(item, move |tenant, id, headers, body| {
            update(resource, tenant, id, headers, body)
        })
        .delete(item, move |tenant, id, headers| {
            remove(resource, tenant, id, headers)
        })
}

impl Resource {
    fn not_found(&self) -> RouterError {
        RouterError::NotFound {
            code: self.missing,
            detail: format!("no such {}", self.entity),
        }
    }

    /// The rows of `source` (the table, or a CTE of it) as JSON (money as strings), with
    /// version, id and the value they sort by.
    fn select(&self, sort: &str, source: &str) -> String {
        format!(
            "SELECT {} AS body, version, id, {sort}::text AS sort_value FROM {source}",
            self.json_object()
        )
    }

    /// A row as a JSON object (money as strings), with id, version and times.
    fn json_object(&self) -> String {
        let mut pairs = vec!["'id', id".to_owned()];
        for field in self.fields {
            match field.kind {
                Kind::Money => pairs.push(format!("'{0}', decimal_text({0})", field.name)),
                _ => pairs.push(format!("'{0}', {0}", field.name)),
            }
        }
        pairs.push("'version', version".to_owned());
        pairs.push("'created_at', created_at".to_owned());
        pairs.push("'updated_at', updated_at".to_owned());
        format!("jsonb_build_object({})", pairs.join(", "))
    }

    fn action(&self, verb: &str) -> &'static str {
        // The audit log's action names, one per resource and verb.
        match (self.entity, verb) {
            ("customer", "create") => "customer.create",
            ("customer", "update") => "customer.update",
            ("customer", "delete") => "customer.delete",
            ("supplier", "create") => "supplier.create",
            ("supplier", "update") => "supplier.update",
            ("supplier", "delete") => "supplier.delete",
            ("product", "create") => "product.create",
            ("product", "update") => "product.update",
            _ => "product.delete",
        }
    }

    fn conflict(
        &self,
        error: &tokio_postgres::Error,
        body: &Map<String, Value>,
    ) -> Option<RouterError> {
        let constraint = violated(error)?;
        if constraint != format!("{}_{}_key", self.plural, self.key) {
            return None;
        }
        let value = body
            .get(self.key)
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(RouterError::Conflict {
            code: "conflict",
            detail: format!(
                "{}: a {} with {} `{}` exists",
                self.key,
                self.entity,
                self.key,
                value.trim()
            ),
        })
    }
}

/// A resource as answered: its JSON, with its version as the `ETag`.
pub(super) struct Versioned {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    pub(super) version: i64,
    pub(super) location: Option<String>,
}

/// A resource read, its JSON as PostgreSQL wrote it (passed through, never parsed), with
/// its version as the `ETag`.
struct RawVersioned {
    body: String,
    version: i64,
}

fn etag(version: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

impl IntoResponse for RawVersioned {
    fn into_response(self) -> Response {
        let mut response = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body,
        )
            .into_response();
        if let Some(value) = etag(self.version) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response
    }
}

impl IntoResponse for Versioned {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(value) = etag(self.version) {
            response.headers_mut().insert(header::ETAG, value);
        }
        if let Some(location) = self.location
            && let Ok(value) = HeaderValue::from_str(&location)
        {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
    q: Option<String>,
    /// `created_at` (the default), `name` or the key; `-` first for descending.
    sort: Option<String>,
}

#[derive(serde::Serialize)]
struct Page {
    items: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

pub(super) fn bad(detail: impl Into<String>) -> RouterError {
    RouterError::BadRequest(detail.into())
}

async fn list(
    resource: &'static Resource,
    tenant: Tenant,
    Query(params): Query<ListParams>,
) -> RouterResult<Json<Page>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("`limit` must be between 1 and 500"));
    }
    let sort = params.sort.as_deref().unwrap_or("created_at");
    let (column, descending) = match sort.strip_prefix('-') {
        Some(column) => (column, true),
        None => (sort, false),
    };
    let (column, cast) = match column {
        "created_at" => ("created_at", "timestamptz"),
        "name" => ("name", "text"),
        key if key == resource.key => (resource.key, "text"),
        _ => {
            return Err(bad(format!(
                "`sort` is one of created_at, name, {0} (or -created_at, -name, -{0})",
                resource.key
            )));
        }
    };
    if params.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(bad("`q` must be at most 200 characters"));
    }
    let scope = format!("{}:{sort}", resource.plural);
    let cursors = &tenant.state().cursors;
    let after = params
        .cursor
        .as_deref()
        .map(|cursor| {
            let position = cursors
                .open(&scope, cursor)
                .ok_or_else(|| bad("`cursor` is not a cursor this list gave out"))?;
            let (value, id) = position
                .rsplit_once('|')
                .ok_or_else(|| bad("`cursor` is not a cursor this list gave out"))?;
            let id = Uuid::parse_str(id)
                .map_err(|_| bad("`cursor` is not a cursor this list gave out"))?;
            Ok::<_, RouterError>((value.to_owned(), id))
        })
        .transpose()?;
    let (after_value, after_id) = after.unzip();
    // A search matches the name or the key, case-insensitively: anywhere for three
    // characters or more (trigram indexes), else at the start (btree pattern indexes). The
    // statement without a search has no search condition at all, so each plans alone.
    let pattern = search_pattern(params.q.as_deref());
    let (direction, beyond) = if descending {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    let searching = if pattern.is_some() {
        format!(
            "AND (lower(name) LIKE $4 OR lower({key}) LIKE $4)",
            key = resource.key
        )
    } else {
        "AND $4::text IS NULL".to_owned()
    };
    let connection = tenant.access(resource.read).await?;
    let statement = connection
        .client
        .prepare_cached(&format!(
            "{select} WHERE ($1::text IS NULL OR ({column}, id) {beyond} ($1::{cast}, $2::uuid)) \
               {searching} \
             ORDER BY {column} {direction}, id {direction} LIMIT $3",
            select = resource.select(column, resource.plural),
        ))
        .await?;
    let rows = connection
        .client
        .query(&statement, &[&after_value, &after_id, &limit, &pattern])
        .await?;
    let next_cursor = (rows.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            let value: String = last.get("sort_value");
            let id: Uuid = last.get("id");
            cursors.seal(&scope, &format!("{value}|{id}"))
        });
    Ok(Json(Page {
        items: rows.iter().map(|row| row.get("body")).collect(),
        next_cursor,
    }))
}

async fn show(
    resource: &'static Resource,
    tenant: Tenant,
    Path(id): Path<String>,
) -> RouterResult<impl IntoResponse> {
    let id: Uuid = path_id(&id, || resource.not_found())?;
    let connection = tenant.access(resource.read).await?;
    let sql = resource.show_sql.get_or_init(|| {
        format!(
            "SELECT {}::text AS body, version FROM {} WHERE id = $1",
            resource.json_object(),
            resource.plural
        )
    });
    let statement = connection.client.prepare_cached(sql).await?;
    let row = connection
        .client
        .query_opt(&statement, &[&id])
        .await?
        .ok_or_else(|| resource.not_found())?;
    Ok(RawVersioned {
        body: row.get(0),
        version: row.get(1),
    })
}

/// The fields of a body, checked: (column, value as text or null, its SQL type).
fn check_body(
    resource: &Resource,
    body: &Map<String, Value>,
    creating: bool,
) -> RouterResult<Vec<(&'static str, Option<String>, &'static str)>> {
    let mut problems = Problems::new();
    let mut shape = Vec::new();
    for name in body.keys() {
        if !resource.fields.iter().any(|field| field.name == name) {
            shape.push(format!("{name}: unknown field"));
        }
    }
    let mut values = Vec::new();
    for field in resource.fields {
        let value = match body.get(field.name) {
            None => {
                if creating && field.required {
                    problems.push(field.name, "is required");
                }
                continue;
            }
            Some(Value::Null) if field.nullable && !creating => None,
            Some(Value::Null) => {
                problems.push(field.name, "may not be null");
                continue;
            }
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                let expected = match field.kind {
                    Kind::Money => "a decimal as a string, like \"10.30\"",
                    _ => "a string",
                };
                shape.push(format!("{}: expected {expected}, got {other}", field.name));
                continue;
            }
        };
        let Some(text) = value else {
            values.push((field.name, None, cast(field.kind)));
            continue;
        };
        let checked = match field.kind {
            Kind::Text { min, max } => {
                let text = if field.name == resource.key || field.name == "name" {
                    text.trim()
                } else {
                    text.as_str()
                };
                problems.length(field.name, Some(text), min, max);
                text.to_owned()
            }
            Kind::Email => problems.email(field.name, text).unwrap_or_default(),
            Kind::Money => {
                if let Err(message) = check_decimal(text) {
                    problems.push(field.name, message);
                }
                text.trim().to_owned()
            }
            Kind::Currency => {
                if !CURRENCIES.contains(&text.as_str()) {
                    problems.push(
                        field.name,
                        "is not an ISO 4217 currency code this API knows",
                    );
                }
                text.clone()
            }
        };
        values.push((field.name, Some(checked), cast(field.kind)));
    }
    if !shape.is_empty() {
        return Err(RouterError::Invalid {
            code: "invalid_body",
            detail: shape.join("; "),
        });
    }
    problems.finish()?;
    if values.is_empty() {
        return Err(RouterError::Invalid {
            code: "validation_failed",
            detail: "the body changes nothing".to_owned(),
        });
    }
    Ok(values)
}

/// How a value, bound as text, becomes the column's type.
fn cast(kind: Kind) -> &'static str {
    match kind {
        Kind::Money => "text::numeric",
        _ => "text",
    }
}

/// A non-negative decimal with at most 14 digits before the point and 4 after.
pub(super) fn check_decimal(text: &str) -> Result<(), &'static str> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be a non-negative decimal, like \"10.30\"");
    }
    if !fraction.chars().all(|c| c.is_ascii_digit()) || (text.contains('.') && fraction.is_empty())
    {
        return Err("must be a non-negative decimal, like \"10.30\"");
    }
    if fraction.len() > 4 {
        return Err("has more than 4 decimal places");
    }
    if whole.trim_start_matches('0').len() > 14 {
        return Err("is too large (at most 14 digits before the point)");
    }
    Ok(())
}

/// ISO 4217 codes accepted.
pub(super) const CURRENCIES: &[&str] = &[
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EGP",
    "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KES", "KRW", "MAD", "MXN",
    "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "SAR", "SEK",
    "SGD", "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
];

fn body_object(body: Value) -> RouterResult<Map<String, Value>> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(RouterError::Invalid {
            code: "invalid_body",
            detail: "the body must be a JSON object".to_owned(),
        }),
    }
}

async fn create(
    resource: &'static Resource,
    tenant: Tenant,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> RouterResult<Versioned> {
    let idempotency = Idempotency::of(&headers, &format!("/v1/{}", resource.plural), &raw)?;
    let body = body_object(raw)?;
    let values = check_body(resource, &body, true)?;
    let mut connection = tenant.access_write(resource.write).await?;
    let transaction = connection.client.transaction().await?;
    let actor = tenant.audit().actor.clone();
    if let Some(first) = idempotency.take(&transaction, &actor).await? {
        return Ok(first);
    }
    let columns: Vec<&str> = values.iter().map(|(name, _, _)| *name).collect();
    let placeholders: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(index, (_, _, cast))| format!("${}::{cast}", index + 1))
        .collect();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|(_, value, _)| value as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let inserted = transaction
        .query_one(
            &format!(
                "WITH inserted AS (INSERT INTO {} ({}) VALUES ({}) RETURNING *) {}",
                resource.plural,
                columns.join(", "),
                placeholders.join(", "),
                resource.select("id", "inserted"),
            ),
            &params,
        )
        .await;
    let row = match inserted {
        Ok(row) => row,
        Err(error) => {
            return Err(resource
                .conflict(&error, &body)
                .unwrap_or_else(|| error.into()));
        }
    };
    let id: Uuid = row.get("id");
    let answer = Versioned {
        status: StatusCode::CREATED,
        body: row.get("body"),
        version: row.get("version"),
        location: Some(format!("/v1/{}/{id}", resource.plural)),
    };
    idempotency.record(&transaction, &actor, &answer).await?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new(resource.action("create"), resource.entity, id).after(&answer.body),
        )
        .await?;
    Ok(answer)
}

/// The version `If-Match` requires, if it names one (`*` or no header: any).
pub(super) fn if_match(headers: &HeaderMap) -> RouterResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| bad("`If-Match` must be an ETag this API gave out, like \"3\""))
}

/// Locks the row and checks `If-Match`: its JSON and version.
async fn lock_current(
    resource: &Resource,
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    expected: Option<i64>,
) -> RouterResult<(Value, i64)> {
    let row = transaction
        .query_opt(
            &format!(
                "{} WHERE id = $1 FOR UPDATE",
                resource.select("id", resource.plural)
            ),
            &[&id],
        )
        .await?
        .ok_or_else(|| resource.not_found())?;
    let version: i64 = row.get("version");
    if expected.is_some_and(|expected| expected != version) {
        return Err(RouterError::PreconditionFailed(format!(
            "the {} is at version {version}, not the one `If-Match` names",
            resource.entity
        )));
    }
    Ok((row.get("body"), version))
}

async fn update(
    resource: &'static Resource,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, || resource.not_found())?;
    let expected = if_match(&headers)?;
    let body = body_object(body)?;
    let values = check_body(resource, &body, false)?;
    let mut connection = tenant.access_write(resource.write).await?;
    let transaction = connection.client.transaction().await?;
    let (before, _) = lock_current(resource, &transaction, id, expected).await?;
    let assignments: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(index, (name, _, cast))| format!("{name} = ${}::{cast}", index + 2))
        .collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id];
    params.extend(
        values
            .iter()
            .map(|(_, value, _)| value as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    let updated = transaction
        .query_one(
            &format!(
                "WITH updated AS (UPDATE {} SET {} WHERE id = $1 RETURNING *) {}",
                resource.plural,
                assignments.join(", "),
                resource.select("id", "updated"),
            ),
            &params,
        )
        .await;
    let row = match updated {
        Ok(row) => row,
        Err(error) => {
            return Err(resource
                .conflict(&error, &body)
                .unwrap_or_else(|| error.into()));
        }
    };
    let after: Value = row.get("body");
    tenant
        .audit()
        .commit(
            transaction,
            Change::new(resource.action("update"), resource.entity, id)
                .before(&before)
                .after(&after),
        )
        .await?;
    Ok(Versioned {
        status: StatusCode::OK,
        body: after,
        version: row.get("version"),
        location: None,
    })
}

async fn remove(
    resource: &'static Resource,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> RouterResult<StatusCode> {
    let id: Uuid = path_id(&id, || resource.not_found())?;
    let expected = if_match(&headers)?;
    let mut connection = tenant.access_write(resource.write).await?;
    let transaction = connection.client.transaction().await?;
    let (before, _) = lock_current(resource, &transaction, id, expected).await?;
    let deleted = transaction
        .execute(
            &format!("DELETE FROM {} WHERE id = $1", resource.plural),
            &[&id],
        )
        .await;
    if let Err(error) = deleted {
        if error.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
            return Err(RouterError::Conflict {
                code: "in_use",
                detail: format!("the {} is used by a purchase order", resource.entity),
            });
        }
        return Err(error.into());
    }
    tenant
        .audit()
        .commit(
            transaction,
            Change::new(resource.action("delete"), resource.entity, id).before(&before),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_checked_as_text() {
        for good in ["0", "10.30", "99999999999999.9999", "0.0001", "007.5"] {
            assert_eq!(check_decimal(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.23456",
            "1e3",
            "NaN",
            "1,5",
            "123456789012345",
        ] {
            assert!(check_decimal(bad).is_err(), "{bad}");
        }
    }
}
