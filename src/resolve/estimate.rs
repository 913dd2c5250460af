//! Match weights: hand-set priors, and their estimation from the data itself
//! (Fellegi–Sunter with conditional independence; no labels needed, as a real
//! company has none). As Splink does: u, the chance that two different people
//! agree at a level, is measured on random pairs of observations; m, the chance
//! that one person's two records do, comes from expectation–maximisation over
//! the blocked candidate pairs. EM's own u is biased there (candidates were
//! chosen for agreeing) and only steers the iteration. The threshold is the
//! posterior a merge needs given the estimated chance that two random
//! observations are one customer, so it does not move with how wide blocking is.

use std::collections::HashMap;

use super::compare::{FEATURES, Feature, Gamma, MAX_LEVELS, NF};

/// Match weights in bits (log2 of m/u) per feature and level, and the total needed to merge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Weights {
    /// `level[f][l - 1]`: the weight of feature `f` at level `l`.
    pub level: [[f64; MAX_LEVELS]; NF],
    /// Total weight a pair needs to be merged.
    pub threshold: f64,
    /// True when estimated from the data rather than the priors.
    pub estimated: bool,
    /// Share of candidate pairs estimated to be matches (0 for priors).
    pub match_share: f64,
    /// Candidate pairs the estimate saw.
    pub pairs: usize,
}

impl Default for Weights {
    /// Priors, used as the starting point of estimation and when the data are too few.
    fn default() -> Self {
        let mut level = [[0.0; MAX_LEVELS]; NF];
        let mut set = |f: Feature, ws: &[f64]| level[f.index()][..ws.len()].copy_from_slice(ws);
        set(Feature::First, &[3.0, 1.5, 1.0, -4.0]);
        set(Feature::Last, &[4.0, 3.0, -5.0]);
        set(Feature::Address, &[4.0, 3.0, 0.5, -3.0]);
        set(Feature::City, &[1.5, 1.0, -2.5]);
        set(Feature::Dob, &[5.0, 1.0, -8.0]);
        set(Feature::Email, &[12.0, -1.5]);
        set(Feature::Phone, &[10.0, 0.0]);
        set(Feature::Id, &[14.0, 0.0]);
        set(Feature::Company, &[2.5, 0.0]);
        Weights { level, threshold: 8.0, estimated: false, match_share: 0.0, pairs: 0 }
    }
}

impl Weights {
    /// The weight of feature `f` at level `l` (0 for missing).
    pub fn of(&self, f: Feature, l: u8) -> f64 {
        if l == 0 { 0.0 } else { self.level[f.index()][usize::from(l) - 1] }
    }

    /// One line per feature, for reports and `--verbose` runs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for f in FEATURES {
            let parts: Vec<String> =
                (1..=f.levels() as u8).map(|l| format!("{} {:+.1}", f.level_name(l), self.of(f, l))).collect();
            out.push_str(&format!("{:?}: {}\n", f, parts.join(", ")));
        }
        out.push_str(&format!("threshold {:.1}", self.threshold));
        out
    }
}

/// Fewest candidate pairs worth estimating from; below it the priors are used.
pub const MIN_PAIRS: usize = 500;
/// Iterations of EM at most.
const MAX_ITER: usize = 60;
/// Posterior probability of a match a pair needs to be merged.
const MERGE_POSTERIOR: f64 = 0.9;
/// Weights are kept within these bits, so one feature never decides alone by an artefact.
const CLAMP: (f64, f64) = (-10.0, 16.0);

/// How often each level occurs among random pairs of observations: nearly all of them are
/// different people, so this is u, the chance of a level between non-matches. Blocked
/// candidates cannot tell it: they were chosen for agreeing.
#[derive(Debug, Clone, Default)]
pub struct LevelCounts {
    /// `count[f][l - 1]`: pairs at level `l` of feature `f`.
    pub count: [[f64; MAX_LEVELS]; NF],
    /// Observations the pairs were drawn from.
    pub population: usize,
}

impl LevelCounts {
    /// Counts one pair.
    pub fn add(&mut self, g: &Gamma) {
        for f in FEATURES {
            let l = usize::from(g[f.index()]);
            if l > 0 {
                self.count[f.index()][l - 1] += 1.0;
            }
        }
    }

    fn seen(&self, f: Feature) -> f64 {
        self.count[f.index()].iter().sum()
    }
}

/// Pairs of observations drawn at random to measure u.
pub const RANDOM_PAIRS: usize = 30_000;

/// Draws up to `RANDOM_PAIRS` distinct-looking random pairs of `0..n` (deterministic, so two
/// runs over the same records agree).
pub fn random_pairs(n: usize) -> Vec<(usize, usize)> {
    if n < 2 {
        return Vec::new();
    }
    let all = n.saturating_mul(n - 1) / 2;
    let mut out = Vec::with_capacity(all.min(RANDOM_PAIRS));
    if all <= RANDOM_PAIRS {
        for a in 0..n {
            for b in a + 1..n {
                out.push((a, b));
            }
        }
        return out;
    }
    // xorshift64*: no dependency, same sequence on every machine.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ n as u64;
    let mut next = || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    while out.len() < RANDOM_PAIRS {
        let (a, b) = ((next() % n as u64) as usize, (next() % n as u64) as usize);
        if a != b {
            out.push((a.min(b), a.max(b)));
        }
    }
    out
}

/// Estimates the weights: u per level from `random` (pairs of random observations), m per
/// level and the share of matches by EM over the candidate pairs' comparison vectors, starting
/// from `prior`; weight = log2(m / u). A feature seen too little keeps the prior's weights;
/// `prior` is returned whole when the pairs are too few or the estimate degenerates.
pub fn estimate(patterns: &HashMap<Gamma, usize>, random: &LevelCounts, prior: &Weights) -> Weights {
    let total: usize = patterns.values().sum();
    if total < MIN_PAIRS {
        return prior.clone();
    }
    // In a fixed order: EM sums over the patterns, and a hash map's order changes from process
    // to process, which moved the weights' last bits between two runs over the same records.
    let mut pats: Vec<(&Gamma, f64)> = patterns.iter().map(|(g, &n)| (g, n as f64)).collect();
    pats.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Start: m and u whose log-ratio is the prior's weight, and the share the prior would merge.
    let mut m = [[0.0; MAX_LEVELS]; NF];
    let mut u = [[0.0; MAX_LEVELS]; NF];
    for f in FEATURES {
        let k = f.index();
        let levels = f.levels();
        for l in 0..levels {
            let w = prior.level[k][l];
            m[k][l] = 2f64.powf(w / 2.0);
            u[k][l] = 2f64.powf(-w / 2.0);
        }
        normalize(&mut m[k][..levels]);
        normalize(&mut u[k][..levels]);
        // u from the random pairs, with one pseudo-pair spread as the prior's u.
        let seen = random.seen(f);
        if seen >= 100.0 {
            for (ul, count) in u[k][..levels].iter_mut().zip(random.count[k]) {
                *ul = (count + *ul) / (seen + 1.0);
            }
        }
    }
    let u_random = u;
    let prior_total = |g: &Gamma| FEATURES.iter().map(|&f| prior.of(f, g[f.index()])).sum::<f64>();
    let merged: f64 = pats.iter().filter(|(g, _)| prior_total(g) >= prior.threshold).map(|(_, n)| n).sum();
    let mut lambda = (merged / total as f64).clamp(0.001, 0.5);

    for _ in 0..MAX_ITER {
        let mut mc = [[0.0; MAX_LEVELS]; NF];
        let mut uc = [[0.0; MAX_LEVELS]; NF];
        let mut matched = 0.0;
        for (g, n) in &pats {
            let mut lo = (lambda / (1.0 - lambda)).ln();
            for f in FEATURES {
                let (k, l) = (f.index(), usize::from(g[f.index()]));
                if l > 0 {
                    lo += (m[k][l - 1] / u[k][l - 1]).ln();
                }
            }
            let p = 1.0 / (1.0 + (-lo.clamp(-50.0, 50.0)).exp());
            matched += n * p;
            for f in FEATURES {
                let (k, l) = (f.index(), usize::from(g[f.index()]));
                if l > 0 {
                    mc[k][l - 1] += n * p;
                    uc[k][l - 1] += n * (1.0 - p);
                }
            }
        }
        let new_lambda = (matched / total as f64).clamp(1e-6, 1.0 - 1e-6);
        let mut change: f64 = (new_lambda - lambda).abs();
        lambda = new_lambda;
        for f in FEATURES {
            let (k, levels) = (f.index(), f.levels());
            // A little of the prior's mass keeps a level never seen among matches from -infinity.
            for l in 0..levels {
                mc[k][l] += 0.5 * m[k][l];
            }
            normalize(&mut mc[k][..levels]);
            for l in 0..levels {
                change = change.max((mc[k][l] - m[k][l]).abs());
            }
            m[k] = mc[k];
            for l in 0..levels {
                uc[k][l] += 0.5 * u[k][l];
            }
            normalize(&mut uc[k][..levels]);
            u[k] = uc[k];
        }
        if change < 1e-5 {
            break;
        }
    }
    let mut level = prior.level;
    for f in FEATURES {
        let k = f.index();
        // Too few comparisons of this feature to learn from: keep the prior.
        let compared: usize = patterns.iter().filter(|(g, _)| g[k] > 0).map(|(_, n)| *n).sum();
        if compared < MIN_PAIRS / 5 || random.seen(f) < 100.0 {
            continue;
        }
        for l in 0..f.levels() {
            level[k][l] = (m[k][l] / u_random[k][l]).log2().clamp(CLAMP.0, CLAMP.1);
        }
        // Full agreement is never evidence against (a level matches rarely reach, as one birth
        // date per customer in one silo, says nothing either way), and a close agreement never
        // weighs more than a full one. Lower levels keep their estimates: an initial alone can be
        // rarer among matches than a different name, so it may weigh less.
        level[k][0] = level[k][0].max(0.0);
        level[k][1] = level[k][1].min(level[k][0]);
    }
    if level.iter().flatten().any(|w| !w.is_finite()) || !lambda.is_finite() {
        return prior.clone();
    }
    // Merge when the posterior, given the share of matches among candidates, is high enough, and
    // never on less evidence than the priors ask: the share depends on how wide the blocking was,
    // so a run whose candidates are mostly matches would otherwise merge on little.
    let all_pairs = (random.population as f64 * (random.population as f64 - 1.0) / 2.0).max(total as f64);
    let lambda_all = (lambda * total as f64 / all_pairs).clamp(1e-12, 0.5);
    let prior_odds = (lambda_all / (1.0 - lambda_all)).log2();
    let needed = (MERGE_POSTERIOR / (1.0 - MERGE_POSTERIOR)).log2();
    Weights { level, threshold: needed - prior_odds, estimated: true, match_share: lambda, pairs: total }
}

fn normalize(xs: &mut [f64]) {
    let s: f64 = xs.iter().sum();
    if s > 0.0 {
        for x in xs {
            *x /= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same patterns give the same weights to the last bit, in whatever order their map
    /// holds them (each map has its own hash seed).
    #[test]
    fn the_weights_do_not_depend_on_the_patterns_order() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // Matches agree on names and birth date, non-matches do not; each pattern with a few
        // other features' levels drawn at random.
        let mut pats: HashMap<Gamma, usize> = HashMap::new();
        let mut random = LevelCounts::default();
        for i in 0..3_000 {
            let mut g = [0u8; NF];
            for x in g.iter_mut() {
                *x = next(3) as u8;
            }
            let matched = i % 10 == 0;
            g[Feature::First.index()] = if matched { 1 } else { 4 };
            g[Feature::Last.index()] = 1;
            g[Feature::Dob.index()] = if matched { 1 } else { 3 };
            *pats.entry(g).or_default() += 1 + next(20) as usize;
            let mut r = g;
            r[Feature::First.index()] = 4;
            r[Feature::Last.index()] = 3;
            r[Feature::Dob.index()] = 3;
            for _ in 0..5 {
                random.add(&r);
            }
        }
        let pats: Vec<(Gamma, usize)> = pats.into_iter().collect();
        let weights: Vec<Weights> = (0..8)
            .map(|_| {
                let patterns: HashMap<Gamma, usize> = pats.iter().copied().collect();
                estimate(&patterns, &random, &Weights::default())
            })
            .collect();
        assert!(weights[0].estimated);
        assert!(weights.iter().all(|w| w == &weights[0]), "{}", weights[0].describe());
    }

    /// Two clear classes: matches agree on names and dob, non-matches disagree.
    #[test]
    fn em_learns_that_agreement_is_evidence_from_unlabelled_pairs() {
        let mut patterns: HashMap<Gamma, usize> = HashMap::new();
        let mut g_match = [0u8; NF];
        g_match[Feature::First.index()] = 1;
        g_match[Feature::Last.index()] = 1;
        g_match[Feature::Dob.index()] = 1;
        let mut g_typo = g_match;
        g_typo[Feature::Dob.index()] = 2;
        let mut g_non = [0u8; NF];
        g_non[Feature::First.index()] = 4;
        g_non[Feature::Last.index()] = 1;
        g_non[Feature::Dob.index()] = 3;
        patterns.insert(g_match, 400);
        patterns.insert(g_typo, 40);
        patterns.insert(g_non, 4000);
        let mut random = LevelCounts::default();
        let mut g_rand = [0u8; NF];
        g_rand[Feature::First.index()] = 4;
        g_rand[Feature::Last.index()] = 3;
        g_rand[Feature::Dob.index()] = 3;
        for _ in 0..10_000 {
            random.add(&g_rand);
        }
        random.add(&g_match);
        random.add(&g_non);
        let w = estimate(&patterns, &random, &Weights::default());
        assert!(w.estimated);
        assert!(w.of(Feature::Dob, 1) > 3.0, "{}", w.describe());
        assert!(w.of(Feature::First, 4) < -3.0, "{}", w.describe());
        assert!((w.match_share - 440.0 / 4440.0).abs() < 0.02, "{}", w.match_share);
        let total = |g: &Gamma| FEATURES.iter().map(|&f| w.of(f, g[f.index()])).sum::<f64>();
        assert!(total(&g_match) >= w.threshold && total(&g_non) < w.threshold);
    }

    #[test]
    fn too_few_pairs_keep_the_priors() {
        let patterns: HashMap<Gamma, usize> = [([1u8; NF], 10)].into_iter().collect();
        assert_eq!(estimate(&patterns, &LevelCounts::default(), &Weights::default()), Weights::default());
    }
}
