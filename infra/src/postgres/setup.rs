//! The steps around the server process: the user it runs as, `initdb`, a stale server
//! stopped, the process spawned, its log read.

use super::*;

/// The unprivileged user to run the server as, when this process is root.
pub(super) fn service_user() -> Result<Option<User>, PostgresError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let name = std::env::var("TENANCY_PG_SERVICE_USER").unwrap_or_else(|_| "postgres".to_owned());
    match User::from_name(&name) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(PostgresError::NoServiceUser(name)),
    }
}

pub(super) fn absolute(path: &Path) -> Result<PathBuf, PostgresError> {
    std::path::absolute(path).map_err(io_error(format!("resolve {}", path.display())))
}

/// Runs `initdb` into `data_dir` and returns the generated superuser password.
pub(super) fn init_cluster(
    binaries: &PgBinaries,
    data_dir: &Path,
    service_user: Option<&User>,
) -> Result<String, PostgresError> {
    fs::create_dir_all(data_dir).map_err(io_error(format!("create {}", data_dir.display())))?;
    if let Some(user) = service_user {
        check_reachable(data_dir, user)?;
        chown(data_dir, Some(user.uid), Some(user.gid)).map_err(|errno| PostgresError::Io {
            action: format!("hand {} to the postgres user", data_dir.display()),
            source: errno.into(),
        })?;
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error(format!("restrict {}", data_dir.display())))?;

    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    // initdb reads the password from a file; give it one only the server user can read and
    // remove it right after.
    let password_file = data_dir.join(PASSWORD_FILE);
    fs::write(&password_file, format!("{password}\n"))
        .map_err(io_error("write the superuser password file"))?;
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
        .map_err(io_error("restrict the superuser password file"))?;
    if let Some(user) = service_user {
        chown(&password_file, Some(user.uid), Some(user.gid)).map_err(|errno| {
            PostgresError::Io {
                action: "hand the password file to the postgres user".to_owned(),
                source: errno.into(),
            }
        })?;
    }
    // initdb wants an empty directory, so it runs in a fresh subdirectory that is then
    // moved into place.
    let staging = data_dir.join("initdb");
    let mut command = Command::new(binaries.path("initdb"));
    command
        .arg("-D")
        .arg(&staging)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ])
        .arg(format!("--pwfile={}", password_file.display()));
    run_as(&mut command, service_user);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error("run initdb"))?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(PostgresError::Command {
            command: "initdb".to_owned(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    for entry in fs::read_dir(&staging).map_err(io_error("read the new cluster"))? {
        let entry = entry.map_err(io_error("read the new cluster"))?;
        fs::rename(entry.path(), data_dir.join(entry.file_name()))
            .map_err(io_error("move the new cluster into place"))?;
    }
    fs::remove_dir(&staging).map_err(io_error("remove initdb's staging directory"))?;
    Ok(password)
}

/// Fails with a clear message when a directory above `path` keeps the service user out.
pub(super) fn check_reachable(path: &Path, user: &User) -> Result<(), PostgresError> {
    for ancestor in path.ancestors().skip(1) {
        let Ok(metadata) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.mode();
        let traversable = mode & 0o001 != 0
            || (metadata.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (metadata.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !traversable {
            return Err(PostgresError::Unreachable(ancestor.to_path_buf()));
        }
    }
    Ok(())
}

pub(super) fn run_as(command: &mut Command, user: Option<&User>) {
    if let Some(user) = user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        command.env("HOME", &user.dir).env("USER", &user.name);
    }
}

/// A server left running by an earlier owner that died (say, a killed `tenantctl dev`)
/// still holds the data directory; stop it so this one can start.
pub(super) fn stop_stale_server(data_dir: &Path) -> Result<(), PostgresError> {
    let Ok(contents) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = contents
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    if !is_alive(pid) {
        return Ok(()); // Stale lock file: the server is gone; PostgreSQL removes the file.
    }
    tracing::warn!(
        pid = pid.as_raw(),
        "stopping a PostgreSQL server left running on this data directory"
    );
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_alive(pid) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGQUIT);
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether a process exists and is not a zombie waiting to be reaped.
pub(super) fn is_alive(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

pub(super) fn spawn_server(
    binaries: &PgBinaries,
    data_dir: &Path,
    port: u16,
    options: &PostgresOptions,
    service_user: Option<&User>,
) -> Result<Child, PostgresError> {
    let log_path = data_dir.join(LOG_FILE);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(format!("open {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io_error("open the server log"))?;
    let mut command = Command::new(binaries.path("postgres"));
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args([
            "-c",
            &format!("max_connections={}", options.max_connections),
        ]);
    if !options.durable {
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ] {
            command.args(["-c", setting]);
        }
    }
    for (name, value) in &options.settings {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    run_as(&mut command, service_user);
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io_error("start postgres"))
}

/// The last lines of the server's log, for error messages.
pub(super) fn log_tail(data_dir: &Path) -> String {
    let Ok(mut file) = fs::File::open(data_dir.join(LOG_FILE)) else {
        return String::from("(no log)");
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(4096)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    let lines: Vec<&str> = tail.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
