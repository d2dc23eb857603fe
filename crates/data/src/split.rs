//! Seeded, reproducible splits of a list of samples.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Splits sample indices into (kept, held out), holding out `round(fraction x n_c)` of
/// every class `c` (at least one when the class has two or more samples), chosen at
/// random with `seed`. The same labels, fraction and seed always give the same split;
/// both lists are returned in increasing index order.
pub fn stratified(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held = Vec::new();
    for class in 0..n_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        let n = members.len();
        let mut take = (fraction * n as f64).round() as usize;
        if take == 0 && n >= 2 {
            take = 1;
        }
        take = take.min(n.saturating_sub(1));
        members.shuffle(&mut rng);
        held.extend_from_slice(&members[..take]);
    }
    held.sort_unstable();
    let mut is_held = vec![false; labels.len()];
    for &i in &held {
        is_held[i] = true;
    }
    let kept = (0..labels.len()).filter(|&i| !is_held[i]).collect();
    (kept, held)
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

    #[test]
    fn stratified_holds_out_each_class_in_proportion() {
        // 100 of class 0, 20 of class 1, 3 of class 2
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
        let (kept, held) = stratified(&labels, 0.11, 42);
        let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((count(&held, 0), count(&held, 1), count(&held, 2)), (11, 2, 1));
        assert_eq!(kept.len() + held.len(), 123);
        assert!(kept.iter().all(|i| !held.contains(i)));
        // reproducible with the seed, different with another
        assert_eq!(stratified(&labels, 0.11, 42), (kept.clone(), held.clone()));
        assert_ne!(stratified(&labels, 0.11, 7).1, held);
    }

    #[test]
    fn a_single_sample_class_is_never_emptied() {
        let (kept, held) = stratified(&[0, 0, 0, 1], 0.5, 1);
        assert!(kept.contains(&3));
        assert_eq!(held.len(), 2);
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
