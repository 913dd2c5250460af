//! The last run's links, as an incremental run reads them: record keys in order, each with its
//! customers by number.
//!
//! A run reads every link (670k at 100,000 customers) to tell which customers a change reaches
//! and which records link elsewhere now. Kept as a hash map of record keys, the read spent most
//! of its time building the map, and the run hashed every key twice more to find its records'
//! links. Read in key order, the links line up with the records (also in key order) by a merge,
//! and each customer is a number from the start.

use dossier_schema::CompactString;
use rustc_hash::FxHashMap;

use super::LinkMap;

/// A link's customer number, with this bit set when the record is not a member of that customer
/// (it mentions it, or is a part of a record that does).
const OTHER: u32 = 1 << 31;

/// The last run's links: record keys in order, each with its customers (see the module's doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriorLinks {
    /// Customer ids, by number.
    ids: Vec<CompactString>,
    /// The record keys, one after another, in order.
    text: String,
    /// Where each key ends in `text`.
    ends: Vec<usize>,
    /// Where each key's customers end in `custs`.
    link_ends: Vec<u32>,
    /// Each key's customers, by number, in id order (`OTHER` set for a non-member).
    custs: Vec<u32>,
}

/// Builds [`PriorLinks`] from links given in key order, each key's customers in id order.
#[derive(Debug, Default)]
pub struct PriorLinksBuilder {
    links: PriorLinks,
    number: FxHashMap<CompactString, u32>,
}

/// A link given out of order to [`PriorLinksBuilder::push`].
#[derive(Debug, thiserror::Error)]
#[error("links out of order: {0:?} after {1:?}")]
pub struct OutOfOrder(String, String);

impl PriorLinksBuilder {
    /// Room for `links` links.
    pub fn with_capacity(links: usize) -> PriorLinksBuilder {
        let mut b = PriorLinksBuilder::default();
        b.links.custs.reserve_exact(links);
        b
    }

    /// Adds a link of `key` to `customer`; keys come in order, and a key's customers in id order.
    pub fn push(&mut self, key: &str, customer: &str, member: bool) -> Result<(), OutOfOrder> {
        let l = &mut self.links;
        let last = l.ends.len().checked_sub(1).map(|k| l.key(k));
        match last.map(|last| (last.cmp(key), last)) {
            Some((std::cmp::Ordering::Equal, _)) => {
                // (The last key's row is the last one: its last customer is the last pushed.)
                if let Some(&c) = l.custs.last()
                    && l.id(c) >= customer
                {
                    return Err(OutOfOrder(customer.to_string(), l.id(c).to_string()));
                }
            }
            Some((std::cmp::Ordering::Greater, last)) => return Err(OutOfOrder(key.to_string(), last.to_string())),
            _ => {
                l.text.push_str(key);
                l.ends.push(l.text.len());
                l.link_ends.push(l.custs.len() as u32);
            }
        }
        let n = match self.number.get(customer) {
            Some(&n) => n,
            None => {
                let n = l.ids.len() as u32;
                l.ids.push(CompactString::from(customer));
                self.number.insert(CompactString::from(customer), n);
                n
            }
        };
        l.custs.push(if member { n } else { n | OTHER });
        if let Some(end) = l.link_ends.last_mut() {
            *end = l.custs.len() as u32;
        }
        Ok(())
    }

    /// The links given.
    pub fn finish(self) -> PriorLinks {
        self.links
    }
}

impl PriorLinks {
    /// From record key → customers and record key → those of them it is not a member of (as a
    /// resolution gives them).
    pub fn of(links: &LinkMap, others: &LinkMap) -> PriorLinks {
        let mut keys: Vec<&CompactString> = links.keys().collect();
        keys.sort_unstable();
        let mut b = PriorLinksBuilder::with_capacity(links.values().map(Vec::len).sum());
        for k in keys {
            let mut ids: Vec<&CompactString> = links[k].iter().collect();
            ids.sort_unstable();
            ids.dedup();
            let other = others.get(k).map_or(&[][..], Vec::as_slice);
            for c in ids {
                // (In order by construction.)
                let _ = b.push(k, c, !other.contains(c));
            }
        }
        b.finish()
    }

    /// How many records have links.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no record has links.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// How many customers the links reach.
    pub fn customers(&self) -> usize {
        self.ids.len()
    }

    /// The key of row `i`.
    pub fn key(&self, i: usize) -> &str {
        let from = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.text[from..self.ends[i]]
    }

    /// The id of customer number `n`.
    pub fn id(&self, n: u32) -> &str {
        self.ids[(n & !OTHER) as usize].as_str()
    }

    /// The links of row `i`: each customer's number and whether the record is its member, in
    /// id order.
    pub fn links(&self, i: usize) -> impl ExactSizeIterator<Item = (u32, bool)> + '_ {
        let from = i.checked_sub(1).map_or(0, |p| self.link_ends[p] as usize);
        self.custs[from..self.link_ends[i] as usize].iter().map(|&c| (c & !OTHER, c & OTHER == 0))
    }

    /// The customer ids of row `i`, in order.
    pub fn ids(&self, i: usize) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.links(i).map(|(n, _)| self.id(n))
    }

    /// The row of `key`, if it has links.
    pub fn find(&self, key: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The row of each of `keys` (`None` for a key without links): a merge when the keys are in
    /// order, as a run's records are, else a search each.
    pub fn rows_of<'k>(&self, keys: impl ExactSizeIterator<Item = &'k str> + Clone) -> Vec<Option<u32>> {
        let sorted = keys.clone().zip(keys.clone().skip(1)).all(|(a, b)| a <= b);
        if !sorted {
            return keys.map(|k| self.find(k).map(|i| i as u32)).collect();
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut i = 0;
        for k in keys {
            while i < self.len() && self.key(i) < k {
                i += 1;
            }
            out.push((i < self.len() && self.key(i) == k).then_some(i as u32));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The customer ids of `key` (none when it has no links).
    fn ids_of<'a>(p: &'a PriorLinks, key: &str) -> Vec<&'a str> {
        p.find(key).map(|i| p.ids(i).collect()).unwrap_or_default()
    }

    fn map(entries: &[(&str, &[&str])]) -> LinkMap {
        entries.iter().map(|(k, ids)| (CompactString::from(*k), ids.iter().map(|&i| i.into()).collect())).collect()
    }

    #[test]
    fn links_are_found_by_key_with_their_roles() {
        let links = map(&[("crm:2", &["c1", "c2"]), ("crm:1", &["c2"]), ("pdf:a#p1", &["c3"])]);
        let others = map(&[("crm:2", &["c2"])]);
        let p = PriorLinks::of(&links, &others);
        assert_eq!((p.len(), p.customers()), (3, 3));
        assert_eq!(p.key(0), "crm:1");
        assert_eq!(ids_of(&p, "crm:2"), ["c1", "c2"]);
        let row = p.find("crm:2").map(|i| p.links(i).map(|(n, m)| (p.id(n).to_string(), m)).collect::<Vec<_>>());
        assert_eq!(row, Some(vec![("c1".to_string(), true), ("c2".to_string(), false)]));
        assert!(ids_of(&p, "crm:3").is_empty());
        assert_eq!(p.find("pdf:a#p1"), Some(2));
        let keys = ["crm:0", "crm:1", "crm:2", "crm:3", "pdf:a#p1"];
        assert_eq!(p.rows_of(keys.iter().copied()), [None, Some(0), Some(1), None, Some(2)]);
        // Out of order: searched for each.
        let keys = ["pdf:a#p1", "crm:9", "crm:1"];
        assert_eq!(p.rows_of(keys.iter().copied()), [Some(2), None, Some(0)]);
    }

    #[test]
    fn the_builder_refuses_links_out_of_order() {
        let mut b = PriorLinksBuilder::default();
        assert!(b.push("b", "c2", true).is_ok());
        assert!(b.push("b", "c3", false).is_ok());
        assert!(b.push("b", "c3", true).is_err());
        assert!(b.push("b", "c1", true).is_err());
        assert!(b.push("a", "c1", true).is_err());
        assert!(b.push("c", "c1", true).is_ok());
        let p = b.finish();
        let all: Vec<(&str, Vec<&str>)> = (0..p.len()).map(|i| (p.key(i), p.ids(i).collect())).collect();
        assert_eq!(all, [("b", vec!["c2", "c3"]), ("c", vec!["c1"])]);
    }

    proptest! {
        #[test]
        fn rows_and_links_are_those_of_the_maps(
            entries in proptest::collection::btree_map(
                "[a-c:]{0,5}",
                proptest::collection::btree_map("[x-z]{1,2}", any::<bool>(), 1..4),
                0..30,
            ),
            mut probes in proptest::collection::vec("[a-c:]{0,5}", 0..30),
        ) {
            let links: LinkMap = entries.iter()
                .map(|(k, ids)| (k.as_str().into(), ids.keys().map(|c| c.as_str().into()).collect()))
                .collect();
            let others: LinkMap = entries.iter()
                .map(|(k, ids)| (k.as_str().into(), ids.iter().filter(|(_, m)| !**m).map(|(c, _)| c.as_str().into()).collect()))
                .collect();
            let p = PriorLinks::of(&links, &others);
            prop_assert_eq!(p.len(), entries.len());
            for sorted in [false, true] {
                if sorted {
                    probes.sort();
                }
                let rows = p.rows_of(probes.iter().map(String::as_str));
                for (k, row) in probes.iter().zip(rows) {
                    prop_assert_eq!(row.map(|r| p.key(r as usize)), entries.contains_key(k).then_some(k.as_str()));
                }
            }
            for (k, ids) in &entries {
                let row = p.find(k).expect("every key is found");
                let got: Vec<(&str, bool)> = p.links(row).map(|(n, m)| (p.id(n), m)).collect();
                let want: Vec<(&str, bool)> = ids.iter().map(|(c, m)| (c.as_str(), *m)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
