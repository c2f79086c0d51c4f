//! The S3 bucket backups go to: AWS S3 or any S3-compatible store (path-style addressing
//! for those that need it). Credentials come from `TENANCY_S3_ACCESS_KEY_ID` /
//! `TENANCY_S3_SECRET_ACCESS_KEY`, else from the standard `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use secrecy::{ExposeSecret, SecretString};
use tenancy_core::secret::parse_secret;

/// Where backups are stored (clap + env, shared by the control plane and `tenantctl`).
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// Bucket for tenant backups; backups are off when unset.
    #[arg(long, env = "TENANCY_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL, for S3-compatible stores (default: AWS S3 of the region).
    #[arg(long, env = "TENANCY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "TENANCY_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    #[arg(long, env = "TENANCY_S3_PATH_STYLE", default_value_t = false)]
    pub s3_path_style: bool,
    #[arg(long, env = "TENANCY_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    #[arg(long, env = "TENANCY_S3_SECRET_ACCESS_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no S3 credentials: set TENANCY_S3_ACCESS_KEY_ID and TENANCY_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    NoCredentials,
    #[error("S3: {action}: {message}")]
    Request {
        action: &'static str,
        message: String,
    },
}

/// A bucket and a client for it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn request_error<E: std::error::Error>(action: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Request {
        action,
        message: DisplayErrorContext(&error).to_string(),
    }
}

impl Store {
    /// The configured store, or None when no bucket is set.
    pub fn from_args(args: &S3Args) -> Result<Option<Self>, StoreError> {
        let Some(bucket) = args.s3_bucket.clone() else {
            return Ok(None);
        };
        let access_key = args
            .s3_access_key_id
            .clone()
            .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
        let secret_key = args
            .s3_secret_access_key
            .as_ref()
            .map(|secret| secret.expose_secret().to_owned())
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
        let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
            return Err(StoreError::NoCredentials);
        };
        let session_token = std::env::var("AWS_SESSION_TOKEN").ok();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(args.s3_region.clone()))
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                session_token,
                None,
                "tenancy",
            ))
            .force_path_style(args.s3_path_style)
            .http_client(https_client());
        if let Some(endpoint) = &args.s3_endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Some(Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket,
        }))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn start_upload(&self, key: &str) -> Result<String, StoreError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(request_error("start a multipart upload"))?;
        output.upload_id.ok_or_else(|| StoreError::Request {
            action: "start a multipart upload",
            message: "no upload id in the answer".to_owned(),
        })
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: bytes::Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(request_error("upload a part"))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(output.e_tag)
            .build())
    }

    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(request_error("complete the multipart upload"))?;
        Ok(())
    }

    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(request_error("abort the multipart upload"))?;
        Ok(())
    }

    /// The stored object's size.
    pub async fn size(&self, key: &str) -> Result<i64, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(request_error("read the object's size"))?;
        Ok(output.content_length.unwrap_or(-1))
    }

    /// The object's bytes, as a stream.
    pub async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(request_error("read the object"))?;
        Ok(output.body)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(request_error("delete the object"))?;
        Ok(())
    }
}

/// The S3 client's HTTP(S) client: rustls with the ring crypto provider and the system's
/// root certificates (plain `http://` endpoints work too).
pub fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
