//! Crawls a folder (or one file) with walkdir: include/exclude globs, hidden
//! files skipped, symlinks not followed (so loops cannot trap the crawl), and
//! files over the size limit reported instead of read. Maildir folders are
//! read from `cur/` and `new/` (never `tmp/`, where mail is still arriving),
//! each message under a locator that survives its moves and flag changes.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use dossier_schema::{Item, ItemError, Payload};
use globset::{Glob, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use crate::spec::SourceSpec;
use crate::{Connector, ConnectorError, ScanReport};

/// Most files one source may list; a bound on a runaway share.
const MAX_FILES: usize = 10_000_000;

/// A folder of files.
pub struct FileConnector {
    name: String,
    root: PathBuf,
    include: Option<GlobSet>,
    exclude: GlobSet,
    max_bytes: u64,
}

fn globset(source: &str, patterns: &[String]) -> Result<GlobSet, ConnectorError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| ConnectorError::Config {
            source_name: source.to_string(),
            reason: format!("bad glob `{p}`: {e}"),
        })?;
        b.add(g);
    }
    b.build().map_err(|e| ConnectorError::Config { source_name: source.to_string(), reason: e.to_string() })
}

impl FileConnector {
    /// A connector for `spec`, its location resolved against `base`.
    pub fn new(spec: &SourceSpec, base: &Path) -> Result<Self, ConnectorError> {
        let include = if spec.include.is_empty() { None } else { Some(globset(&spec.name, &spec.include)?) };
        Ok(FileConnector {
            name: spec.name.clone(),
            root: base.join(crate::spec::expand_env(&spec.location)),
            include,
            exclude: globset(&spec.name, &spec.exclude)?,
            max_bytes: spec.limits.max_file_bytes,
        })
    }

    fn wanted(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let included = match &self.include {
            Some(set) => set.is_match(rel) || set.is_match(name),
            None => true,
        };
        included && !self.exclude.is_match(rel) && !self.exclude.is_match(name)
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|s| s.starts_with('.') && s != "." && s != "..")
}

/// True when `dir` is a maildir: it holds `cur` and `new` folders.
fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

/// The locator of a maildir message: its folder and unique name without the `cur`/`new` step and
/// the `:2,FLAGS` suffix, which change when a mail is read or answered
/// (`Maildir/cur/1700.M1.host:2,RS` → `Maildir/1700.M1.host`). Other paths stay as they are.
fn maildir_locator(rel: &str, path: &Path) -> Option<String> {
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let (parent, step) = dir.rsplit_once('/').unwrap_or(("", dir));
    if !matches!(step, "cur" | "new") || !is_maildir(path.parent()?.parent()?) {
        return None;
    }
    // `!` is the separator maildir uses where `:` is not allowed in file names.
    let unique = file.split([':', '!']).next().unwrap_or(file);
    Some(if parent.is_empty() { unique.to_string() } else { format!("{parent}/{unique}") })
}

impl Connector for FileConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn scan(&mut self, sink: &mut dyn FnMut(Item) -> bool) -> Result<ScanReport, ConnectorError> {
        let meta = std::fs::metadata(&self.root).map_err(|e| ConnectorError::Location {
            source_name: self.name.clone(),
            location: self.root.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut report = ScanReport { complete: true, errors: Vec::new(), reconnects: 0 };
        let single_file = meta.is_file();
        let walker = WalkDir::new(&self.root).follow_links(false).sort_by_file_name().into_iter();
        let mut listed = 0usize;
        // Hidden entries and maildir `tmp/` folders (mail still being delivered) are skipped.
        let skip = |e: &walkdir::DirEntry| {
            is_hidden(e.file_name())
                || e.file_type().is_dir() && e.file_name() == "tmp" && e.path().parent().is_some_and(is_maildir)
        };
        for entry in walker.filter_entry(|e| e.depth() == 0 || !skip(e)) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // An unreadable folder means the listing is partial: no deletes this run.
                    report.complete = false;
                    report.errors.push(ItemError {
                        source: self.name.clone(),
                        locator: e.path().map(|p| p.display().to_string()).unwrap_or_default(),
                        reason: format!("cannot list: {e}"),
                    });
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = if single_file {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                let r = entry.path().strip_prefix(&self.root).unwrap_or(entry.path());
                r.to_string_lossy().replace('\\', "/")
            };
            if !self.wanted(&rel) {
                continue;
            }
            listed += 1;
            if listed > MAX_FILES {
                report.complete = false;
                report.errors.push(ItemError {
                    source: self.name.clone(),
                    locator: rel,
                    reason: format!("more than {MAX_FILES} files; narrow the source with include/exclude"),
                });
                break;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    report.errors.push(ItemError { source: self.name.clone(), locator: rel, reason: e.to_string() });
                    continue;
                }
            };
            if meta.len() > self.max_bytes {
                report.errors.push(ItemError {
                    source: self.name.clone(),
                    locator: rel,
                    reason: format!(
                        "file is {} bytes, over this source's limit of {} (raise limits.max_file_bytes to index it)",
                        meta.len(),
                        self.max_bytes
                    ),
                });
                continue;
            }
            let mtime =
                meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
            let locator = maildir_locator(&rel, entry.path()).unwrap_or(rel);
            let item = Item {
                locator,
                version: format!("{}-{}", meta.len(), mtime),
                size: meta.len(),
                payload: Payload::File(entry.into_path()),
            };
            if !sink(item) {
                report.complete = false;
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Limits;

    fn spec(root: &Path, include: &[&str], exclude: &[&str]) -> SourceSpec {
        let mut s = SourceSpec::files("f", &root.display().to_string());
        s.include = include.iter().map(|s| s.to_string()).collect();
        s.exclude = exclude.iter().map(|s| s.to_string()).collect();
        s.limits = Limits { max_file_bytes: 10, ..Limits::default() };
        s
    }

    #[test]
    fn globs_hidden_symlink_loops_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/.hidden")).unwrap();
        std::fs::write(root.join("a/x.pdf"), b"1").unwrap();
        std::fs::write(root.join("a/y.txt"), b"2").unwrap();
        std::fs::write(root.join("a/.hidden/z.pdf"), b"3").unwrap();
        std::fs::write(root.join("big.pdf"), b"0123456789abc").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        let mut c = FileConnector::new(&spec(root, &["*.pdf"], &[]), Path::new("/")).unwrap();
        let mut seen = vec![];
        let report = c
            .scan(&mut |i| {
                seen.push(i.locator);
                true
            })
            .unwrap();
        assert_eq!(seen, vec!["a/x.pdf"]);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(report.errors[0].reason.contains("over this source's limit"));
        assert!(report.complete);
    }

    #[test]
    fn maildir_reads_cur_and_new_and_keeps_locators_across_flag_changes() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("support/Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        let mail = |n: &str| format!("From: a@b.example\nSubject: {n}\n\nbody\n");
        std::fs::write(md.join("new/1700.M1.host"), mail("new")).unwrap();
        std::fs::write(md.join("cur/1600.M2.host:2,S"), mail("seen")).unwrap();
        std::fs::write(md.join("tmp/1800.M3.host"), mail("arriving")).unwrap();
        let scan = |root: &Path| {
            let mut s = SourceSpec::files("m", &root.display().to_string());
            s.limits = Limits::default();
            let mut c = FileConnector::new(&s, Path::new("/")).unwrap();
            let mut seen = vec![];
            c.scan(&mut |i| {
                seen.push((i.locator, i.version));
                true
            })
            .unwrap();
            seen.sort();
            seen
        };
        let before = scan(dir.path());
        let locators: Vec<&str> = before.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(locators, vec!["support/Maildir/1600.M2.host", "support/Maildir/1700.M1.host"]);
        // The mail client reads and answers the new mail: it moves to cur/ with flags.
        std::fs::rename(md.join("new/1700.M1.host"), md.join("cur/1700.M1.host:2,RS")).unwrap();
        assert_eq!(scan(dir.path()), before, "same items, same versions: nothing to re-index");
        assert_eq!(crate::extract::sniff("1700.M1.host:2,RS", mail("x").as_bytes()), Some(crate::extract::Format::Eml));
    }

    #[test]
    fn missing_root_is_a_source_error() {
        let mut c = FileConnector::new(&spec(Path::new("/nonexistent/dossier"), &[], &[]), Path::new("/")).unwrap();
        assert!(c.scan(&mut |_| true).is_err());
    }
}
