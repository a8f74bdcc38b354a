//! Directory sources (`tidemark reconcile --source dir`): a local directory (a checkout kept by
//! another tool, a mounted ConfigMap, a developer's working tree), rendered like a Git path, its
//! revision the `sha256:` digest of what was rendered. Changes are noticed with `notify`, events
//! debounced so an editor's save or a `git pull` counts once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use super::kustomize::{self, Rendered};
use super::{Revision, SourceError};

/// A directory of manifests (or a kustomization).
#[derive(Clone, Debug)]
pub struct DirSource {
    path: PathBuf,
}

impl DirSource {
    /// A source for `path`.
    ///
    /// # Errors
    /// [`SourceError::PathNotFound`] when it does not exist.
    pub fn new(path: impl Into<PathBuf>) -> Result<DirSource, SourceError> {
        let path = path.into();
        if !path.exists() {
            return Err(SourceError::PathNotFound {
                path: path.display().to_string(),
                within: String::new(),
            });
        }
        // Absolute, so the source's identity does not depend on the working directory.
        let path = std::fs::canonicalize(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(DirSource { path })
    }

    /// The (canonical) directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renders the directory now and returns its revision with the content. Blocking.
    ///
    /// # Errors
    /// See [`kustomize::render`].
    pub fn read(&self) -> Result<(Revision, Rendered), SourceError> {
        let rendered = kustomize::render(&self.path)?;
        Ok((rendered.digest(), rendered))
    }

    /// Starts watching the directory, recursively; changes are reported once `debounce` has
    /// passed without further events.
    ///
    /// # Errors
    /// [`SourceError::Watch`] when the watcher cannot start (e.g. the inotify watch limit).
    pub fn watch(&self, debounce: Duration) -> Result<DirWatcher, SourceError> {
        let watch_err = |e: notify::Error| SourceError::Watch {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut debouncer = new_debouncer(debounce, move |res: DebounceEventResult| {
            let _ = tx.send(
                res.map(|events| events.into_iter().map(|e| e.path).collect())
                    .map_err(|e| e.to_string()),
            );
        })
        .map_err(watch_err)?;
        debouncer
            .watcher()
            .watch(&self.path, RecursiveMode::Recursive)
            .map_err(watch_err)?;
        Ok(DirWatcher {
            path: self.path.clone(),
            rx,
            _debouncer: debouncer,
        })
    }
}

/// Debounced change notifications of a [`DirSource`]; watching stops when dropped.
pub struct DirWatcher {
    path: PathBuf,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<PathBuf>, String>>,
    _debouncer: Debouncer<notify::RecommendedWatcher>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("path", &self.path)
            .finish()
    }
}

impl DirWatcher {
    /// Waits for the next batch of changes and returns the paths that changed; `None` once the
    /// watcher has stopped.
    pub async fn changed(&mut self) -> Option<Result<Vec<PathBuf>, SourceError>> {
        let batch = self.rx.recv().await?;
        Some(batch.map_err(|message| SourceError::Watch {
            path: self.path.clone(),
            message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_noticed_once_debounced() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.yaml"), "a: 1\n").unwrap();
        let src = DirSource::new(t.path()).unwrap();
        let (rev1, r) = src.read().unwrap();
        assert_eq!(r.documents.len(), 1);
        assert_eq!(src.read().unwrap().0, rev1, "the digest is stable");
        let mut w = src.watch(Duration::from_millis(200)).unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/b.yaml"), "b: 1\n").unwrap();
        std::fs::write(t.path().join("a.yaml"), "a: 2\n").unwrap();
        let paths = tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("a change event")
            .unwrap()
            .unwrap();
        assert!(!paths.is_empty());
        let (rev2, r) = src.read().unwrap();
        assert_ne!(rev1, rev2);
        assert_eq!(r.documents.len(), 2);
        assert!(matches!(rev2, Revision::Digest(_)));
        assert!(DirSource::new(t.path().join("missing")).is_err());
    }
}
