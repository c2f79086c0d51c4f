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
