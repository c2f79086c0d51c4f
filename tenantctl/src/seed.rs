//! `tenantctl tenant seed`: fills a tenant with realistic sample data (customers,
//! suppliers, products, purchase orders in every status) through the tenant router's API,
//! so every row is checked, versioned and audited exactly as an app's would be.
//!
//! Every creation carries an `Idempotency-Key`, so a request retried after a lost answer,
//! a `429` (after its `Retry-After`) or a `503` creates nothing twice. Codes carry a tag
//! of the run, so seeding again adds data rather than colliding.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::platform::PlatformArgs;

/// Most of any one kind a run creates.
const MAX_COUNT: u32 = 100_000;
/// Most lines an order gets.
const MAX_LINES: usize = 20;
/// Attempts per request (429 and 503 are retried).
const ATTEMPTS: u32 = 8;
/// Longest wait a `Retry-After` is honoured for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The scopes a seeding token needs.
const SCOPES: &[&str] = &[
    "customers.read",
    "customers.write",
    "suppliers.read",
    "suppliers.write",
    "products.read",
    "products.write",
    "orders.read",
    "orders.write",
    "orders.approve",
];

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    platform: PlatformArgs,
    /// The tenant's slug.
    #[arg(long)]
    tenant: String,
    /// The tenant router's base URL.
    #[arg(long, env = "TENANCY_ROUTER_URL")]
    router_url: String,
    /// A service token of the tenant with the write scopes. Without it, a 15-minute one is
    /// minted with the control plane's signing key (and recorded in the audit log).
    #[arg(long, env = "TENANCY_TENANT_TOKEN", value_parser = tenancy_core::secret::parse_secret, hide_env_values = true)]
    token: Option<SecretString>,
    /// The control plane's JWT signing key (PKCS#8 PEM), to mint the token.
    #[arg(long, env = "TENANCY_JWT_SIGNING_KEY", value_parser = tenancy_core::secret::parse_secret, hide_env_values = true)]
    jwt_signing_key: Option<SecretString>,
    /// File holding the signing key, instead of `--jwt-signing-key`.
    #[arg(long, env = "TENANCY_JWT_SIGNING_KEY_FILE")]
    jwt_signing_key_file: Option<PathBuf>,
    /// The `iss` of the control plane's tokens.
    #[arg(
        long,
        env = "TENANCY_JWT_ISSUER",
        default_value = "tenancy-control-plane"
    )]
    jwt_issuer: String,
    #[command(flatten)]
    counts: Counts,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Seed of the random choices (names, prices, lines, statuses), for a repeatable data
    /// set; codes still carry a new tag each run.
    #[arg(long)]
    seed: Option<u64>,
}

/// How much of each kind to create.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Counts {
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_COUNT)))]
    pub customers: u32,
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_COUNT)))]
    pub suppliers: u32,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_COUNT)))]
    pub products: u32,
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_COUNT)))]
    pub orders: u32,
}

/// What a run created.
#[derive(Debug, Default, Serialize)]
pub struct Seeded {
    pub customers: usize,
    pub suppliers: usize,
    pub products: usize,
    pub orders: usize,
    pub order_lines: usize,
    pub submitted: usize,
    pub received: usize,
    pub cancelled: usize,
    pub seconds: f64,
}

pub async fn run(args: SeedArgs, json: bool) -> anyhow::Result<()> {
    if args.counts.orders > 0 && (args.counts.suppliers == 0 || args.counts.products == 0) {
        bail!("orders need suppliers and products: give --suppliers and --products above 0");
    }
    let token = match args.token {
        Some(token) => token,
        None => mint(&args).await?,
    };
    let seeded = seed(
        &args.router_url,
        &token,
        args.counts,
        usize::from(args.concurrency),
        args.seed.unwrap_or_else(rand::random),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&seeded)?);
    } else {
        println!(
            "seeded {}: {} customers, {} suppliers, {} products, {} purchase orders \
             ({} lines; {} submitted, {} received, {} cancelled) in {:.1} s",
            args.tenant,
            seeded.customers,
            seeded.suppliers,
            seeded.products,
            seeded.orders,
            seeded.order_lines,
            seeded.submitted,
            seeded.received,
            seeded.cancelled,
            seeded.seconds
        );
    }
    Ok(())
}

/// A 15-minute service token with [`SCOPES`], signed with the control plane's key.
async fn mint(args: &SeedArgs) -> anyhow::Result<SecretString> {
    let pem = tenancy_core::secret::load_secret(
        "the JWT signing key",
        args.jwt_signing_key.clone(),
        args.jwt_signing_key_file.as_deref(),
    )?
    .ok_or_else(|| {
        anyhow!(
            "no token: give --token (TENANCY_TENANT_TOKEN), a service token of the tenant \
             with the write scopes, or the control plane's signing key \
             (TENANCY_JWT_SIGNING_KEY or TENANCY_JWT_SIGNING_KEY_FILE) to mint one"
        )
    })?;
    let key = tenancy_core::token::TokenKey::from_pem(&pem)?;
    let platform = args.platform.connect().await?;
    let (token, _) = provisioner::tokens::mint(
        &platform,
        &crate::admin::operator(),
        &args.tenant,
        SCOPES.iter().map(|scope| (*scope).to_owned()).collect(),
        Some(900),
        &args.jwt_issuer,
        |claims| Ok(key.sign(claims)?),
    )
    .await?;
    Ok(SecretString::from(token))
}

/// The router's API with a token: requests retried on 429 and 503.
struct Api {
    client: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Api {
    /// Sends one request (with an `Idempotency-Key` when given); the answer's JSON on
    /// success, an error naming the request otherwise.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(self.token.expose_secret());
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                // A lost answer: the key makes the retry safe.
                Err(error) if attempt < ATTEMPTS && key.is_some() => {
                    tracing::warn!(%error, path, "request failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(error) => return Err(error).with_context(|| format!("{method} {path}")),
            };
            let status = response.status();
            if (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                && attempt < ATTEMPTS
            {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok())
                    .map_or_else(|| backoff(attempt), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = response
                .text()
                .await
                .with_context(|| format!("{method} {path}: read the answer"))?;
            if !status.is_success() {
                bail!("{method} {path}: {status}: {text}");
            }
            return serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: the answer is not JSON"));
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(6)))
}

/// Seeds the tenant behind `router_url` that `token` belongs to.
pub async fn seed(
    router_url: &str,
    token: &SecretString,
    counts: Counts,
    concurrency: usize,
    seed: u64,
) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let api = Arc::new(Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("an HTTP client")?,
        base: router_url.trim_end_matches('/').to_owned(),
        token: token.clone(),
    });
    let mut rng = StdRng::seed_from_u64(seed);
    // Keys and codes carry a tag of this run (random even for a given seed): seeding again
    // adds data, never collides with or replays an earlier run.
    let run: String = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));

    let customers = (0..counts.customers)
        .map(|n| ("/v1/customers", partner(&mut rng, "C", &run, n)))
        .collect();
    let suppliers = (0..counts.suppliers)
        .map(|n| ("/v1/suppliers", partner(&mut rng, "S", &run, n)))
        .collect();
    let products = (0..counts.products)
        .map(|n| ("/v1/products", product(&mut rng, &run, n)))
        .collect();
    let mut seeded = Seeded {
        customers: create_all(&api, &limit, &run, customers).await?.len(),
        ..Seeded::default()
    };
    let supplier_ids = create_all(&api, &limit, &run, suppliers).await?;
    let product_ids = create_all(&api, &limit, &run, products).await?;
    seeded.suppliers = supplier_ids.len();
    seeded.products = product_ids.len();

    let mut tasks = JoinSet::new();
    for n in 0..counts.orders {
        let supplier = supplier_ids
            .choose(&mut rng)
            .ok_or_else(|| anyhow!("no supplier to order from"))?
            .clone();
        let count = rng.gen_range(1..=MAX_LINES.min(product_ids.len()));
        let lines: Vec<Value> = product_ids
            .choose_multiple(&mut rng, count)
            .map(|product| order_line(&mut rng, product))
            .collect();
        let body = json!({
            "supplier_id": supplier,
            "currency": "EUR",
            "notes": format!("Sample order {}", n + 1),
            "lines": lines,
        });
        // Most orders move on: submitted, then received; a few are cancelled.
        let fate = match rng.gen_range(0..10) {
            0..=2 => &[][..],
            3..=5 => &["submit"][..],
            6..=8 => &["submit", "receive"][..],
            _ => &["cancel"][..],
        };
        let key = format!("seed-{run}-order-{n}");
        let api = api.clone();
        let permit = limit.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            let order = api
                .send(Method::POST, "/v1/purchase-orders", Some(&body), Some(&key))
                .await?;
            let id = order["id"]
                .as_str()
                .ok_or_else(|| anyhow!("an order without an id: {order}"))?
                .to_owned();
            for verb in fate {
                api.send(
                    Method::POST,
                    &format!("/v1/purchase-orders/{id}/{verb}"),
                    None,
                    None,
                )
                .await?;
            }
            Ok::<_, anyhow::Error>((count, fate.last().copied()))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (lines, last) = done.context("an order task")??;
        seeded.orders += 1;
        seeded.order_lines += lines;
        match last {
            Some("submit") => seeded.submitted += 1,
            Some("receive") => seeded.received += 1,
            Some("cancel") => seeded.cancelled += 1,
            _ => {}
        }
    }
    seeded.seconds = started.elapsed().as_secs_f64();
    Ok(seeded)
}

/// Creates every `(collection, body)`, `limit` at a time; their ids, in order.
async fn create_all(
    api: &Arc<Api>,
    limit: &Arc<Semaphore>,
    run: &str,
    items: Vec<(&'static str, Value)>,
) -> anyhow::Result<Vec<String>> {
    let mut tasks = JoinSet::new();
    for (index, (collection, body)) in items.into_iter().enumerate() {
        let key = format!(
            "seed-{run}-{}-{index}",
            collection.trim_start_matches("/v1/")
        );
        let api = api.clone();
        let permit = limit.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _permit = permit;
            let created = api
                .send(Method::POST, collection, Some(&body), Some(&key))
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or_else(|| anyhow!("{collection}: an answer without an id: {created}"))?
                .to_owned();
            Ok::<_, anyhow::Error>((index, id))
        });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        ids.push(done.context("a creation task")??);
    }
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

const NAMES: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Adventure Works",
    "Blue Yonder",
    "Tailspin",
    "Wide World",
    "Alpine Ski",
    "Litware",
    "Proseware",
    "Lucerne",
    "Coho Vineyard",
    "Fourth Coffee",
    "Humongous",
    "Woodgrove",
    "Trey Research",
    "Wingtip",
    "Southridge",
    "Graphic Design",
    "Relecloud",
];
const TRADES: &[&str] = &[
    "Traders",
    "Supplies",
    "Industries",
    "Logistics",
    "Foods",
    "Metals",
    "Textiles",
    "Electronics",
    "Hardware",
    "Partners",
];
const FORMS: &[&str] = &[
    "GmbH", "Ltd", "Inc.", "S.A.", "B.V.", "AG", "Oy", "AB", "S.r.l.",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "10115"),
    ("Lyon", "69001"),
    ("Porto", "4000-001"),
    ("Gdańsk", "80-001"),
    ("Tampere", "33100"),
    ("Utrecht", "3511"),
    ("Graz", "8010"),
    ("Malmö", "211 20"),
    ("Bilbao", "48001"),
    ("Cork", "T12"),
];
const STREETS: &[&str] = &[
    "Industriestraße",
    "Rue de la République",
    "Rua do Comércio",
    "Harbour Road",
    "Kauppakatu",
    "Stationsplein",
];
const MATERIALS: &[&str] = &[
    "Steel",
    "Brass",
    "Aluminium",
    "Oak",
    "Nylon",
    "Copper",
    "Stainless",
    "Titanium",
];
const ITEMS: &[(&str, &str)] = &[
    ("bolt M8 × 40", "each"),
    ("washer 10 mm", "box"),
    ("hinge 80 mm", "each"),
    ("bracket 120 mm", "each"),
    ("cable 2.5 mm²", "m"),
    ("gasket DN50", "each"),
    ("bearing 6204", "each"),
    ("valve ½\"", "each"),
    ("pipe 22 mm", "m"),
    ("sheet 2 mm", "kg"),
    ("spring 30 N", "box"),
    ("rivet 4 × 10", "box"),
];

fn pick<'a, T>(rng: &mut StdRng, from: &'a [T]) -> &'a T {
    &from[rng.gen_range(0..from.len())]
}

/// A customer or supplier: code `<kind>-<run>-<n>`, a company name, contact details.
fn partner(rng: &mut StdRng, kind: &str, run: &str, n: u32) -> Value {
    let name = format!(
        "{} {} {}",
        pick(rng, NAMES),
        pick(rng, TRADES),
        pick(rng, FORMS)
    );
    let (city, postcode) = *pick(rng, CITIES);
    let domain: String = name
        .split_whitespace()
        .next()
        .unwrap_or("example")
        .to_lowercase();
    json!({
        "code": format!("{kind}-{run}-{:05}", n + 1),
        "name": name,
        "email": format!("orders{}@{domain}.example", n + 1),
        "phone": format!("+49 30 {:04} {:04}", rng.gen_range(0..10_000), rng.gen_range(0..10_000)),
        "address": format!("{} {}, {postcode} {city}", pick(rng, STREETS), rng.gen_range(1..200)),
        "tax_id": format!("EU{:09}", rng.gen_range(0..1_000_000_000u32)),
    })
}

/// A product: SKU `P-<run>-<n>`, a name, a unit and an EUR price with two places.
fn product(rng: &mut StdRng, run: &str, n: u32) -> Value {
    let (item, unit) = *pick(rng, ITEMS);
    let cents: u32 = rng.gen_range(5..50_000);
    json!({
        "sku": format!("P-{run}-{:05}", n + 1),
        "name": format!("{} {item}", pick(rng, MATERIALS)),
        "description": format!("{} {item}, sold per {unit}", pick(rng, MATERIALS)),
        "unit": unit,
        "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
        "currency": "EUR",
    })
}

/// A line of `product`: a quantity (whole, or with up to three places for measured
/// goods), at the product's price or a negotiated one.
fn order_line(rng: &mut StdRng, product: &str) -> Value {
    let quantity = if rng.gen_bool(0.2) {
        format!("{}.{:03}", rng.gen_range(0..50), rng.gen_range(1..1000))
    } else {
        rng.gen_range(1..500).to_string()
    };
    if rng.gen_bool(0.3) {
        let cents: u32 = rng.gen_range(5..50_000);
        json!({
            "product_id": product,
            "quantity": quantity,
            "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
        })
    } else {
        json!({ "product_id": product, "quantity": quantity })
    }
}
