//! Super-admin login and token checks on the real control-plane binary.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tenancy_core::token::TokenKey;
use tenancy_tests::{
    ADMIN_EMAIL, ADMIN_PASSWORD, ControlPlane, assert_problem, tenantctl_admin_create,
};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` with an Ed25519 PEM key, naming `kid` in the header.
fn sign_ed(pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(pem.as_bytes()).expect("key"),
    )
    .expect("sign")
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn login_issues_a_bearer_token_that_opens_the_api() {
    let app = ControlPlane::start().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "  Root@Example.com ", "password": ADMIN_PASSWORD })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token");
    let claims = claims_of(token);
    assert_eq!(claims["aud"], "tenancy-admin");
    assert_eq!(claims["iss"], "tenancy-control-plane");
    assert!(claims["exp"].as_i64().expect("exp") > now());
    let (status, body) = app.call(Method::GET, "/v1/plans", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn bad_logins_get_problem_documents() {
    let app = ControlPlane::start().await;
    let login = |body: Value| app.call(Method::POST, "/v1/auth/login", None, Some(body));

    let (status, body) =
        login(json!({ "email": ADMIN_EMAIL, "password": "not the password" })).await;
    assert_problem(status, &body, 401, "invalid_credentials");
    let (status, unknown) =
        login(json!({ "email": "nobody@example.com", "password": ADMIN_PASSWORD })).await;
    assert_problem(status, &unknown, 401, "invalid_credentials");
    assert_eq!(
        body["detail"], unknown["detail"],
        "wrong password and unknown e-mail look alike"
    );
    let (status, body) =
        login(json!({ "email": "not-an-email", "password": ADMIN_PASSWORD })).await;
    assert_problem(status, &body, 422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "email");
    let (status, body) = login(json!({ "email": ADMIN_EMAIL })).await;
    assert_problem(status, &body, 422, "invalid_body");
    let (status, body) = login(json!({ "email": ADMIN_EMAIL, "password": 12345 })).await;
    assert_problem(status, &body, 422, "invalid_body");
    let (status, body) =
        login(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "admin": true })).await;
    assert_problem(status, &body, 422, "invalid_body");

    let raw = |content_type: &'static str, body: String| {
        app.client
            .post(app.url("/v1/auth/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw("application/json", "{\"email\": \"x\", ".to_owned())
        .await
        .expect("send");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        400,
        "malformed_json",
    );
    let response = raw("text/plain", "{}".to_owned()).await.expect("send");
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        415,
        "unsupported_media_type",
    );
    let huge = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(100_000)
    );
    let response = raw("application/json", huge).await.expect("send");
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        413,
        "payload_too_large",
    );
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused() {
    let app = ControlPlane::start().await;
    let good = app.admin_token().await;
    let sub = claims_of(&good)["sub"].clone();
    let kid = app.signing_key.kid().to_owned();
    let valid_claims = json!({
        "sub": sub, "iss": "tenancy-control-plane", "aud": "tenancy-admin",
        "iat": now(), "exp": now() + 600, "jti": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
    });
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = valid_claims.clone();
        change(&mut claims);
        claims
    };
    // The test can mint tokens the server accepts, so each refusal below is about the flaw.
    let forged_ok = app.signing_key.sign(&valid_claims).expect("sign");
    let (status, body) = app
        .call(Method::GET, "/v1/plans", Some(&forged_ok), None)
        .await;
    assert_eq!(status, 200, "a correctly signed token must work: {body}");

    let (stranger, stranger_pem) = TokenKey::generate().expect("key");
    let stranger_pem = secrecy::ExposeSecret::expose_secret(&stranger_pem).to_owned();
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims = claims_of(&good);
        claims["sub"] = json!("00000000-0000-0000-0000-000000000001");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    };
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &valid_claims,
            &EncodingKey::from_secret(app.signing_key.public_pem().as_bytes()),
        )
        .expect("sign")
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not.a.token".to_owned()),
        (
            "alg none",
            unsigned(
                &json!({ "alg": "none", "typ": "JWT", "kid": kid }),
                &valid_claims,
            ),
        ),
        (
            "signed by another key, claiming our kid",
            sign_ed(&stranger_pem, &kid, &valid_claims),
        ),
        (
            "signed by another key, its own kid",
            stranger.sign(&valid_claims).expect("sign"),
        ),
        ("HS256 keyed with the public key", hs256_with_public_key),
        (
            "expired",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!(now() - 120)))
                .expect("sign"),
        ),
        (
            "exp as a string",
            app.signing_key
                .sign(&with(&|c| c["exp"] = json!((now() + 600).to_string())))
                .expect("sign"),
        ),
        (
            "no exp",
            app.signing_key
                .sign(&with(&|c| {
                    c.as_object_mut().expect("object").remove("exp");
                }))
                .expect("sign"),
        ),
        (
            "wrong audience",
            app.signing_key
                .sign(&with(&|c| c["aud"] = json!("tenancy-tenant")))
                .expect("sign"),
        ),
        (
            "wrong issuer",
            app.signing_key
                .sign(&with(&|c| c["iss"] = json!("someone-else")))
                .expect("sign"),
        ),
        (
            "unknown admin",
            app.signing_key
                .sign(&with(&|c| {
                    c["sub"] = json!("00000000-0000-0000-0000-000000000001")
                }))
                .expect("sign"),
        ),
        ("tampered claim", tampered),
    ];
    for (name, token) in cases {
        let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], "invalid_token", "{name}: {body}");
    }
    let expired = app
        .signing_key
        .sign(&with(&|c| c["exp"] = json!(now() - 120)))
        .expect("sign");
    let (_, body) = app
        .call(Method::GET, "/v1/plans", Some(&expired), None)
        .await;
    assert_eq!(body["detail"], "the token has expired");

    let response = app
        .client
        .get(app.url("/v1/plans"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"tenancy-control-plane\""
    );
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        401,
        "missing_token",
    );
    let response = app
        .client
        .get(app.url("/v1/plans"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    assert_problem(
        status,
        &response.json().await.expect("json"),
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_account_and_disabling_revokes_tokens() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    for _ in 0..5 {
        let (status, _) = app
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({ "email": ADMIN_EMAIL, "password": "wrong password!" })),
            )
            .await;
        assert_eq!(status, 401);
    }
    // Locked: even the right password is refused, with the answer an unknown e-mail gets.
    let (status, locked) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
        )
        .await;
    assert_problem(status, &locked, 401, "invalid_credentials");
    let (status, unknown) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "nobody@example.com", "password": ADMIN_PASSWORD })),
        )
        .await;
    assert_eq!(
        (status, &unknown),
        (401, &locked),
        "locked and unknown answer alike"
    );

    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    sqlx::query("UPDATE admin_users SET disabled_at = now() WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .execute(&mut catalog)
        .await
        .expect("disable");
    let (status, body) = app.call(Method::GET, "/v1/plans", Some(&token), None).await;
    assert_problem(status, &body, 401, "invalid_token");
}

#[tokio::test]
async fn tenantctl_admin_create_refuses_bad_input_and_duplicates() {
    let app = ControlPlane::start().await;
    let duplicate = tenantctl_admin_create(
        &app.database_url,
        "ROOT@example.com",
        "another long password",
    );
    assert!(!duplicate.status.success());
    let stderr = String::from_utf8_lossy(&duplicate.stderr);
    assert!(stderr.contains("exists already"), "{stderr}");
    let short = tenantctl_admin_create(&app.database_url, "second@example.com", "short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    let bad = tenantctl_admin_create(&app.database_url, "not-an-email", "a long enough password");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an e-mail address"));

    let made = tenantctl_admin_create(
        &app.database_url,
        "second@example.com",
        "second long password",
    );
    assert!(made.status.success(), "{made:?}");
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": "second@example.com", "password": "second long password" })),
        )
        .await;
    assert_eq!(status, 200);
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_users")
        .fetch_one(&mut catalog)
        .await
        .expect("count");
    assert_eq!(admins, 2, "the refused attempts wrote nothing");
    let hashes: Vec<String> = sqlx::query_scalar("SELECT password_hash FROM admin_users")
        .fetch_all(&mut catalog)
        .await
        .expect("hashes");
    assert!(hashes.iter().all(|hash| hash.starts_with("$argon2id$")));
}

#[tokio::test]
async fn the_control_plane_refuses_to_start_without_a_signing_key() {
    let output = std::process::Command::new(tenancy_tests::binary("control-plane"))
        .env("TENANCY_DATABASE_URL", "postgres://u:p@127.0.0.1:1/catalog")
        .env_remove("TENANCY_JWT_SIGNING_KEY")
        .env_remove("TENANCY_JWT_SIGNING_KEY_FILE")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TENANCY_JWT_SIGNING_KEY"), "{stderr}");
    assert!(
        !stderr.contains(":p@"),
        "the database password must not be printed: {stderr}"
    );
}
