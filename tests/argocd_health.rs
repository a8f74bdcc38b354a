//! The Argo CD health checks under `kustomize/argocd/health/` (DESIGN §2: "Ship Argo CD Lua
//! health checks for every kind"), run the way Argo CD runs them.
//!
//! Argo CD's contract (`util/lua` in argo-cd): the object is decoded into a Lua table and set as
//! the global `obj` (JSON null becomes nil, every number a Lua number), the script is run as a
//! chunk, and its return value must be a table, which is JSON-encoded and read as
//! `{status, message}`; a status outside Healthy/Progressing/Degraded/Suspended/Missing/Unknown
//! becomes `Unknown` with the message "Lua returned an invalid health status". Each
//! `tidemark.dev_<Kind>/health_test.yaml` lists `tests: [{healthStatus: {status, message},
//! inputPath}]`, as in Argo CD's `resource_customizations/`, and the status and message must
//! match exactly.
//!
//! Scripts wired through `argocd-cm` run without the "open libs" unless
//! `resource.customizations.useOpenLibs.<group_kind>` is set: only the base and table
//! libraries (and a reduced `os`). So the interpreter here loads base and table only, which
//! makes a script that uses the string or math library fail here as it would in Argo CD.
//! Argo CD's interpreter is Lua 5.1 (gopher-lua); this one is 5.4, so a textual check keeps
//! 5.2+ syntax out of the scripts.
//!
//! Also checked: every `return` line of every script is reached by some test case (every
//! branch has a test), every testdata file is used, and `kustomize/argocd/argocd-cm-patch.yaml`
//! holds exactly the scripts (regenerate it with `TIDEMARK_BLESS=1 cargo test --test
//! argocd_health`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value as LuaValue, VmState};
use serde_json::Value;

/// The kinds of group `tidemark.dev`, each with a health check.
const KINDS: [&str; 6] = [
    "Location",
    "BackupPolicy",
    "Schedule",
    "RestorePlan",
    "Backup",
    "Restore",
];

/// The statuses Argo CD accepts from a script.
const VALID_STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

/// Argo CD's message for a status it does not know.
const INVALID_STATUS_MESSAGE: &str = "Lua returned an invalid health status";

/// Argo CD cancels a script after one second.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(1);

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kustomize/argocd")
}

fn kind_dir(kind: &str) -> PathBuf {
    argocd_dir().join(format!("health/tidemark.dev_{kind}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn script(kind: &str) -> String {
    read(&kind_dir(kind).join("health.lua"))
}

/// One entry of a `health_test.yaml`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestCase {
    health_status: Expected,
    input_path: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    status: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<TestCase>,
}

fn test_cases(kind: &str) -> Vec<TestCase> {
    let path = kind_dir(kind).join("health_test.yaml");
    let file: TestFile = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    file.tests
}

/// Decodes JSON into Lua as Argo CD's `decodeValue` does: null is nil, objects and arrays are
/// tables (arrays 1-based). Argo CD's Lua has one number type (float64) whose integral values
/// print without a fraction; integers become Lua integers here so they print the same.
fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table()?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table()?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// A string field of the returned table, as Go's JSON decoding into a string field reads it.
fn string_field(t: &mlua::Table, key: &str) -> Result<String, String> {
    match t.raw_get::<LuaValue>(key).map_err(|e| e.to_string())? {
        LuaValue::Nil => Ok(String::new()),
        LuaValue::String(s) => Ok(s.to_str().map_err(|e| e.to_string())?.to_string()),
        other => Err(format!("hs.{key} is a {}, not a string", other.type_name())),
    }
}

/// Runs `source` on `obj` as Argo CD does and returns (status, message); records the lines it
/// executes in `lines`.
fn run_health(
    source: &str,
    obj: &Value,
    lines: &Rc<RefCell<BTreeSet<usize>>>,
) -> Result<(String, String), String> {
    const CHUNK: &str = "=health.lua";
    let lua = Lua::new_with(StdLib::TABLE, LuaOptions::new()).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let seen = Rc::clone(lines);
    lua.set_hook(HookTriggers::EVERY_LINE, move |_lua, debug| {
        if started.elapsed() > SCRIPT_TIMEOUT {
            return Err(mlua::Error::runtime(
                "script ran longer than Argo CD allows",
            ));
        }
        if debug.source().source.as_deref() == Some(CHUNK)
            && let Some(line) = debug.current_line()
        {
            seen.borrow_mut().insert(line);
        }
        Ok(VmState::Continue)
    })
    .map_err(|e| e.to_string())?;
    lua.globals()
        .set("obj", to_lua(&lua, obj).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let returned: LuaValue = lua
        .load(source)
        .set_name(CHUNK)
        .eval()
        .map_err(|e| e.to_string())?;
    let LuaValue::Table(hs) = returned else {
        return Err(format!(
            "expect table output from Lua script, not {}",
            returned.type_name()
        ));
    };
    let status = string_field(&hs, "status")?;
    let message = string_field(&hs, "message")?;
    if !VALID_STATUSES.contains(&status.as_str()) {
        return Ok(("Unknown".into(), INVALID_STATUS_MESSAGE.into()));
    }
    Ok((status, message))
}

/// Reads a testdata object as Argo CD's test runner does (YAML into a JSON-like map).
fn load_object(path: &Path) -> Value {
    let v: Value = serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    assert!(v.is_object(), "{}: not a YAML mapping", path.display());
    v
}

/// Lines of a script that end a branch (`return ...`), by 1-based number.
fn return_lines(source: &str) -> BTreeMap<usize, String> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("return "))
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

#[test]
fn every_health_check_gives_the_status_and_message_its_test_cases_expect() {
    let mut failures = Vec::new();
    let mut total = 0;
    for kind in KINDS {
        let source = script(kind);
        let cases = test_cases(kind);
        assert!(!cases.is_empty(), "{kind}: health_test.yaml has no tests");
        let lines = Rc::new(RefCell::new(BTreeSet::new()));
        for case in &cases {
            total += 1;
            let path = kind_dir(kind).join(&case.input_path);
            let obj = load_object(&path);
            assert_eq!(
                obj["kind"],
                kind,
                "{}: input is not a {kind}",
                path.display()
            );
            assert_eq!(
                obj["apiVersion"],
                "tidemark.dev/v1alpha1",
                "{}",
                path.display()
            );
            match run_health(&source, &obj, &lines) {
                Ok((status, message)) => {
                    if status != case.health_status.status || message != case.health_status.message
                    {
                        failures.push(format!(
                            "{kind} {}: got {status} {message:?}, expected {} {:?}",
                            case.input_path, case.health_status.status, case.health_status.message
                        ));
                    }
                }
                Err(e) => failures.push(format!("{kind} {}: script error: {e}", case.input_path)),
            }
        }
        // Every branch (each ends in a `return`) is taken by some test case.
        let hit = lines.borrow();
        for (n, line) in return_lines(&source) {
            if !hit.contains(&n) {
                failures.push(format!(
                    "{kind}: health.lua line {n} (`{line}`) is reached by no test case"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} health checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn test_cases_and_testdata_match_one_to_one() {
    for kind in KINDS {
        let dir = kind_dir(kind);
        let cases = test_cases(kind);
        let used: BTreeSet<String> = cases.iter().map(|c| c.input_path.clone()).collect();
        assert_eq!(
            used.len(),
            cases.len(),
            "{kind}: an inputPath is listed twice"
        );
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
            .unwrap_or_else(|e| panic!("{kind}: testdata: {e}"))
            .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        assert_eq!(
            used, on_disk,
            "{kind}: testdata files and health_test.yaml differ"
        );
        for case in &cases {
            assert!(
                VALID_STATUSES.contains(&case.health_status.status.as_str()),
                "{kind} {}: {} is no Argo CD health status",
                case.input_path,
                case.health_status.status
            );
            // Condition statuses must be strings in every YAML reading (an unquoted True is a
            // boolean to the YAML 1.1 parser Argo CD's tests use).
            let obj = load_object(&dir.join(&case.input_path));
            for c in obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(
                    c["status"].is_string() && c["type"].is_string(),
                    "{kind} {}: condition {c} needs string type and status",
                    case.input_path
                );
            }
        }
    }
}

#[test]
fn scripts_use_only_what_argocd_lua_offers() {
    // Argo CD runs Lua 5.1 (gopher-lua) with base, table and a reduced os library.
    let forbidden = [
        ("goto ", "goto (Lua 5.2+)"),
        ("//", "integer division (Lua 5.3+)"),
        ("<const>", "const variables (Lua 5.4)"),
        ("<close>", "to-be-closed variables (Lua 5.4)"),
        (
            "string.",
            "the string library (not loaded for argocd-cm scripts)",
        ),
        (
            "math.",
            "the math library (not loaded for argocd-cm scripts)",
        ),
        ("utf8.", "the utf8 library (Lua 5.3+)"),
        ("io.", "the io library (not loaded)"),
        ("require", "require (no modules in Argo CD)"),
        ("print(", "print (debugging output)"),
    ];
    for kind in KINDS {
        let source = script(kind);
        assert!(
            source.trim_end().ends_with("return hs"),
            "{kind}: the chunk must end with `return hs`"
        );
        for (n, line) in source.lines().enumerate() {
            let code = line.split("--").next().unwrap_or_default();
            for (needle, what) in forbidden {
                assert!(
                    !code.contains(needle),
                    "{kind}: health.lua line {}: uses {what}: {line}",
                    n + 1
                );
            }
            assert!(
                !line.contains('\t') && line == line.trim_end(),
                "{kind}: health.lua line {}: tabs or trailing blanks do not survive a YAML block scalar",
                n + 1
            );
        }
    }
}

#[test]
fn a_script_must_return_a_known_status() {
    // The runner itself, against Argo CD's documented behaviour.
    let lines = Rc::new(RefCell::new(BTreeSet::new()));
    let obj = serde_json::json!({"kind": "X", "status": {"n": 3}});
    assert_eq!(
        run_health(
            "return {status = 'Healthy', message = 'n=' .. obj.status.n}",
            &obj,
            &lines
        ),
        Ok(("Healthy".into(), "n=3".into()))
    );
    assert_eq!(
        run_health("return {status = 'Fine'}", &obj, &lines),
        Ok(("Unknown".into(), INVALID_STATUS_MESSAGE.into()))
    );
    assert!(run_health("return 'Healthy'", &obj, &lines).is_err());
    assert!(run_health("return {status = string.lower('HEALTHY')}", &obj, &lines).is_err());
    assert!(run_health("while true do end", &obj, &lines).is_err());
}

/// The argocd-cm patch that wires the scripts in, generated from them.
fn argocd_cm_patch() -> String {
    let mut out = String::from(
        "# Generated from kustomize/argocd/health/*/health.lua by tests/argocd_health.rs\n\
         # (TIDEMARK_BLESS=1 cargo test --test argocd_health); do not edit by hand.\n\
         #\n\
         # Teaches Argo CD the health of tidemark.dev objects (Argo CD has no generic health for\n\
         # custom resources). Merge it into the argocd-cm ConfigMap of your Argo CD install, e.g.\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-patch.yaml\n\
         # or list it under `patches:` of the kustomization that installs Argo CD.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: argocd-cm\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/name: argocd-cm\n\
         \x20   app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for kind in KINDS {
        out.push_str(&format!(
            "  resource.customizations.health.tidemark.dev_{kind}: |\n"
        ));
        for line in script(kind).lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn argocd_cm_patch_holds_exactly_the_scripts() {
    let path = argocd_dir().join("argocd-cm-patch.yaml");
    let expected = argocd_cm_patch();
    if std::env::var_os("TIDEMARK_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == expected,
        "{} is stale: run `TIDEMARK_BLESS=1 cargo test --test argocd_health`",
        path.display()
    );
    // And as YAML, each key holds its script byte for byte.
    let cm: Value = serde_yaml::from_str(&on_disk).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), KINDS.len());
    for kind in KINDS {
        let key = format!("resource.customizations.health.tidemark.dev_{kind}");
        assert_eq!(
            data.get(&key).and_then(Value::as_str),
            Some(script(kind).as_str()),
            "{key}"
        );
    }
}
