//! A small sorted set of strings for a customer's values.
//!
//! A customer's profile holds a few values per kind (two names, one email, a handful of order
//! numbers), and there is one profile per customer and per source. A `BTreeSet<String>`
//! allocates a node of eleven slots (about 280 bytes) for even one value; a sorted vector
//! holds what it holds, each value inline up to 24 bytes (most are shorter: one allocation a
//! set, not one a value). It reads and writes as a JSON array, as the set did.

use std::borrow::Cow;

use compact_str::CompactString;

use serde::{Deserialize, Deserializer, Serialize};

/// Sorted, distinct strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ValueSet(Vec<CompactString>);

impl ValueSet {
    /// An empty set.
    pub fn new() -> ValueSet {
        ValueSet(Vec::new())
    }

    /// Adds `v`; returns whether it was not there yet.
    pub fn insert(&mut self, v: impl AsRef<str>) -> bool {
        match self.position_or_place(v.as_ref()) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, v.as_ref().into());
                true
            }
        }
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: &str) -> bool {
        self.position(v).is_some()
    }

    /// Where `v` sorts in the set, if it is there.
    pub fn position(&self, v: &str) -> Option<usize> {
        self.position_or_place(v).ok()
    }

    fn position_or_place(&self, v: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|x| x.as_str().cmp(v))
    }

    /// The value at `i`, in order.
    pub fn get(&self, i: usize) -> Option<&CompactString> {
        self.0.get(i)
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, CompactString> {
        self.0.iter()
    }

    /// The smallest value.
    pub fn first(&self) -> Option<&CompactString> {
        self.0.first()
    }

    /// Keeps the values `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&CompactString) -> bool) {
        self.0.retain(keep)
    }

    /// Gives back spare capacity: a finished profile is read, not grown. The values move to an
    /// allocation of their size, as an allocator may keep a shrunk block in place (mimalloc
    /// does when it shrinks to half or more), and a million customers' sets add up.
    pub fn shrink_to_fit(&mut self) {
        if self.0.capacity() > self.0.len() {
            let mut exact = Vec::with_capacity(self.0.len());
            exact.append(&mut self.0);
            self.0 = exact;
        }
    }
}

impl Extend<String> for ValueSet {
    fn extend<I: IntoIterator<Item = String>>(&mut self, iter: I) {
        let before = self.0.len();
        self.0.extend(iter.into_iter().map(CompactString::from));
        if self.0.len() > before {
            self.0.sort_unstable();
            self.0.dedup();
        }
    }
}

impl FromIterator<String> for ValueSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> ValueSet {
        let mut s = ValueSet::new();
        s.extend(iter);
        s
    }
}

impl<'a> IntoIterator for &'a ValueSet {
    type Item = &'a CompactString;
    type IntoIter = std::slice::Iter<'a, CompactString>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ValueSet {
    type Item = CompactString;
    type IntoIter = std::vec::IntoIter<CompactString>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'de> Deserialize<'de> for ValueSet {
    /// Any array of strings: sorted and deduplicated on the way in, so a hand-edited or older
    /// document still makes a valid set.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ValueSet, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().collect())
    }
}

impl schemars::JsonSchema for ValueSet {
    fn schema_name() -> Cow<'static, str> {
        "ValueSet".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <std::collections::BTreeSet<String>>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_a_sorted_set_and_reads_and_writes_as_an_array() {
        let mut s: ValueSet = ["b", "a", "b"].into_iter().map(String::from).collect();
        assert!(s.insert("c"));
        assert!(!s.insert("a"));
        s.extend(["0".to_string(), "c".to_string()]);
        assert_eq!(s.iter().map(CompactString::as_str).collect::<Vec<_>>(), ["0", "a", "b", "c"]);
        assert!(s.contains("b") && !s.contains("d"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["0","a","b","c"]"#);
        let back: ValueSet = serde_json::from_str(r#"["c","0","a","b","a"]"#).unwrap();
        assert_eq!(back, s);
        let set: std::collections::BTreeSet<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(set.len(), 4, "the JSON is the one a BTreeSet writes");
    }
}
