//! The client config file, Velero's `velero client config`: per-user defaults for the command
//! line — the controller's `namespace`, the direct-mode `location` URL, the `output` format of
//! listings and log `color` — kept in `$XDG_CONFIG_HOME/tidemark/config.json`
//! (`~/.config/tidemark/config.json`; `$TIDEMARK_CLIENT_CONFIG` names another file).
//!
//! Precedence, highest first: a flag, its environment variable, this file, the built-in default.
//! The file's values become the flags' defaults before the command line is parsed, so `--help`
//! shows them as the defaults in effect.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Arg, Args, Subcommand};
use serde::{Deserialize, Serialize};

/// The settings, each optional (unset: the built-in default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientConfig {
    /// Namespace of the installation the commands talk to (`--namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Direct mode's location URL (`--location`, e.g. `s3://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Output format of listings (`-o`: `table`, `json` or `yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Colours in log output (`--color`: `auto`, `always` or `never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// The keys `set` and `get` take, in the file's order.
const KEYS: [&str; 4] = ["namespace", "location", "output", "color"];

/// Commands whose `--namespace` is the pod's own, never a client default.
const IN_CLUSTER: [&str; 2] = ["server", "node-agent"];

impl ClientConfig {
    fn get(&self, key: &str) -> Option<&String> {
        match key {
            "namespace" => self.namespace.as_ref(),
            "location" => self.location.as_ref(),
            "output" => self.output.as_ref(),
            "color" => self.color.as_ref(),
            _ => None,
        }
    }

    /// Sets `key` (also Velero's `colorized=true|false`); an empty value unsets it.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let value = (!value.is_empty()).then(|| value.to_string());
        let one_of = |allowed: &[&str]| -> Result<()> {
            match &value {
                Some(v) if !allowed.contains(&v.as_str()) => {
                    bail!("{key}={v}: must be one of {}", allowed.join(", "))
                }
                _ => Ok(()),
            }
        };
        match key {
            "namespace" => self.namespace = value,
            "location" => {
                if let Some(v) = &value {
                    v.parse::<crate::store::LocationUrl>()
                        .with_context(|| format!("location={v}"))?;
                }
                self.location = value;
            }
            "output" => {
                one_of(&["table", "json", "yaml"])?;
                self.output = value;
            }
            "color" | "colour" => {
                one_of(&["auto", "always", "never"])?;
                self.color = value;
            }
            "colorized" => {
                self.color = match value.as_deref() {
                    None => None,
                    Some("true") => Some("always".into()),
                    Some("false") => Some("never".into()),
                    Some(v) => bail!("colorized={v}: must be true or false"),
                }
            }
            other => bail!(
                "unknown client config key {other:?} (keys: {})",
                KEYS.join(", ")
            ),
        }
        Ok(())
    }
}

/// The file's path: `$TIDEMARK_CLIENT_CONFIG`, else `<XDG config dir>/tidemark/config.json`.
pub(crate) fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("TIDEMARK_CLIENT_CONFIG") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("dev", "tidemark", "tidemark")
        .map(|d| d.config_dir().join("config.json"))
        .unwrap_or_else(|| PathBuf::from(".tidemark/config.json"))
}

/// Reads the file; a missing file is the empty config.
///
/// # Errors
/// The file's path and the field at fault when it is not a valid config.
pub(crate) fn load() -> Result<ClientConfig> {
    let path = path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClientConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .with_context(|| format!("client config {}", path.display()))
}

fn save(cfg: &ClientConfig) -> Result<PathBuf> {
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(cfg)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Makes the file's values the defaults of the matching flags of every command: `--namespace`
/// (not of `server` and `node-agent`, whose namespace is their pod's), the direct-mode
/// `--location` (the flags read from `TIDEMARK_LOCATION`), the listings' `-o/--output` where the
/// value is one of the flag's formats (not `create -o`, which prints instead of running), and the
/// global `--color`.
pub(crate) fn with_defaults(cmd: clap::Command, cfg: &ClientConfig) -> clap::Command {
    let leak = |s: &String| -> &'static str { Box::leak(s.clone().into_boxed_str()) };
    let defaults: BTreeMap<&str, &'static str> = KEYS
        .iter()
        .filter_map(|k| cfg.get(k).map(|v| (*k, leak(v))))
        .collect();
    if defaults.is_empty() {
        return cmd;
    }
    walk(cmd, &defaults)
}

fn walk(cmd: clap::Command, d: &BTreeMap<&str, &'static str>) -> clap::Command {
    let in_cluster = IN_CLUSTER.contains(&cmd.get_name());
    let cmd = cmd.mut_args(|a| default_for(a, d, in_cluster));
    cmd.mut_subcommands(|sc| walk(sc, d))
}

fn default_for(a: Arg, d: &BTreeMap<&str, &'static str>, in_cluster: bool) -> Arg {
    let id = a.get_id().as_str().to_string();
    let value = match id.as_str() {
        "namespace" if !in_cluster => d.get("namespace"),
        "location" if a.get_env().is_some_and(|e| e == "TIDEMARK_LOCATION") => d.get("location"),
        // Only listing formats, which have a default; `create -o json` (print the object
        // instead of running) must stay opt-in.
        "output" if !a.get_default_values().is_empty() => d
            .get("output")
            .filter(|v| a.get_possible_values().iter().any(|p| p.matches(v, false))),
        "color" => d.get("color"),
        _ => None,
    };
    match value {
        Some(v) => a.default_value(*v),
        None => a,
    }
}

/// `tidemark client ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum ClientCommand {
    /// Get and set the client config file's defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `tidemark client config get|set`.
#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print the settings (all, or the given keys), `KEY: VALUE`, with the file's path first.
    Get(GetArgs),
    /// Set settings: `namespace=backup-system location=s3://bucket/prefix output=json
    /// color=never` (an empty value unsets a key; Velero's `colorized=true|false` works too).
    Set(SetArgs),
}

/// Options of `client config get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Keys to print (`namespace`, `location`, `output`, `color`); default all.
    keys: Vec<String>,
}

/// Options of `client config set`.
#[derive(Args, Debug)]
pub(crate) struct SetArgs {
    /// `KEY=VALUE` pairs.
    #[arg(required = true, value_parser = super::parse_kv)]
    pairs: Vec<(String, String)>,
}

/// Runs `tidemark client ...`.
///
/// # Errors
/// An unknown key or bad value (nothing is written then), an unreadable or unwritable file.
pub(crate) fn run(cmd: ClientCommand) -> Result<std::process::ExitCode> {
    let ClientCommand::Config(cmd) = cmd;
    let mut cfg = load()?;
    match cmd {
        ConfigCommand::Get(args) => {
            let keys: Vec<&str> = if args.keys.is_empty() {
                KEYS.to_vec()
            } else {
                args.keys.iter().map(String::as_str).collect()
            };
            println!("# {}", path().display());
            for k in keys {
                if !KEYS.contains(&k) {
                    bail!(
                        "unknown client config key {k:?} (keys: {})",
                        KEYS.join(", ")
                    );
                }
                println!(
                    "{k}: {}",
                    cfg.get(k).map(String::as_str).unwrap_or("<unset>")
                );
            }
        }
        ConfigCommand::Set(args) => {
            for (k, v) in &args.pairs {
                cfg.set(k, v)?;
            }
            let path = save(&cfg)?;
            println!("Client config saved to {}.", path.display());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_checks_keys_and_values() {
        let mut c = ClientConfig::default();
        c.set("namespace", "backup-system").unwrap();
        c.set("output", "json").unwrap();
        c.set("colorized", "false").unwrap();
        assert_eq!(c.color.as_deref(), Some("never"));
        assert!(
            c.set("output", "xml")
                .unwrap_err()
                .to_string()
                .contains("table, json, yaml")
        );
        assert!(
            c.set("features", "EnableCSI")
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
        assert!(c.set("location", "ftp://x").is_err());
        c.set("namespace", "").unwrap();
        assert_eq!(c.namespace, None);
    }

    #[test]
    fn defaults_reach_nested_flags_but_not_the_server() {
        use clap::CommandFactory;
        let cfg = ClientConfig {
            namespace: Some("backup-system".into()),
            location: Some("file:///var/backups".into()),
            output: Some("json".into()),
            color: Some("never".into()),
        };
        let cmd = with_defaults(crate::cli::Cli::command(), &cfg);
        let m = cmd
            .clone()
            .try_get_matches_from(["tidemark", "backup", "get"])
            .unwrap();
        let (_, sub) = m.subcommand().unwrap();
        let (_, get) = sub.subcommand().unwrap();
        assert_eq!(
            get.get_one::<String>("location").unwrap(),
            "file:///var/backups"
        );
        let m = cmd
            .clone()
            .try_get_matches_from(["tidemark", "backup", "create", "b"])
            .unwrap();
        let (_, sub) = m.subcommand().unwrap();
        let (_, create) = sub.subcommand().unwrap();
        assert!(
            create.value_source("output").is_none(),
            "create must run, not print"
        );
        let m = cmd
            .clone()
            .try_get_matches_from(["tidemark", "install", "--dry-run"])
            .unwrap();
        let (_, install) = m.subcommand().unwrap();
        assert_eq!(
            install.get_one::<String>("namespace").unwrap(),
            "backup-system"
        );
        let m = cmd.try_get_matches_from(["tidemark", "server"]).unwrap();
        let (_, server) = m.subcommand().unwrap();
        assert_eq!(server.get_one::<String>("namespace").unwrap(), "tidemark");
    }
}
