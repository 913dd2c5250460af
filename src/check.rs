//! `dossier check`: whether the index and the state store agree — every stored record indexed
//! exactly once, nothing indexed that the store does not know, a document for every customer.

use std::collections::HashSet;

use serde::Serialize;

use crate::config::Config;
use crate::index::{IndexError, IndexStore};
use crate::state::{State, StateError};

/// Most problems of one kind listed (all are counted).
const LIST: usize = 100;

/// Errors reading the index or the store.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Problems of one kind: how many, and the first of them.
#[derive(Debug, Default, Serialize)]
pub struct Found {
    /// How many.
    pub count: usize,
    /// The first `LIST` of them.
    pub first: Vec<String>,
}

impl Found {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < LIST {
            self.first.push(what);
        }
    }
}

/// What `dossier check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Records in the state store.
    pub records: usize,
    /// Customers in the state store.
    pub customers: usize,
    /// Records indexed more than once (key ×count).
    pub duplicated: Found,
    /// Records in the store but not in the index.
    pub missing: Found,
    /// Documents in the index whose key the store does not know.
    pub unknown: Found,
    /// Customers without a document.
    pub customers_missing: Found,
    /// The run the index's last commit belongs to.
    pub index_run: Option<i64>,
    /// The last run the state store recorded as completed.
    pub state_run: Option<i64>,
}

impl CheckReport {
    /// True when the index and the store agree.
    pub fn consistent(&self) -> bool {
        self.duplicated.count + self.missing.count + self.unknown.count + self.customers_missing.count == 0
    }

    /// True when the index holds a run the store never recorded: the process was killed between
    /// the index commit and the store's; the next run reconciles them.
    pub fn index_ahead(&self) -> bool {
        self.index_run > self.state_run
    }
}

/// Compares the index of `cfg` with its state store.
pub fn check(cfg: &Config) -> Result<CheckReport, CheckError> {
    let (index_dir, state_path) = crate::pipeline::paths(cfg);
    let state = State::open(&state_path)?;
    let store = IndexStore::open(&index_dir)?;
    let counts = store.key_counts()?;
    let records = state.record_keys()?;
    let customers: HashSet<String> = state.customer_ids()?.into_iter().collect();
    let mut r = CheckReport {
        records: records.len(),
        customers: customers.len(),
        index_run: store.committed_run()?,
        state_run: state.last_completed_run()?,
        ..Default::default()
    };
    let known: HashSet<&str> = records.iter().map(String::as_str).collect();
    for k in &records {
        match counts.get(k).copied().unwrap_or(0) {
            0 => r.missing.add(k.clone()),
            1 => {}
            n => r.duplicated.add(format!("{k} ×{n}")),
        }
    }
    for c in &customers {
        if !counts.contains_key(c) {
            r.customers_missing.add(c.clone());
        }
    }
    let mut unknown: Vec<&String> =
        counts.keys().filter(|k| !known.contains(k.as_str()) && !customers.contains(*k)).collect();
    unknown.sort();
    for k in unknown {
        r.unknown.add(k.clone());
    }
    Ok(r)
}
