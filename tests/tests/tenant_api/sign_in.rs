//! Sign-in, refresh rotation with reuse detection, logout, and the brute-force lockout.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_whole_session() {
    let platform = Platform::start(&["acme"], &[("TENANCY_REFRESH_REUSE_GRACE", "1s")]).await;
    let first = platform
        .sign_in("acme", "owner@acme.example", ADMIN_PASSWORD)
        .await;
    assert!(
        first["expires_in"].as_u64().is_some_and(|ttl| ttl == 3600),
        "{first}"
    );
    assert_eq!(first["refresh_expires_in"], 7 * 86_400);

    let (status, second) = platform.refresh(&refresh_token(&first)).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(refresh_token(&second), refresh_token(&first));
    let (status, _) = platform
        .call(Method::GET, "/v1/auth/me", &access(&second), None)
        .await;
    assert_eq!(status, 200);

    // The used token again, at once: a client that lost the answer gets another token.
    let (status, retried) = platform.refresh(&refresh_token(&first)).await;
    assert_eq!(status, 200, "within the grace window: {retried}");

    // Later, it means the token was copied: the whole session is revoked.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, body) = platform.refresh(&refresh_token(&first)).await;
    assert_problem(status, &body, 401, "refresh_token_reused");
    for tokens in [&second, &retried] {
        let (status, body) = platform.refresh(&refresh_token(tokens)).await;
        assert_problem(status, &body, 401, "invalid_refresh_token");
        let (status, body) = platform
            .call(Method::GET, "/v1/auth/me", &access(tokens), None)
            .await;
        assert_problem(status, &body, 401, "session_ended");
    }

    // Logout ends a session: its access and refresh tokens alike.
    let other = platform
        .sign_in("acme", "owner@acme.example", ADMIN_PASSWORD)
        .await;
    let (status, _) = platform
        .call(Method::POST, "/v1/auth/logout", &access(&other), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = platform
        .call(Method::GET, "/v1/auth/me", &access(&other), None)
        .await;
    assert_problem(status, &body, 401, "session_ended");
    let (status, body) = platform.refresh(&refresh_token(&other)).await;
    assert_problem(status, &body, 401, "invalid_refresh_token");

    // Logout also clears what can no longer be used: expired refresh tokens, sessions
    // revoked long ago; a live session keeps its tokens.
    let (_, tenant) = platform
        .app
        .call(Method::GET, "/v1/tenants/acme", Some(&platform.admin), None)
        .await;
    let database = tenant["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    let mut superuser =
        tenancy_tests::connect(&platform.app.postgres.server.superuser_url(&database)).await;
    sqlx::raw_sql(
        "INSERT INTO app.sessions (id, user_id, created_at, revoked_at) \
           SELECT '00000000-0000-4000-8000-000000000001', id, now() - interval '9 days', \
                  now() - interval '2 days' FROM app.users LIMIT 1; \
         INSERT INTO app.refresh_tokens (session_id, token_hash, created_at, expires_at) \
           VALUES ('00000000-0000-4000-8000-000000000001', sha256('old'), \
                   now() - interval '9 days', now() - interval '2 days');",
    )
    .execute(&mut superuser)
    .await
    .expect("an old session");
    let live = platform
        .sign_in("acme", "owner@acme.example", ADMIN_PASSWORD)
        .await;
    let leaving = platform
        .sign_in("acme", "owner@acme.example", ADMIN_PASSWORD)
        .await;
    let (status, _) = platform
        .call(Method::POST, "/v1/auth/logout", &access(&leaving), None)
        .await;
    assert_eq!(status, 204);
    let old: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM app.sessions WHERE id = '00000000-0000-4000-8000-000000000001'",
    )
    .fetch_one(&mut superuser)
    .await
    .expect("count");
    assert_eq!(old, 0, "the old session is gone");
    let expired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM app.refresh_tokens WHERE expires_at < now()")
            .fetch_one(&mut superuser)
            .await
            .expect("count");
    assert_eq!(expired, 0);
    let (status, _) = platform.refresh(&refresh_token(&live)).await;
    assert_eq!(status, 200, "a live session is untouched");

    // Garbage is refused the same way, never a 500.
    for garbage in ["", "rt_nothing", "x".repeat(5000).as_str()] {
        let (status, body) = platform.refresh(garbage).await;
        assert_problem(status, &body, 401, "invalid_refresh_token");
    }
    let owner = platform.owner("acme").await;
    let log = platform.audit_log(&owner).await;
    let reused = log
        .iter()
        .filter(|entry| entry["action"] == "auth.refresh_reused")
        .count();
    assert_eq!(reused, 1);
}

#[tokio::test]
async fn five_failures_lock_an_email_known_or_not_and_parallel_guesses_count_at_most_five() {
    let platform = Platform::start(&["acme"], &[("TENANCY_LOGIN_LOCKOUT", "3s")]).await;
    let owner = platform.owner("acme").await;
    platform
        .user(&owner, "victim@acme.example", "the victim's password", &[])
        .await;

    let mut answers = Vec::new();
    for email in ["victim@acme.example", "nobody@acme.example"] {
        for _ in 0..5 {
            let (status, body) = platform.login("acme", email, "a wrong password").await;
            assert_problem(status, &body, 401, "invalid_credentials");
            answers.push(body);
        }
        // Locked: even the right password is refused, with when to come back.
        let response = platform
            .router
            .client
            .post(format!("{}/v1/auth/login", platform.router.base_url))
            .header("x-tenant", "acme")
            .json(&json!({ "email": email, "password": "the victim's password" }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .expect("text")
            .parse()
            .expect("seconds");
        assert!((1..=3).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "account_locked");
    }
    // An unknown e-mail is answered exactly like a known one.
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:#?}"
    );

    tokio::time::sleep(Duration::from_millis(3200)).await;
    platform
        .sign_in("acme", "victim@acme.example", "the victim's password")
        .await;

    // 50 guesses at once: at most 5 are ever checked.
    let guesses = (0..50).map(|n| {
        let platform = &platform;
        async move {
            platform
                .login(
                    "acme",
                    "victim@acme.example",
                    &format!("wrong guess number {n}"),
                )
                .await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let locked = answers.iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(checked + locked, 50, "{answers:?}");
    assert!(checked <= 5, "{checked} guesses were checked");
    assert_eq!(checked, 5, "the five slots were all used");

    // Bad input is a 422 naming the field; no tenant named is a 400.
    let (status, body) = platform
        .login("acme", "not an email", "whatever it is")
        .await;
    assert_problem(status, &body, 422, "validation_failed");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.starts_with("email"))
    );
    let (status, body) = platform
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            &[],
            Some(json!({ "email": "owner@acme.example", "password": ADMIN_PASSWORD })),
        )
        .await;
    assert_problem(status, &body, 400, "bad_request");
    let (status, body) = platform
        .send(
            Method::POST,
            "/v1/auth/login",
            None,
            &[("x-tenant", "acme")],
            Some(json!({ "email": "owner@acme.example", "password": ADMIN_PASSWORD, "remember": true })),
        )
        .await;
    assert_problem(status, &body, 422, "invalid_body");
}
