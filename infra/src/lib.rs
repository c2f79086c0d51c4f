//! Local infrastructure for `tenantctl dev` and the tests: an embedded PostgreSQL cluster
//! run from the system's server binaries, and an embedded S3-compatible endpoint backed by
//! a directory. Nothing here is used in production deployments.

pub mod postgres;
pub mod s3;

pub use postgres::{EmbeddedPostgres, PgBinaries, PostgresError, PostgresOptions};
pub use s3::{EmbeddedS3, S3Credentials, S3Error};
