//! The bucket layout, following Velero's object-store layout (format 1.1.0):
//! `<prefix>/backups/<name>/…` and `<prefix>/restores/<name>/…`.
//!
//! Source: Velero's `pkg/persistence/object_store_layout.go` (documented in Velero's
//! "Backup Storage Locations" docs); file names below are Velero's, except the
//! `tidemark-*.json` files, which Velero ignores.

use object_store::path::Path;

/// The Backup record (velero.io/v1 JSON); its presence means the backup exists.
pub const BACKUP_METADATA_FILE: &str = "velero-backup.json";
/// tidemark's own metadata inside a backup folder: archive sha256 and size, tool version.
pub const TIDEMARK_BACKUP_FILE: &str = "tidemark-backup.json";
/// The first file of a backup folder, written (create-only) before anything else: the run's
/// start time and host. It makes a run that stopped during its first upload findable by the
/// recovery sweep on every store (MinIO lists unfinished multipart uploads only by exact key).
pub const RUN_MARKER_FILE: &str = "tidemark-run.json";
/// tidemark's Restore record inside a restore folder (direct mode keeps restores in the store).
pub const RESTORE_RECORD_FILE: &str = "tidemark-restore.json";

/// Top-level folders that may exist under a location's prefix (Velero's rule).
pub const TOP_LEVEL_DIRS: &[&str] = &[
    "backups", "restores", "restic", "kopia", "metadata", "plugins",
];

/// Paths of a location's layout under its prefix.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: Option<Path>,
}

impl Layout {
    /// A layout under `prefix` (`""` for the bucket root).
    pub fn new(prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        Self {
            prefix: (!p.is_empty()).then(|| Path::from(p)),
        }
    }

    /// The prefix itself (`None` at the bucket root).
    pub fn root(&self) -> Option<Path> {
        self.prefix.clone()
    }

    fn join(&self, part: &str) -> Path {
        match &self.prefix {
            Some(p) => p.clone().join(part),
            None => Path::from(part),
        }
    }

    /// `<prefix>/backups`
    pub fn backups_dir(&self) -> Path {
        self.join("backups")
    }

    /// `<prefix>/restores`
    pub fn restores_dir(&self) -> Path {
        self.join("restores")
    }

    /// `<prefix>/backups/<name>`
    pub fn backup_dir(&self, name: &str) -> Path {
        self.backups_dir().join(name)
    }

    /// `<prefix>/backups/<name>/<file>`
    pub fn backup_file(&self, name: &str, file: &str) -> Path {
        self.backup_dir(name).join(file)
    }

    /// `<prefix>/backups/<name>/<name>.tar.gz`
    pub fn backup_archive(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}.tar.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-logs.gz`
    pub fn backup_logs(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-logs.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-resource-list.json.gz`
    pub fn backup_resource_list(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-resource-list.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-results.gz`
    pub fn backup_results(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-results.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-volumesnapshots.json.gz`
    pub fn backup_volume_snapshots(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-volumesnapshots.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-itemoperations.json.gz` (the asynchronous operations of
    /// Velero's backup item action plugins, a gzipped JSON list; Velero's file name).
    pub fn backup_item_operations(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-itemoperations.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-csi-volumesnapshots.json.gz` (the backup's CSI
    /// VolumeSnapshots as they were when ready, a gzipped JSON list; Velero's file name).
    pub fn backup_csi_volume_snapshots(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-csi-volumesnapshots.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-csi-volumesnapshotcontents.json.gz` (their
    /// VolumeSnapshotContents, with the snapshot handles; Velero's file name).
    pub fn backup_csi_volume_snapshot_contents(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-csi-volumesnapshotcontents.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-csi-volumesnapshotclasses.json.gz` (the
    /// VolumeSnapshotClasses used; Velero's file name).
    pub fn backup_csi_volume_snapshot_classes(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-csi-volumesnapshotclasses.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-volumeinfo.json.gz` (one entry per volume: method,
    /// result, snapshot handle and size; Velero 1.13+'s `BackupVolumeInfo` list).
    pub fn backup_volume_info(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-volumeinfo.json.gz"))
    }

    /// `<prefix>/backups/<name>/<name>-podvolumebackups.json.gz` (the PodVolumeBackup records of
    /// file-system backed-up volumes, a gzipped JSON list, Velero's file name).
    pub fn backup_pod_volume_backups(&self, name: &str) -> Path {
        self.backup_file(name, &format!("{name}-podvolumebackups.json.gz"))
    }

    /// `<prefix>/restic`: the folder of the restic repositories of pod volumes.
    pub fn restic_dir(&self) -> Path {
        self.join("restic")
    }

    /// `<prefix>/restic/<namespace>`: the restic repository of a namespace's pod volumes.
    pub fn restic_repo(&self, namespace: &str) -> Path {
        self.restic_dir().join(namespace)
    }

    /// `<prefix>/restores/<name>`
    pub fn restore_dir(&self, name: &str) -> Path {
        self.restores_dir().join(name)
    }

    /// `<prefix>/restores/<name>/<file>`
    pub fn restore_file(&self, name: &str, file: &str) -> Path {
        self.restore_dir(name).join(file)
    }

    /// `<prefix>/restores/<name>/restore-<name>-logs.gz`
    pub fn restore_logs(&self, name: &str) -> Path {
        self.restore_file(name, &format!("restore-{name}-logs.gz"))
    }

    /// `<prefix>/restores/<name>/restore-<name>-volumeinfo.json.gz` (one entry per restored
    /// volume; Velero 1.14+'s `RestoreVolumeInfo` list).
    pub fn restore_volume_info(&self, name: &str) -> Path {
        self.restore_file(name, &format!("restore-{name}-volumeinfo.json.gz"))
    }

    /// `<prefix>/restores/<name>/restore-<name>-results.gz`
    pub fn restore_results(&self, name: &str) -> Path {
        self.restore_file(name, &format!("restore-{name}-results.gz"))
    }

    /// `<prefix>/restores/<name>/restore-<name>-resource-list.json.gz`
    pub fn restore_resource_list(&self, name: &str) -> Path {
        self.restore_file(name, &format!("restore-{name}-resource-list.json.gz"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_velero_layout() {
        let l = Layout::new("/cluster-a/");
        assert_eq!(
            l.backup_archive("b1").as_ref(),
            "cluster-a/backups/b1/b1.tar.gz"
        );
        assert_eq!(
            l.backup_file("b1", BACKUP_METADATA_FILE).as_ref(),
            "cluster-a/backups/b1/velero-backup.json"
        );
        assert_eq!(
            l.backup_resource_list("b1").as_ref(),
            "cluster-a/backups/b1/b1-resource-list.json.gz"
        );
        assert_eq!(
            l.backup_results("b1").as_ref(),
            "cluster-a/backups/b1/b1-results.gz"
        );
        assert_eq!(
            l.backup_logs("b1").as_ref(),
            "cluster-a/backups/b1/b1-logs.gz"
        );
        assert_eq!(
            l.restore_results("r1").as_ref(),
            "cluster-a/restores/r1/restore-r1-results.gz"
        );
        assert_eq!(
            l.backup_pod_volume_backups("b1").as_ref(),
            "cluster-a/backups/b1/b1-podvolumebackups.json.gz"
        );
        assert_eq!(l.restic_repo("shop").as_ref(), "cluster-a/restic/shop");
        assert_eq!(
            l.backup_csi_volume_snapshot_contents("b1").as_ref(),
            "cluster-a/backups/b1/b1-csi-volumesnapshotcontents.json.gz"
        );
        assert_eq!(
            l.backup_volume_info("b1").as_ref(),
            "cluster-a/backups/b1/b1-volumeinfo.json.gz"
        );
        let root = Layout::new("");
        assert_eq!(root.backup_dir("x").as_ref(), "backups/x");
        assert!(root.root().is_none());
    }
}
