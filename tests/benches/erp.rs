//! The ERP resources through the router, against a customer point read in the same run on
//! the same router and server, on a tenant seeded by `tenantctl tenant seed`:
//! - `GET /v1/customers/{id}` (the baseline);
//! - `GET /v1/customers?q=…` matching a word many names share (a full page of 50);
//! - `GET /v1/customers?q=…` matching one code by substring (trigram indexes);
//! - `GET /v1/purchase-orders/{id}` of a 20-line order;
//! - `POST /v1/purchase-orders` with 20 lines (totals, number, audit, one transaction).
//!
//! Closed-loop clients in this process (reqwest), `TENANCY_BENCH_CONNECTIONS` of them
//! (default 32). `TENANCY_BENCH_SECONDS` (default 10) sets each phase's length and
//! `TENANCY_BENCH_CUSTOMERS` (default 20000) the customers seeded.
//! Run: `cargo bench -p tenancy-tests --bench erp`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tenancy_tests::bench::{env_or, load, platform, print_table};
use tenancy_tests::json;

type Error = Box<dyn std::error::Error>;

const SCOPES: &[&str] = &[
    "customers.read",
    "products.read",
    "suppliers.read",
    "orders.read",
    "orders.write",
];

#[tokio::main]
async fn main() -> Result<(), Error> {
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let connections: usize = env_or("TENANCY_BENCH_CONNECTIONS", 32);
    let customers: u32 = env_or("TENANCY_BENCH_CUSTOMERS", 20_000);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let period = Duration::from_secs(seconds);

    let (app, admin, router) = platform("bench").await;
    let router = Arc::new(router);

    let started = Instant::now();
    let output = app.tenantctl(
        &[
            "--json",
            "tenant",
            "seed",
            "--tenant",
            "bench",
            "--router-url",
            &router.base_url,
            "--customers",
            &customers.to_string(),
            "--suppliers",
            "50",
            "--products",
            "500",
            "--orders",
            "200",
            "--concurrency",
            "16",
            "--seed",
            "1",
        ],
        "",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seeded: Value = serde_json::from_slice(&output.stdout)?;
    let seed_seconds = started.elapsed().as_secs_f64();

    let token = app.tenant_token(&admin, "bench", SCOPES).await;
    // The seeded ids: customers and products to read and order, a supplier.
    let ids = |collection: &'static str| {
        let router = router.clone();
        let token = token.clone();
        async move {
            let (status, page) = router
                .call(
                    Method::GET,
                    &format!("{collection}?limit=500"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            page["items"].as_array().expect("items").clone()
        }
    };
    let customer_items = ids("/v1/customers").await;
    let customer_ids: Arc<Vec<String>> = Arc::new(
        customer_items
            .iter()
            .map(|item| item["id"].as_str().expect("id").to_owned())
            .collect(),
    );
    // Narrow searches: a code's distinctive tail, each matching one customer (of many).
    let codes: Arc<Vec<String>> = Arc::new(
        customer_items
            .iter()
            .map(|item| {
                let code = item["code"].as_str().expect("code");
                code[code.len() - 8..].to_lowercase()
            })
            .collect(),
    );
    let products: Vec<String> = ids("/v1/products")
        .await
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    let supplier = ids("/v1/suppliers").await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let order_body = Arc::new(json!({
        "supplier_id": supplier,
        "currency": "EUR",
        "lines": products.iter().take(20).enumerate().map(|(n, product)| json!({
            "product_id": product,
            "quantity": format!("{}.5", n + 1),
            "unit_price": format!("{}.33", n + 7),
        })).collect::<Vec<_>>(),
    }));
    let (status, order) = router
        .call(
            Method::POST,
            "/v1/purchase-orders",
            Some(&token),
            Some((*order_body).clone()),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().expect("id").to_owned();

    let mut results = Vec::new();
    let read = token.clone();
    let ids = customer_ids.clone();
    results.push(
        load(
            "customer point read (baseline)",
            &router.base_url,
            connections,
            period,
            move |client, base, n| {
                client
                    .get(format!("{base}/v1/customers/{}", ids[n % ids.len()]))
                    .bearer_auth(&read)
            },
        )
        .await,
    );
    let search = token.clone();
    results.push(
        load(
            "customer search, broad (page of 50)",
            &router.base_url,
            connections,
            period,
            move |client, base, n| {
                const WORDS: &[&str] = &["traders", "wood", "alpine", "supplies", "coho"];
                client
                    .get(format!("{base}/v1/customers?q={}", WORDS[n % WORDS.len()]))
                    .bearer_auth(&search)
            },
        )
        .await,
    );
    let search = token.clone();
    results.push(
        load(
            "customer search, narrow (code)",
            &router.base_url,
            connections,
            period,
            move |client, base, n| {
                client
                    .get(format!("{base}/v1/customers?q={}", codes[n % codes.len()]))
                    .bearer_auth(&search)
            },
        )
        .await,
    );
    let read = token.clone();
    results.push(
        load(
            "20-line order read",
            &router.base_url,
            connections,
            period,
            move |client, base, _| {
                client
                    .get(format!("{base}/v1/purchase-orders/{order_id}"))
                    .bearer_auth(&read)
            },
        )
        .await,
    );
    let write = token.clone();
    results.push(
        load(
            "20-line order creation",
            &router.base_url,
            connections,
            period,
            move |client, base, _| {
                client
                    .post(format!("{base}/v1/purchase-orders"))
                    .bearer_auth(&write)
                    .json(&*order_body)
            },
        )
        .await,
    );

    print_table(
        &format!(
            "ERP resources through the router, {seconds} s per phase, {connections} clients, \
             {cores} cores, {} customers",
            seeded["customers"]
        ),
        &results,
    );
    println!(
        "seeding ({} customers, {} suppliers, {} products, {} orders of {} lines) took {seed_seconds:.1} s",
        seeded["customers"],
        seeded["suppliers"],
        seeded["products"],
        seeded["orders"],
        seeded["order_lines"]
    );
    Ok(())
}
