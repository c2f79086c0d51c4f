//! An embedded S3-compatible endpoint on loopback, backed by a local directory.
//!
//! It is `s3s-fs` served over real HTTP/1.1 by hyper, with signature-v4 authentication, so
//! clients (aws-sdk-s3, the AWS CLI) talk to it exactly as they would to a remote store.
//! Buckets are directories under the root. `ListMultipartUploads` is not implemented by
//! s3s-fs; [`EmbeddedS3::pending_multipart_uploads`] inspects the directory instead.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("set up the S3 file store in {path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// The access key pair clients sign their requests with.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// A running embedded S3 endpoint. Dropping it stops serving.
#[derive(Debug)]
pub struct EmbeddedS3 {
    address: SocketAddr,
    root: PathBuf,
    credentials: S3Credentials,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Serves the directory `root` (created if missing) on `127.0.0.1:port` (0: a free port).
    pub async fn start(
        root: impl Into<PathBuf>,
        port: u16,
        credentials: S3Credentials,
    ) -> Result<Self, S3Error> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|source| S3Error::Io {
                action: format!("create {}", root.display()),
                source,
            })?;
        let store = s3s_fs::FileSystem::new(&root).map_err(|error| S3Error::Store {
            path: root.clone(),
            message: format!("{error:?}"),
        })?;
        let service = {
            let mut builder = S3ServiceBuilder::new(store);
            builder.set_auth(SimpleAuth::from_single(
                credentials.access_key.clone(),
                credentials.secret_key.clone(),
            ));
            builder.build()
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| S3Error::Io {
                action: format!("listen on 127.0.0.1:{port} for S3"),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| S3Error::Io {
            action: "read the S3 listener's address".to_owned(),
            source,
        })?;
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let service = service.clone();
                        connections.spawn(async move {
                            let connection = http1::Builder::new()
                                .serve_connection(TokioIo::new(socket), service);
                            if let Err(error) = connection.await {
                                tracing::debug!(%error, "embedded S3 connection ended");
                            }
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
            connections.abort_all();
        });
        Ok(Self {
            address,
            root,
            credentials,
            stop,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for clients (path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn credentials(&self) -> &S3Credentials {
        &self.credentials
    }

    /// Creates a bucket unless it exists (a bucket is a directory under the root).
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let path = self.root.join(bucket);
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|source| S3Error::Io {
                action: format!("create bucket directory {}", path.display()),
                source,
            })
    }

    /// Upload ids of multipart uploads that were started and neither completed nor
    /// aborted, read from the store's directory.
    pub fn pending_multipart_uploads(&self) -> Result<Vec<String>, S3Error> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| S3Error::Io {
            action: format!("read {}", self.root.display()),
            source,
        })?;
        let mut uploads: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let id = name.strip_prefix(".upload-")?.strip_suffix(".json")?;
                Some(id.to_owned())
            })
            .collect();
        uploads.sort();
        Ok(uploads)
    }

    /// Stops accepting connections and ends those in flight.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
