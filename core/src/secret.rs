//! Secrets from configuration: given inline (an environment variable) or as a file path.
//! Values stay wrapped in `SecretString` so that `Debug` and logs never show them.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{name} is given both inline and as a file; give one")]
    Both { name: &'static str },
    #[error("read {name} from {path}: {source}")]
    Read {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} in {path} is empty")]
    Empty { name: &'static str, path: PathBuf },
}

/// Picks the inline value or reads the file (trailing newlines trimmed). `None` when
/// neither is given.
pub fn load_secret(
    name: &'static str,
    inline: Option<SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, SecretError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { name }),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let contents = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
                name,
                path: path.to_path_buf(),
                source,
            })?;
            let trimmed = contents.trim_end_matches(['\n', '\r']);
            if trimmed.trim().is_empty() {
                return Err(SecretError::Empty {
                    name,
                    path: path.to_path_buf(),
                });
            }
            Ok(Some(SecretString::from(trimmed.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// A clap value parser that wraps the value at once.
pub fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}
