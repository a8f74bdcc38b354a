//! Rendering a source path into YAML documents: a kustomization is built with `kustomize build`
//! (or `kubectl kustomize` when only kubectl is installed); any other directory is read as every
//! `*.yaml` / `*.yml` file below it, recursively, in sorted order.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Revision, SourceError};

/// The file names that make a directory a kustomization (kustomize's own list).
pub const KUSTOMIZATION_FILES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How long a render may take (remote bases are fetched by kustomize itself).
const RENDER_TIMEOUT: Duration = Duration::from_secs(300);

/// YAML text from one origin: a file (several documents possibly) or a kustomize build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Where it came from, for messages: a path relative to the rendered path, or
    /// `kustomize build <path>`.
    pub origin: String,
    /// The YAML (possibly a multi-document stream).
    pub text: String,
}

/// The rendered content of a source path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The YAML, by origin.
    pub documents: Vec<Document>,
    /// The command that rendered a kustomization, if one did.
    pub renderer: Option<String>,
}

impl Rendered {
    /// The `sha256:` digest of the content (origins included), the revision of a source
    /// without commits.
    pub fn digest(&self) -> Revision {
        let mut bytes = Vec::new();
        for d in &self.documents {
            bytes.extend_from_slice(d.origin.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(d.text.as_bytes());
            bytes.push(0);
        }
        Revision::digest_of(&bytes)
    }
}

/// The kustomization file directly in `dir`, if any.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// A program on the search path `path_var` (`$PATH`'s value).
fn find_on_path(name: &str, path_var: Option<&OsString>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file() || p.with_extension("exe").is_file()
}

/// The command that renders a kustomization, given `$PATH`: `kustomize build` first, else
/// `kubectl kustomize`; `None` when neither is installed.
pub fn renderer(path_var: Option<&OsString>) -> Option<(PathBuf, &'static str)> {
    find_on_path("kustomize", path_var)
        .map(|p| (p, "build"))
        .or_else(|| find_on_path("kubectl", path_var).map(|p| (p, "kustomize")))
}

/// Renders `path`: a kustomization with kustomize, otherwise the YAML files below it (or the
/// file itself when `path` is a file).
///
/// # Errors
/// [`SourceError::PathNotFound`], [`SourceError::Io`], [`SourceError::KustomizeMissing`] and
/// [`SourceError::Kustomize`].
pub fn render(path: &Path) -> Result<Rendered, SourceError> {
    if !path.exists() {
        return Err(SourceError::PathNotFound {
            path: path.display().to_string(),
            within: String::new(),
        });
    }
    if path.is_dir() && kustomization_file(path).is_some() {
        return build(path);
    }
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| SourceError::Io { path: p, source }
    };
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let origin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Rendered {
            documents: vec![Document { origin, text }],
            renderer: None,
        });
    }
    let mut files = Vec::new();
    collect_yaml(path, &mut files)?;
    files.sort();
    let mut documents = Vec::with_capacity(files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io(&f))?;
        let origin = f
            .strip_prefix(path)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        documents.push(Document { origin, text });
    }
    Ok(Rendered {
        documents,
        renderer: None,
    })
}

/// Every `*.yaml` / `*.yml` file below `dir`; entries whose name starts with `.` (`.git`,
/// editor files) are skipped, and symbolic links to directories are not followed.
fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let p = entry.path();
        let ft = entry.file_type().map_err(io)?;
        if ft.is_dir() {
            collect_yaml(&p, out)?;
        } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            if matches!(ext.as_deref(), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    Ok(())
}

/// Runs the kustomize renderer on `dir`.
fn build(dir: &Path) -> Result<Rendered, SourceError> {
    let (program, verb) = renderer(std::env::var_os("PATH").as_ref()).ok_or_else(|| {
        SourceError::KustomizeMissing {
            path: dir.to_path_buf(),
        }
    })?;
    let command = format!(
        "{} {verb} {}",
        program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir.display()
    );
    let failed = |stderr: String| SourceError::Kustomize {
        command: command.clone(),
        stderr,
    };
    let done = super::child::run(
        Command::new(&program).arg(verb).arg(dir),
        b"",
        RENDER_TIMEOUT,
    )
    .map_err(|e| failed(format!("{}: {e}", program.display())))?;
    if !done.status.success() {
        let msg = String::from_utf8_lossy(&done.stderr).trim().to_string();
        return Err(failed(if msg.is_empty() {
            format!("exited with {}", done.status)
        } else {
            msg
        }));
    }
    let out = done.stdout;
    let text = String::from_utf8(out).map_err(|_| failed("output is not UTF-8".into()))?;
    Ok(Rendered {
        documents: vec![Document {
            origin: command.clone(),
            text,
        }],
        renderer: Some(command),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directories_are_read_recursively_in_order() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join("z.yaml"), "z: 1\n").unwrap();
        std::fs::write(d.join("a.YML"), "a: 1\n").unwrap();
        std::fs::write(d.join("b/c/x.yaml"), "x: 1\n").unwrap();
        std::fs::write(d.join("notes.txt"), "no").unwrap();
        std::fs::write(d.join(".hidden.yaml"), "h: 1\n").unwrap();
        std::fs::write(d.join(".git/config.yaml"), "g: 1\n").unwrap();
        let r = render(d).unwrap();
        let origins: Vec<_> = r.documents.iter().map(|d| d.origin.as_str()).collect();
        assert_eq!(origins, ["a.YML", "b/c/x.yaml", "z.yaml"]);
        assert!(r.renderer.is_none());
        let digest = r.digest();
        std::fs::write(d.join("z.yaml"), "z: 2\n").unwrap();
        assert_ne!(render(d).unwrap().digest(), digest);
        assert!(matches!(
            render(&d.join("missing")),
            Err(SourceError::PathNotFound { .. })
        ));
        // A single file is a source too.
        assert_eq!(render(&d.join("z.yaml")).unwrap().documents.len(), 1);
    }

    #[test]
    fn a_kustomization_without_renderer_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("bin");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(renderer(Some(&empty.clone().into_os_string())).is_none());
        assert!(renderer(None).is_none());
        // With only kubectl on the path, `kubectl kustomize` is used; kustomize wins if present.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let exe = |n: &str| {
                let p = empty.join(n);
                std::fs::write(&p, "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            };
            exe("kubectl");
            let path = empty.clone().into_os_string();
            assert_eq!(renderer(Some(&path)).unwrap().1, "kustomize");
            exe("kustomize");
            assert_eq!(renderer(Some(&path)).unwrap().1, "build");
        }
        let err = SourceError::KustomizeMissing { path: "/x".into() }.to_string();
        assert!(err.contains("neither `kustomize` nor `kubectl`"), "{err}");
        std::fs::write(t.path().join("Kustomization"), "resources: []\n").unwrap();
        assert!(kustomization_file(t.path()).is_some());
    }
}
