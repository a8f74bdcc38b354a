//! File-system backup and restore throughput of pod volume data (issue 7): one directory of
//! mixed files (default 1 GiB) backed up into a restic repository with tidemark's
//! `volumes::fs` (rustic_core), then restored into an empty directory; MB/s of file content
//! (1 MB = 10^6 bytes) for each. A benchmark, not a timed test: it prints figures and asserts
//! only that the restored tree has the same bytes.
//!
//! ```text
//! cargo bench --bench volumes_fs                       # local directory location
//! cargo bench --bench volumes_fs -- --minio            # MinIO started by scripts/testenv
//! cargo bench --bench volumes_fs -- --minio --mib 256  # a smaller data set
//! ```
//!
//! (`cargo bench` passes `--bench`; without it, e.g. under `cargo test --all-targets`, it does
//! nothing.)
//!
//! The data set, by bytes: 40% in 2 files of ~200 MiB, 30% in 24 files of ~12.5 MiB, 20% in
//! files of 16-256 KiB, 10% in files of 0.5-8 KiB, in 64 directories; content is
//! pseudo-random (incompressible, no duplicates), so the figures are for the worst case of
//! chunking, hashing, encryption and upload. The page cache is warm for the backup (files
//! were just written), as it would be on a busy node.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tidemark::store::{LocationUrl, Secrets, Store};
use tidemark::volumes::fs::{RepoPassword, ResticRepo, SnapshotTags, TransferProgress};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the mixed data set under `dir`; returns (bytes, files).
fn generate(dir: &Path, total: u64) -> (u64, u64) {
    let mut seed = 1u64;
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut write = |rel: String, len: u64| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(&p).unwrap();
        let mut left = len;
        while left > 0 {
            let n = left.min(8 << 20);
            seed += 1;
            f.write_all(&noise(n as usize, seed)).unwrap();
            left -= n;
        }
        bytes += len;
        files += 1;
    };
    let big = total * 4 / 10 / 2;
    for i in 0..2 {
        write(format!("big/file{i}.bin"), big);
    }
    let medium = total * 3 / 10 / 24;
    for i in 0..24 {
        write(format!("medium/m{}/file{i}.bin", i % 4), medium);
    }
    let mut budget = total * 2 / 10;
    let mut i = 0u64;
    while budget > 0 {
        let len = (16 << 10) + (i * 7919 % 240) * 1024;
        let len = len.min(budget);
        write(format!("small/d{}/s{i}.dat", i % 32), len);
        budget -= len;
        i += 1;
    }
    let mut budget = total / 10;
    let mut i = 0u64;
    while budget > 0 {
        let len = 512 + (i * 104_729 % 7680);
        let len = len.min(budget);
        write(format!("tiny/d{}/t{i}.txt", i % 28), len);
        budget -= len;
        i += 1;
    }
    (bytes, files)
}

fn digest_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    sha2::Sha256::digest(&data).to_vec(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let mib: u64 = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let use_minio = args.iter().any(|a| a == "--minio");
    let repo_root = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testenv");
    let minio_name = format!("bench-vfs-{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let mut secrets = Secrets::default();
    let (url, label) = if use_minio {
        let out = Command::new(repo_root)
            .args(["minio", "up", &minio_name])
            .output()
            .expect("scripts/testenv minio up");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env: std::collections::BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        secrets.aws_credentials = Some((
            env["AWS_ACCESS_KEY_ID"].clone(),
            env["AWS_SECRET_ACCESS_KEY"].clone(),
        ));
        (
            format!(
                "s3://{}/bench?s3Url={}&region={}&s3ForcePathStyle=true",
                env["TIDEMARK_TEST_BUCKET"], env["AWS_ENDPOINT_URL"], env["AWS_REGION"]
            ),
            "MinIO (local, scripts/testenv)",
        )
    } else {
        let dir = work.path().join("location");
        std::fs::create_dir_all(&dir).unwrap();
        (format!("file://{}", dir.display()), "local directory")
    };
    let src = work.path().join("src");
    let t = Instant::now();
    let (bytes, files) = generate(&src, mib << 20);
    eprintln!(
        "data set: {files} files, {:.1} MB, written in {:.1?}",
        bytes as f64 / 1e6,
        t.elapsed()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open_with(&url.parse::<LocationUrl>().unwrap(), &secrets).unwrap();
    let pw = RepoPassword::new("bench").unwrap();
    let tags = SnapshotTags {
        backup: "bench".into(),
        namespace: "bench".into(),
        pod: "pod".into(),
        pod_uid: "uid".into(),
        volume: "data".into(),
    };
    let handle = rt.handle().clone();
    let (s2, pw2, src2, h2) = (store.clone(), pw.clone(), src.clone(), handle.clone());
    let t = Instant::now();
    let summary = rt
        .block_on(rt.spawn_blocking(move || {
            let repo = ResticRepo::open_or_init(
                &s2,
                "bench",
                &pw2,
                h2,
                Arc::new(TransferProgress::default()),
            )?;
            repo.backup_dir(&src2, &tags)
        }))
        .unwrap()
        .unwrap();
    let backup_secs = t.elapsed().as_secs_f64();
    assert_eq!(summary.total_bytes, bytes);
    let dest = work.path().join("restored");
    let (dest2, id) = (dest.clone(), summary.snapshot_id.clone());
    let t = Instant::now();
    rt.block_on(rt.spawn_blocking(move || {
        let repo = ResticRepo::open_or_init(
            &store,
            "bench",
            &pw,
            handle,
            Arc::new(TransferProgress::default()),
        )?;
        repo.restore(&id, &dest2)
    }))
    .unwrap()
    .unwrap();
    let restore_secs = t.elapsed().as_secs_f64();
    assert!(
        digest_tree(&src) == digest_tree(&dest),
        "restored tree differs"
    );
    println!(
        "volumes_fs bench: {files} files, {:.1} MB of file content, location: {label}",
        bytes as f64 / 1e6
    );
    println!(
        "  backup : {:>7.1} s  {:>7.1} MB/s  (repository grew by {:.1} MB before compression)",
        backup_secs,
        mbps(bytes, backup_secs),
        summary.bytes_added as f64 / 1e6
    );
    println!(
        "  restore: {:>7.1} s  {:>7.1} MB/s  (verified: same bytes)",
        restore_secs,
        mbps(bytes, restore_secs)
    );
    if use_minio {
        let _ = Command::new(repo_root)
            .args(["minio", "down", &minio_name])
            .output();
    }
}
