//! Records extracted by a run wait on disk, not in memory, until resolution has linked them to
//! their customers and they are indexed: a run's memory does not grow with its sources' text.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use dossier_schema::Record;

/// Errors of the spool (a full or unwritable disk).
#[derive(Debug, thiserror::Error)]
#[error("the run's temporary record file in {dir}: {source}; free some disk space there and run again")]
pub struct SpoolError {
    dir: String,
    source: std::io::Error,
}

/// Records written one JSON line each to an unnamed temporary file (it vanishes with the
/// process, even a killed one), read back in the order they were written.
pub struct Spool {
    dir: String,
    out: BufWriter<File>,
    len: usize,
}

impl Spool {
    /// A new, empty spool in `dir` (the index folder: the same disk, and not `/tmp`, which may
    /// be a small memory file system).
    pub fn new(dir: &Path) -> Result<Spool, SpoolError> {
        let file =
            tempfile::tempfile_in(dir).map_err(|source| SpoolError { dir: dir.display().to_string(), source })?;
        Ok(Spool { dir: dir.display().to_string(), out: BufWriter::with_capacity(1 << 20, file), len: 0 })
    }

    /// Appends one record.
    pub fn push(&mut self, r: &Record) -> Result<(), SpoolError> {
        serde_json::to_writer(&mut self.out, r)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| self.error(source))?;
        self.len += 1;
        Ok(())
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn error(&self, source: std::io::Error) -> SpoolError {
        SpoolError { dir: self.dir.clone(), source }
    }

    /// The records, in the order they were pushed.
    pub fn into_records(self) -> Result<impl Iterator<Item = Result<Record, SpoolError>>, SpoolError> {
        let Spool { dir, out, len } = self;
        let mut file = out.into_inner().map_err(|e| SpoolError { dir: dir.clone(), source: e.into_error() })?;
        file.seek(SeekFrom::Start(0)).map_err(|source| SpoolError { dir: dir.clone(), source })?;
        let mut lines = BufReader::with_capacity(1 << 20, file).lines();
        Ok((0..len).map(move |_| {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                Some(Err(source)) => return Err(SpoolError { dir: dir.clone(), source }),
                None => {
                    let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ends early");
                    return Err(SpoolError { dir: dir.clone(), source });
                }
            };
            serde_json::from_str(&line).map_err(|e| SpoolError { dir: dir.clone(), source: e.into() })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_schema::RecordKind;

    #[test]
    fn gives_back_what_it_was_given_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let mut written = Vec::new();
        for i in 0..1000 {
            let item = format!("row{i}");
            let mut r = Record::new("crm", &item, Record::key_for("crm", &item), RecordKind::Row);
            r.text = format!("line one\nline \"two\" of {i}\u{2028}é");
            r.fields.insert("status".into(), "open".into());
            spool.push(&r).unwrap();
            written.push(r);
        }
        assert_eq!(spool.len(), 1000);
        let read: Vec<Record> = spool.into_records().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, written);
        // The file has no name: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
