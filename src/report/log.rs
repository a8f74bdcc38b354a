//! The run log: lines in Velero's logrus text form (`time=... level=info msg="..."`), compressed
//! as they are written so a long run's log stays small in memory, and mirrored to `tracing`.

use std::io::Write;
use std::sync::Mutex;

use flate2::Compression;
use flate2::write::GzEncoder;

/// A gzip-compressed, append-only log of one backup or restore.
pub struct RunLog {
    /// `backup=<ns>/<name>` or `restore=<ns>/<name>`, appended to every line.
    subject: String,
    gz: Mutex<Option<GzEncoder<Vec<u8>>>>,
    /// Debug lines (one per item) are kept: the process logs at debug level.
    debug: bool,
}

impl RunLog {
    /// A new log whose lines carry `key=value` (e.g. `backup=tidemark/nightly`).
    pub fn new(key: &str, value: &str) -> Self {
        Self {
            subject: format!("{key}={value}"),
            gz: Mutex::new(Some(GzEncoder::new(Vec::new(), Compression::default()))),
            debug: tracing::enabled!(tracing::Level::DEBUG),
        }
    }

    /// Whether [`RunLog::debug`] lines are kept: as Velero's server `--log-level debug` does,
    /// `--log-level debug` (of `tidemark backup|restore create` or `tidemark server`) puts a
    /// line per item in the run's log. Callers check it before formatting a line per item.
    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// Logs at debug level (one line per item); nothing when [`RunLog::debug_enabled`] is false.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            tracing::debug!(subject = %self.subject, "{msg}");
            self.line("debug", msg);
        }
    }

    fn line(&self, level: &str, msg: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let escaped = msg.replace('\\', "\\\\").replace('"', "\\\"");
        let text = format!(
            "time=\"{now}\" level={level} msg=\"{escaped}\" {}\n",
            self.subject
        );
        if let Ok(mut g) = self.gz.lock()
            && let Some(gz) = g.as_mut()
        {
            let _ = gz.write_all(text.as_bytes());
        }
    }

    /// Logs at info level.
    pub fn info(&self, msg: &str) {
        tracing::info!(subject = %self.subject, "{msg}");
        self.line("info", msg);
    }

    /// Logs at warning level.
    pub fn warn(&self, msg: &str) {
        tracing::warn!(subject = %self.subject, "{msg}");
        self.line("warning", msg);
    }

    /// Logs at error level.
    pub fn error(&self, msg: &str) {
        tracing::error!(subject = %self.subject, "{msg}");
        self.line("error", msg);
    }

    /// Finishes the gzip stream and returns its bytes (empty if already taken).
    pub fn finish(&self) -> Vec<u8> {
        let taken = self.gz.lock().ok().and_then(|mut g| g.take());
        taken.and_then(|gz| gz.finish().ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn lines_are_logrus_text_and_gzipped() {
        let log = RunLog::new("backup", "tidemark/b1");
        log.info("Backing up \"x\"");
        log.warn("skipped");
        let gz = log.finish();
        let mut s = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut s)
            .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(r#"level=info msg="Backing up \"x\"" backup=tidemark/b1"#));
        assert!(lines[1].contains("level=warning"));
        assert!(log.finish().is_empty());
    }
}
