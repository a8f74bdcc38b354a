//! Globs in the syntax of github.com/gobwas/glob, which Velero's resource modifiers use for
//! the `groupResource` (separator `.`) and `namespaces` (no separator) conditions: `*` (any run
//! without the separator), `**` (any run), `?` (one character other than the separator),
//! `[...]`/`[!...]`, `{a,b}` and `\` escapes.
//!
//! Matching is `globset`'s: its separator is `/`, so with a separator the pattern's and the
//! subject's `.` are read as `/` (group-resources hold no `/`) and `*`/`?` are kept from
//! crossing it (`literal_separator`). One difference from gobwas remains: `**` in the middle of
//! a segment (`a**b`) is an ordinary `*` in globset; Velero's documented patterns (`*`,
//! `*.apps`, `**`) do not use it.

/// A compiled glob.
#[derive(Clone, Debug)]
pub(super) struct Glob {
    matcher: globset::GlobMatcher,
    separator: Option<char>,
}

impl Glob {
    /// Compiles `pattern`; `separator` is the character `*` and `?` do not cross (`.` for
    /// group-resources).
    ///
    /// # Errors
    /// `bad glob "<pattern>": <why>` (an unclosed `[` or `{`, a dangling `\`, an empty class).
    pub(super) fn new(pattern: &str, separator: Option<char>) -> Result<Self, String> {
        let translated: String = match separator {
            Some(sep) => pattern
                .chars()
                .map(|c| if c == sep { '/' } else { c })
                .collect(),
            None => pattern.to_string(),
        };
        let glob = globset::GlobBuilder::new(&translated)
            .literal_separator(separator.is_some())
            .backslash_escape(true)
            .empty_alternates(true)
            .build()
            .map_err(|e| format!("bad glob {pattern:?}: {}", e.kind()))?;
        Ok(Self {
            matcher: glob.compile_matcher(),
            separator,
        })
    }

    /// Whether `s` matches.
    pub(super) fn matches(&self, s: &str) -> bool {
        match self.separator {
            Some(sep) => {
                let translated: String =
                    s.chars().map(|c| if c == sep { '/' } else { c }).collect();
                self.matcher.is_match(translated.as_str())
            }
            None => self.matcher.is_match(s),
        }
    }
}
