//! Velero's results file shape: `{"warnings": R, "errors": R}` with
//! `R = {"velero": [...], "cluster": [...], "namespaces": {"<ns>": [...]}}`.
//!
//! Source: Velero's `pkg/util/results` (`Result` type) — the `-results.gz` files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Messages of one severity, grouped like Velero's `results.Result`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultSet {
    /// Messages about the tool itself (discovery, store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub velero: Vec<String>,
    /// Messages about cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster: Vec<String>,
    /// Messages about namespaced objects, by namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, Vec<String>>,
}

impl ResultSet {
    /// Adds a message about an object in `namespace` (`None` = cluster-scoped).
    pub fn add(&mut self, namespace: Option<&str>, message: impl Into<String>) {
        match namespace {
            Some(ns) => self
                .namespaces
                .entry(ns.to_string())
                .or_default()
                .push(message.into()),
            None => self.cluster.push(message.into()),
        }
    }

    /// Adds a message about the run itself.
    pub fn add_general(&mut self, message: impl Into<String>) {
        self.velero.push(message.into());
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.velero.len()
            + self.cluster.len()
            + self.namespaces.values().map(Vec::len).sum::<usize>()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends everything from `other`.
    pub fn merge(&mut self, other: ResultSet) {
        self.velero.extend(other.velero);
        self.cluster.extend(other.cluster);
        for (ns, msgs) in other.namespaces {
            self.namespaces.entry(ns).or_default().extend(msgs);
        }
    }
}

/// The `-results.gz` document.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Results {
    /// Warnings.
    #[serde(default)]
    pub warnings: ResultSet,
    /// Errors.
    #[serde(default)]
    pub errors: ResultSet,
}

impl Results {
    /// Appends everything from `other`.
    pub fn merge(&mut self, other: Results) {
        self.warnings.merge(other.warnings);
        self.errors.merge(other.errors);
    }

    /// Renders as indented lines for `describe` output.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, set) in [("Warnings", &self.warnings), ("Errors", &self.errors)] {
            if set.is_empty() {
                out.push_str(&format!("{title}:  <none>\n"));
                continue;
            }
            out.push_str(&format!("{title}:\n"));
            if !set.velero.is_empty() {
                out.push_str("  Tidemark:\n");
                for m in &set.velero {
                    out.push_str(&format!("    {m}\n"));
                }
            }
            if !set.cluster.is_empty() {
                out.push_str("  Cluster:\n");
                for m in &set.cluster {
                    out.push_str(&format!("    {m}\n"));
                }
            }
            if !set.namespaces.is_empty() {
                out.push_str("  Namespaces:\n");
                for (ns, msgs) in &set.namespaces {
                    out.push_str(&format!("    {ns}:\n"));
                    for m in msgs {
                        out.push_str(&format!("      {m}\n"));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_velero() {
        let mut r = Results::default();
        r.errors.add(Some("web"), "pods/x: forbidden");
        r.warnings.add(None, "crd y: exists");
        r.warnings.add_general("group metrics.k8s.io: stale");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "warnings": {"velero": ["group metrics.k8s.io: stale"], "cluster": ["crd y: exists"]},
                "errors": {"namespaces": {"web": ["pods/x: forbidden"]}}
            })
        );
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.warnings.len(), 2);
        assert!(r.render().contains("web:"));
    }
}
