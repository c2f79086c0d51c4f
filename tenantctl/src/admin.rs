//! `tenantctl admin create`: the first (or another) super-admin, written straight to the
//! catalog, with the password read from stdin or a prompt, never from the command line.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use catalog::audit::Actor;
use tenancy_core::{AdminId, Email};

use crate::CatalogArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a super-admin. The password is read from stdin when it is not a terminal,
    /// otherwise prompted for twice.
    Create {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// The admin's e-mail address (the login name).
        #[arg(long)]
        email: String,
    },
}

pub async fn run(command: AdminCommand, json: bool) -> anyhow::Result<()> {
    match command {
        AdminCommand::Create { catalog, email } => {
            let email: Email = email
                .parse()
                .map_err(|error: tenancy_core::IdError| anyhow::anyhow!(error.0))?;
            let password = read_password()?;
            let options = catalog.connect_options()?;
            let pool = catalog::connect(options, 2)
                .await
                .context("connect to the catalog database")?;
            catalog::migrate(&pool)
                .await
                .context("apply the catalog migrations")?;
            let id = create_admin(&pool, &email, &password, &operator()).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id, "email": email }));
            } else {
                println!("created super-admin {email} ({id})");
            }
            Ok(())
        }
    }
}

/// Creates a super-admin through the operations library (hash, insert, audit entry).
pub async fn create_admin(
    pool: &sqlx::PgPool,
    email: &Email,
    password: &str,
    actor: &Actor,
) -> anyhow::Result<AdminId> {
    Ok(provisioner::admins::create(pool, email, password, actor).await?)
}

/// The operator running this command, for the audit log.
pub fn operator() -> Actor {
    let uid = nix::unistd::Uid::current();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name);
    Actor {
        id: None,
        name: format!("tenantctl:{user}"),
    }
}

pub fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            bail!("the passwords do not match");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("read the password from stdin")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("no password on stdin");
        }
        Ok(password)
    }
}
