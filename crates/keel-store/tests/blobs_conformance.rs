//! The blob store contract, one suite run unchanged on every adapter: local files
//! always, S3 when `KEEL_TEST_S3_URL` names an S3-compatible server (CI runs
//! `moto_server`; each test writes under its own prefix), otherwise that half
//! skips with a printed reason.

use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use keel_store::{
    objects::{blobs::ObjectStoreBlobs, BlobStore, PutError},
    testing::TestS3,
};
use md5::{Digest, Md5};

#[derive(Debug, Clone, Copy)]
enum Kind {
    File,
    S3,
}

struct Blobs {
    store: Arc<dyn BlobStore>,
    _dir: tempfile::TempDir,
}

fn open(kind: Kind) -> Option<Blobs> {
    let dir = tempfile::tempdir().unwrap();
    let url = match kind {
        Kind::File => format!("file://{}", dir.path().join("objects").display()),
        Kind::S3 => TestS3::new("the S3 half")?.url,
    };
    Some(Blobs {
        store: Arc::new(ObjectStoreBlobs::open(&url).unwrap()),
        _dir: dir,
    })
}

fn body(chunks: Vec<Bytes>) -> futures::stream::BoxStream<'static, Result<Bytes, String>> {
    stream::iter(chunks.into_iter().map(Ok)).boxed()
}

/// `len` bytes of a pattern that differs at every offset's position mod 251.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn read(store: &dyn BlobStore, name: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .get(name, range)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

async fn a_small_blob_round_trips_with_its_md5(kind: Kind) {
    let Some(b) = open(kind) else { return };
    let put = b
        .store
        .put(
            "t/b/one",
            body(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")]),
            1024,
        )
        .await
        .unwrap();
    assert_eq!(put.size, 3);
    assert_eq!(put.md5_hex, "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(read(&*b.store, "t/b/one", None).await, b"abc");
    let empty = b.store.put("t/b/empty", body(vec![]), 1024).await.unwrap();
    assert_eq!(
        (empty.size, empty.md5_hex.as_str()),
        (0, "d41d8cd98f00b204e9800998ecf8427e")
    );
    assert!(read(&*b.store, "t/b/empty", None).await.is_empty());
}

async fn a_large_blob_streams_in_parts_and_reads_by_range(kind: Kind) {
    let Some(b) = open(kind) else { return };
    // 12 MiB in 64 KiB chunks: more than two upload parts.
    let data = pattern(12 * 1024 * 1024 + 7);
    let chunks = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    let put = b
        .store
        .put("t/b/large", body(chunks), u64::MAX)
        .await
        .unwrap();
    assert_eq!(put.size, data.len() as u64);
    assert_eq!(put.md5_hex, md5_hex(&data));
    let whole = read(&*b.store, "t/b/large", None).await;
    assert_eq!(md5_hex(&whole), put.md5_hex);
    let start = 5 * 1024 * 1024 - 3;
    let part = read(&*b.store, "t/b/large", Some(start..start + 10)).await;
    assert_eq!(part, data[start as usize..start as usize + 10]);
}

async fn a_blob_over_the_limit_or_cut_off_is_not_stored(kind: Kind) {
    let Some(b) = open(kind) else { return };
    for (name, size) in [
        ("t/b/small-over", 2_000usize),
        ("t/b/large-over", 7 * 1024 * 1024),
    ] {
        let chunks = pattern(size)
            .chunks(1000)
            .map(Bytes::copy_from_slice)
            .collect();
        let refused = b.store.put(name, body(chunks), size as u64 - 1).await;
        assert!(
            matches!(refused, Err(PutError::TooLarge(_))),
            "{name}: {refused:?}"
        );
        assert!(b.store.get(name, None).await.is_err(), "{name} was stored");
    }
    let broken = stream::iter(vec![
        Ok(Bytes::from(pattern(6 * 1024 * 1024))),
        Err("connection reset".to_owned()),
    ])
    .boxed();
    let refused = b.store.put("t/b/cut", broken, u64::MAX).await;
    assert!(matches!(refused, Err(PutError::Body(_))), "{refused:?}");
    assert!(b.store.get("t/b/cut", None).await.is_err());
}

async fn deleting_is_idempotent(kind: Kind) {
    let Some(b) = open(kind) else { return };
    b.store
        .put("t/b/gone", body(vec![Bytes::from_static(b"x")]), 10)
        .await
        .unwrap();
    b.store.delete("t/b/gone").await.unwrap();
    assert!(b.store.get("t/b/gone", None).await.is_err());
    b.store.delete("t/b/gone").await.unwrap();
    b.store.ping().await.unwrap();
}

macro_rules! on_every_blob_store {
    ($($check:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Kind::File).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(super::Kind::S3).await
                }
            )*
        }
    };
}

on_every_blob_store!(
    a_small_blob_round_trips_with_its_md5,
    a_large_blob_streams_in_parts_and_reads_by_range,
    a_blob_over_the_limit_or_cut_off_is_not_stored,
    deleting_is_idempotent,
);
