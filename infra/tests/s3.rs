//! The embedded S3 endpoint, spoken to by aws-sdk-s3 over real HTTP.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_http_client::tls;
use tenancy_infra::{EmbeddedS3, S3Credentials};

fn credentials() -> S3Credentials {
    S3Credentials {
        access_key: "test-access".to_owned(),
        secret_key: "test-secret-0123456789".to_owned(),
    }
}

fn client(s3: &EmbeddedS3, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(s3.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            &s3.credentials().access_key,
            secret,
            None,
            None,
            "test",
        ))
        .force_path_style(true)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn multipart_upload_get_and_abort_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = EmbeddedS3::start(dir.path().join("store"), 0, credentials())
        .await
        .expect("start");
    let client = client(&s3, &credentials().secret_key);
    client
        .create_bucket()
        .bucket("backups")
        .send()
        .await
        .expect("create bucket");

    // Two 5 MiB parts and a short last one, as a streamed backup would send them.
    let parts = [pattern(5 << 20, 1), pattern(5 << 20, 2), pattern(1234, 3)];
    let upload = client
        .create_multipart_upload()
        .bucket("backups")
        .key("tenant/backup.dump")
        .send()
        .await
        .expect("start the upload");
    let upload_id = upload.upload_id().expect("an upload id").to_owned();
    assert_eq!(
        s3.pending_multipart_uploads().expect("list"),
        vec![upload_id.clone()]
    );
    let mut completed = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let number = i32::try_from(index + 1).expect("small");
        let answer = client
            .upload_part()
            .bucket("backups")
            .key("tenant/backup.dump")
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .expect("upload a part");
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(answer.e_tag().expect("an etag"))
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket("backups")
        .key("tenant/backup.dump")
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("complete the upload");
    assert!(s3.pending_multipart_uploads().expect("list").is_empty());

    let object = client
        .get_object()
        .bucket("backups")
        .key("tenant/backup.dump")
        .send()
        .await
        .expect("get the object");
    let body = object
        .body
        .collect()
        .await
        .expect("read the body")
        .into_bytes();
    assert_eq!(body.len(), parts.iter().map(Vec::len).sum::<usize>());
    assert_eq!(body.to_vec(), parts.concat());

    // An aborted upload leaves nothing behind.
    let aborted = client
        .create_multipart_upload()
        .bucket("backups")
        .key("tenant/aborted.dump")
        .send()
        .await
        .expect("start another upload");
    let aborted_id = aborted.upload_id().expect("id").to_owned();
    client
        .upload_part()
        .bucket("backups")
        .key("tenant/aborted.dump")
        .upload_id(&aborted_id)
        .part_number(1)
        .body(ByteStream::from(pattern(1000, 9)))
        .send()
        .await
        .expect("upload a part");
    client
        .abort_multipart_upload()
        .bucket("backups")
        .key("tenant/aborted.dump")
        .upload_id(&aborted_id)
        .send()
        .await
        .expect("abort");
    assert!(s3.pending_multipart_uploads().expect("list").is_empty());
    let listed = client
        .list_objects_v2()
        .bucket("backups")
        .send()
        .await
        .expect("list objects");
    let keys: Vec<_> = listed
        .contents()
        .iter()
        .filter_map(|object| object.key())
        .collect();
    assert_eq!(keys, vec!["tenant/backup.dump"]);
}

#[tokio::test]
async fn requests_signed_with_a_wrong_secret_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = EmbeddedS3::start(dir.path().join("store"), 0, credentials())
        .await
        .expect("start");
    s3.ensure_bucket("backups").await.expect("bucket");
    let intruder = client(&s3, "not-the-secret");
    let error = intruder
        .put_object()
        .bucket("backups")
        .key("x")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .expect_err("a wrong signature must be refused");
    let status = error
        .raw_response()
        .map(|response| response.status().as_u16());
    assert_eq!(status, Some(403), "{error:?}");
    let listed = client(&s3, &credentials().secret_key)
        .list_objects_v2()
        .bucket("backups")
        .send()
        .await
        .expect("list");
    assert!(listed.contents().is_empty());
}
