//! Where the server binaries are.

use super::*;

/// Where the server binaries (`initdb`, `postgres`, `pg_isready`, `pg_dump`, ...) live.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: in `TENANCY_PG_BIN_DIR` when it is set (and only there), else
    /// in the newest `/usr/lib/postgresql/*/bin`, else in a directory on `PATH`.
    pub fn locate() -> Result<Self, PostgresError> {
        if let Some(dir) = std::env::var_os("TENANCY_PG_BIN_DIR") {
            return Self::locate_in(&[PathBuf::from(dir)]);
        }
        let mut candidates = Vec::new();
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .collect();
            versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
            candidates.extend(versions.into_iter().map(|(_, dir)| dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        Self::locate_in(&candidates)
    }

    /// The first of `candidates` that holds `postgres` and `initdb`.
    pub fn locate_in(candidates: &[PathBuf]) -> Result<Self, PostgresError> {
        candidates
            .iter()
            .find(|dir| has_server(dir))
            .map(|dir| Self { dir: dir.clone() })
            .ok_or_else(|| PostgresError::BinariesNotFound {
                searched: if candidates.is_empty() {
                    "nowhere".to_owned()
                } else {
                    candidates
                        .iter()
                        .map(|dir| dir.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The path of one of the binaries, e.g. `pg_dump`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}
