//! `tidemark client config get|set` (Velero's `velero client config`): the file's defaults reach
//! the commands — a direct-mode backup against the real test API server lands in the configured
//! location, listings use the configured output, install uses the configured namespace, logs the
//! configured colour — and flags and environment variables still win.

mod support;

use support::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tidemark(args, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_config_defaults_reach_commands_and_flags_win() {
    let cluster = Cluster::up(&unique("clientcfg")).await;
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().join("config");
    let store = home.path().join("store");
    let other = home.path().join("other-store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let xdg_s = xdg.to_str().unwrap().to_string();
    let env = [
        ("KUBECONFIG", kc.as_str()),
        ("XDG_CONFIG_HOME", xdg_s.as_str()),
        ("HOME", home.path().to_str().unwrap()),
    ];
    let store_url = format!("file://{}", store.display());

    // Unknown keys and bad values are refused, naming them; nothing is written.
    let out = run(&["client", "config", "set", "features=EnableCSI"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("unknown client config key \"features\""),
        "{}",
        show(&out)
    );
    let out = run(&["client", "config", "set", "output=xml"], &env);
    assert!(show(&out).contains("output=xml: must be one of table, json, yaml"));
    assert!(!xdg.join("tidemark/config.json").exists());

    let location_kv = format!("location={store_url}");
    let out = run(
        &[
            "client",
            "config",
            "set",
            "namespace=backup-system",
            &location_kv,
            "output=json",
            "colorized=true",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let file = xdg.join("tidemark/config.json");
    assert!(
        show(&out).contains(file.to_str().unwrap()),
        "{}",
        show(&out)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["namespace"], "backup-system");
    assert_eq!(saved["color"], "always");

    let out = run(&["client", "config", "get"], &env);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("namespace: backup-system"), "{text}");
    assert!(text.contains(&format!("location: {store_url}")), "{text}");
    assert!(text.contains("output: json"), "{text}");
    let out = run(&["client", "config", "get", "output"], &env);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some("output: json")
    );

    // A backup without --location goes to the configured location; colours are on although
    // stderr is a file, as configured.
    let out = run(
        &[
            "backup",
            "create",
            "cfg-one",
            "--include-namespaces",
            "default",
            "--log-level",
            "info",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        store.join("backups/cfg-one/velero-backup.json").exists(),
        "not in {}: {}",
        store.display(),
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\u{1b}["),
        "color=always: expected ANSI colours in {}",
        show(&out)
    );
    // Listings use the configured output (JSON) ...
    let out = run(&["backup", "get"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    assert!(listed.to_string().contains("cfg-one"), "{listed}");
    // ... unless a flag says otherwise.
    let out = run(&["backup", "get", "-o", "table", "--color", "never"], &env);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.starts_with("NAME"), "{table}");
    // The environment variable beats the file: this backup goes elsewhere.
    let other_url = format!("file://{}", other.display());
    let mut env_other = env.to_vec();
    env_other.push(("TIDEMARK_LOCATION", other_url.as_str()));
    let out = run(
        &[
            "backup",
            "create",
            "cfg-two",
            "--include-namespaces",
            "default",
            "--color",
            "never",
        ],
        &env_other,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(other.join("backups/cfg-two/velero-backup.json").exists());
    assert!(!store.join("backups/cfg-two").exists());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("\u{1b}["));

    // The configured namespace is install's default (and the configured output its format:
    // a JSON List); --namespace still wins.
    let out = run(&["install", "--dry-run"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deployment = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment["metadata"]["namespace"], "backup-system");
    let out = run(&["install", "--dry-run", "--namespace", "elsewhere"], &env);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("backup-system"));

    // An empty value unsets a key.
    let out = run(&["client", "config", "set", "output="], &env);
    assert!(out.status.success(), "{}", show(&out));
    let out = run(&["backup", "get"], &env);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("NAME"),
        "{}",
        show(&out)
    );

    // A broken file is an error naming it and the field, not a silent fallback.
    std::fs::write(&file, "{\"output\": 3}").unwrap();
    let out = run(&["backup", "get"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let said = show(&out);
    assert!(
        said.contains(file.to_str().unwrap()) && said.contains("output"),
        "{said}"
    );
}
