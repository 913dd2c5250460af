//! The extraction stage's safety: file extraction runs in worker processes
//! (`dossier extract-worker`, started from the running binary) so that a
//! parser's panic, hang or memory blow-up costs one item, never the run. Each
//! worker has an address-space limit; each item a wall-clock timeout, after
//! which the worker is killed and replaced.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use dossier_connectors::Extractor;
use dossier_connectors::extract::Extracted;
use serde::{Deserialize, Serialize};

/// What the parent asks a worker.
#[derive(Serialize, Deserialize)]
struct Request {
    extractor: Extractor,
    locator: String,
    path: PathBuf,
    /// Only the messages appended to an mbox: (bytes already indexed, bytes now, messages before).
    #[serde(default)]
    tail: Option<(u64, u64, usize)>,
}

/// What a worker answers.
#[derive(Serialize, Deserialize)]
enum Response {
    Ok(Extracted),
    Err(String),
}

/// One worker process and the thread reading its answers.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Worker {
    fn spawn(exe: &Path, memory_mib: u64) -> std::io::Result<Worker> {
        let mut child = Command::new(exe)
            .arg("extract-worker")
            .arg("--memory-mib")
            .arg(memory_mib.to_string())
            // mimalloc reserves address space 1 GiB at a time; under the worker's address-space
            // limit that left no room for the PDF parser's thread pool. Smaller steps fit.
            .env("MIMALLOC_ARENA_RESERVE", "64M")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("worker has no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("worker has no stdout"))?;
        let (tx, rx) = bounded(1);
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Worker { child, stdin, lines: rx })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How the worker ended, for the report.
    fn death(&mut self) -> String {
        match self.child.wait() {
            Ok(st) => {
                #[cfg(unix)]
                {
                    use std::os::unix::process::ExitStatusExt;
                    if let Some(sig) = st.signal() {
                        return format!(
                            "the extractor crashed on this item (signal {sig}; out of memory or a parser fault)"
                        );
                    }
                }
                format!("the extractor stopped on this item ({st}; out of memory or a parser abort)")
            }
            Err(e) => format!("the extractor stopped on this item: {e}"),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pool of isolated extraction workers.
pub struct Isolated {
    exe: PathBuf,
    memory_mib: u64,
    idle_tx: Sender<Worker>,
    idle_rx: Receiver<Worker>,
    spawned: Mutex<usize>,
    size: usize,
}

impl Isolated {
    /// A pool of up to `size` workers running `exe extract-worker`.
    pub fn new(exe: PathBuf, size: usize, memory_mib: u64) -> Isolated {
        let (idle_tx, idle_rx) = bounded(size.max(1));
        Isolated { exe, memory_mib, idle_tx, idle_rx, spawned: Mutex::new(0), size: size.max(1) }
    }

    fn checkout(&self) -> Result<Worker, String> {
        if let Ok(w) = self.idle_rx.try_recv() {
            return Ok(w);
        }
        {
            let mut n = self.spawned.lock().map_err(|_| "worker pool poisoned".to_string())?;
            if *n < self.size {
                *n += 1;
                drop(n);
                return Worker::spawn(&self.exe, self.memory_mib)
                    .map_err(|e| format!("cannot start the extractor: {e}"));
            }
        }
        self.idle_rx.recv().map_err(|_| "worker pool closed".to_string())
    }

    fn replace(&self) -> Result<(), String> {
        let w = Worker::spawn(&self.exe, self.memory_mib).map_err(|e| format!("cannot restart the extractor: {e}"))?;
        let _ = self.idle_tx.try_send(w);
        Ok(())
    }

    /// Extracts one file in a worker, within `timeout`.
    pub fn extract(
        &self,
        x: &Extractor,
        locator: &str,
        path: &Path,
        tail: Option<(u64, u64, usize)>,
        timeout: Duration,
    ) -> Result<Extracted, String> {
        let mut w = self.checkout()?;
        let req = Request { extractor: x.clone(), locator: locator.to_string(), path: path.to_path_buf(), tail };
        let line = serde_json::to_string(&req).map_err(|e| e.to_string())?;
        if writeln!(w.stdin, "{line}").and_then(|_| w.stdin.flush()).is_err() {
            let why = w.death();
            self.replace()?;
            return Err(why);
        }
        match w.lines.recv_timeout(timeout) {
            Ok(answer) => {
                let parsed: Result<Response, _> = serde_json::from_str(&answer);
                let _ = self.idle_tx.try_send(w);
                match parsed {
                    Ok(Response::Ok(e)) => Ok(e),
                    Ok(Response::Err(e)) => Err(e),
                    Err(e) => Err(format!("the extractor's answer was unreadable: {e}")),
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                w.kill();
                self.replace()?;
                Err(format!(
                    "extraction took longer than {}s and was stopped (raise limits.timeout_secs to allow more)",
                    timeout.as_secs()
                ))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let why = w.death();
                self.replace()?;
                Err(why)
            }
        }
    }
}

/// Limits this process's address space (a worker calls it first).
pub fn limit_memory(mib: u64) {
    #[cfg(unix)]
    {
        let bytes = mib.saturating_mul(1 << 20) as libc::rlim_t;
        let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
        // SAFETY: setrlimit reads a valid rlimit struct; failure only leaves the limit unset.
        unsafe {
            libc::setrlimit(libc::RLIMIT_AS, &lim);
        }
    }
}

/// The reason a caught panic gives, for the run's report.
pub fn panic_reason(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let msg: String = msg.chars().take(300).collect();
    format!("the parser crashed on this file (panic: {msg}); it was skipped")
}

/// The worker's loop: one request per line on stdin, one answer per line on stdout.
pub fn worker_main(memory_mib: u64) -> std::io::Result<()> {
    limit_memory(memory_mib);
    // A parser panic is answered as this item's error, and the worker goes on.
    std::panic::set_hook(Box::new(|_| {}));
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => match std::panic::catch_unwind(|| match req.tail {
                Some((offset, end, before)) => {
                    req.extractor.extract_tail(&req.locator, &req.path, (offset, end), before)
                }
                None => req.extractor.extract_file(&req.locator, &req.path),
            }) {
                Ok(Ok(e)) => Response::Ok(e),
                Ok(Err(e)) => Response::Err(e.to_string()),
                Err(p) => Response::Err(panic_reason(p.as_ref())),
            },
            Err(e) => Response::Err(format!("bad request: {e}")),
        };
        let text =
            serde_json::to_string(&resp).unwrap_or_else(|e| format!("{{\"Err\":\"cannot encode the answer: {e}\"}}"));
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(())
}
