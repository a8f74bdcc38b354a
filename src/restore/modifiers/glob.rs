//! Globs in the syntax of github.com/gobwas/glob (Velero's `groupResource` and `namespaces`
//! conditions).

use super::*;

#[derive(Clone, Debug)]
pub(super) enum GlobTok {
    Lit(char),
    /// `*`: any run without the separator.
    Star,
    /// `**`: any run.
    Super,
    /// `?`: one character other than the separator.
    One,
    /// `[...]` / `[!...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Clone, Debug)]
pub(super) enum GlobNode {
    Tok(GlobTok),
    Alt(Vec<Vec<GlobNode>>),
}

/// A compiled glob: its `{a,b}` alternatives expanded.
#[derive(Clone, Debug)]
pub(super) struct Glob {
    pub(super) alternatives: Vec<Vec<GlobTok>>,
    pub(super) separator: Option<char>,
}

impl Glob {
    pub(super) fn new(pattern: &str, separator: Option<char>) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let nodes = parse_glob_seq(&chars, &mut pos, false)
            .map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        let alternatives = expand_glob(&nodes).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        Ok(Self {
            alternatives,
            separator,
        })
    }

    pub(super) fn matches(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        self.alternatives
            .iter()
            .any(|toks| glob_match(toks, &chars, self.separator))
    }
}

pub(super) fn parse_glob_seq(
    chars: &[char],
    pos: &mut usize,
    in_alt: bool,
) -> Result<Vec<GlobNode>, String> {
    let mut out = Vec::new();
    while let Some(&c) = chars.get(*pos) {
        match c {
            '}' | ',' if in_alt => return Ok(out),
            '\\' => {
                let Some(&n) = chars.get(*pos + 1) else {
                    return Err("ends with an unfinished escape".into());
                };
                out.push(GlobNode::Tok(GlobTok::Lit(n)));
                *pos += 2;
            }
            '*' => {
                if chars.get(*pos + 1) == Some(&'*') {
                    out.push(GlobNode::Tok(GlobTok::Super));
                    *pos += 2;
                } else {
                    out.push(GlobNode::Tok(GlobTok::Star));
                    *pos += 1;
                }
            }
            '?' => {
                out.push(GlobNode::Tok(GlobTok::One));
                *pos += 1;
            }
            '[' => {
                *pos += 1;
                let negated = chars.get(*pos) == Some(&'!');
                if negated {
                    *pos += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let Some(&c) = chars.get(*pos) else {
                        return Err("unclosed '['".into());
                    };
                    if c == ']' {
                        *pos += 1;
                        break;
                    }
                    let lo = if c == '\\' {
                        *pos += 1;
                        *chars.get(*pos).ok_or("unclosed '['")?
                    } else {
                        c
                    };
                    *pos += 1;
                    if chars.get(*pos) == Some(&'-')
                        && chars.get(*pos + 1).is_some_and(|c| *c != ']')
                    {
                        let hi = *chars.get(*pos + 1).ok_or("unclosed '['")?;
                        if hi < lo {
                            return Err(format!("bad range {lo}-{hi}"));
                        }
                        ranges.push((lo, hi));
                        *pos += 2;
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                if ranges.is_empty() {
                    return Err("empty '[]'".into());
                }
                out.push(GlobNode::Tok(GlobTok::Class { negated, ranges }));
            }
            '{' => {
                *pos += 1;
                let mut alts = Vec::new();
                loop {
                    alts.push(parse_glob_seq(chars, pos, true)?);
                    match chars.get(*pos) {
                        Some(',') => *pos += 1,
                        Some('}') => {
                            *pos += 1;
                            break;
                        }
                        _ => return Err("unclosed '{'".into()),
                    }
                }
                out.push(GlobNode::Alt(alts));
            }
            c => {
                out.push(GlobNode::Tok(GlobTok::Lit(c)));
                *pos += 1;
            }
        }
    }
    Ok(out)
}

pub(super) fn expand_glob(nodes: &[GlobNode]) -> Result<Vec<Vec<GlobTok>>, String> {
    let mut acc: Vec<Vec<GlobTok>> = vec![Vec::new()];
    for node in nodes {
        match node {
            GlobNode::Tok(t) => acc.iter_mut().for_each(|a| a.push(t.clone())),
            GlobNode::Alt(alts) => {
                let mut options = Vec::new();
                for alt in alts {
                    options.extend(expand_glob(alt)?);
                }
                if acc.len().saturating_mul(options.len()) > MAX_GLOB_ALTERNATIVES {
                    return Err("too many '{..}' alternatives".into());
                }
                acc = acc
                    .iter()
                    .flat_map(|a| {
                        options.iter().map(move |o| {
                            let mut v = a.clone();
                            v.extend(o.iter().cloned());
                            v
                        })
                    })
                    .collect();
            }
        }
    }
    Ok(acc)
}

/// Whole-string match of an alternative-free glob (dynamic programming, linear in each).
pub(super) fn glob_match(toks: &[GlobTok], s: &[char], sep: Option<char>) -> bool {
    let not_sep = |c: char| Some(c) != sep;
    // reach[j]: the tokens so far can match s[..j].
    let mut reach = vec![false; s.len() + 1];
    reach[0] = true;
    for tok in toks {
        let mut next = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            let prev = j.checked_sub(1);
            next[j] = match tok {
                GlobTok::Star => reach[j] || prev.is_some_and(|p| next[p] && not_sep(s[p])),
                GlobTok::Super => reach[j] || prev.is_some_and(|p| next[p]),
                GlobTok::One => prev.is_some_and(|p| reach[p] && not_sep(s[p])),
                GlobTok::Lit(c) => prev.is_some_and(|p| reach[p] && s[p] == *c),
                GlobTok::Class { negated, ranges } => prev.is_some_and(|p| {
                    reach[p]
                        && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[p])) != *negated
                }),
            };
        }
        reach = next;
    }
    reach[s.len()]
}
