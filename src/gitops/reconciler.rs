//! One GitOps pass, shared by the `GitSource` controller, `tidemark reconcile` and the
//! server's deprecated `source:` section: poll the source → parse the revision's manifests →
//! apply them as one change set → prune by inventory diff → the new inventory. Where the
//! previous state comes from and where the outcome goes is the caller's: a GitSource's status
//! (`controller::gitsource`) or a ConfigMap record ([`Standalone`]).

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Client;

use super::GitopsError;
use super::apply::{Report, apply_revision};
use super::inventory::{ObjectRef, to_prune};
use super::prune::prune;
use super::record::{self, Previous};
use super::source::{Origin, Settings, Source, digest};
use super::statuses::post_statuses;
use crate::report::status::Reporter;
use crate::source::{InvalidManifest, Manifest, Revision, manifests};

/// What one pass did.
#[derive(Debug)]
pub enum Pass {
    /// The revision was reconciled already: nothing was applied.
    Unchanged {
        /// The current revision.
        revision: Revision,
        /// How long the poll took.
        took: Duration,
    },
    /// A new (or forced) revision was applied.
    Applied {
        /// What was applied, pruned, found invalid.
        report: Box<Report>,
        /// `sha256:<hex>` of the rendered manifests.
        digest: String,
        /// The parsed manifests (for commit statuses).
        parsed: Vec<Result<Manifest, InvalidManifest>>,
        /// The kustomize renderer used, if any.
        renderer: Option<String>,
        /// How long the pass took.
        took: Duration,
    },
}

impl Pass {
    /// The revision the pass saw.
    pub fn revision(&self) -> &Revision {
        match self {
            Pass::Unchanged { revision, .. } => revision,
            Pass::Applied { report, .. } => &report.revision,
        }
    }
}

/// A source with its settings, ready for passes.
pub struct Reconciler {
    settings: Settings,
    source: Source,
    reporter: Option<Reporter>,
}

impl Reconciler {
    /// A reconciler for `settings`.
    ///
    /// # Errors
    /// [`GitopsError::Source`] (an unusable cache or directory), [`GitopsError::Settings`] (the
    /// forge settings).
    pub fn new(settings: Settings) -> Result<Reconciler, GitopsError> {
        let source = Source::new(&settings.origin)?;
        let reporter = match &settings.forge {
            Some(f) => Some(Reporter::new(f.clone()).map_err(|e| GitopsError::Settings {
                field: "commitStatus".into(),
                message: e.to_string(),
            })?),
            None => None,
        };
        Ok(Reconciler {
            settings,
            source,
            reporter,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// One line naming the source.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// The source (to watch a directory).
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Polls the source and, unless its revision is `previous.revision` (and not `force`d),
    /// applies it and prunes what left it.
    ///
    /// # Errors
    /// [`GitopsError::Source`]: the fetch or render failed (nothing was applied). Failed
    /// requests while applying are not errors: they are in the report.
    pub async fn pass(
        &self,
        client: &Client,
        previous: &Previous,
        force: bool,
    ) -> Result<Pass, GitopsError> {
        let started = std::time::Instant::now();
        let polled = self.source.poll(previous.revision.as_ref(), force).await?;
        let Some(rendered) = polled.rendered else {
            return Ok(Pass::Unchanged {
                revision: polled.revision,
                took: polled.took,
            });
        };
        let digest = digest(&rendered);
        let parsed = manifests::parse(&rendered.documents, &self.settings.namespace);
        let mut report = Report::new(polled.revision);
        let (mut valid, mut invalid) = (Vec::new(), Vec::new());
        for p in &parsed {
            match p {
                Ok(m) => valid.push(m.clone()),
                Err(i) => invalid.push(i.clone()),
            }
        }
        // What the revision holds, valid or not: never pruned.
        let mut keep: BTreeSet<ObjectRef> = valid
            .iter()
            .map(|m: &Manifest| ObjectRef::new(m.kind, &m.namespace, &m.name))
            .collect();
        let mut unidentified = Vec::new();
        for i in &invalid {
            match i.identity() {
                Some((k, ns, n)) => {
                    keep.insert(ObjectRef::new(k, ns, n));
                }
                None => unidentified.push(i.origin.clone()),
            }
        }
        let applied = apply_revision(
            client,
            &self.settings.id,
            valid,
            std::mem::take(&mut invalid),
            &mut report,
        )
        .await;
        let prev_inventory = previous.inventory.clone().unwrap_or_default();
        // The new inventory: what was applied, and what the revision still holds that was
        // ours (invalid manifests keep their objects; failed applies keep theirs).
        let mut inventory: BTreeSet<ObjectRef> = applied;
        inventory.extend(prev_inventory.intersection(&keep).cloned());
        if !self.settings.prune {
            report.prune_skipped = Some("pruning is off (prune: false, --no-prune)".into());
        } else if !unidentified.is_empty() {
            report.prune_skipped = Some(format!(
                "documents whose kind and name cannot be read ({}) could name any object",
                unidentified.join(", ")
            ));
            inventory.extend(prev_inventory.iter().cloned());
        } else if previous.inventory.is_none() {
            report.prune_skipped = Some(
                "no inventory was recorded before: pruning starts with the next revision".into(),
            );
        } else {
            let gone = to_prune(&prev_inventory, &keep);
            let pruned = prune(client, &self.settings.id, &gone).await;
            report.pruned = pruned.deleted.iter().map(ObjectRef::to_string).collect();
            report.failed.extend(pruned.failed);
            inventory.extend(pruned.remaining);
        }
        report.inventory = inventory;
        Ok(Pass::Applied {
            report: Box::new(report),
            digest,
            parsed,
            renderer: rendered.renderer.clone(),
            took: started.elapsed(),
        })
    }

    /// Posts the commit statuses of an applied pass (nothing without a forge, for an unchanged
    /// pass, or for a revision that is not a commit). Waits up to the settings'
    /// `status_timeout` for the objects to settle.
    pub async fn post_statuses(&self, client: &Client, pass: &Pass) {
        if let (Some(reporter), Pass::Applied { report, parsed, .. }) = (&self.reporter, pass)
            && let Some(sha) = report.revision.commit_id()
        {
            post_statuses(client, reporter, sha, parsed, self.settings.status_timeout).await;
        }
    }
}

/// A source without a `GitSource` object: its state is kept in a ConfigMap record
/// ([`record`]). What `tidemark reconcile` and the server's deprecated `source:` section run.
pub struct Standalone {
    reconciler: Reconciler,
    force: bool,
}

impl Standalone {
    /// A standalone loop of `settings`; `force` reconciles a revision even when the record
    /// says it was reconciled already.
    ///
    /// # Errors
    /// As [`Reconciler::new`].
    pub fn new(settings: Settings, force: bool) -> Result<Standalone, GitopsError> {
        Ok(Standalone {
            reconciler: Reconciler::new(settings)?,
            force,
        })
    }

    /// The reconciler.
    pub fn reconciler(&self) -> &Reconciler {
        &self.reconciler
    }

    /// One pass: read the record, reconcile, write the record, post commit statuses. Returns
    /// the pass and the record's invalid count when it was unchanged.
    ///
    /// # Errors
    /// Reading the record, or the source's fetch or render.
    pub async fn pass(&self, client: &Client) -> Result<(Pass, usize), GitopsError> {
        let s = self.reconciler.settings();
        let previous = record::read(client, &s.namespace, &s.id).await?;
        let pass = self.reconciler.pass(client, &previous, self.force).await?;
        if let Pass::Applied { report, .. } = &pass
            && let Err(e) = record::write(
                client,
                &s.namespace,
                &s.id,
                &self.reconciler.describe(),
                &previous,
                report,
            )
            .await
        {
            tracing::warn!("recording the revision failed: {e}");
        }
        self.reconciler.post_statuses(client, &pass).await;
        Ok((pass, previous.invalid))
    }

    /// Runs passes every interval (and on each change of a directory source) until `stop`
    /// completes, handing each outcome to `on_pass`. A failed pass is retried at the next
    /// interval.
    ///
    /// # Errors
    /// The directory watcher could not be started.
    pub async fn run(
        &self,
        client: &Client,
        stop: impl std::future::Future<Output = ()>,
        on_pass: impl Fn(Result<&(Pass, usize), &GitopsError>),
    ) -> Result<(), GitopsError> {
        let s = self.reconciler.settings();
        tracing::info!(
            source = %self.reconciler.describe(),
            namespace = %s.namespace,
            id = %s.id,
            interval = %humantime::format_duration(s.interval),
            "reconciling a source"
        );
        let mut watcher = match (&s.origin, self.reconciler.source()) {
            (Origin::Dir(_), Source::Dir(d)) => Some(d.watch(Duration::from_millis(500))?),
            _ => None,
        };
        tokio::pin!(stop);
        loop {
            match self.pass(client).await {
                Ok(p) => on_pass(Ok(&p)),
                Err(e) => on_pass(Err(&e)),
            }
            let changed = async {
                match watcher.as_mut() {
                    Some(w) => match w.changed().await {
                        Some(Err(e)) => tracing::warn!("{e}"),
                        Some(Ok(paths)) => tracing::debug!(?paths, "changed"),
                        None => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(s.interval) => {}
                _ = changed => {}
                _ = &mut stop => return Ok(()),
            }
        }
    }
}
