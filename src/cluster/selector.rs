//! Label selectors in Kubernetes' string form (`app=web,tier!=db,env in (a,b),!legacy`), parsed
//! into `metav1.LabelSelector` and matched client-side with kube's `Selector`.
//!
//! Source: the grammar of `k8s.io/apimachinery/pkg/labels.Parse`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};

/// A selector that could not be parsed or used.
#[derive(Debug, thiserror::Error)]
#[error("label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong.
    pub reason: String,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn set_values(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// Parses a selector string. An empty string selects everything.
///
/// # Errors
/// [`SelectorError`] naming the offending requirement.
pub fn parse(selector: &str) -> Result<LabelSelector, SelectorError> {
    let err = |reason: String| SelectorError {
        selector: selector.to_string(),
        reason,
    };
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    for req in split_top_level(selector) {
        let req = req.trim();
        if req.is_empty() {
            continue;
        }
        let expr = |key: &str, op: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
            key: key.trim().to_string(),
            operator: op.to_string(),
            values,
        };
        if let Some((k, v)) = req.split_once("!=") {
            exprs.push(expr(k, "NotIn", Some(vec![v.trim().to_string()])));
        } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            labels.insert(k.trim().to_string(), v.trim().to_string());
        } else if let Some(k) = req.strip_prefix('!') {
            exprs.push(expr(k, "DoesNotExist", None));
        } else if let Some((k, rest)) = req.split_once(" notin ") {
            let vals = set_values(rest).ok_or_else(|| err(format!("{req:?}: expected (v1,v2)")))?;
            exprs.push(expr(k, "NotIn", Some(vals)));
        } else if let Some((k, rest)) = req.split_once(" in ") {
            let vals = set_values(rest).ok_or_else(|| err(format!("{req:?}: expected (v1,v2)")))?;
            exprs.push(expr(k, "In", Some(vals)));
        } else if req.contains([' ', '(', ')', '<', '>']) {
            return Err(err(format!("cannot parse requirement {req:?}")));
        } else {
            exprs.push(expr(req, "Exists", None));
        }
    }
    for k in labels.keys().chain(exprs.iter().map(|e| &e.key)) {
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(err(format!("invalid label key {k:?}")));
        }
    }
    Ok(LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    })
}

/// A compiled selector for client-side matching.
#[derive(Clone, Debug)]
pub struct LabelMatcher(Selector);

impl LabelMatcher {
    /// Compiles a parsed selector.
    ///
    /// # Errors
    /// [`SelectorError`] for an unknown operator.
    pub fn new(sel: &LabelSelector) -> Result<Self, SelectorError> {
        Selector::try_from(sel.clone())
            .map(Self)
            .map_err(|e| SelectorError {
                selector: format!("{sel:?}"),
                reason: e.to_string(),
            })
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }

    /// The selector in string form, for server-side `labelSelector` parameters.
    pub fn to_query(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator() {
        let s = parse("app=web, tier!=db,env in (prod, staging),!legacy,team,x==y").unwrap();
        assert_eq!(s.match_labels.as_ref().unwrap()["app"], "web");
        assert_eq!(s.match_labels.as_ref().unwrap()["x"], "y");
        let ops: Vec<&str> = s
            .match_expressions
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.operator.as_str())
            .collect();
        assert_eq!(ops, vec!["NotIn", "In", "DoesNotExist", "Exists"]);
        let m = LabelMatcher::new(&s).unwrap();
        assert!(m.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("x", "y")
        ])));
        assert!(!m.matches(&labels(&[
            ("app", "web"),
            ("env", "dev"),
            ("team", "a"),
            ("x", "y")
        ])));
        assert!(!m.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("x", "y"),
            ("legacy", "1")
        ])));
    }

    #[test]
    fn empty_selects_all_and_garbage_is_refused() {
        let s = parse("").unwrap();
        assert!(LabelMatcher::new(&s).unwrap().matches(&BTreeMap::new()));
        assert!(parse("a in b").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("=v").is_err());
    }
}
