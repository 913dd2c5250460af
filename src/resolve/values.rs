//! Small sorted sets of strings for an observation's attribute values.
//!
//! An observation holds one or two values per attribute, and there are as many observations as
//! records: a `BTreeSet<String>` allocates a node of eleven slots (about 280 bytes) for even one
//! value, and a boxed slice per attribute made eight allocations an observation. [`Sets`] holds
//! several attributes' sets in one exact-size allocation; [`Values`] is one of them.
//!
//! Each set also keeps a 16-bit signature of its values (one bit a value, by hash): two sets
//! whose signatures share no bit share no value, so most pairs of different people are told
//! apart without reading their strings, which lie scattered over the heap.

use dossier_schema::CompactString;

/// `N` attributes' sets of sorted, distinct strings in one allocation (none when all are
/// empty), each string inline up to 24 bytes (most values are shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sets<const N: usize> {
    values: Box<[CompactString]>,
    /// Where each set ends in `values`.
    ends: [u32; N],
    /// Each set's signature (see [`signature`]).
    sigs: [u16; N],
}

impl<const N: usize> Default for Sets<N> {
    fn default() -> Self {
        Sets { values: Box::default(), ends: [0; N], sigs: [0; N] }
    }
}

impl<const N: usize> Sets<N> {
    /// The sets of each list's distinct strings, in order. (Any lists of known length: an
    /// observation's are mostly inline, not allocated only to be moved here.)
    pub fn new<L>(lists: [L; N]) -> Sets<N>
    where
        L: IntoIterator<Item = CompactString>,
        L::IntoIter: ExactSizeIterator,
    {
        let lists = lists.map(IntoIterator::into_iter);
        let mut values = Vec::with_capacity(lists.iter().map(ExactSizeIterator::len).sum());
        let (mut ends, mut sigs) = ([0; N], [0; N]);
        for ((list, end), sig) in lists.into_iter().zip(&mut ends).zip(&mut sigs) {
            let from = values.len();
            values.extend(list);
            values[from..].sort_unstable();
            let mut len = from;
            for i in from..values.len() {
                if len == from || values[i] != values[len - 1] {
                    values.swap(len, i);
                    len += 1;
                }
            }
            values.truncate(len);
            *sig = values[from..].iter().fold(0, |sig, v| sig | signature(v));
            // An observation's values are a record's mentions: far fewer than 2^32.
            *end = u32::try_from(len).unwrap_or(u32::MAX);
        }
        Sets { values: values.into_boxed_slice(), ends, sigs }
    }

    /// Set `i` (below `N`).
    pub fn get(&self, i: usize) -> Values<'_> {
        let from = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Values(&self.values[from..self.ends[i] as usize], self.sigs[i])
    }
}

/// A value's bit in its set's signature: one of 16, by hash.
fn signature(v: &str) -> u16 {
    use std::hash::BuildHasher;
    // (The multiply spreads the hash into the top bits, which pick the bit.)
    let h = rustc_hash::FxBuildHasher.hash_one(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    1 << (h >> 60)
}

/// One set of sorted, distinct strings, with its signature (see [`Sets`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Values<'a>(&'a [CompactString], u16);

impl<'a> Values<'a> {
    /// Whether it holds nothing.
    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// How many values it holds.
    pub fn len(self) -> usize {
        self.0.len()
    }

    /// The values, in order.
    pub fn iter(self) -> std::slice::Iter<'a, CompactString> {
        self.0.iter()
    }

    /// Whether `s` is one of the values.
    pub fn contains(self, s: &str) -> bool {
        self.0.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
    }

    /// The values both hold, in order (a merge of the two sorted lists).
    pub fn common(self, other: Values<'a>) -> impl Iterator<Item = &'a CompactString> + 'a {
        let (a, b) = (self.0, other.0);
        // Sets whose signatures share no bit share no value: the merge starts at the end.
        let (mut i, mut j) = (if self.1 & other.1 == 0 { a.len() } else { 0 }, 0);
        std::iter::from_fn(move || {
            while i < a.len() && j < b.len() {
                match a[i].cmp(&b[j]) {
                    std::cmp::Ordering::Less => i += 1,
                    std::cmp::Ordering::Greater => j += 1,
                    std::cmp::Ordering::Equal => {
                        i += 1;
                        j += 1;
                        return Some(&a[i - 1]);
                    }
                }
            }
            None
        })
    }

    /// Whether the two share no value.
    pub fn is_disjoint(self, other: Values<'a>) -> bool {
        self.common(other).next().is_none()
    }
}

impl<'a> IntoIterator for Values<'a> {
    type Item = &'a CompactString;
    type IntoIter = std::slice::Iter<'a, CompactString>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn list(xs: &[String]) -> Vec<CompactString> {
        xs.iter().map(CompactString::from).collect()
    }

    proptest! {
        #[test]
        fn each_set_behaves_as_a_btreeset(a in proptest::collection::vec("[a-d]{0,2}", 0..8),
                                          b in proptest::collection::vec("[a-d]{0,2}", 0..8),
                                          c in proptest::collection::vec("[a-d]{0,2}", 0..8)) {
            let (sa, sb): (BTreeSet<String>, BTreeSet<String>) = (a.iter().cloned().collect(), b.iter().cloned().collect());
            let sets = Sets::new([list(&a), list(&c), list(&b)]);
            let (va, vb) = (sets.get(0), sets.get(2));
            let sc: BTreeSet<String> = c.iter().cloned().collect();
            prop_assert_eq!(sets.get(1).iter().map(|x| x.to_string()).collect::<Vec<_>>(), sc.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(va.iter().map(|x| x.to_string()).collect::<Vec<_>>(), sa.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(va.common(vb).map(|x| x.to_string()).collect::<Vec<_>>(), sa.intersection(&sb).cloned().collect::<Vec<_>>());
            prop_assert_eq!(va.is_disjoint(vb), sa.is_disjoint(&sb));
            prop_assert_eq!(va.len(), sa.len());
            prop_assert_eq!(vb.len(), sb.len());
            for x in &b {
                prop_assert_eq!(va.contains(x), sa.contains(x));
            }
        }
    }

    #[test]
    fn empty_sets_make_no_allocation_and_read_empty() {
        let sets: Sets<3> = Sets::new([Vec::new(), Vec::new(), Vec::new()]);
        assert!(sets.values.is_empty());
        assert!((0..3).all(|i| sets.get(i).is_empty()));
        assert_eq!(sets, Sets::default());
    }
}
