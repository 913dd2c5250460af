//! A small sorted set of strings for an observation's attribute values.
//!
//! An observation holds one or two values per attribute, and there are as many observations as
//! records: a `BTreeSet<String>` allocates a node of eleven slots (about 280 bytes) for even one
//! value, a boxed slice exactly what it holds.

use dossier_schema::CompactString;

/// Sorted, distinct strings in one exact-size allocation (none when empty), each inline up to
/// 24 bytes (most values are shorter, so most sets make one allocation, not one a value).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Values(Box<[CompactString]>);

impl Values {
    /// The set of `v`'s distinct strings.
    pub fn new(mut v: Vec<CompactString>) -> Values {
        v.sort_unstable();
        v.dedup();
        Values(v.into_boxed_slice())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The values, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, CompactString> {
        self.0.iter()
    }

    /// Whether `s` is one of the values.
    pub fn contains(&self, s: &str) -> bool {
        self.0.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
    }

    /// The values both hold, in order (a merge of the two sorted lists).
    pub fn common<'a>(&'a self, other: &'a Values) -> impl Iterator<Item = &'a CompactString> + 'a {
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.0, &other.0);
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
    pub fn is_disjoint(&self, other: &Values) -> bool {
        self.common(other).next().is_none()
    }
}

impl<'a> IntoIterator for &'a Values {
    type Item = &'a CompactString;
    type IntoIter = std::slice::Iter<'a, CompactString>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<CompactString> for Values {
    fn from_iter<I: IntoIterator<Item = CompactString>>(iter: I) -> Values {
        Values::new(iter.into_iter().collect())
    }
}

impl FromIterator<String> for Values {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Values {
        Values::new(iter.into_iter().map(CompactString::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_as_a_btreeset(a in proptest::collection::vec("[a-d]{0,2}", 0..8),
                                 b in proptest::collection::vec("[a-d]{0,2}", 0..8)) {
            let (sa, sb): (BTreeSet<String>, BTreeSet<String>) = (a.iter().cloned().collect(), b.iter().cloned().collect());
            let (va, vb): (Values, Values) = (a.iter().cloned().collect(), b.iter().cloned().collect());
            prop_assert_eq!(va.iter().map(|x| x.to_string()).collect::<Vec<_>>(), sa.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(va.common(&vb).map(|x| x.to_string()).collect::<Vec<_>>(), sa.intersection(&sb).cloned().collect::<Vec<_>>());
            prop_assert_eq!(va.is_disjoint(&vb), sa.is_disjoint(&sb));
            prop_assert_eq!(va.len(), sa.len());
            for x in &b {
                prop_assert_eq!(va.contains(x), sa.contains(x));
            }
        }
    }
}
