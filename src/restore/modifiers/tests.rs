//! Tests of the resource modifiers.

use super::*;
use serde_json::json;

fn parse(yaml: &str) -> ResourceModifiers {
    match ResourceModifiers::parse(yaml) {
        Ok(m) => m,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn parse_err(yaml: &str) -> ModifierError {
    match ResourceModifiers::parse(yaml) {
        Ok(_) => panic!("parse succeeded for:\n{yaml}"),
        Err(e) => e,
    }
}

fn invalid(yaml: &str) -> (usize, String, String) {
    match parse_err(yaml) {
        ModifierError::InvalidRule {
            rule,
            field,
            reason,
        } => (rule, field, reason),
        other => panic!("expected InvalidRule, got {other}"),
    }
}

/// One rule with the given conditions (YAML lines indented by 4) and a merge patch that sets
/// label `hit: "yes"`.
fn label_rule(conditions: &str) -> ResourceModifiers {
    parse(&format!(
        "version: v1\nresourceModifierRules:\n- conditions:\n{conditions}\n  mergePatches:\n  - patchData: '{{\"metadata\":{{\"labels\":{{\"hit\":\"yes\"}}}}}}'\n"
    ))
}

fn hits(m: &ResourceModifiers, gr: &str, ns: Option<&str>, obj: &Value) -> bool {
    let mut o = obj.clone();
    let n = m.apply(gr, ns, &mut o).expect("apply");
    assert_eq!(n == 1, o.pointer("/metadata/labels/hit").is_some());
    n == 1
}

fn pvc(name: &str, ns: &str, sc: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": {"foo": "bar", "test": "x"}},
        "spec": {"storageClassName": sc, "accessModes": ["ReadWriteOnce"]}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "envoy:1"}
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }
            }
        }
    })
}

fn smp(patch: &str, obj: &Value) -> Result<Value, ModifierError> {
    let indented: String = patch.lines().map(|l| format!("      {l}\n")).collect();
    let m = parse(&format!(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: '**'\n  strategicPatches:\n  - patchData: |\n{indented}"
    ));
    let mut o = obj.clone();
    m.apply("deployments.apps", Some("prod"), &mut o).map(|_| o)
}

fn container_names(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ----- parsing -----

#[test]
fn parses_the_documented_example() {
    let m = parse(
        r#"
version: v1
resourceModifierRules:
- conditions:
     groupResource: persistentvolumeclaims
     resourceNameRegex: "^mysql.*$"
     namespaces:
     - bar
     - foo
     labelSelector:
        matchLabels:
           foo: bar
  patches:
  - operation: replace
    path: "/spec/storageClassName"
    value: "premium"
  - operation: remove
    path: "/metadata/labels/test"
"#,
    );
    assert_eq!(m.len(), 1);
    let mut obj = pvc("mysql-0", "foo", "standard");
    assert_eq!(
        m.apply("persistentvolumeclaims", Some("foo"), &mut obj)
            .unwrap(),
        1
    );
    assert_eq!(obj["spec"]["storageClassName"], "premium");
    assert!(obj.pointer("/metadata/labels/test").is_none());
    // Other namespace, other name: untouched.
    for (name, ns) in [("mysql-0", "baz"), ("pg-0", "foo")] {
        let mut obj = pvc(name, ns, "standard");
        assert_eq!(
            m.apply("persistentvolumeclaims", Some(ns), &mut obj)
                .unwrap(),
            0
        );
        assert_eq!(obj, pvc(name, ns, "standard"));
    }
}

#[test]
fn from_config_map_needs_exactly_one_key() {
    let doc = "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
    let one = BTreeMap::from([("rules.yaml".to_string(), doc.to_string())]);
    assert_eq!(
        ResourceModifiers::from_config_map_data(&one).unwrap().len(),
        1
    );
    let two = BTreeMap::from([
        ("a".to_string(), doc.to_string()),
        ("b".to_string(), doc.to_string()),
    ]);
    assert!(matches!(
        ResourceModifiers::from_config_map_data(&two),
        Err(ModifierError::ConfigMapKeys(2))
    ));
    assert!(matches!(
        ResourceModifiers::from_config_map_data(&BTreeMap::new()),
        Err(ModifierError::ConfigMapKeys(0))
    ));
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let e = parse_err("version: v1\nresourceModifierRules: []\nextra: 1\n");
    assert!(
        matches!(&e, ModifierError::Syntax(m) if m.contains("extra")),
        "{e}"
    );
    let e = parse_err(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: pods\n    namespace: [a]\n  mergePatches: [{patchData: '{}'}]\n",
    );
    let msg = e.to_string();
    assert!(matches!(e, ModifierError::Syntax(_)));
    assert!(msg.contains("resourceModifierRules[0].conditions"), "{msg}");
    assert!(msg.contains("unknown field `namespace`"), "{msg}");
    let e = parse_err(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods}\n  patches:\n  - op: add\n    path: /a\n",
    );
    let msg = e.to_string();
    assert!(
        msg.contains("resourceModifierRules[0].patches[0]") && msg.contains("`op`"),
        "{msg}"
    );
    let e = parse_err(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: pods\n    labelSelector: {matchLabel: {a: b}}\n  mergePatches: [{patchData: '{}'}]\n",
    );
    assert!(e.to_string().contains("matchLabel"), "{e}");
    assert!(matches!(
        parse_err("version: [v1\n"),
        ModifierError::Syntax(_)
    ));
}

#[test]
fn version_is_checked() {
    let rules = "resourceModifierRules:\n- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
    assert!(matches!(
        parse_err(&format!("version: v2\n{rules}")),
        ModifierError::UnsupportedVersion(v) if v == "v2"
    ));
    assert!(matches!(
        parse_err(rules),
        ModifierError::UnsupportedVersion(v) if v.is_empty()
    ));
    assert_eq!(parse(&format!("version: V1\n{rules}")).len(), 1);
    assert!(matches!(parse_err("version: v1\n"), ModifierError::NoRules));
    assert!(matches!(
        parse_err("version: v1\nresourceModifierRules: []\n"),
        ModifierError::NoRules
    ));
}

#[test]
fn invalid_rules_name_the_rule_and_field() {
    let ok = "- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
    let doc = |bad: &str| format!("version: v1\nresourceModifierRules:\n{ok}{bad}");

    let (rule, field, reason) = invalid(&doc(
        "- conditions: {groupResource: pods, resourceNameRegex: 'a(b'}\n  mergePatches: [{patchData: '{}'}]\n",
    ));
    assert_eq!((rule, field.as_str()), (1, "conditions.resourceNameRegex"));
    assert!(!reason.is_empty());

    let (rule, field, reason) = invalid(&doc(
        "- conditions: {groupResource: pods}\n  patches: [{operation: merge, path: /a}]\n",
    ));
    assert_eq!((rule, field.as_str()), (1, "patches[0].operation"));
    assert!(reason.contains("merge"), "{reason}");

    let cases = [
        (
            "- conditions: {namespaces: [a]}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.groupResource",
        ),
        (
            "- conditions: {groupResource: '{pods'}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.groupResource",
        ),
        (
            "- conditions: {groupResource: pods, namespaces: [ok, '[a']}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.namespaces[1]",
        ),
        (
            "- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.labelSelector.matchExpressions[0].operator",
        ),
        (
            "- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: In}]}}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.labelSelector.matchExpressions[0].values",
        ),
        (
            "- conditions: {groupResource: pods, matches: [{value: x}]}\n  mergePatches: [{patchData: '{}'}]\n",
            "conditions.matches[0].path",
        ),
        ("- conditions: {groupResource: pods}\n", "patches"),
        (
            "- conditions: {groupResource: pods}\n  patches: [{operation: remove, path: /a}]\n  mergePatches: [{patchData: '{}'}]\n",
            "patches",
        ),
        (
            "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: /a}, {operation: add}]\n",
            "patches[1].path",
        ),
        (
            "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: spec/a}]\n",
            "patches[0].path",
        ),
        (
            "- conditions: {groupResource: pods}\n  patches: [{path: /a}]\n",
            "patches[0].operation",
        ),
        (
            "- conditions: {groupResource: pods}\n  patches: [{operation: move, path: /a}]\n",
            "patches[0].from",
        ),
        (
            "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: /a, value: '{\"a\": }'}]\n",
            "patches[0].value",
        ),
        (
            "- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '[1, 2]'}]\n",
            "mergePatches[0].patchData",
        ),
        (
            "- conditions: {groupResource: pods}\n  strategicPatches: [{patchData: '{}'}, {}]\n",
            "strategicPatches[1].patchData",
        ),
        (
            "- conditions: {groupResource: pods}\n  strategicPatches: [{patchData: 'a: [b'}]\n",
            "strategicPatches[0].patchData",
        ),
    ];
    for (bad, want) in cases {
        let (rule, field, _) = invalid(&doc(bad));
        assert_eq!((rule, field.as_str()), (1, want), "{bad}");
    }
    let e = parse_err(&doc("- conditions: {groupResource: pods}\n"));
    assert!(
        e.to_string()
            .starts_with("resource modifiers: resourceModifierRules[1].patches: "),
        "{e}"
    );
}

#[test]
fn values_are_decoded_like_velero() {
    let t = |s: &str| text_value(s).unwrap();
    assert_eq!(t(""), json!(""));
    assert_eq!(t("premium"), json!("premium"));
    assert_eq!(t("3"), json!(3));
    assert_eq!(t("-1.5"), json!(-1.5));
    assert_eq!(t("true"), json!(true));
    assert_eq!(t("False"), json!(false));
    assert_eq!(t("null"), Value::Null);
    assert_eq!(t("\"true\""), json!("true"));
    assert_eq!(t("\"3\""), json!("3"));
    assert_eq!(t("\""), json!(""));
    assert_eq!(t("{\"a\": [1]}"), json!({"a": [1]}));
    assert_eq!(t("[1, \"x\"]"), json!([1, "x"]));
    assert_eq!(t("+1"), json!("+1"));
    assert_eq!(t("0123"), json!("0123"));
    assert_eq!(t(" 3"), json!(" 3"));
    assert_eq!(t("a\\tb"), json!("a\tb"));
    assert_eq!(t("C:\\dir"), json!("C:\\dir"));
    assert_eq!(t("say \"hi\""), json!("say \"hi\""));
    assert!(text_value("{oops").is_err());
    // Non-string YAML values are taken as JSON.
    let y = |s: &str| velero_value(Some(serde_yaml::from_str(s).unwrap())).unwrap();
    assert_eq!(y("3"), json!(3));
    assert_eq!(y("true"), json!(true));
    assert_eq!(y("{a: [1, b]}"), json!({"a": [1, "b"]}));
    assert_eq!(y("'7'"), json!(7));
    assert_eq!(velero_value(None).unwrap(), json!(""));
}

#[test]
fn globs_follow_gobwas_semantics() {
    let g = |p: &str, sep| Glob::new(p, sep).unwrap();
    let gr = |p: &str| g(p, Some('.'));
    assert!(gr("*").matches("pods"));
    assert!(!gr("*").matches("deployments.apps"));
    assert!(gr("*.apps").matches("deployments.apps"));
    assert!(!gr("*.apps").matches("pods"));
    assert!(gr("*.*").matches("deployments.apps"));
    assert!(!gr("*.*").matches("ingresses.networking.k8s.io"));
    assert!(gr("**").matches("ingresses.networking.k8s.io"));
    assert!(gr("*.**").matches("ingresses.networking.k8s.io"));
    assert!(gr("{deployments,statefulsets}.apps").matches("statefulsets.apps"));
    assert!(!gr("{deployments,statefulsets}.apps").matches("daemonsets.apps"));
    assert!(gr("pod?").matches("pods"));
    assert!(!gr("pod?").matches("pod."));
    assert!(gr("[cp]ods").matches("pods"));
    assert!(gr("[!c]ods").matches("pods"));
    assert!(!gr("[!p]ods").matches("pods"));
    assert!(gr("[a-q]ods").matches("pods"));
    assert!(gr("\\*").matches("*"));
    assert!(!gr("\\*").matches("pods"));
    assert!(gr("pods").matches("pods"));
    assert!(!gr("pods").matches("podsx"));
    assert!(g("team-*", None).matches("team-a.b"));
    assert!(g("*", None).matches("anything.at.all"));
    assert!(gr("a*b*c*d").matches("axxbyyczzd"));
    assert!(!gr("a*b*c*d").matches("axxbyyczz.d"));
    for bad in ["[abc", "{a,b", "a\\", "[]"] {
        assert!(Glob::new(bad, Some('.')).is_err(), "{bad}");
    }
}

// ----- conditions -----

#[test]
fn group_resource_condition() {
    let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "a"}});
    let core = label_rule("    groupResource: pods");
    assert!(hits(&core, "pods", Some("a"), &pod));
    assert!(!hits(&core, "pods.metrics.k8s.io", Some("a"), &pod));
    let all_core = label_rule("    groupResource: '*'");
    assert!(hits(&all_core, "configmaps", Some("a"), &pod));
    assert!(!hits(&all_core, "deployments.apps", Some("a"), &pod));
    let apps = label_rule("    groupResource: '*.apps'");
    assert!(hits(&apps, "deployments.apps", Some("a"), &pod));
    assert!(!hits(&apps, "pods", Some("a"), &pod));
    let exact = label_rule("    groupResource: deployments.apps");
    assert!(hits(&exact, "deployments.apps", Some("a"), &pod));
    assert!(!hits(&exact, "deployments", Some("a"), &pod));
    let everything = label_rule("    groupResource: '**'");
    assert!(hits(&everything, "ingresses.networking.k8s.io", None, &pod));
}

#[test]
fn name_regex_condition() {
    let m = label_rule("    groupResource: pods\n    resourceNameRegex: 'sql-[0-9]+'");
    let named = |n: &str| json!({"metadata": {"name": n}});
    assert!(hits(&m, "pods", None, &named("mysql-0")));
    assert!(hits(&m, "pods", None, &named("pgsql-12-x")));
    assert!(!hits(&m, "pods", None, &named("mysql")));
    assert!(!hits(&m, "pods", None, &json!({"metadata": {}})));
    let anchored = label_rule("    groupResource: pods\n    resourceNameRegex: '^web$'");
    assert!(hits(&anchored, "pods", None, &named("web")));
    assert!(!hits(&anchored, "pods", None, &named("web-1")));
}

#[test]
fn namespaces_condition() {
    let m = label_rule("    groupResource: '**'\n    namespaces: [prod, 'team-*']");
    let obj = json!({"metadata": {"name": "x"}});
    assert!(hits(&m, "pods", Some("prod"), &obj));
    assert!(hits(&m, "pods", Some("team-blue"), &obj));
    assert!(!hits(&m, "pods", Some("dev"), &obj));
    // Cluster-scoped items pass the namespace condition.
    assert!(hits(&m, "persistentvolumes", None, &obj));
    assert!(hits(&m, "persistentvolumes", Some(""), &obj));
    let star = label_rule("    groupResource: '**'\n    namespaces: ['*']");
    assert!(hits(&star, "pods", Some("dev"), &obj));
    let none = label_rule("    groupResource: '**'");
    assert!(hits(&none, "pods", Some("dev"), &obj));
}

#[test]
fn label_selector_condition() {
    let m = label_rule(
        "    groupResource: '**'\n    labelSelector:\n      matchLabels: {app: web}\n      matchExpressions:\n      - {key: tier, operator: In, values: [front, edge]}\n      - {key: legacy, operator: DoesNotExist}",
    );
    let with = |labels: Value| json!({"metadata": {"name": "x", "labels": labels}});
    assert!(hits(
        &m,
        "pods",
        None,
        &with(json!({"app": "web", "tier": "edge"}))
    ));
    assert!(!hits(
        &m,
        "pods",
        None,
        &with(json!({"app": "web", "tier": "back"}))
    ));
    assert!(!hits(
        &m,
        "pods",
        None,
        &with(json!({"app": "web", "tier": "front", "legacy": "1"}))
    ));
    assert!(!hits(&m, "pods", None, &with(json!({"tier": "front"}))));
    assert!(!hits(&m, "pods", None, &json!({"metadata": {"name": "x"}})));
    let empty = label_rule("    groupResource: '**'\n    labelSelector: {}");
    assert!(hits(
        &empty,
        "pods",
        None,
        &json!({"metadata": {"name": "x"}})
    ));
}

#[test]
fn matches_condition() {
    let m = label_rule(
        "    groupResource: '**'\n    matches:\n    - {path: /spec/storageClassName, value: premium}\n    - {path: /spec/replicas, value: '3'}",
    );
    let obj = |sc: &str, replicas: Value| json!({"metadata": {"name": "x"}, "spec": {"storageClassName": sc, "replicas": replicas}});
    assert!(hits(&m, "pods", None, &obj("premium", json!(3))));
    assert!(!hits(&m, "pods", None, &obj("standard", json!(3))));
    assert!(!hits(&m, "pods", None, &obj("premium", json!("3"))));
    // A missing key, a missing parent, a scalar parent: no match, no error.
    let leaf =
        label_rule("    groupResource: '**'\n    matches: [{path: /metadata/labels/a, value: b}]");
    assert!(!hits(
        &leaf,
        "pods",
        None,
        &json!({"metadata": {"labels": {}}})
    ));
    assert!(!hits(&leaf, "pods", None, &json!({"metadata": {}})));
    let deep = label_rule(
        "    groupResource: '**'\n    matches: [{path: /metadata/labels/a/b, value: c}]",
    );
    assert!(!hits(
        &deep,
        "pods",
        None,
        &json!({"metadata": {"labels": {"a": "b"}}})
    ));
    // `null` matches an absent key.
    let absent = label_rule(
        "    groupResource: '**'\n    matches: [{path: /metadata/labels/a, value: 'null'}]",
    );
    assert!(hits(
        &absent,
        "pods",
        None,
        &json!({"metadata": {"labels": {}}})
    ));
    assert!(!hits(
        &absent,
        "pods",
        None,
        &json!({"metadata": {"labels": {"a": "b"}}})
    ));
    // Array elements, including negative indices; escaped keys.
    let arr = label_rule(
        "    groupResource: '**'\n    matches:\n    - {path: /spec/containers/-1/name, value: sidecar}\n    - {path: /metadata/annotations/a~1b, value: c}",
    );
    let o = json!({"metadata": {"annotations": {"a/b": "c"}}, "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}});
    assert!(hits(&arr, "pods", None, &o));
    // An index out of range is an error of the rule.
    let bad =
        label_rule("    groupResource: '**'\n    matches: [{path: /spec/containers/5, value: x}]");
    let mut o2 = o.clone();
    match bad.apply("pods", None, &mut o2) {
        Err(ModifierError::Apply {
            applied: 0,
            failures,
        }) => {
            assert_eq!(failures[0].rule, 0);
            assert!(
                failures[0].reason.contains("matches[0]"),
                "{}",
                failures[0].reason
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(o2, o);
}

// ----- JSON patch -----

fn json_patch_rule(patches: &str) -> ResourceModifiers {
    parse(&format!(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: '**'\n  patches:\n{patches}"
    ))
}

#[test]
fn json_patch_add_replace_remove() {
    let m = json_patch_rule(
        "  - {operation: add, path: /metadata/annotations, value: '{\"a\": \"1\"}'}\n  - {operation: add, path: /metadata/labels/new, value: '\"42\"'}\n  - {operation: replace, path: /spec/replicas, value: '5'}\n  - {operation: remove, path: /metadata/labels/app}\n  - {operation: add, path: /spec/template/spec/tolerations/-, value: '{\"key\": \"b\", \"operator\": \"Exists\"}'}\n  - {operation: add, path: /spec/paused, value: 'true'}\n",
    );
    let mut d = deployment();
    assert_eq!(
        m.apply("deployments.apps", Some("prod"), &mut d).unwrap(),
        1
    );
    assert_eq!(d["metadata"]["annotations"], json!({"a": "1"}));
    assert_eq!(d["metadata"]["labels"], json!({"new": "42"}));
    assert_eq!(d["spec"]["replicas"], json!(5));
    assert_eq!(d["spec"]["paused"], json!(true));
    assert_eq!(d["spec"]["template"]["spec"]["tolerations"][1]["key"], "b");
}

#[test]
fn json_patch_copy_and_move() {
    // The documented example: insert a container at 0, then copy it to 1.
    let m = json_patch_rule(
        "  - operation: add\n    path: /spec/template/spec/containers/0\n    value: \"{\\\"name\\\": \\\"nginx2\\\", \\\"image\\\": \\\"nginx:1.14.2\\\", \\\"ports\\\": [{\\\"containerPort\\\": 80}]}\"\n  - operation: copy\n    from: /spec/template/spec/containers/0\n    path: /spec/template/spec/containers/1\n",
    );
    let mut d = deployment();
    m.apply("deployments.apps", None, &mut d).unwrap();
    assert_eq!(
        container_names(&d),
        ["nginx2", "nginx2", "nginx", "sidecar"]
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1]["ports"][0]["containerPort"],
        80
    );

    let mv = json_patch_rule(
        "  - {operation: move, from: /metadata/labels/app, path: /metadata/labels/application}\n  - {operation: move, from: /spec/template/spec/containers/0, path: /spec/template/spec/containers/-1}\n",
    );
    let mut d = deployment();
    mv.apply("deployments.apps", None, &mut d).unwrap();
    assert_eq!(d["metadata"]["labels"], json!({"application": "web"}));
    assert_eq!(container_names(&d), ["sidecar", "nginx"]);
}

#[test]
fn json_patch_test_op_gates_the_rule() {
    let m = json_patch_rule(
        "  - {operation: test, path: /spec/storageClassName, value: premium}\n  - {operation: replace, path: /spec/storageClassName, value: standard}\n",
    );
    let mut p = pvc("a", "ns", "premium");
    assert_eq!(
        m.apply("persistentvolumeclaims", Some("ns"), &mut p)
            .unwrap(),
        1
    );
    assert_eq!(p["spec"]["storageClassName"], "standard");
    // A different value: the whole rule is skipped, silently.
    let mut p = pvc("a", "ns", "gold");
    assert_eq!(
        m.apply("persistentvolumeclaims", Some("ns"), &mut p)
            .unwrap(),
        0
    );
    assert_eq!(p, pvc("a", "ns", "gold"));
    // Ops before the failing test are not kept either.
    let m = json_patch_rule(
        "  - {operation: add, path: /metadata/labels/x, value: y}\n  - {operation: test, path: /spec/missing, value: v}\n",
    );
    let mut p = pvc("a", "ns", "gold");
    assert_eq!(
        m.apply("persistentvolumeclaims", Some("ns"), &mut p)
            .unwrap(),
        0
    );
    assert_eq!(p, pvc("a", "ns", "gold"));
    // A missing parent is an error, not a skip.
    let m = json_patch_rule("  - {operation: test, path: /nope/deeper, value: v}\n");
    let mut p = pvc("a", "ns", "gold");
    assert!(matches!(
        m.apply("persistentvolumeclaims", Some("ns"), &mut p),
        Err(ModifierError::Apply { applied: 0, .. })
    ));
}

#[test]
fn json_patch_failure_keeps_object_and_other_rules() {
    let m = parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: '**'}\n  patches:\n  - {operation: add, path: /metadata/labels/first, value: '1'}\n  - {operation: replace, path: /spec/nothing/here, value: x}\n- conditions: {groupResource: '**'}\n  patches:\n  - {operation: add, path: /metadata/labels/second, value: '2'}\n",
    );
    let mut p = pvc("a", "ns", "gold");
    match m.apply("persistentvolumeclaims", Some("ns"), &mut p) {
        Err(e @ ModifierError::Apply { .. }) => {
            let ModifierError::Apply { applied, failures } = &e else {
                unreachable!()
            };
            assert_eq!(*applied, 1);
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].rule, 0);
            assert!(
                failures[0]
                    .reason
                    .contains("patches[1] (replace /spec/nothing/here)"),
                "{}",
                failures[0].reason
            );
            assert!(e.to_string().contains("resourceModifierRules[0]"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(p.pointer("/metadata/labels/first").is_none());
    assert_eq!(p["metadata"]["labels"]["second"], json!(2));
}

// ----- merge patch -----

#[test]
fn merge_patch_sets_and_deletes() {
    let m = parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods, namespaces: [ns1]}\n  mergePatches:\n  - patchData: |\n      {\"metadata\": {\"annotations\": {\"foo\": null}}}\n  - patchData: |\n      metadata:\n        labels:\n          foo: null\n          added: 'yes'\n      spec:\n        containers:\n        - name: only\n          image: x\n",
    );
    let mut pod = json!({
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"foo": "1", "keep": "2"}, "labels": {"foo": "bar"}},
        "spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}
    });
    assert_eq!(m.apply("pods", Some("ns1"), &mut pod).unwrap(), 1);
    assert_eq!(pod["metadata"]["annotations"], json!({"keep": "2"}));
    assert_eq!(pod["metadata"]["labels"], json!({"added": "yes"}));
    // Lists are replaced by a merge patch.
    assert_eq!(
        pod["spec"]["containers"],
        json!([{"name": "only", "image": "x"}])
    );
    let mut other = json!({"metadata": {"name": "p"}});
    assert_eq!(m.apply("pods", Some("ns2"), &mut other).unwrap(), 0);
}

// ----- strategic merge patch -----

#[test]
fn strategic_changes_an_image_by_container_name() {
    let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: sidecar\n        image: envoy:2\n", &deployment()).unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(container_names(&d), ["nginx", "sidecar"]);
    assert_eq!(c[1], json!({"name": "sidecar", "image": "envoy:2"}));
    assert_eq!(
        c[0],
        deployment()["spec"]["template"]["spec"]["containers"][0]
    );
    // Everything else is untouched.
    let mut expected = deployment();
    expected["spec"]["template"]["spec"]["containers"][1]["image"] = json!("envoy:2");
    assert_eq!(d, expected);
}

#[test]
fn strategic_adds_a_container() {
    // Only a new item: Kubernetes puts it first.
    let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: debug\n        image: busybox\n", &deployment()).unwrap();
    assert_eq!(container_names(&d), ["debug", "nginx", "sidecar"]);
    // Existing item then new one: the new one follows the item it follows in the patch.
    let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:2\n      - name: debug\n        image: busybox\n", &deployment()).unwrap();
    assert_eq!(container_names(&d), ["nginx", "debug", "sidecar"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
}

#[test]
fn strategic_deletes_a_container() {
    let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: sidecar\n        $patch: delete\n", &deployment()).unwrap();
    assert_eq!(container_names(&d), ["nginx"]);
    let e = smp(
        "spec:\n  template:\n    spec:\n      containers:\n      - $patch: delete\n",
        &deployment(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("merge key \"name\""), "{e}");
}

#[test]
fn strategic_nested_lists_nulls_and_replace() {
    let d = smp(
            "metadata:\n  labels:\n    app: null\n    tier: web\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: nginx\n        env:\n        - name: B\n          value: '20'\n        - name: C\n          value: '3'\n        ports:\n        - containerPort: 80\n          name: http\n      tolerations:\n      - key: z\n        operator: Exists\n",
            &deployment(),
        )
        .unwrap();
    assert_eq!(d["metadata"]["labels"], json!({"tier": "web"}));
    assert_eq!(d["spec"]["replicas"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
    );
    // Lists without a merge key are replaced.
    assert_eq!(
        d["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "z", "operator": "Exists"}])
    );

    // `$patch: replace` as a list item replaces the list.
    let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - $patch: replace\n      - name: solo\n        image: s\n", &deployment()).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "solo", "image": "s"}])
    );
    // `$patch: replace` in a map replaces the map; `$patch: delete` empties it.
    let d = smp("spec:\n  selector:\n    $patch: replace\n    matchLabels: {other: x}\n  template:\n    metadata:\n      $patch: delete\n", &deployment()).unwrap();
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"other": "x"}})
    );
    assert_eq!(d["spec"]["template"]["metadata"], json!({}));
    // New subtrees lose their nulls and directives.
    let d = smp("spec:\n  strategy:\n    type: Recreate\n    rollingUpdate: null\n    extra: {$patch: delete}\n", &deployment()).unwrap();
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn strategic_scalar_lists_and_directives() {
    let obj = json!({"kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a", "b"]}, "data": {"k": "v"}});
    let d = smp("metadata:\n  finalizers: [c, a]\n", &obj).unwrap();
    assert_eq!(d["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let d = smp(
        "metadata:\n  $deleteFromPrimitiveList/finalizers: [a]\n",
        &obj,
    )
    .unwrap();
    assert_eq!(d["metadata"]["finalizers"], json!(["b"]));
    let e = smp("metadata:\n  $retainKeys: [name]\n", &obj).unwrap_err();
    assert!(
        e.to_string()
            .contains("$retainKeys directive is not supported"),
        "{e}"
    );
    let e = smp("$setElementOrder/containers: []\n", &obj).unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
    let e = smp("metadata:\n  $patch: merge\n", &obj).unwrap_err();
    assert!(e.to_string().contains("unsupported $patch"), "{e}");
}

#[test]
fn strategic_kind_specific_fields() {
    let svc = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
    let d = smp(
        "spec:\n  ports:\n  - port: 80\n    targetPort: 9090\n",
        &svc,
    )
    .unwrap();
    assert_eq!(
        d["spec"]["ports"][0],
        json!({"name": "http", "port": 80, "targetPort": 9090})
    );
    assert_eq!(d["spec"]["ports"][1]["port"], 443);
    let pdb = json!({"kind": "PodDisruptionBudget", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    let d = smp("spec:\n  selector:\n    matchLabels: {b: '2'}\n", &pdb).unwrap();
    assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    // The same patch merges a Deployment's selector.
    let d = smp(
        "spec:\n  selector:\n    matchLabels: {b: '2'}\n",
        &deployment(),
    )
    .unwrap();
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web", "b": "2"}})
    );
}

#[test]
fn list_strategy_table() {
    let p = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        list_strategy("Pod", &p(&["spec"]), "containers"),
        ListStrategy::MergeKey("name")
    );
    assert_eq!(
        list_strategy(
            "CronJob",
            &p(&["spec", "jobTemplate", "spec", "template", "spec"]),
            "volumes"
        ),
        ListStrategy::MergeKey("name")
    );
    assert_eq!(
        list_strategy("Pod", &p(&["spec", "containers"]), "volumeMounts"),
        ListStrategy::MergeKey("mountPath")
    );
    assert_eq!(
        list_strategy("Pod", &p(&["spec", "initContainers"]), "ports"),
        ListStrategy::MergeKey("containerPort")
    );
    assert_eq!(
        list_strategy("EndpointSlice", &p(&[]), "ports"),
        ListStrategy::Atomic
    );
    assert_eq!(
        list_strategy("ServiceAccount", &p(&[]), "imagePullSecrets"),
        ListStrategy::Atomic
    );
    assert_eq!(
        list_strategy("ServiceAccount", &p(&[]), "secrets"),
        ListStrategy::MergeKey("name")
    );
    assert_eq!(
        list_strategy("Pod", &p(&["spec"]), "tolerations"),
        ListStrategy::Atomic
    );
    assert_eq!(
        list_strategy("Pod", &p(&["metadata"]), "finalizers"),
        ListStrategy::Set
    );
}

// ----- several rules -----

#[test]
fn rules_apply_in_order_with_conditions_on_the_original() {
    // Velero's own case: [standard → premium, premium → gold] turns standard into premium.
    let chain = parse(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: premium}]\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: premium}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: gold}]\n",
    );
    let mut p = pvc("a", "ns", "standard");
    assert_eq!(
        chain
            .apply("persistentvolumeclaims", Some("ns"), &mut p)
            .unwrap(),
        1
    );
    assert_eq!(p["spec"]["storageClassName"], "premium");
    // [standard → premium, standard → gold]: both match; the later patch wins.
    let both = parse(
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: premium}]\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: gold}]\n",
    );
    let mut p = pvc("a", "ns", "standard");
    assert_eq!(
        both.apply("persistentvolumeclaims", Some("ns"), &mut p)
            .unwrap(),
        2
    );
    assert_eq!(p["spec"]["storageClassName"], "gold");
    // Patches see the previous rules' results; kinds of patch mix across rules.
    let mixed = parse(
        "version: v1\nresourceModifierRules:\n- conditions: {groupResource: deployments.apps}\n  strategicPatches:\n  - patchData: '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"debug\",\"image\":\"busybox\"}]}}}}'\n- conditions: {groupResource: deployments.apps}\n  patches:\n  - {operation: replace, path: /spec/template/spec/containers/0/image, value: 'busybox:1.36'}\n- conditions: {groupResource: '*'}\n  mergePatches: [{patchData: '{\"metadata\":{\"labels\":{\"core\":\"1\"}}}'}]\n- conditions: {groupResource: '*.apps'}\n  mergePatches: [{patchData: '{\"metadata\":{\"labels\":{\"apps\":\"1\"}}}'}]\n",
    );
    let mut d = deployment();
    assert_eq!(
        mixed
            .apply("deployments.apps", Some("prod"), &mut d)
            .unwrap(),
        3
    );
    assert_eq!(container_names(&d), ["debug", "nginx", "sidecar"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(d["metadata"]["labels"], json!({"app": "web", "apps": "1"}));
}
