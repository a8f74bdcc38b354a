//! Leader election that cannot split: two controller replicas (local `tidemark server
//! --leader-elect` processes against the real API server) and the API server frozen with
//! SIGSTOP for longer than the lease. The holder stops — the process exits — once it cannot
//! renew within its deadline, before the lease could expire for anyone else; the other replica
//! takes over only after the API server is back and it has seen the Lease unchanged for a lease
//! duration, and says whose lease it took over.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use support::*;

const NS: &str = "tidemark";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("tidemark-controller")
        .await
        .ok()??
        .spec?
        .holder_identity
}

fn signal(pid: &str, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_api_server_never_leaves_two_leaders() {
    let cluster = Cluster::up(&unique("leader")).await;
    install_crds(&cluster.client).await;
    apply_docs(
        &cluster.client,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})],
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    let mut a = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--leader-elect", "--identity", "replica-a"],
    );
    wait_for("replica-a to lead", Duration::from_secs(60), || async {
        (holder(&leases).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--leader-elect", "--identity", "replica-b"],
    );
    wait_for("replica-b to stand by", Duration::from_secs(60), || async {
        b.log().contains("waiting for leadership").then_some(())
    })
    .await;

    // Freeze the API server for longer than the lease (15 s).
    let pid = std::fs::read_to_string(
        cluster
            .kubeconfig
            .parent()
            .unwrap()
            .join("pids/kube-apiserver.pid"),
    )
    .unwrap()
    .trim()
    .to_string();
    signal(&pid, "-STOP");
    let frozen = Instant::now();
    // The holder gives up within its renew deadline (10 s) and a retry period, and exits.
    let a_status = wait_for(
        "replica-a to exit after the API server froze",
        Duration::from_secs(30),
        || {
            let exited = a.child.try_wait().unwrap();
            async move { exited }
        },
    )
    .await;
    let a_exit = (Instant::now(), a_status);
    let a_gave_up = a_exit.0.duration_since(frozen);
    assert!(
        !a_exit.1.success(),
        "replica-a exited successfully:\n{}",
        a.log()
    );
    assert!(
        a.log().contains("could not renew the lease within"),
        "{}",
        a.log()
    );
    // Thaw it once the lease has had time to expire.
    tokio::time::sleep_until((frozen + Duration::from_secs(20)).into()).await;
    signal(&pid, "-CONT");
    let thawed = Instant::now();
    wait_for(
        "replica-b to take over",
        Duration::from_secs(60),
        || async { (holder(&leases).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    let b_leads = Instant::now();
    assert!(a_exit.0 < thawed && thawed < b_leads);
    let log = b.log();
    assert!(
        log.contains("became leader") && log.contains("replica-a"),
        "replica-b does not say whose lease it took over:\n{log}"
    );
    assert!(log.contains("took the lease over"), "{log}");
    eprintln!(
        "replica-a gave up {:.1}s after the freeze; replica-b led {:.1}s after the thaw",
        a_gave_up.as_secs_f64(),
        b_leads.duration_since(thawed).as_secs_f64()
    );
    a.kill();
}
