//! Which VolumeSnapshotClass each CSI driver's snapshots are taken with: tidemark's counterpart of
//! Velero's VolumeSnapshotLocation, since CSI snapshots need no location of their own, only the
//! class Velero's CSI support marks per driver with the label
//! `velero.io/csi-volumesnapshot-class: "true"` ([`super::csi::CLASS_LABEL`]; the backup picks
//! it in [`super::csi::choose_class`]). `tidemark snapshot-class get|select` (also spelled
//! `snapshot-location`, Velero's verb) lists the classes and selects one per driver.

use std::collections::BTreeMap;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::VolumesError;
use super::csi::{CLASS_LABEL, GROUP};

/// One VolumeSnapshotClass as `get` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRow {
    /// The class's name.
    pub name: String,
    /// Its CSI driver.
    pub driver: String,
    /// `Delete` or `Retain` (what happens to the storage snapshot when its content goes).
    pub deletion_policy: String,
    /// It carries [`CLASS_LABEL`]`=true`: backups snapshot its driver's volumes with it.
    pub selected: bool,
}

/// What is wrong with the selection of one driver, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverProblem {
    /// No class of the driver is selected: CSI snapshots of its volumes fail (unless a claim or
    /// backup annotation names a class).
    NoneSelected,
    /// Several are: backups of its volumes fail until one is left.
    Ambiguous(Vec<String>),
}

fn api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1", "VolumeSnapshotClass"));
    Api::all_with(client.clone(), &ar)
}

fn row(c: &DynamicObject) -> ClassRow {
    let text = |k: &str| {
        c.data
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    ClassRow {
        name: c.name_any(),
        driver: text("driver"),
        deletion_policy: text("deletionPolicy"),
        selected: c.labels().get(CLASS_LABEL).is_some_and(|v| v == "true"),
    }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> VolumesError {
    let what = what.into();
    move |source| VolumesError::Kube { what, source }
}

/// Every VolumeSnapshotClass, by driver then name.
///
/// # Errors
/// [`VolumesError::Kube`] when they cannot be listed (e.g. the snapshot CRDs are not installed:
/// the message says 404 for `volumesnapshotclasses`).
pub async fn list(client: &Client) -> Result<Vec<ClassRow>, VolumesError> {
    let classes = api(client)
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list VolumeSnapshotClasses"))?;
    let mut rows: Vec<ClassRow> = classes.items.iter().map(row).collect();
    rows.sort_by(|a, b| (&a.driver, &a.name).cmp(&(&b.driver, &b.name)));
    Ok(rows)
}

/// The drivers whose selection is missing or ambiguous.
pub fn problems(rows: &[ClassRow]) -> BTreeMap<String, DriverProblem> {
    let mut by_driver: BTreeMap<&str, Vec<&ClassRow>> = BTreeMap::new();
    for r in rows {
        by_driver.entry(&r.driver).or_default().push(r);
    }
    by_driver
        .into_iter()
        .filter_map(|(driver, classes)| {
            let selected: Vec<String> = classes
                .iter()
                .filter(|c| c.selected)
                .map(|c| c.name.clone())
                .collect();
            let problem = match selected.len() {
                0 => DriverProblem::NoneSelected,
                1 => return None,
                _ => DriverProblem::Ambiguous(selected),
            };
            Some((driver.to_string(), problem))
        })
        .collect()
}

/// Selects class `name` for its driver: labels it [`CLASS_LABEL`]`=true` and removes the label
/// from the driver's other classes (merge patches of `metadata.labels` only). Returns what
/// changed, one line each (empty when it was already the only one).
///
/// # Errors
/// [`VolumesError::Snapshot`] when the class does not exist; [`VolumesError::Kube`] for a
/// failed read or patch (the classes patched before it stay patched; running it again
/// converges).
pub async fn select(client: &Client, name: &str) -> Result<Vec<String>, VolumesError> {
    let api = api(client);
    let chosen = api
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get VolumeSnapshotClass {name}")))?
        .ok_or_else(|| VolumesError::Snapshot {
            what: format!("VolumeSnapshotClass {name}"),
            reason: "not found".into(),
        })?;
    let chosen = row(&chosen);
    let mut changed = Vec::new();
    let pp = PatchParams::default();
    for other in list(client).await? {
        if other.driver != chosen.driver || other.name == chosen.name || !other.selected {
            continue;
        }
        let body = json!({"metadata": {"labels": {CLASS_LABEL: null}}});
        api.patch(&other.name, &pp, &Patch::Merge(&body))
            .await
            .map_err(kube_err(format!(
                "unlabel VolumeSnapshotClass {}",
                other.name
            )))?;
        changed.push(format!(
            "VolumeSnapshotClass {} no longer selected for driver {}",
            other.name, other.driver
        ));
    }
    if !chosen.selected {
        let body = json!({"metadata": {"labels": {CLASS_LABEL: "true"}}});
        api.patch(name, &pp, &Patch::Merge(&body))
            .await
            .map_err(kube_err(format!("label VolumeSnapshotClass {name}")))?;
        changed.push(format!(
            "VolumeSnapshotClass {name} selected for driver {}",
            chosen.driver
        ));
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, driver: &str, selected: bool) -> ClassRow {
        ClassRow {
            name: name.into(),
            driver: driver.into(),
            deletion_policy: "Retain".into(),
            selected,
        }
    }

    #[test]
    fn problems_name_drivers_without_or_with_several_selected_classes() {
        let rows = [
            r("a1", "a.csi", true),
            r("a2", "a.csi", false),
            r("b1", "b.csi", false),
            r("c1", "c.csi", true),
            r("c2", "c.csi", true),
        ];
        let p = problems(&rows);
        assert_eq!(p.len(), 2);
        assert_eq!(p["b.csi"], DriverProblem::NoneSelected);
        assert_eq!(
            p["c.csi"],
            DriverProblem::Ambiguous(vec!["c1".into(), "c2".into()])
        );
    }
}
