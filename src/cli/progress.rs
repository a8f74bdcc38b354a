//! Live progress of `backup create` and `restore create` in direct mode, drawn on stderr when it
//! is a terminal and cleared at the end (the summary line follows either way; nothing is drawn
//! when stderr is not a terminal).
//!
//! - backup: `⠋ backing up 12,034 items · 4,210 items/s · 37/85 resources` (the total is not
//!   known while the backup streams);
//! - restore: a spinner while the backup is read and planned, then
//!   `⠋ restoring [#######-----] 1,200/5,000 items · 812 items/s · ETA 5s · 1,190 created …`.
//!
//! The rate is indicatif's estimate (an exponentially weighted average of the position's
//! changes), sampled from the engines' counters five times a second.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressStyle};

use crate::{backup, restore};

/// How often the counters are sampled.
const SAMPLE: Duration = Duration::from_millis(200);

const SPINNER: &str = "{spinner:.green} {prefix} {msg}";
const COUNTER: &str = "{spinner:.green} {prefix} {human_pos} items · {msg}";
const BAR: &str =
    "{spinner:.green} {prefix} [{bar:30.cyan/blue}] {human_pos}/{human_len} items · {msg}";

/// A progress display being drawn; [`Live::finish`] clears it.
pub(crate) struct Live {
    pb: ProgressBar,
    sampler: tokio::task::JoinHandle<()>,
}

impl Live {
    /// Stops sampling and clears the display.
    pub(crate) fn finish(self) {
        self.sampler.abort();
        self.pb.finish_and_clear();
    }
}

/// Finishes `live` if there is one.
pub(crate) fn finish(live: Option<Live>) {
    if let Some(l) = live {
        l.finish();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("progress templates are constant and valid")
        .progress_chars("#>-")
}

/// A spinner labelled `prefix` showing `message`, when `enabled` and stderr is a terminal.
fn start(
    enabled: bool,
    prefix: &'static str,
    template: &str,
    message: String,
) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new_spinner()
        .with_style(style(template))
        .with_prefix(prefix)
        .with_message(message);
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

/// The display of a running backup (items, items/s, resources listed of all), or `None` when
/// not `enabled` or stderr is not a terminal.
pub(crate) fn backup(progress: Arc<backup::Progress>, enabled: bool) -> Option<Live> {
    let pb = start(enabled, "backing up", COUNTER, backup_line(0.0, 0, 0))?;
    let sampler = tokio::spawn({
        let pb = pb.clone();
        async move {
            loop {
                tokio::time::sleep(SAMPLE).await;
                pb.set_position(progress.items.load(Ordering::Relaxed));
                pb.set_message(backup_line(
                    pb.per_sec(),
                    progress.resources_done.load(Ordering::Relaxed),
                    progress.resources_total.load(Ordering::Relaxed),
                ));
            }
        }
    });
    Some(Live { pb, sampler })
}

/// The display of a running restore (a spinner until the plan is known, then a bar of items
/// processed with items/s, time left and the counters), or `None` when not `enabled` or stderr
/// is not a terminal.
pub(crate) fn restore(counters: Arc<restore::Counters>, enabled: bool) -> Option<Live> {
    let pb = start(enabled, "restoring", SPINNER, "reading the backup".into())?;
    let sampler = tokio::spawn({
        let pb = pb.clone();
        async move {
            let mut planned = false;
            loop {
                tokio::time::sleep(SAMPLE).await;
                let c = RestoreCounts::of(&counters);
                if c.total == 0 {
                    continue;
                }
                if !planned {
                    planned = true;
                    pb.set_message(restore_line(&c, 0.0));
                    pb.set_length(c.total);
                    pb.set_position(c.done);
                    // Items skipped by rule are counted at once when the plan is made: the
                    // rate starts from there.
                    pb.reset_eta();
                    pb.set_style(style(BAR));
                    continue;
                }
                pb.set_position(c.done);
                pb.set_message(restore_line(&c, pb.per_sec()));
            }
        }
    });
    Some(Live { pb, sampler })
}

/// One sample of a restore's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RestoreCounts {
    total: u64,
    created: u64,
    updated: u64,
    skipped: u64,
    failed: u64,
    /// Items processed ([`restore::Counters::processed`]).
    done: u64,
}

impl RestoreCounts {
    fn of(c: &restore::Counters) -> Self {
        Self {
            total: c.total.load(Ordering::Relaxed),
            created: c.created.load(Ordering::Relaxed),
            updated: c.updated.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            done: c.processed(),
        }
    }
}

/// `4,210 items/s · 37/85 resources`.
fn backup_line(per_sec: f64, resources_done: u64, resources_total: u64) -> String {
    format!(
        "{} · {resources_done}/{resources_total} resources",
        rate(per_sec)
    )
}

/// `812 items/s · ETA 5s · 1,190 created · 10 skipped` (updated and failed only when not zero).
fn restore_line(c: &RestoreCounts, per_sec: f64) -> String {
    let mut out = format!(
        "{} · ETA {} · {} created",
        rate(per_sec),
        time_left(c.total - c.done, per_sec),
        HumanCount(c.created)
    );
    if c.updated > 0 {
        out += &format!(" · {} updated", HumanCount(c.updated));
    }
    out += &format!(" · {} skipped", HumanCount(c.skipped));
    if c.failed > 0 {
        out += &format!(" · {} failed", HumanCount(c.failed));
    }
    out
}

/// Items per second: one decimal under 10, whole numbers with thousands separators above.
fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "0 items/s".into()
    } else if per_sec < 9.95 {
        format!("{per_sec:.1} items/s")
    } else {
        format!("{} items/s", HumanCount(per_sec.round() as u64))
    }
}

/// Time left at `per_sec` for `remaining` items: `5s`, `2m03s`, `1h05m`; `?` while there is no
/// rate yet, `0s` when nothing remains.
fn time_left(remaining: u64, per_sec: f64) -> String {
    if remaining == 0 {
        return "0s".into();
    }
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "?".into();
    }
    let secs = (remaining as f64 / per_sec).ceil();
    if secs >= 100.0 * 3600.0 {
        return ">99h".into();
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_valid() {
        for t in [SPINNER, COUNTER, BAR] {
            ProgressStyle::with_template(t).unwrap();
        }
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(rate(0.0), "0 items/s");
        assert_eq!(rate(f64::NAN), "0 items/s");
        assert_eq!(rate(0.25), "0.2 items/s");
        assert_eq!(rate(8.46), "8.5 items/s");
        assert_eq!(rate(9.96), "10 items/s");
        assert_eq!(rate(1234.4), "1,234 items/s");
    }

    #[test]
    fn time_left_rounds_up_and_scales_its_unit() {
        assert_eq!(time_left(0, 0.0), "0s");
        assert_eq!(time_left(10, 0.0), "?");
        assert_eq!(time_left(10, 4.0), "3s");
        assert_eq!(time_left(1000, 8.0), "2m05s");
        assert_eq!(time_left(3_900, 1.0), "1h05m");
        assert_eq!(time_left(1_000_000, 1.0), ">99h");
    }

    /// The snapshot of counters holding these values.
    fn counts(total: u64, created: u64, updated: u64, skipped: u64, failed: u64) -> RestoreCounts {
        let c = restore::Counters::default();
        c.total.store(total, Ordering::Relaxed);
        c.created.store(created, Ordering::Relaxed);
        c.updated.store(updated, Ordering::Relaxed);
        c.skipped.store(skipped, Ordering::Relaxed);
        c.failed.store(failed, Ordering::Relaxed);
        RestoreCounts::of(&c)
    }

    #[test]
    fn restore_line_shows_rate_eta_and_counters() {
        let c = counts(5000, 1190, 0, 10, 0);
        assert_eq!(c.done, 1200);
        assert_eq!(
            restore_line(&c, 760.0),
            "760 items/s · ETA 5s · 1,190 created · 10 skipped"
        );
        let c = counts(5000, 1190, 3, 10, 2);
        assert_eq!(
            restore_line(&c, 0.0),
            "0 items/s · ETA ? · 1,190 created · 3 updated · 10 skipped · 2 failed"
        );
    }

    #[test]
    fn done_never_exceeds_the_total() {
        let c = counts(3, 3, 0, 0, 1);
        assert_eq!(c.done, 3);
        assert_eq!(restore_line(&c, 2.0).split(" · ").nth(1), Some("ETA 0s"));
    }

    #[test]
    fn backup_line_shows_rate_and_resources() {
        assert_eq!(
            backup_line(4210.2, 37, 85),
            "4,210 items/s · 37/85 resources"
        );
    }
}
