//! Pure transforms applied to each backed-up object before it is created (DESIGN §5), and the
//! comparison used when the object already exists.
//!
//! Follows Velero's restore item actions: metadata reset, Service clusterIP/nodePort rules,
//! Pod nodeName, PV/PVC binding cleanup, namespace remapping and the restore labels.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::api::velero::{BACKUP_NAME_LABEL, RESTORE_NAME_LABEL};

/// Annotations that record a binding made by the source cluster's controllers.
pub const BINDING_ANNOTATIONS: &[&str] = &[
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
];

/// Metadata fields kept on restore; everything else (uid, resourceVersion, generation,
/// creationTimestamp, selfLink, generateName, deletion fields, ownerReferences, managedFields)
/// is dropped.
pub const KEPT_METADATA: &[&str] = &["name", "namespace", "labels", "annotations", "finalizers"];

/// What to do with one item.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Create (or reconcile) it.
    Restore,
    /// Leave it out, with the reason.
    Skip(String),
}

/// Parameters of the transforms.
#[derive(Clone, Debug, Default)]
pub struct TransformContext {
    /// Backup name (label value).
    pub backup: String,
    /// Restore name (label value).
    pub restore: String,
    /// Source namespace → target namespace.
    pub namespace_mappings: BTreeMap<String, String>,
    /// Keep Service nodePorts.
    pub preserve_node_ports: bool,
    /// Keep `status` (otherwise dropped).
    pub restore_status: bool,
    /// PersistentVolumes that this restore creates: PVCs keep `volumeName` only for those.
    pub restored_pvs: BTreeSet<String>,
}

impl TransformContext {
    /// The target namespace of a source namespace.
    pub fn map_namespace<'a>(&'a self, ns: &'a str) -> &'a str {
        self.namespace_mappings
            .get(ns)
            .map(String::as_str)
            .unwrap_or(ns)
    }
}

fn remove_path(obj: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        match cur.get_mut(*p) {
            Some(v) => cur = v,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(*last);
    }
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// Decides whether an item is restored at all: finished pods, completed jobs, EndpointSlices
/// managed by the endpointslice controller and the per-namespace `kube-root-ca.crt` ConfigMap
/// (all recreated by the target cluster's controllers) are skipped.
pub fn disposition(group_resource: &str, obj: &Value) -> Disposition {
    match group_resource {
        "pods" => match str_at(obj, "/status/phase") {
            Some(p @ ("Succeeded" | "Failed")) => {
                Disposition::Skip(format!("pod has finished (phase {p})"))
            }
            _ => Disposition::Restore,
        },
        "jobs.batch" => {
            let complete = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        str_at(c, "/type") == Some("Complete")
                            && str_at(c, "/status") == Some("True")
                    })
                });
            if complete || obj.pointer("/status/completionTime").is_some() {
                Disposition::Skip("job has completed".into())
            } else {
                Disposition::Restore
            }
        }
        "endpointslices.discovery.k8s.io" => {
            if str_at(
                obj,
                "/metadata/labels/endpointslice.kubernetes.io~1managed-by",
            ) == Some("endpointslice-controller.k8s.io")
            {
                Disposition::Skip("managed by the endpointslice controller".into())
            } else {
                Disposition::Restore
            }
        }
        "configmaps" if str_at(obj, "/metadata/name") == Some("kube-root-ca.crt") => {
            Disposition::Skip("published by the cluster's root CA controller".into())
        }
        _ => Disposition::Restore,
    }
}

/// Applies every transform to `obj` in place, for an item of `group_resource`.
pub fn prepare(group_resource: &str, obj: &mut Value, ctx: &TransformContext) {
    // Metadata reset.
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| KEPT_METADATA.contains(&k.as_str()));
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
            let mapped = ctx.map_namespace(ns).to_string();
            meta.insert("namespace".into(), Value::String(mapped));
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(BACKUP_NAME_LABEL.into(), Value::String(ctx.backup.clone()));
            l.insert(
                RESTORE_NAME_LABEL.into(),
                Value::String(ctx.restore.clone()),
            );
        }
    }
    if !ctx.restore_status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    match group_resource {
        "namespaces" => {
            let name = str_at(obj, "/metadata/name").map(str::to_string);
            if let Some(n) = name {
                let mapped = ctx.map_namespace(&n).to_string();
                obj["metadata"]["name"] = Value::String(mapped);
            }
            // Set by the API server from the name; the source's value would be wrong when mapped.
            if let Some(l) = obj
                .pointer_mut("/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                l.remove("kubernetes.io/metadata.name");
            }
        }
        "services" => {
            let headless = str_at(obj, "/spec/clusterIP") == Some("None");
            if !headless {
                remove_path(obj, &["spec", "clusterIP"]);
                remove_path(obj, &["spec", "clusterIPs"]);
            }
            if !ctx.preserve_node_ports {
                remove_path(obj, &["spec", "healthCheckNodePort"]);
                if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if let Some(m) = p.as_object_mut() {
                            m.remove("nodePort");
                        }
                    }
                }
            }
        }
        "pods" => remove_path(obj, &["spec", "nodeName"]),
        "persistentvolumes" => {
            strip_binding_annotations(obj);
            remove_path(obj, &["spec", "claimRef", "uid"]);
            remove_path(obj, &["spec", "claimRef", "resourceVersion"]);
            let ns = str_at(obj, "/spec/claimRef/namespace").map(str::to_string);
            if let Some(ns) = ns {
                obj["spec"]["claimRef"]["namespace"] = Value::String(ctx.map_namespace(&ns).into());
            }
        }
        "persistentvolumeclaims" => {
            strip_binding_annotations(obj);
            let keep =
                str_at(obj, "/spec/volumeName").is_some_and(|v| ctx.restored_pvs.contains(v));
            if !keep {
                remove_path(obj, &["spec", "volumeName"]);
            }
        }
        "rolebindings.rbac.authorization.k8s.io"
        | "clusterrolebindings.rbac.authorization.k8s.io" => {
            if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    let ns = s
                        .get("namespace")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(ns) = ns {
                        s["namespace"] = Value::String(ctx.map_namespace(&ns).into());
                    }
                }
            }
        }
        _ => {}
    }
}

fn strip_binding_annotations(obj: &mut Value) {
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for k in BINDING_ANNOTATIONS {
            a.remove(*k);
        }
    }
}

/// Whether `desired` is already fully present in `existing`: every field of `desired` (except
/// the restore labels) is equal in `existing`; fields only in `existing` (server defaults,
/// assigned IPs, status, server metadata) are ignored. Arrays must match element by element.
pub fn is_subset(desired: &Value, existing: &Value) -> bool {
    fn sub(d: &Value, e: &Value, path: &mut Vec<String>) -> bool {
        match (d, e) {
            (Value::Object(dm), Value::Object(em)) => dm.iter().all(|(k, dv)| {
                let in_labels = path.len() == 2 && path[0] == "metadata" && path[1] == "labels";
                if in_labels && (k == BACKUP_NAME_LABEL || k == RESTORE_NAME_LABEL) {
                    return true;
                }
                // A field missing in `existing` equals an empty one (`{}`, `[]`, null).
                let empty = match dv {
                    Value::Object(_) => Value::Object(Map::new()),
                    Value::Array(_) => Value::Array(Vec::new()),
                    _ => Value::Null,
                };
                path.push(k.clone());
                let ok = sub(dv, em.get(k).unwrap_or(&empty), path);
                path.pop();
                ok
            }),
            (Value::Array(da), Value::Array(ea)) => {
                da.len() == ea.len()
                    && da.iter().zip(ea).all(|(dv, ev)| {
                        path.push("[]".into());
                        let ok = sub(dv, ev, path);
                        path.pop();
                        ok
                    })
            }
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ => d == e,
        }
    }
    sub(desired, existing, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> TransformContext {
        TransformContext {
            backup: "b1".into(),
            restore: "r1".into(),
            namespace_mappings: [("src".to_string(), "dst".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_is_reset_and_labelled() {
        let mut o = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "src", "uid": "u", "resourceVersion": "5",
              "generation": 2, "creationTimestamp": "t", "selfLink": "/x", "generateName": "c-",
              "deletionTimestamp": "t", "deletionGracePeriodSeconds": 30,
              "ownerReferences": [{"uid": "o"}], "managedFields": [{}],
              "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "data": {"k": "v"}, "status": {"x": 1}
        });
        prepare("configmaps", &mut o, &ctx());
        assert_eq!(
            o,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "dst",
                  "labels": {"app": "web", "velero.io/backup-name": "b1", "velero.io/restore-name": "r1"},
                  "annotations": {"a": "b"}},
                "data": {"k": "v"}
            })
        );
    }

    #[test]
    fn status_kept_when_asked() {
        let mut o = json!({"metadata": {"name": "x"}, "status": {"phase": "Bound"}});
        let c = TransformContext {
            restore_status: true,
            ..ctx()
        };
        prepare("widgets.example.com", &mut o, &c);
        assert_eq!(o["status"]["phase"], "Bound");
    }

    #[test]
    fn service_rules() {
        let svc = json!({"metadata": {"name": "s", "namespace": "a"},
            "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "type": "NodePort",
                     "healthCheckNodePort": 31000,
                     "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut o = svc.clone();
        prepare("services", &mut o, &ctx());
        assert!(o["spec"].get("clusterIP").is_none());
        assert!(o["spec"].get("clusterIPs").is_none());
        assert!(o["spec"]["ports"][0].get("nodePort").is_none());
        assert!(o["spec"].get("healthCheckNodePort").is_none());
        let mut p = svc.clone();
        let c = TransformContext {
            preserve_node_ports: true,
            ..ctx()
        };
        prepare("services", &mut p, &c);
        assert_eq!(p["spec"]["ports"][0]["nodePort"], 30080);
        let mut h = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        prepare("services", &mut h, &ctx());
        assert_eq!(h["spec"]["clusterIP"], "None");
    }

    #[test]
    fn pod_node_name_cleared() {
        let mut o = json!({"metadata": {"name": "p", "namespace": "a"}, "spec": {"nodeName": "n1", "containers": []}});
        prepare("pods", &mut o, &ctx());
        assert!(o["spec"].get("nodeName").is_none());
    }

    #[test]
    fn pv_and_pvc_binding_cleanup_and_remap() {
        let mut pv = json!({"metadata": {"name": "pv1", "annotations": {"pv.kubernetes.io/bound-by-controller": "yes", "keep": "me"}},
            "spec": {"claimRef": {"namespace": "src", "name": "data", "uid": "u", "resourceVersion": "1"}}});
        prepare("persistentvolumes", &mut pv, &ctx());
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"namespace": "dst", "name": "data"})
        );
        assert_eq!(pv["metadata"]["annotations"], json!({"keep": "me"}));

        let pvc = json!({"metadata": {"name": "data", "namespace": "src",
            "annotations": {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": "n"}},
            "spec": {"volumeName": "pv1"}});
        let mut gone = pvc.clone();
        prepare("persistentvolumeclaims", &mut gone, &ctx());
        assert!(gone["spec"].get("volumeName").is_none());
        assert_eq!(gone["metadata"]["annotations"], json!({}));
        let mut kept = pvc.clone();
        let c = TransformContext {
            restored_pvs: ["pv1".to_string()].into(),
            ..ctx()
        };
        prepare("persistentvolumeclaims", &mut kept, &c);
        assert_eq!(kept["spec"]["volumeName"], "pv1");
    }

    #[test]
    fn binding_subjects_and_namespace_objects_are_remapped() {
        let mut rb = json!({"metadata": {"name": "rb", "namespace": "src"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "src"},
                         {"kind": "ServiceAccount", "name": "other", "namespace": "elsewhere"},
                         {"kind": "User", "name": "alice"}]});
        prepare("rolebindings.rbac.authorization.k8s.io", &mut rb, &ctx());
        assert_eq!(rb["metadata"]["namespace"], "dst");
        assert_eq!(rb["subjects"][0]["namespace"], "dst");
        assert_eq!(rb["subjects"][1]["namespace"], "elsewhere");
        assert!(rb["subjects"][2].get("namespace").is_none());
        let mut crb = json!({"metadata": {"name": "crb"}, "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "src"}]});
        prepare(
            "clusterrolebindings.rbac.authorization.k8s.io",
            &mut crb,
            &ctx(),
        );
        assert_eq!(crb["subjects"][0]["namespace"], "dst");
        let mut ns = json!({"metadata": {"name": "src", "labels": {"kubernetes.io/metadata.name": "src"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        prepare("namespaces", &mut ns, &ctx());
        assert_eq!(ns["metadata"]["name"], "dst");
        assert!(ns.get("status").is_none());
        assert!(
            ns["metadata"]["labels"]
                .get("kubernetes.io/metadata.name")
                .is_none()
        );
    }

    #[test]
    fn skip_rules() {
        assert!(matches!(
            disposition("pods", &json!({"status": {"phase": "Succeeded"}})),
            Disposition::Skip(_)
        ));
        assert_eq!(
            disposition("pods", &json!({"status": {"phase": "Running"}})),
            Disposition::Restore
        );
        assert!(matches!(
            disposition(
                "jobs.batch",
                &json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
            ),
            Disposition::Skip(_)
        ));
        assert_eq!(
            disposition("jobs.batch", &json!({"status": {"active": 1}})),
            Disposition::Restore
        );
        assert!(matches!(
            disposition(
                "endpointslices.discovery.k8s.io",
                &json!({"metadata": {"labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}})
            ),
            Disposition::Skip(_)
        ));
        assert!(matches!(
            disposition(
                "configmaps",
                &json!({"metadata": {"name": "kube-root-ca.crt"}})
            ),
            Disposition::Skip(_)
        ));
    }

    #[test]
    fn subset_comparison_ignores_server_fields_and_restore_labels() {
        let desired = json!({"metadata": {"name": "s", "labels": {"app": "x", "velero.io/restore-name": "r2"}},
            "spec": {"ports": [{"port": 80}]}});
        let existing = json!({"metadata": {"name": "s", "uid": "u", "labels": {"app": "x", "velero.io/restore-name": "r1"}},
            "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}, "status": {}});
        assert!(is_subset(&desired, &existing));
        let only_restore_labels =
            json!({"metadata": {"name": "default", "labels": {"velero.io/restore-name": "r"}}});
        assert!(is_subset(
            &only_restore_labels,
            &json!({"metadata": {"name": "default"}})
        ));
        assert!(!is_subset(&json!({"data": {"k": "v"}}), &json!({})));
        let changed = json!({"metadata": {"name": "s", "labels": {"app": "y"}}, "spec": {"ports": [{"port": 80}]}});
        assert!(!is_subset(&desired, &changed));
        let more_ports = json!({"metadata": {"name": "s", "labels": {"app": "x"}}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        assert!(!is_subset(&desired, &more_ports));
    }
}
