//! Purchase orders: a supplier, a currency and lines (product, quantity, unit price), with
//! line totals and the order's total computed by the database in exact decimals, shown as
//! strings. `draft → submitted → received | cancelled` (a draft may also be cancelled);
//! lines change only in `draft`. Numbers come from a counter row in the inserting
//! transaction, taken after the lines are written (the counter is locked until commit),
//! so they have no gaps. Creation honours `Idempotency-Key`; changes and
//! transitions honour `If-Match`.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tenancy_http::Path;
use uuid::Uuid;

use super::idempotency::{Idempotency, parse};
use super::input::{Problems, path_id};
use super::resources::{CURRENCIES, Versioned, bad, check_decimal, if_match};
use super::table::Routes;
use crate::audit::Change;
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Query, Tenant};

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/purchase-orders", list)
        .post("/v1/purchase-orders", create)
        .get("/v1/purchase-orders/{id}", show)
        .patch("/v1/purchase-orders/{id}", update)
        .post("/v1/purchase-orders/{id}/lines", add_line)
        .put("/v1/purchase-orders/{id}/lines", replace_lines)
        .post("/v1/purchase-orders/{id}/submit", |tenant, id, headers| {
            transition(tenant, id, headers, Transition::Submit)
        })
        .post("/v1/purchase-orders/{id}/receive", |tenant, id, headers| {
            transition(tenant, id, headers, Transition::Receive)
        })
        .post("/v1/purchase-orders/{id}/cancel", |tenant, id, headers| {
            transition(tenant, id, headers, Transition::Cancel)
        })
}

/// Lines an order may have.
const MAX_LINES: usize = 1000;

fn not_found() -> RouterError {
    RouterError::NotFound {
        code: "order_not_found",
        detail: "no such purchase order".to_owned(),
    }
}

fn not_draft(status: &str) -> RouterError {
    RouterError::Conflict {
        code: "order_not_draft",
        detail: format!("the order is {status}: only a draft's lines and fields can change"),
    }
}

/// The order as JSON (money and quantities as exact strings), with its lines when asked.
fn select(with_lines: bool, source: &str) -> String {
    let lines = if with_lines {
        "'lines', COALESCE((SELECT jsonb_agg(jsonb_build_object( \
           'line_no', l.line_no, 'product_id', l.product_id, \
           'quantity', decimal_text(l.quantity), 'unit_price', decimal_text(l.unit_price), \
           'line_total', decimal_text(l.line_total)) ORDER BY l.line_no) \
           FROM purchase_order_lines l WHERE l.order_id = o.id), '[]'::jsonb)"
    } else {
        "'line_count', (SELECT count(*) FROM purchase_order_lines l WHERE l.order_id = o.id)"
    };
    format!(
        "SELECT jsonb_build_object('id', o.id, 'number', o.number, 'supplier_id', o.supplier_id, \
           'status', o.status, 'currency', o.currency, 'notes', o.notes, \
           'subtotal', decimal_text(o.total), 'total', decimal_text(o.total), {lines}, \
           'version', o.version, 'created_at', o.created_at, 'updated_at', o.updated_at, \
           'submitted_at', o.submitted_at, 'received_at', o.received_at, \
           'cancelled_at', o.cancelled_at) AS body, \
           o.version, o.id, o.status, o.created_at::text AS sort_value \
         FROM {source} o"
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
    supplier_id: Option<Uuid>,
}

#[derive(serde::Serialize)]
struct Page {
    items: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

const STATUSES: &[&str] = &["draft", "submitted", "received", "cancelled"];

async fn list(tenant: Tenant, Query(params): Query<ListParams>) -> RouterResult<Json<Page>> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("`limit` must be between 1 and 500"));
    }
    if let Some(status) = &params.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(bad(
            "`status` is one of draft, submitted, received, cancelled",
        ));
    }
    let scope = "purchase-orders:created_at";
    let cursors = &tenant.state().cursors;
    let after = params
        .cursor
        .as_deref()
        .map(|cursor| {
            cursors
                .open(scope, cursor)
                .and_then(|position| {
                    let (time, id) = position.rsplit_once('|')?;
                    Some((time.to_owned(), Uuid::parse_str(id).ok()?))
                })
                .ok_or_else(|| bad("`cursor` is not a cursor this list gave out"))
        })
        .transpose()?;
    let (after_time, after_id) = after.unzip();
    let connection = tenant.access("orders.read").await?;
    let statement = connection
        .client
        .prepare_cached(&format!(
            "{} WHERE ($1::text IS NULL OR (o.created_at, o.id) > ($1::timestamptz, $2::uuid)) \
               AND ($3::text IS NULL OR o.status = $3) \
               AND ($4::uuid IS NULL OR o.supplier_id = $4) \
             ORDER BY o.created_at, o.id LIMIT $5",
            select(false, "purchase_orders")
        ))
        .await?;
    let rows = connection
        .client
        .query(
            &statement,
            &[
                &after_time,
                &after_id,
                &params.status,
                &params.supplier_id,
                &limit,
            ],
        )
        .await?;
    let next_cursor = (rows.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            let time: String = last.get("sort_value");
            let id: Uuid = last.get("id");
            cursors.seal(scope, &format!("{time}|{id}"))
        });
    Ok(Json(Page {
        items: rows.iter().map(|row| row.get("body")).collect(),
        next_cursor,
    }))
}

async fn load(
    client: &impl tokio_postgres::GenericClient,
    id: Uuid,
    lock: bool,
) -> RouterResult<(Value, i64, String)> {
    let row = client
        .query_opt(
            &format!(
                "{} WHERE o.id = $1{}",
                select(true, "purchase_orders"),
                if lock { " FOR UPDATE OF o" } else { "" }
            ),
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?;
    Ok((row.get("body"), row.get("version"), row.get("status")))
}

async fn show(tenant: Tenant, Path(id): Path<String>) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, not_found)?;
    let connection = tenant.access("orders.read").await?;
    let (body, version, _) = load(&*connection.client, id, false).await?;
    Ok(Versioned {
        status: StatusCode::OK,
        body,
        version,
        location: None,
    })
}

/// A line as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLine {
    product_id: Uuid,
    quantity: String,
    /// Defaults to the product's price when the currencies agree.
    unit_price: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    supplier_id: Uuid,
    currency: Option<String>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    lines: Vec<NewLine>,
}

fn check_currency(problems: &mut Problems, currency: Option<&str>) {
    if let Some(currency) = currency
        && !CURRENCIES.contains(&currency)
    {
        problems.push(
            "currency",
            "is not an ISO 4217 currency code this API knows",
        );
    }
}

/// Checks lines; quantities must be above zero.
fn check_lines(problems: &mut Problems, lines: &[NewLine], field: &str) {
    if lines.len() > MAX_LINES {
        problems.push(field, format!("at most {MAX_LINES} lines"));
        return;
    }
    for (index, line) in lines.iter().enumerate() {
        let name = format!("{field}[{index}]");
        match check_decimal(&line.quantity) {
            Err(message) => problems.push(&format!("{name}.quantity"), message),
            Ok(()) if line.quantity.trim().chars().all(|c| c == '0' || c == '.') => {
                problems.push(&format!("{name}.quantity"), "must be above zero");
            }
            Ok(()) => {}
        }
        if let Some(price) = &line.unit_price
            && let Err(message) = check_decimal(price)
        {
            problems.push(&format!("{name}.unit_price"), message);
        }
    }
}

/// Inserts `lines` after `first_line_no - 1`: products must exist (422 naming the line); a
/// missing price is the product's when its currency is the order's.
async fn insert_lines(
    transaction: &deadpool_postgres::Transaction<'_>,
    order: Uuid,
    currency: &str,
    lines: &[NewLine],
    first_line_no: i32,
    field: &str,
) -> RouterResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = lines.iter().map(|line| line.product_id).collect();
    let products: HashMap<Uuid, (String, String)> = transaction
        .query(
            "SELECT id, unit_price::text, currency FROM products WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let mut problems = Problems::new();
    let mut line_nos = Vec::new();
    let mut product_ids = Vec::new();
    let mut quantities = Vec::new();
    let mut prices = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let name = format!("{field}[{index}]");
        let Some((price, product_currency)) = products.get(&line.product_id) else {
            problems.push(&format!("{name}.product_id"), "no such product");
            continue;
        };
        let price = match &line.unit_price {
            Some(price) => price.trim().to_owned(),
            None if product_currency == currency => price.clone(),
            None => {
                problems.push(
                    &format!("{name}.unit_price"),
                    format!("is required: the product is priced in {product_currency}"),
                );
                continue;
            }
        };
        line_nos.push(first_line_no + i32::try_from(index).unwrap_or(i32::MAX));
        product_ids.push(line.product_id);
        quantities.push(line.quantity.trim().to_owned());
        prices.push(price);
    }
    problems.finish()?;
    transaction
        .execute(
            "INSERT INTO purchase_order_lines (order_id, line_no, product_id, quantity, unit_price) \
             SELECT $1, line_no, product_id, quantity::numeric, unit_price::numeric \
             FROM unnest($2::int[], $3::uuid[], $4::text[], $5::text[]) \
               AS l(line_no, product_id, quantity, unit_price)",
            &[&order, &line_nos, &product_ids, &quantities, &prices],
        )
        .await?;
    Ok(())
}

async fn create(
    tenant: Tenant,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> RouterResult<Versioned> {
    let idempotency = Idempotency::of(&headers, "/v1/purchase-orders", &raw)?;
    // Deserialized here (not by the extractor) because the raw body also keys retries.
    let order: NewOrder = parse(&raw)?;
    let mut problems = Problems::new();
    check_currency(&mut problems, order.currency.as_deref());
    problems.length("notes", Some(&order.notes), 0, 4000);
    check_lines(&mut problems, &order.lines, "lines");
    problems.finish()?;

    let mut connection = tenant.access_write("orders.write").await?;
    let transaction = connection.client.transaction().await?;
    let actor = tenant.audit().actor.clone();
    if let Some(first) = idempotency.take(&transaction, &actor).await? {
        return Ok(first);
    }
    let currency = order.currency.as_deref().unwrap_or("EUR");
    let inserted = transaction
        .query_one(
            "INSERT INTO purchase_orders (supplier_id, currency, notes) VALUES ($1, $2, $3) \
             RETURNING id",
            &[&order.supplier_id, &currency, &order.notes],
        )
        .await;
    let id: Uuid = match inserted {
        Ok(row) => row.get(0),
        Err(error) => return Err(supplier_checked(error)),
    };
    insert_lines(&transaction, id, currency, &order.lines, 1, "lines").await?;
    // The number last: from here to the commit, the tenant's other order creations wait.
    transaction
        .batch_execute("SET CONSTRAINTS purchase_orders_numbered IMMEDIATE")
        .await?;
    let (body, version, _) = load(&*transaction, id, false).await?;
    let answer = Versioned {
        status: StatusCode::CREATED,
        body,
        version,
        location: Some(format!("/v1/purchase-orders/{id}")),
    };
    idempotency.record(&transaction, &actor, &answer).await?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("order.create", "purchase_order", id).after(&answer.body),
        )
        .await?;
    Ok(answer)
}

/// An order's write error: a missing supplier (the only foreign key an order's own row
/// has) is 422 naming `supplier_id`.
fn supplier_checked(error: tokio_postgres::Error) -> RouterError {
    if error.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
        RouterError::Invalid {
            code: "validation_failed",
            detail: "supplier_id: no such supplier".to_owned(),
        }
    } else {
        error.into()
    }
}

/// Locks the order, checks `If-Match`; its JSON and status.
async fn lock(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    expected: Option<i64>,
) -> RouterResult<(Value, String)> {
    let (body, version, status) = load(&**transaction, id, true).await?;
    if expected.is_some_and(|expected| expected != version) {
        return Err(RouterError::PreconditionFailed(format!(
            "the order is at version {version}, not the one `If-Match` names"
        )));
    }
    Ok((body, status))
}

/// Like [`lock`], for a change only a draft allows (409 `order_not_draft`); its JSON.
async fn lock_draft(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    expected: Option<i64>,
) -> RouterResult<Value> {
    let (before, status) = lock(transaction, id, expected).await?;
    if status != "draft" {
        return Err(not_draft(&status));
    }
    Ok(before)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderChange {
    supplier_id: Option<Uuid>,
    currency: Option<String>,
    notes: Option<String>,
}

async fn update(
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(change): Json<OrderChange>,
) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, not_found)?;
    let expected = if_match(&headers)?;
    let mut problems = Problems::new();
    check_currency(&mut problems, change.currency.as_deref());
    problems.length("notes", change.notes.as_deref(), 0, 4000);
    if change.supplier_id.is_none() && change.currency.is_none() && change.notes.is_none() {
        problems.push("body", "changes nothing");
    }
    problems.finish()?;
    let mut connection = tenant.access_write("orders.write").await?;
    let transaction = connection.client.transaction().await?;
    let before = lock_draft(&transaction, id, expected).await?;
    let updated = transaction
        .execute(
            "UPDATE purchase_orders SET supplier_id = COALESCE($2, supplier_id), \
               currency = COALESCE($3, currency), notes = COALESCE($4, notes) WHERE id = $1",
            &[&id, &change.supplier_id, &change.currency, &change.notes],
        )
        .await;
    if let Err(error) = updated {
        return Err(supplier_checked(error));
    }
    finish(tenant, transaction, id, "order.update", before, None).await
}

/// Reads the order back, keeps the answer for a retry's key, audits the change with before
/// and after, commits.
async fn finish(
    tenant: Tenant,
    transaction: deadpool_postgres::Transaction<'_>,
    id: Uuid,
    action: &'static str,
    before: Value,
    idempotency: Option<&Idempotency>,
) -> RouterResult<Versioned> {
    let (after, version, _) = load(&*transaction, id, false).await?;
    let answer = Versioned {
        status: StatusCode::OK,
        body: after,
        version,
        location: None,
    };
    if let Some(idempotency) = idempotency {
        idempotency
            .record(&transaction, &tenant.audit().actor, &answer)
            .await?;
    }
    tenant
        .audit()
        .commit(
            transaction,
            Change::new(action, "purchase_order", id)
                .before(&before)
                .after(&answer.body),
        )
        .await?;
    Ok(answer)
}

async fn add_line(
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(raw): Json<Value>,
) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, not_found)?;
    let idempotency = Idempotency::of(&headers, &format!("/v1/purchase-orders/{id}/lines"), &raw)?;
    let expected = if_match(&headers)?;
    let lines = [parse::<NewLine>(&raw)?];
    let mut problems = Problems::new();
    check_lines(&mut problems, &lines, "line");
    problems.finish()?;
    let mut connection = tenant.access_write("orders.write").await?;
    let transaction = connection.client.transaction().await?;
    let actor = tenant.audit().actor.clone();
    if let Some(first) = idempotency.take(&transaction, &actor).await? {
        return Ok(first);
    }
    let before = lock_draft(&transaction, id, expected).await?;
    let count = before["lines"].as_array().map_or(0, Vec::len);
    if count >= MAX_LINES {
        return Err(RouterError::LimitExceeded(format!(
            "an order has at most {MAX_LINES} lines"
        )));
    }
    let next: i32 = transaction
        .query_one(
            "SELECT COALESCE(max(line_no), 0) + 1 FROM purchase_order_lines WHERE order_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    let currency = before["currency"].as_str().unwrap_or("EUR").to_owned();
    insert_lines(&transaction, id, &currency, &lines, next, "line").await?;
    finish(
        tenant,
        transaction,
        id,
        "order.lines",
        before,
        Some(&idempotency),
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineSet {
    lines: Vec<NewLine>,
}

async fn replace_lines(
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(set): Json<LineSet>,
) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, not_found)?;
    let expected = if_match(&headers)?;
    let mut problems = Problems::new();
    check_lines(&mut problems, &set.lines, "lines");
    problems.finish()?;
    let mut connection = tenant.access_write("orders.write").await?;
    let transaction = connection.client.transaction().await?;
    let before = lock_draft(&transaction, id, expected).await?;
    transaction
        .execute(
            "DELETE FROM purchase_order_lines WHERE order_id = $1",
            &[&id],
        )
        .await?;
    let currency = before["currency"].as_str().unwrap_or("EUR").to_owned();
    insert_lines(&transaction, id, &currency, &set.lines, 1, "lines").await?;
    finish(tenant, transaction, id, "order.lines", before, None).await
}

#[derive(Debug, Clone, Copy)]
enum Transition {
    Submit,
    Receive,
    Cancel,
}

impl Transition {
    /// The status it leads to, from the statuses it may start at.
    fn rule(
        self,
    ) -> (
        &'static str,
        &'static [&'static str],
        &'static str,
        &'static str,
    ) {
        match self {
            Self::Submit => ("submitted", &["draft"], "submitted_at", "order.submit"),
            Self::Receive => ("received", &["submitted"], "received_at", "order.receive"),
            Self::Cancel => (
                "cancelled",
                &["draft", "submitted"],
                "cancelled_at",
                "order.cancel",
            ),
        }
    }
}

async fn transition(
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    transition: Transition,
) -> RouterResult<Versioned> {
    let id: Uuid = path_id(&id, not_found)?;
    let expected = if_match(&headers)?;
    let (to, from, stamp, action) = transition.rule();
    let mut connection = tenant.access_write("orders.approve").await?;
    let transaction = connection.client.transaction().await?;
    let (before, status) = lock(&transaction, id, expected).await?;
    if !from.contains(&status.as_str()) {
        return Err(RouterError::Conflict {
            code: "invalid_transition",
            detail: format!("a purchase order cannot go from {status} to {to}"),
        });
    }
    if matches!(transition, Transition::Submit)
        && before["lines"].as_array().is_none_or(Vec::is_empty)
    {
        return Err(RouterError::Conflict {
            code: "empty_order",
            detail: "an order without lines cannot be submitted".to_owned(),
        });
    }
    transaction
        .execute(
            &format!("UPDATE purchase_orders SET status = $2, {stamp} = now() WHERE id = $1"),
            &[&id, &to],
        )
        .await?;
    finish(tenant, transaction, id, action, before, None).await
}
