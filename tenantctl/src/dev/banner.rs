//! The banner `tenantctl dev` prints: URLs, credentials, tokens and curl lines to copy.

use std::path::Path;

use tenancy_infra::S3Credentials;

use super::{BACKUP_BUCKET, DemoTenant};

pub(super) struct Banner<'a> {
    pub(super) data_dir: &'a Path,
    pub(super) reused: bool,
    pub(super) control_url: &'a str,
    pub(super) router_url: &'a str,
    pub(super) catalog_url: Option<&'a str>,
    pub(super) s3_endpoint: &'a str,
    pub(super) s3_credentials: Option<&'a S3Credentials>,
    pub(super) admin_email: &'a str,
    pub(super) admin_password: Option<&'a str>,
    pub(super) token: &'a str,
    pub(super) demo: Option<&'a DemoTenant>,
    pub(super) demo_token: Option<&'a str>,
}

pub(super) fn print_banner(banner: &Banner<'_>) {
    use std::fmt::Write;
    let state = if banner.reused {
        "reused from an earlier run"
    } else {
        "created"
    };
    let password = banner
        .admin_password
        .unwrap_or("(set before; not known to dev)");
    let cp = banner.control_url;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\ntenancy dev platform is up. Data: {} ({state})\n",
        banner.data_dir.display()
    );
    let _ = writeln!(text, "control plane:  {cp}");
    let _ = writeln!(
        text,
        "portal:         {cp}/portal (sign in as the super-admin)"
    );
    let _ = writeln!(text, "tenant router:  {}", banner.router_url);
    if let Some(url) = banner.catalog_url {
        let _ = writeln!(text, "catalog:        {url}");
    }
    let _ = writeln!(
        text,
        "s3 endpoint:    {}   bucket {BACKUP_BUCKET}",
        banner.s3_endpoint
    );
    if let Some(credentials) = banner.s3_credentials {
        let _ = writeln!(
            text,
            "s3 keys:        {} / {}",
            credentials.access_key, credentials.secret_key
        );
    }
    let _ = writeln!(text, "super-admin:    {} / {password}", banner.admin_email);
    let _ = writeln!(text, "\nTry:");
    let _ = writeln!(text, "  curl -s {cp}/healthz");
    let _ = writeln!(
        text,
        "  curl -s -X POST {cp}/v1/auth/login -H 'content-type: application/json' \\\n       \
         -d '{{\"email\":\"{}\",\"password\":\"{password}\"}}'",
        banner.admin_email
    );
    let _ = writeln!(
        text,
        "  export TOKEN={}   # an admin token, valid for an hour",
        banner.token
    );
    let _ = writeln!(
        text,
        "  curl -s {cp}/v1/plans -H \"authorization: Bearer $TOKEN\""
    );
    let _ = writeln!(
        text,
        "  curl -s -X PATCH {cp}/v1/plans/trial -H \"authorization: Bearer $TOKEN\" \\\n       \
         -H 'content-type: application/json' -d '{{\"limits\":{{\"max_users\":10}}}}'"
    );
    let _ = writeln!(
        text,
        "  curl -s {cp}/v1/audit-log -H \"authorization: Bearer $TOKEN\""
    );
    if let Some(demo) = banner.demo {
        let _ = writeln!(
            text,
            "\ndemo tenant:    {} (database {}), first admin {} / {}",
            demo.slug,
            demo.database,
            demo.admin_email,
            demo.admin_password
                .as_deref()
                .unwrap_or("(set before; not known to dev)")
        );
        let _ = writeln!(
            text,
            "  curl -s {cp}/v1/tenants/{} -H \"authorization: Bearer $TOKEN\"",
            demo.slug
        );
    }
    if let Some(token) = banner.demo_token {
        let router = banner.router_url;
        let _ = writeln!(text, "\nThe demo tenant's app, through the router:");
        let _ = writeln!(
            text,
            "  export TENANT_TOKEN={token}   # a service token with every scope, valid for a day"
        );
        let _ = writeln!(
            text,
            "  curl -s -X POST {router}/v1/customers -H \"authorization: Bearer $TENANT_TOKEN\" \\\n       \
             -H 'content-type: application/json' -d '{{\"code\":\"C-001\",\"name\":\"First Customer\"}}'"
        );
        let _ = writeln!(
            text,
            "  curl -s {router}/v1/customers -H \"authorization: Bearer $TENANT_TOKEN\""
        );
    }
    if let Some(demo) = banner.demo
        && let Some(password) = &demo.admin_password
    {
        let router = banner.router_url;
        let credentials = serde_json::json!({ "email": demo.admin_email, "password": password });
        let _ = writeln!(
            text,
            "\nThe demo tenant's users sign in through the router (tokens for 60 min, refresh for 7 days):"
        );
        let _ = writeln!(
            text,
            "  curl -s -X POST {router}/v1/auth/login -H 'x-tenant: {}' -H 'content-type: application/json' -d '{credentials}'",
            demo.slug
        );
        let _ = writeln!(
            text,
            "  export USER_TOKEN=...   # the access_token of the answer; its refresh_token goes to {router}/v1/auth/refresh"
        );
        let _ = writeln!(
            text,
            "  curl -s {router}/v1/auth/me -H \"authorization: Bearer $USER_TOKEN\""
        );
        let _ = writeln!(
            text,
            "  curl -s -N {router}/v1/events -H \"authorization: Bearer $USER_TOKEN\"   # live permission changes"
        );
    }
    let _ = writeln!(
        text,
        "\nCtrl-C stops everything; the next run reuses the data."
    );
    say(&text);
}

/// Prints to stdout; a closed stdout (the reader went away) is not a reason to fail.
pub(super) fn say(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}
