//! The tenant router binary: every request on its own tenant's database, tokens verified
//! strictly, tenant status and plan limits enforced.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tenancy_core::token::TokenKey;
use tenancy_tests::{ControlPlane, FinalBackup, TenantRouter, assert_problem, eventually};

mod capacity;
mod lifecycle;
mod scale;

const ALL: &[&str] = &["customers.read", "customers.write"];

async fn platform_with_tenants(slugs: &[&str]) -> (ControlPlane, String) {
    let app = ControlPlane::start_with(&[("TENANCY_DELETE_GRACE", "0s")]).await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 50)
        .await;
    for slug in slugs {
        let (status, body) = app.create_tenant(&admin, slug).await;
        assert_eq!(status, 201, "{body}");
    }
    (app, admin)
}

/// Registers the test's PostgreSQL as server `name` with this connection budget; its id.
async fn add_server_with_budget(
    app: &ControlPlane,
    admin: &str,
    name: &str,
    max_tenants: u32,
    budget: u32,
) -> String {
    let (status, server) = app
        .call(
            Method::POST,
            "/v1/servers",
            Some(admin),
            Some(json!({
            "name": name, "host": "127.0.0.1", "port": app.postgres.server.port(),
            "admin_user": "postgres", "admin_password": app.postgres.server.superuser_password(),
            "max_tenants": max_tenants, "connection_budget": budget })),
        )
        .await;
    assert_eq!(status, 201, "{server}");
    server["id"].as_str().expect("an id").to_owned()
}

async fn create_customer(router: &TenantRouter, token: &str, code: &str) -> Value {
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(token),
            Some(json!({ "code": code, "name": format!("Customer {code}") })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["code"].as_str().expect("code").to_owned())
        .collect()
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_data() {
    let (app, admin) = platform_with_tenants(&["acme", "globex"]).await;
    let router = app.start_router(&[]).await;
    let acme = app.tenant_token(&admin, "acme", ALL).await;
    let globex = app.tenant_token(&admin, "globex", ALL).await;

    let acme_customer = create_customer(&router, &acme, "A-1").await;
    create_customer(&router, &acme, "A-2").await;
    let globex_customer = create_customer(&router, &globex, "G-1").await;

    let (_, page) = router
        .call(Method::GET, "/v1/customers", Some(&acme), None)
        .await;
    assert_eq!(codes(&page), ["A-1", "A-2"]);
    let (_, page) = router
        .call(Method::GET, "/v1/customers", Some(&globex), None)
        .await;
    assert_eq!(codes(&page), ["G-1"]);
    // The same code in two tenants is two customers.
    create_customer(&router, &globex, "A-1").await;

    let globex_id = globex_customer["id"].as_str().expect("id");
    let (status, body) = router
        .call(
            Method::GET,
            &format!("/v1/customers/{globex_id}"),
            Some(&acme),
            None,
        )
        .await;
    assert_problem(status, &body, 404, "customer_not_found");
    let acme_id = acme_customer["id"].as_str().expect("id");
    let (status, body) = router
        .call(
            Method::GET,
            &format!("/v1/customers/{acme_id}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (200, Some("A-1")));

    // Editing the tenant claim to point at another tenant breaks the signature.
    let globex_tenant = {
        let payload = globex.split('.').nth(1).expect("payload");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
        claims["tenant"].clone()
    };
    let mut parts: Vec<String> = acme.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    claims["tenant"] = globex_tenant;
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let (status, body) = router
        .call(Method::GET, "/v1/customers", Some(&parts.join(".")), None)
        .await;
    assert_problem(status, &body, 401, "invalid_token");

    // Scopes are enforced per route.
    let read_only = app.tenant_token(&admin, "acme", &["customers.read"]).await;
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&read_only),
            Some(json!({ "code": "X", "name": "X" })),
        )
        .await;
    assert_problem(status, &body, 403, "forbidden");
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&acme),
            Some(json!({ "code": "A-1", "name": "Dup" })),
        )
        .await;
    assert_problem(status, &body, 409, "conflict");
    let (status, body) = router
        .call(
            Method::POST,
            "/v1/customers",
            Some(&acme),
            Some(json!({ "code": "", "name": "x", "extra": 1 })),
        )
        .await;
    assert_problem(status, &body, 422, "invalid_body");
}

#[tokio::test]
async fn bad_tokens_of_every_kind_are_refused() {
    let (app, admin) = platform_with_tenants(&["acme"]).await;
    let router = app.start_router(&[]).await;
    let good = app.tenant_token(&admin, "acme", ALL).await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        claims
    };
    let kid = app.signing_key.kid().to_owned();
    // A correctly signed forgery works, so each refusal below is about its one flaw.
    let (status, _) = router
        .call(
            Method::GET,
            "/v1/customers",
            Some(&app.signing_key.sign(&with(&|_| {})).expect("sign")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (stranger, _) = TokenKey::generate().expect("key");
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(app.signing_key.public_pem().as_bytes()),
        )
        .expect("sign")
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": kid }).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        ("unsigned (alg none)", none),
        (
            "signed by an unknown key",
            stranger.sign(&claims).expect("sign"),
        ),
        ("HS256 keyed with the public key", hs256),
        ("wrong audience (an admin token)", app.admin_token().await),
        (
            "wrong aud",
            app.signing_key
                .sign(&with(&|c| c["aud"] = json!("tenancy-admin")))
                .expect("sign"),
        ),
        (
            "wrong iss",
            app.signing_key
                .sign(&with(&|c| c["iss"] = json!("elsewhere")))
                .expect("sign"),
        ),
        (
            "missing exp",
            app.signing_key
                .sign(&with(&|c| {
                    c.as_object_mut().expect("object").remove("exp");
                }))
                .expect("sign"),
        ),
        (
            "expired",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!(now - 120)))
                .expect("sign"),
        ),
        (
            "exp as a string",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!((now + 600).to_string())))
                .expect("sign"),
        ),
        (
            "unknown tenant",
            app.signing_key
                .sign(&with(&|c| c["tenant"] = json!(uuid::Uuid::new_v4())))
                .expect("sign"),
        ),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (name, token) in cases {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "invalid_token", "{name}: {body}");
    }
    let (status, body) = router.call(Method::GET, "/v1/customers", None, None).await;
    assert_problem(status, &body, 401, "missing_token");
}
