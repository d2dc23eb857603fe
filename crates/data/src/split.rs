//! Seeded, reproducible splits of a list of samples.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Assigns every sample to one of `parts` parts (training and validation, or the folds
/// of cross-validation) so that
/// - all samples of one group land in the same part (`groups[i]` is the group of sample
///   `i`: a patient, a study; give every sample its own group to split images freely);
/// - each part gets about its target count of every class (`labels[i]` is the class of
///   sample `i`; `target(part, n)` is the part's target for a class of `n` samples).
///
/// The idea of scikit-learn's StratifiedGroupKFold, done greedily: groups are taken in
/// a seeded random order, larger groups first, and each goes to the part where its
/// classes are most lacking (the sum over its samples of each class's shortfall from
/// the part's target, relative to the class's size; ties go to the part furthest below
/// its total target). With one image per group every
/// class's count in every part ends within one of its target (exactly on it when the
/// targets are whole numbers). The same inputs and seed always give the same parts.
pub fn grouped_stratified(
    labels: &[usize],
    groups: &[usize],
    parts: usize,
    target: impl Fn(usize, usize) -> f64,
    seed: u64,
) -> Vec<usize> {
    assert_eq!(labels.len(), groups.len(), "one group per sample");
    let n_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let n_groups = groups.iter().copied().max().map_or(0, |m| m + 1);
    let mut group_counts = vec![vec![0usize; n_classes]; n_groups];
    let mut class_totals = vec![0usize; n_classes];
    for (&label, &group) in labels.iter().zip(groups) {
        group_counts[group][label] += 1;
        class_totals[label] += 1;
    }
    let mut order: Vec<usize> = (0..n_groups).filter(|&g| group_counts[g].iter().any(|&c| c > 0)).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // stable: groups of one size keep their random order
    order.sort_by_key(|&g| std::cmp::Reverse(group_counts[g].iter().sum::<usize>()));
    let mut filled = vec![vec![0usize; n_classes]; parts];
    let mut part_of_group = vec![0usize; n_groups];
    for g in order {
        let lack = |part: usize| -> f64 {
            (0..n_classes)
                .filter(|&c| group_counts[g][c] > 0)
                .map(|c| {
                    let target = target(part, class_totals[c]);
                    group_counts[g][c] as f64 * (target - filled[part][c] as f64) / class_totals[c] as f64
                })
                .sum()
        };
        // how far the part is below its target size, over all classes: breaks ties
        let size_lack = |part: usize| -> f64 {
            (0..n_classes).map(|c| target(part, class_totals[c]) - filled[part][c] as f64).sum()
        };
        // the most lacking part; among equals the one furthest below its size, then the first
        let mut best = 0;
        for part in 1..parts {
            let (a, b) = (lack(part), lack(best));
            if a > b + 1e-12 || (a > b - 1e-12 && size_lack(part) > size_lack(best) + 1e-12) {
                best = part;
            }
        }
        part_of_group[g] = best;
        for c in 0..n_classes {
            filled[best][c] += group_counts[g][c];
        }
    }
    groups.iter().map(|&g| part_of_group[g]).collect()
}

/// The held-out count of a class of `n` samples for a `fraction`: `round(fraction x n)`,
/// at least one when the class has two or more samples, and never the whole class.
pub fn held_out(fraction: f64, n: usize) -> usize {
    let take = (fraction * n as f64).round() as usize;
    take.max(usize::from(n >= 2)).min(n.saturating_sub(1))
}

/// The order in which a split's samples are visited in `epoch`: shuffled with a stream
/// of `seed` that depends on the epoch, or in file order when `shuffle` is false.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Streams with the top bit set are reserved for ordering; augmentation uses the rest.
        rng.set_stream((1 << 63) | epoch);
        order.shuffle(&mut rng);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class counts of every part.
    fn counts(labels: &[usize], parts: &[usize], n_parts: usize) -> Vec<Vec<usize>> {
        let n_classes = labels.iter().max().unwrap() + 1;
        let mut counts = vec![vec![0; n_classes]; n_parts];
        for (&l, &p) in labels.iter().zip(parts) {
            counts[p][l] += 1;
        }
        counts
    }

    #[test]
    fn ungrouped_parts_hold_every_class_within_one_of_its_target() {
        // 100 of class 0, 20 of class 1, 3 of class 2, one image per group
        let labels: Vec<usize> = (0..123)
            .map(|i| {
                if i < 100 {
                    0
                } else if i < 120 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let groups: Vec<usize> = (0..123).collect();
        let holdout = |part, n| if part == 1 { held_out(0.11, n) as f64 } else { (n - held_out(0.11, n)) as f64 };
        let parts = grouped_stratified(&labels, &groups, 2, holdout, 42);
        // 11 % of each class held out, at least one
        assert_eq!(counts(&labels, &parts, 2)[1], vec![11, 2, 1]);
        assert_eq!(grouped_stratified(&labels, &groups, 2, holdout, 42), parts, "seeded");
        assert_ne!(grouped_stratified(&labels, &groups, 2, holdout, 7), parts);
        assert_eq!((held_out(0.5, 1), held_out(0.01, 2), held_out(0.99, 3)), (0, 1, 2));
    }

    /// Property: for random labels, group sizes, fold counts and seeds, no group is in
    /// two parts, and with one image per group every class's count per fold is within
    /// one of ideal.
    #[test]
    fn folds_never_split_a_group_and_stay_stratified() {
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        use rand::Rng;
        for case in 0..200 {
            let n_groups = rng.random_range(5..60);
            let n_classes = rng.random_range(2..5);
            let k = rng.random_range(2..6);
            let singletons = case % 2 == 0;
            let (mut labels, mut groups) = (Vec::new(), Vec::new());
            for g in 0..n_groups {
                let size = if singletons { 1 } else { rng.random_range(1..4) };
                let class = rng.random_range(0..n_classes);
                for _ in 0..size {
                    labels.push(class);
                    groups.push(g);
                }
            }
            let parts = grouped_stratified(&labels, &groups, k, |_, n| n as f64 / k as f64, case);
            for g in 0..n_groups {
                let mut of_group = groups.iter().zip(&parts).filter(|(x, _)| **x == g).map(|(_, p)| *p);
                let first = of_group.next().unwrap();
                assert!(of_group.all(|p| p == first), "case {case}: group {g} split");
            }
            if singletons {
                let totals = counts(&labels, &vec![0; labels.len()], 1).remove(0);
                for (fold, row) in counts(&labels, &parts, k).iter().enumerate() {
                    for (c, &n) in row.iter().enumerate() {
                        let ideal = totals[c] as f64 / k as f64;
                        // whole images: within one of the ideal share, which float64 holds to
                        // 1e-16 of itself (1e-9 is room for that, far below one image)
                        assert!(
                            (n as f64 - ideal).abs() < 1.0 + 1e-9,
                            "case {case} fold {fold} class {c}: {n} vs {ideal}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, true, 3, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, true, 3, 0));
        assert_ne!(a, epoch_order(50, true, 3, 1));
        assert_eq!(epoch_order(4, false, 3, 9), vec![0, 1, 2, 3]);
    }
}
