//! kstatus (what Flux's health checks use) and Argo CD (the shipped Lua checks) must agree on
//! every kind in every phase: each Argo CD test case under `kustomize/argocd/health/` is also
//! evaluated with kstatus' rules. Healthy ⇔ Current; Progressing ⇒ InProgress; Degraded ⇒ not
//! Current (Failed when Stalled=True); Suspended (a paused Schedule) ⇒ Current.

use tidemark::api::conditions::{KStatus, kstatus};

#[test]
fn kstatus_agrees_with_the_argocd_health_checks_for_every_kind_and_phase() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kustomize/argocd/health");
    let mut checked = 0;
    let mut kinds = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let tests: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap())
                .unwrap();
        kinds += 1;
        for t in tests["tests"].as_sequence().unwrap() {
            let expected = t["healthStatus"]["status"].as_str().unwrap();
            let input = dir.join(t["inputPath"].as_str().unwrap());
            let obj: serde_json::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
            let got = kstatus(&obj);
            let stalled = obj
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Stalled" && c["status"] == "True")
                });
            let ok = match expected {
                "Healthy" | "Suspended" => got == KStatus::Current,
                "Progressing" => got == KStatus::InProgress,
                "Degraded" if stalled => got == KStatus::Failed,
                "Degraded" => got != KStatus::Current,
                _ => true,
            };
            assert!(
                ok,
                "{}: Argo CD says {expected}, kstatus says {got:?}",
                input.display()
            );
            checked += 1;
        }
    }
    assert_eq!(kinds, 7, "one health check per kind");
    assert!(checked >= 60, "only {checked} cases");
}
