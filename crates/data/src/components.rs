//! Connected components of a label map, for nnU-Net's optional post-processing
//! (`eval.keep_largest_component`): of one label's voxels only its largest 26-connected
//! component is kept, the others become background. Ties keep the component met first
//! in storage order.

/// Keeps the largest 26-connected component of `label` in `labels` (`[z, y, x]` voxels,
/// x fastest); its other voxels become 0. Returns how many voxels were removed.
pub fn keep_largest_component(labels: &mut [u8], shape: [usize; 3], label: u8) -> usize {
    let [nz, ny, nx] = shape;
    assert_eq!(labels.len(), nz * ny * nx, "one label per voxel");
    // component of each voxel of the label (0: none yet), and each component's size
    let mut component = vec![0u32; labels.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..labels.len() {
        if labels[start] != label || component[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        component[start] = id;
        stack.push(start);
        while let Some(at) = stack.pop() {
            size += 1;
            let (z, y, x) = (at / (ny * nx), (at / nx) % ny, at % nx);
            for dz in z.saturating_sub(1)..=(z + 1).min(nz - 1) {
                for dy in y.saturating_sub(1)..=(y + 1).min(ny - 1) {
                    for dx in x.saturating_sub(1)..=(x + 1).min(nx - 1) {
                        let next = (dz * ny + dy) * nx + dx;
                        if labels[next] == label && component[next] == 0 {
                            component[next] = id;
                            stack.push(next);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    let Some(largest) = (1..sizes.len()).max_by_key(|&c| (sizes[c], std::cmp::Reverse(c))) else { return 0 };
    let mut removed = 0;
    for (value, &c) in labels.iter_mut().zip(&component) {
        if c != 0 && c as usize != largest {
            *value = 0;
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_largest_component_of_the_label_stays() {
        // 3 x 4 x 5: label 1 in a diagonal chain of 3 voxels (26-connected, one
        // component) and a lone voxel; label 2 untouched
        let shape = [3, 4, 5];
        let at = |z: usize, y: usize, x: usize| (z * 4 + y) * 5 + x;
        let mut labels = vec![0u8; 60];
        for v in [at(0, 0, 0), at(1, 1, 1), at(2, 2, 2)] {
            labels[v] = 1;
        }
        labels[at(0, 3, 4)] = 1;
        labels[at(2, 0, 4)] = 2;
        let removed = keep_largest_component(&mut labels, shape, 1);
        assert_eq!(removed, 1);
        assert_eq!(labels[at(0, 3, 4)], 0);
        assert_eq!([labels[at(0, 0, 0)], labels[at(1, 1, 1)], labels[at(2, 2, 2)], labels[at(2, 0, 4)]], [1, 1, 1, 2]);
        // a label absent is left alone
        assert_eq!(keep_largest_component(&mut labels, shape, 3), 0);
    }
}
