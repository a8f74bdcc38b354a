//! The first round trip (issue 2): the whole corpus applied to a real cluster A, backed up to
//! MinIO and to a directory with the `tidemark` binary, restored into an empty cluster B, and
//! every accepted object compared; then the restore is repeated (nothing new is created) and the
//! directory backup is restored into a mapped namespace.

mod support;

use std::collections::BTreeMap;

use support::*;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corpus_round_trip_through_minio_and_a_directory() {
    let a = Cluster::up(&unique("rt-a")).await;
    let b = Cluster::up(&unique("rt-b")).await;
    let minio = Minio::up(&unique("rt-minio"));
    let dir = tempfile::tempdir().unwrap();
    let dir_url = format!("file://{}", dir.path().display());

    let (accepted, rejected) = load_corpus(&a.client).await;
    eprintln!(
        "corpus: {} objects accepted, {} rejected",
        accepted.len(),
        rejected.len()
    );
    for r in &rejected {
        eprintln!("  rejected: {r}");
    }
    assert!(
        accepted.len() > 200,
        "too few corpus objects accepted: {}",
        accepted.len()
    );

    let ka = a.kubeconfig.to_str().unwrap();
    let kb = b.kubeconfig.to_str().unwrap();
    let env_a = minio.env_with(ka);
    let env_b = minio.env_with(kb);
    let s3 = minio.url("cluster-a");

    // Back up A to MinIO and to a directory.
    let out = tidemark(&["backup", "create", "corpus", "--location", &s3], &env_a);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Completed"), "{}", show(&out));
    eprintln!(
        "backup to MinIO: {}",
        stdout(&out).lines().next().unwrap_or_default()
    );
    let out = tidemark(
        &["backup", "create", "corpus-dir", "--location", &dir_url],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));

    // Both locations list their backup.
    let out = tidemark(&["backup", "get", "--location", &s3], &env_a);
    assert!(out.status.success(), "{}", show(&out));
    let table = stdout(&out);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("corpus ") && l.contains("Completed")),
        "{table}"
    );
    let out = tidemark(
        &["backup", "get", "-o", "json", "--location", &dir_url],
        &env_a,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "corpus-dir");
    let items_backed_up = list["items"][0]["status"]["progress"]["itemsBackedUp"]
        .as_u64()
        .unwrap();
    assert!(
        items_backed_up as usize >= accepted.len(),
        "{items_backed_up} < {}",
        accepted.len()
    );

    // Restore into the empty cluster B from MinIO: every accepted object must be there.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r1",
            "--from-backup",
            "corpus",
            "--location",
            &s3,
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    eprintln!(
        "restore from MinIO: {}",
        stdout(&out).lines().next().unwrap_or_default()
    );
    let problems = compare_clusters(&a.client, &b.client, &accepted, &BTreeMap::new()).await;
    assert!(
        problems.is_empty(),
        "{} objects differ:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The same restore again, twice with `--existing-resource-policy update` (the cluster's own
    // kube-* namespaces, which each cluster manages itself, left out): the first may patch what
    // B's controllers changed, the second finds everything equal and changes nothing.
    for (name, policy) in [("r2", "update"), ("r3", "update")] {
        let out = tidemark(
            &[
                "restore",
                "create",
                name,
                "--from-backup",
                "corpus",
                "--location",
                &s3,
                "--existing-resource-policy",
                policy,
                "--exclude-namespaces",
                "kube-system,kube-public,kube-node-lease",
            ],
            &env_b,
        );
        assert!(out.status.success(), "{}", show(&out));
        let summary = stdout(&out);
        assert!(summary.contains(" 0 created"), "{summary}");
        if name == "r3" {
            assert!(
                summary.contains(" 0 created, 0 updated"),
                "second update run changed things: {summary}"
            );
        }
    }
    let problems = compare_clusters(&a.client, &b.client, &accepted, &BTreeMap::new()).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let out = tidemark(&["restore", "get", "--location", &s3], &env_b);
    let restores = stdout(&out);
    assert!(
        restores
            .lines()
            .any(|l| l.starts_with("r1 ") && l.contains("Completed")),
        "{restores}"
    );
    assert!(restores.lines().any(|l| l.starts_with("r2 ")), "{restores}");

    // The directory backup restores one application into a mapped namespace of B.
    let app = "guestbook-all-in-one";
    let out = tidemark(
        &[
            "restore",
            "create",
            "r3",
            "--from-backup",
            "corpus-dir",
            "--location",
            &dir_url,
            "--include-namespaces",
            app,
            "--namespace-mappings",
            &format!("{app}:guestbook-copy"),
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let in_app: Vec<Accepted> = accepted
        .iter()
        .filter(|o| o.namespace.as_deref() == Some(app))
        .cloned()
        .collect();
    assert!(in_app.len() >= 3, "{in_app:?}");
    let mapping: BTreeMap<String, String> =
        [(app.to_string(), "guestbook-copy".to_string())].into();
    let problems = compare_clusters(&a.client, &b.client, &in_app, &mapping).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
