//! The super-admins' portal over HTTP, as a browser would use it: sign-in with its CSRF
//! token, server-side sessions that sign-out and disabling end at once, CSRF on every
//! POST, security headers, embedded assets, the tenants page.

use reqwest::{Method, StatusCode};
use tenancy_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, ControlPlane};

/// A browser without its cookie jar: cookies are carried by hand, so the test sees them.
struct Browser {
    client: reqwest::Client,
    base: String,
}

/// An answer: status, headers, body.
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// The value a `Set-Cookie` of the answer gives `name`, with its attributes.
    fn set_cookie(&self, name: &str) -> Option<(String, String)> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookie| {
                let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
                let (key, value) = pair.split_once('=')?;
                (key == name).then(|| (value.to_owned(), attributes.to_owned()))
            })
    }

    /// The value of the first `name="_csrf"` field.
    fn csrf_field(&self) -> String {
        let field = self
            .html
            .split("name=\"_csrf\" value=\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.html));
        field.split('"').next().expect("a value").to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

impl Browser {
    fn new(app: &ControlPlane) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            base: app.base_url.clone(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cookies: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Page {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !cookies.is_empty() {
            let header = cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", header);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.expect("send");
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.expect("a body"),
        }
    }

    /// Signs in; the session cookie's value.
    async fn sign_in(&self, password: &str) -> Page {
        let form = self.send(Method::GET, "/portal/login", &[], None).await;
        let (login_cookie, _) = form
            .set_cookie("tenancy_portal_login")
            .expect("the sign-in form's cookie");
        let csrf = form.csrf_field();
        self.send(
            Method::POST,
            "/portal/login",
            &[("tenancy_portal_login", &login_cookie)],
            Some(&[
                ("email", ADMIN_EMAIL),
                ("password", password),
                ("_csrf", &csrf),
            ]),
        )
        .await
    }
}

/// The headers every portal answer carries.
#[track_caller]
fn assert_locked_down(page: &Page) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = header("content-security-policy");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn the_portal_signs_in_guards_every_post_and_ends_sessions_at_once() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 50)
        .await;
    let (status, body) = app.create_tenant(&admin, "acme").await;
    assert_eq!(status, 201, "{body}");
    let browser = Browser::new(&app);

    // Signed out, a page sends to the sign-in form.
    let page = browser
        .send(Method::GET, "/portal/tenants", &[], None)
        .await;
    assert!(page.status.is_redirection());
    assert_eq!(page.location(), "/portal/login");

    // The form: its own CSRF token in a strict cookie and in a field.
    let form = browser.send(Method::GET, "/portal/login", &[], None).await;
    assert_eq!(form.status, 200);
    assert_locked_down(&form);
    let (login_cookie, attributes) = form.set_cookie("tenancy_portal_login").expect("a cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"));
    assert_eq!(form.csrf_field(), login_cookie);
    assert!(
        form.html.contains("<label for=\"email\">"),
        "labelled inputs"
    );

    // Without the token, or with another, a sign-in is refused and no session is made.
    for csrf in ["", "forged"] {
        let page = browser
            .send(
                Method::POST,
                "/portal/login",
                &[("tenancy_portal_login", &login_cookie)],
                Some(&[
                    ("email", ADMIN_EMAIL),
                    ("password", ADMIN_PASSWORD),
                    ("_csrf", csrf),
                ]),
            )
            .await;
        assert_eq!(page.status, 403, "{}", page.html);
        assert!(page.set_cookie("tenancy_portal").is_none());
    }

    // A wrong password: the form again, with the error, never a stack trace.
    let page = browser.sign_in("not the password").await;
    assert_eq!(page.status, 401);
    assert!(
        page.html.contains("role=\"alert\"") && page.html.contains("e-mail or password is wrong"),
        "{}",
        page.html
    );
    for leak in ["panicked", "sqlx", "stack", "RUST_BACKTRACE"] {
        assert!(!page.html.contains(leak), "{leak} in {}", page.html);
    }
    assert!(page.set_cookie("tenancy_portal").is_none());

    // The right one: a session cookie, strict, and the tenants page.
    let page = browser.sign_in(ADMIN_PASSWORD).await;
    assert_eq!(page.status, 303, "{}", page.html);
    assert_eq!(page.location(), "/portal/tenants");
    let (session, attributes) = page.set_cookie("tenancy_portal").expect("a session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/portal"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    let cookies = [("tenancy_portal", session.as_str())];
    let tenants = browser
        .send(Method::GET, "/portal/tenants", &cookies, None)
        .await;
    assert_eq!(tenants.status, 200);
    assert_locked_down(&tenants);
    assert!(tenants.html.contains("acme") && tenants.html.contains(ADMIN_EMAIL));
    assert!(tenants.html.contains("status-active"), "{}", tenants.html);
    // Nothing on the page comes from another origin.
    for external in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!tenants.html.contains(external), "{external}");
    }
    let csrf = tenants.csrf_field();
    assert!(
        tenants
            .html
            .contains(&format!("\"X-CSRF-Token\": \"{csrf}\""))
    );
    let filtered = browser
        .send(
            Method::GET,
            "/portal/tenants?status=suspended",
            &cookies,
            None,
        )
        .await;
    assert!(!filtered.html.contains(">acme<"), "{}", filtered.html);

    // Creating a tenant: each problem next to its field, the password never echoed.
    let new = browser
        .send(Method::GET, "/portal/tenants/new", &cookies, None)
        .await;
    assert_eq!(new.status, 200);
    for field in ["slug", "name", "plan", "admin_email", "admin_password"] {
        assert!(
            new.html.contains(&format!("<label for=\"{field}\">")),
            "{field}"
        );
    }
    let create = async |slug: &str, password: &str, csrf: &str| {
        browser
            .send(
                Method::POST,
                "/portal/tenants/new",
                &cookies,
                Some(&[
                    ("_csrf", csrf),
                    ("slug", slug),
                    ("name", "Globex Corporation"),
                    ("plan", "standard"),
                    ("admin_email", "owner@globex.example"),
                    ("admin_password", password),
                ]),
            )
            .await
    };
    let refused = create("globex", "a long enough password", "forged").await;
    assert_eq!(refused.status, 403);
    let (status, _) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(status, 404, "nothing was created");
    for (slug, password, status, field) in [
        ("Bad Slug!", "a long enough password", 422, "slug"),
        ("acme", "a long enough password", 409, "slug"),
        ("globex", "short", 422, "admin_password"),
    ] {
        let page = create(slug, password, &csrf).await;
        assert_eq!(page.status, status, "{slug}: {}", page.html);
        assert!(
            page.html.contains(&format!("id=\"{field}-error\""))
                && page
                    .html
                    .contains(&format!("aria-describedby=\"{field}-error\"")),
            "{slug}: the error is next to {field}: {}",
            page.html
        );
        assert!(page.html.contains("value=\"Globex Corporation\""), "kept");
        assert!(
            page.html
                .contains("name=\"admin_password\" type=\"password\" value=\"\""),
            "the password is not sent back"
        );
    }
    let created = create("globex", "a long enough password", &csrf).await;
    assert_eq!(created.status, 303, "{}", created.html);
    assert_eq!(created.location(), "/portal/tenants/globex");
    let detail = browser
        .send(Method::GET, "/portal/tenants/globex", &cookies, None)
        .await;
    assert_eq!(detail.status, 200);
    assert!(detail.html.contains("status-active"), "{}", detail.html);

    // Suspend and resume: only with the session's token.
    let suspend = async |csrf: &str| {
        browser
            .send(
                Method::POST,
                "/portal/tenants/globex/suspend",
                &cookies,
                Some(&[("_csrf", csrf)]),
            )
            .await
    };
    assert_eq!(suspend("forged").await.status, 403);
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["status"], "active", "nothing changed");
    let done = suspend(&csrf).await;
    assert_eq!(done.status, 303);
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["status"], "suspended");
    let detail = browser
        .send(Method::GET, "/portal/tenants/globex", &cookies, None)
        .await;
    assert!(detail.html.contains("status-suspended") && detail.html.contains("Resume"));
    let resumed = browser
        .send(
            Method::POST,
            "/portal/tenants/globex/resume",
            &cookies,
            Some(&[("_csrf", &csrf)]),
        )
        .await;
    assert_eq!(resumed.status, 303);
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["status"], "active");
    // A plan change shows the limits before and after, and changes only when confirmed.
    let plan = async |fields: &[(&str, &str)]| {
        browser
            .send(
                Method::POST,
                "/portal/tenants/globex/plan",
                &cookies,
                Some(fields),
            )
            .await
    };
    let review = plan(&[("_csrf", &csrf), ("plan", "enterprise")]).await;
    assert_eq!(review.status, 200, "{}", review.html);
    assert!(
        review.html.contains("<td>6000</td><td>60000</td>"),
        "requests per minute, before and after: {}",
        review.html
    );
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["plan"], "standard", "not before it is confirmed");
    assert_eq!(
        plan(&[
            ("_csrf", "forged"),
            ("plan", "enterprise"),
            ("confirm", "yes")
        ])
        .await
        .status,
        403
    );
    let changed = plan(&[("_csrf", &csrf), ("plan", "enterprise"), ("confirm", "yes")]).await;
    assert_eq!(changed.status, 303);
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["plan"], "enterprise");

    // Deleting needs the slug typed exactly, and a final backup unless waived.
    let delete = async |fields: &[(&str, &str)]| {
        browser
            .send(
                Method::POST,
                "/portal/tenants/globex/delete",
                &cookies,
                Some(fields),
            )
            .await
    };
    let wrong = delete(&[("_csrf", &csrf), ("confirm", "globe")]).await;
    assert_eq!(wrong.status, 422);
    assert!(
        wrong.html.contains("id=\"confirm-slug-error\""),
        "{}",
        wrong.html
    );
    let no_backups = delete(&[("_csrf", &csrf), ("confirm", "globex")]).await;
    assert_eq!(no_backups.status, 409);
    assert!(
        no_backups.html.contains("backups are not configured"),
        "{}",
        no_backups.html
    );
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert_eq!(tenant["status"], "active", "nothing changed");
    let deleted = delete(&[
        ("_csrf", &csrf),
        ("confirm", "globex"),
        ("skip_final_backup", "yes"),
    ])
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.html);
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/globex", Some(&admin), None)
        .await;
    assert!(
        tenant["status"] == "deleting" || tenant["status"] == "deleted",
        "{tenant}"
    );
    // The waiver is the admin's, on the record: the portal drops nothing the API would not.
    assert_eq!(tenant["final_backup_waived"], true, "{tenant}");
    // The fleet pages: plans with their limits, servers with their headroom, the audit
    // log with what was just done, as whom.
    let plans = browser
        .send(Method::GET, "/portal/plans", &cookies, None)
        .await;
    assert_eq!(plans.status, 200);
    assert!(plans.html.contains("enterprise") && plans.html.contains("<td>60000</td>"));
    let servers = browser
        .send(Method::GET, "/portal/servers", &cookies, None)
        .await;
    assert_eq!(servers.status, 200);
    assert!(servers.html.contains(">main<"), "{}", servers.html);
    assert!(servers.html.contains("/ 50"), "{}", servers.html);
    let audit = browser
        .send(Method::GET, "/portal/audit", &cookies, None)
        .await;
    assert_eq!(audit.status, 200);
    for action in [
        "tenant.create",
        "tenant.suspend",
        "tenant.update",
        "tenant.delete",
    ] {
        assert!(audit.html.contains(action), "{action}: {}", audit.html);
    }
    assert!(audit.html.contains(ADMIN_EMAIL));
    let older = browser
        .send(Method::GET, "/portal/audit?before=1", &cookies, None)
        .await;
    assert!(older.html.contains("Nothing recorded"), "{}", older.html);

    let missing = browser
        .send(
            Method::GET,
            "/portal/tenants/no-such-tenant",
            &cookies,
            None,
        )
        .await;
    assert_eq!(missing.status, 404);

    // Search by slug or name.
    for (q, found) in [
        ("glob", true),
        ("GLOBEX CORP", true),
        ("acme", false),
        ("%", false),
    ] {
        let page = browser
            .send(
                Method::GET,
                &format!(
                    "/portal/tenants?q={}",
                    q.replace(' ', "+").replace('%', "%25")
                ),
                &cookies,
                None,
            )
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(page.html.contains(">globex<"), found, "q={q}");
    }
    let (status, page) = app
        .call(Method::GET, "/v1/tenants?q=acm", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");

    // Its assets are its own.
    let script = browser
        .send(Method::GET, "/portal/assets/htmx-2.0.11.min.js", &[], None)
        .await;
    assert_eq!(script.status, 200);
    assert!(script.html.starts_with("var htmx="));
    let missing = browser
        .send(Method::GET, "/portal/assets/other.js", &[], None)
        .await;
    assert_eq!(missing.status, 404);

    // Signing out needs the session's CSRF token: without it nothing changes.
    for form in [&[][..], &[("_csrf", "forged")][..]] {
        let page = browser
            .send(Method::POST, "/portal/logout", &cookies, Some(form))
            .await;
        assert_eq!(page.status, 403);
        let still = browser
            .send(Method::GET, "/portal/tenants", &cookies, None)
            .await;
        assert_eq!(still.status, 200, "the session goes on");
    }
    let page = browser
        .send(
            Method::POST,
            "/portal/logout",
            &cookies,
            Some(&[("_csrf", &csrf)]),
        )
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/portal/login");
    let after = browser
        .send(Method::GET, "/portal/tenants", &cookies, None)
        .await;
    assert!(after.status.is_redirection(), "the cookie stopped working");
    assert_eq!(after.location(), "/portal/login");

    // Disabling the admin ends its sessions at once; htmx is told where to go.
    let page = browser.sign_in(ADMIN_PASSWORD).await;
    let (session, _) = page.set_cookie("tenancy_portal").expect("a session");
    let cookies = [("tenancy_portal", session.as_str())];
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    sqlx::query("UPDATE admin_users SET disabled_at = now() WHERE email = $1")
        .bind(ADMIN_EMAIL)
        .execute(&mut catalog)
        .await
        .expect("disable the admin");
    let page = browser
        .send(Method::GET, "/portal/tenants", &cookies, None)
        .await;
    assert_eq!(page.location(), "/portal/login");
    let response = browser
        .client
        .get(format!("{}/portal/tenants", browser.base))
        .header("cookie", format!("tenancy_portal={session}"))
        .header("hx-request", "true")
        .send()
        .await
        .expect("send");
    assert_eq!(
        response
            .headers()
            .get("hx-redirect")
            .and_then(|value| value.to_str().ok()),
        Some("/portal/login")
    );
}

/// Signs in; the session cookie and its CSRF token.
async fn session_of(browser: &Browser) -> (String, String) {
    let page = browser.sign_in(ADMIN_PASSWORD).await;
    let (session, _) = page.set_cookie("tenancy_portal").expect("a session");
    let cookies = [("tenancy_portal", session.as_str())];
    let tenants = browser
        .send(Method::GET, "/portal/tenants", &cookies, None)
        .await;
    let csrf = tenants.csrf_field();
    (session, csrf)
}

/// How many times `needle` occurs in `html`.
fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[tokio::test]
async fn the_portal_shows_figures_and_every_form_checks_its_input() {
    let app = ControlPlane::start().await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 50)
        .await;
    let (status, body) = app.create_tenant(&admin, "acme").await;
    assert_eq!(status, 201, "{body}");
    let router = app.start_router(&[("TENANCY_USAGE_FLUSH", "200ms")]).await;
    let browser = Browser::new(&app);
    let (session, csrf) = session_of(&browser).await;
    let cookies = [("tenancy_portal", session.as_str())];
    let get = async |path: &str| browser.send(Method::GET, path, &cookies, None).await;
    let post = async |path: &str, form: &[(&str, &str)]| {
        browser.send(Method::POST, path, &cookies, Some(form)).await
    };

    // The tenants table: users (reported by the router after a change), storage against
    // the plan's limit, requests today, the last backup.
    let page = get("/portal/tenants").await;
    assert!(page.html.contains("1 / "), "the first admin: {}", page.html);
    assert!(page.html.contains(">never<"), "no backup yet");
    let token = app
        .tenant_token(&admin, "acme", &["users.write", "customers.read"])
        .await;
    let (status, user) = router
        .call(
            Method::POST,
            "/v1/users",
            Some(&token),
            Some(serde_json::json!({
                "email": "clerk@acme.example",
                "password": "a long enough password",
            })),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    for _ in 0..3 {
        let (status, _) = router
            .call(Method::GET, "/v1/customers", Some(&token), None)
            .await;
        assert_eq!(status, 200);
    }
    tenancy_tests::eventually(
        std::time::Duration::from_secs(10),
        "the router's figures in the table",
        || async {
            let page = get("/portal/tenants").await;
            page.html.contains("2 / ") && page.html.contains("<td class=\"num\">4</td>")
        },
    )
    .await;
    // Filtered by server.
    assert!(
        get("/portal/tenants?server=main")
            .await
            .html
            .contains(">acme<")
    );
    assert!(
        !get("/portal/tenants?server=other")
            .await
            .html
            .contains(">acme<")
    );
    let (status, listed) = app
        .call(Method::GET, "/v1/tenants?server=other", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"], serde_json::json!([]));

    // Daily size samples: the sampling job adds today's and forgets only those past 90
    // days (rows this platform wrote; nothing else is touched).
    let (_, tenant) = app.tenant(&admin, "acme").await;
    let tenant_id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    sqlx::query(
        "INSERT INTO usage_storage (tenant_id, day, bytes) VALUES \
         ($1, current_date - 100, 1000), ($1, current_date - 10, 2000)",
    )
    .bind(tenant_id)
    .execute(&mut catalog)
    .await
    .expect("old samples");
    tenancy_tests::eventually(
        std::time::Duration::from_secs(10),
        "today sampled, the 100-day-old sample forgotten",
        || async {
            let days: Vec<i32> = sqlx::query_scalar(
                "SELECT (current_date - day)::int FROM usage_storage WHERE tenant_id = $1 ORDER BY day",
            )
            .bind(tenant_id)
            .fetch_all(&mut tenancy_tests::connect(&app.database_url).await)
            .await
            .expect("samples");
            days == vec![10, 0]
        },
    )
    .await;

    // A tenant's page: two charts (a bar per hour of the week, per day of the month), the
    // requests counted, its recent admin actions.
    let detail = get("/portal/tenants/acme").await;
    assert_eq!(detail.status, 200);
    assert_eq!(count(&detail.html, "<svg class=\"chart\""), 2);
    assert_eq!(count(&detail.html, "<rect class=\"bar\""), 168 + 30);
    assert!(
        detail.html.contains("4 requests in the last 7 days"),
        "{}",
        detail.html
    );
    assert!(detail.html.contains("<code>tenant.create</code>"));

    // A service token: scopes required, CSRF required, shown once, works at the router.
    let tokens = "/portal/tenants/acme/tokens";
    let none = post(tokens, &[("_csrf", &csrf), ("ttl", "3600")]).await;
    assert_eq!(none.status, 422);
    assert!(none.html.contains("id=\"token-error\""), "{}", none.html);
    let forged = post(tokens, &[("_csrf", "forged"), ("scope", "customers.read")]).await;
    assert_eq!(forged.status, 403);
    let minted = post(
        tokens,
        &[
            ("_csrf", &csrf),
            ("scope", "customers.read"),
            ("scope", "orders.read"),
            ("ttl", "86400"),
        ],
    )
    .await;
    assert_eq!(minted.status, 201, "{}", minted.html);
    assert_eq!(
        minted
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let shown = minted
        .html
        .split("readonly rows=\"6\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the token on the page")
        .to_owned();
    assert!(minted.html.contains("customers.read, orders.read"));
    let (status, _) = router
        .call(Method::GET, "/v1/customers", Some(&shown), None)
        .await;
    assert_eq!(status, 200, "the minted token works");
    assert!(
        !get("/portal/tenants/acme").await.html.contains(&shown),
        "shown once"
    );

    // Backups without a store: said on the page, nothing recorded.
    let backup = post("/portal/tenants/acme/backups", &[("_csrf", &csrf)]).await;
    assert_eq!(backup.status, 409);
    assert!(
        backup.html.contains("id=\"backup-error\"")
            && backup.html.contains("backups are not configured"),
        "{}",
        backup.html
    );
    assert_eq!(post("/portal/tenants/acme/backups", &[]).await.status, 403);
    // A restore needs the slug typed and one of the tenant's complete backups.
    let restore = "/portal/tenants/acme/restore";
    let mistyped = post(
        restore,
        &[("_csrf", &csrf), ("confirm", "acm"), ("backup", "x")],
    )
    .await;
    assert_eq!(mistyped.status, 422);
    assert!(mistyped.html.contains("id=\"restore-error\""));
    let unknown = post(
        restore,
        &[
            ("_csrf", &csrf),
            ("confirm", "acme"),
            ("backup", "00000000-0000-0000-0000-000000000000"),
        ],
    )
    .await;
    assert_eq!(unknown.status, 422);
    assert!(
        unknown.html.contains("complete backups"),
        "{}",
        unknown.html
    );
    let (_, tenant) = app
        .call(Method::GET, "/v1/tenants/acme", Some(&admin), None)
        .await;
    assert_eq!(tenant["status"], "active", "nothing changed");

    // A plan's edit form: every field labelled; a bad value is named next to its field and
    // changes nothing; a good one applies, on the record.
    let edit = get("/portal/plans/standard").await;
    assert_eq!(edit.status, 200);
    for field in ["display_name", "max_users", "max_storage_mb", "trial_days"] {
        assert!(
            edit.html.contains(&format!("<label for=\"{field}\">")),
            "{field}"
        );
    }
    let plan_form = |max_users: &'static str, csrf: &str| {
        vec![
            ("_csrf".to_owned(), csrf.to_owned()),
            ("display_name".to_owned(), "Standard".to_owned()),
            ("max_users".to_owned(), max_users.to_owned()),
            ("max_storage_mb".to_owned(), "10240".to_owned()),
            ("requests_per_minute".to_owned(), "6000".to_owned()),
            ("max_connections".to_owned(), "10".to_owned()),
            ("statement_timeout_ms".to_owned(), "30000".to_owned()),
            ("backup_retention_days".to_owned(), "30".to_owned()),
            ("backup_interval_hours".to_owned(), "24".to_owned()),
            ("trial_days".to_owned(), String::new()),
        ]
    };
    let send_plan = async |max_users: &'static str, csrf: &str| {
        let form = plan_form(max_users, csrf);
        let form: Vec<(&str, &str)> = form
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        post("/portal/plans/standard", &form).await
    };
    for bad in ["ten", "0"] {
        let page = send_plan(bad, &csrf).await;
        assert_eq!(page.status, 422, "{bad}: {}", page.html);
        assert!(
            page.html.contains("id=\"max_users-error\"")
                && page.html.contains("aria-describedby=\"max_users-error\""),
            "{bad}: {}",
            page.html
        );
        assert!(page.html.contains(&format!("value=\"{bad}\"")), "kept");
    }
    assert_eq!(send_plan("321", "forged").await.status, 403);
    let (_, plans) = app.call(Method::GET, "/v1/plans", Some(&admin), None).await;
    let standard = |plans: &serde_json::Value| {
        plans["items"]
            .as_array()
            .and_then(|items| items.iter().find(|plan| plan["name"] == "standard"))
            .map(|plan| plan["limits"]["max_users"].clone())
    };
    let before = standard(&plans);
    assert_ne!(before, Some(serde_json::json!(321)));
    let saved = send_plan("321", &csrf).await;
    assert_eq!(saved.status, 303, "{}", saved.html);
    let (_, plans) = app.call(Method::GET, "/v1/plans", Some(&admin), None).await;
    assert_eq!(standard(&plans), Some(serde_json::json!(321)));
    assert!(get("/portal/plans").await.html.contains("<td>321</td>"));

    // Registering a server: each problem next to its field; one that does not answer is
    // refused, with the reason; forged, nothing.
    let register = |port: &str, csrf: &str| {
        vec![
            ("_csrf", csrf.to_owned()),
            ("name", "second".to_owned()),
            ("host", "127.0.0.1".to_owned()),
            ("port", port.to_owned()),
            ("admin_user", "postgres".to_owned()),
            ("admin_password", "whatever".to_owned()),
            ("max_tenants", "100".to_owned()),
            ("connection_budget", "50".to_owned()),
        ]
    };
    let send_server = async |port: &str, csrf: &str| {
        let form = register(port, csrf);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post("/portal/servers", &form).await
    };
    let bad_port = send_server("port", &csrf).await;
    assert_eq!(bad_port.status, 422);
    assert!(
        bad_port.html.contains("id=\"port-error\""),
        "{}",
        bad_port.html
    );
    assert!(
        bad_port
            .html
            .contains("name=\"admin_password\" type=\"password\" value=\"\""),
        "the password is not sent back"
    );
    let closed = tenancy_tests::free_port().to_string();
    let silent = send_server(&closed, &csrf).await;
    assert_eq!(silent.status, 422, "{}", silent.html);
    assert!(silent.html.contains("role=\"alert\""), "{}", silent.html);
    assert_eq!(send_server(&closed, "forged").await.status, 403);
    let servers = get("/portal/servers").await;
    assert!(!servers.html.contains(">second<"), "nothing registered");
    let reachable = get("/portal/servers/main/reachable").await;
    assert!(reachable.html.contains("answers"), "{}", reachable.html);
    assert_eq!(get("/portal/servers/nope/reachable").await.status, 404);

    // Migrations: every tenant current; backups: none yet.
    let migrations = get("/portal/migrations").await;
    assert_eq!(migrations.status, 200);
    assert!(
        migrations
            .html
            .contains("<dt>Current</dt><dd class=\"status-active\">1</dd>"),
        "{}",
        migrations.html
    );
    assert!(migrations.html.contains("No failures."));
    let backups = get("/portal/backups").await;
    assert_eq!(backups.status, 200);
    assert!(backups.html.contains("No backups yet."));

    // The audit log, filtered by tenant and by action.
    let of_tenant = get("/portal/audit?tenant=acme").await;
    assert!(of_tenant.html.contains("tenant.create") && of_tenant.html.contains("tenant.token"));
    assert!(
        !of_tenant.html.contains("plan.update"),
        "{}",
        of_tenant.html
    );
    let of_plans = get("/portal/audit?action=plan.").await;
    assert!(of_plans.html.contains("plan.update"));
    assert!(
        !of_plans.html.contains("tenant.create"),
        "{}",
        of_plans.html
    );
    let nobody = get("/portal/audit?actor=nobody%40example.com").await;
    assert!(nobody.html.contains("Nothing recorded matches."));
}
