//! Grad-CAM (Selvaraju et al., 2017): where in an image a trained classifier found the
//! evidence for a class. The gradient of the class's score with respect to a stage's
//! feature maps, averaged over each map, weighs the maps; their weighted sum, negative
//! parts cut, upsampled to the image, is the heat map.

use radrun_data::SettingError;
use radrun_models::Network;
use tch::{Kind, Tensor};

/// The stage Grad-CAM looks at: `choice` names a stage of the model summary whose
/// output is a feature map, or is "auto", the last such stage (the last convolutional
/// block of the CNN, the last block of a backbone).
pub fn cam_layer(network: &Network, choice: &str, key: &str) -> Result<String, SettingError> {
    let layers = network.feature_map_layers();
    match choice {
        "auto" => layers
            .last()
            .cloned()
            .ok_or_else(|| SettingError::new(key, "the network has no feature map larger than one pixel")),
        name if layers.iter().any(|l| l == name) => Ok(name.to_string()),
        name => Err(SettingError::new(
            key,
            format!(
                "is \"{name}\", which is not a stage with feature maps of this network; use \"auto\" or one of: {}",
                layers.join(", ")
            ),
        )),
    }
}

/// Where the cells of stage `layer`'s feature maps sit on an input of `input` =
/// (channels, height, width): for rows and for columns, the input position of the
/// first cell's centre and the step between cells, in pixels. Found from the network
/// itself, as the centroid of the input gradient of two cells: with unpadded
/// convolutions (the tutorial's CNN) the maps cover less than the whole image, and
/// stretching them over it would put the heat beside the evidence.
pub fn cell_centres(network: &Network, layer: &str, input: [i64; 3]) -> [(f64, f64); 2] {
    let [c, h, w] = input;
    // averaged over random images: one image's ReLUs and max-pools pass gradients
    // through a few pixels of each field only
    // from a fixed seed: the same network always gets the same centres
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let noise: Vec<f32> = (0..8 * c * h * w).map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0)).collect();
    let x = Tensor::from_slice(&noise).view([8, c, h, w]).to_device(network.vs.device()).set_requires_grad(true);
    let (_, maps) = network.forward_tapped(&x, layer).expect("the layer was checked by cam_layer");
    let (mh, mw) = (maps.size()[2], maps.size()[3]);
    // the centroid along `axis` (2: rows, 3: columns) of the input gradient of cell `q`
    let centroid = |axis: i64, q: i64| -> f64 {
        let cell = maps.narrow(axis, q, 1).sum(Kind::Float);
        let gradient = Tensor::run_backward(&[&cell], &[&x], true, false).remove(0);
        let other = if axis == 2 { 3 } else { 2 };
        let profile = Vec::<f64>::try_from(
            gradient
                .abs()
                .sum_dim_intlist([0i64, 1, other].as_slice(), false, Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .expect("double tensor");
        let total: f64 = profile.iter().sum();
        if total <= 0.0 {
            return (profile.len() as f64 - 1.0) / 2.0;
        }
        profile.iter().enumerate().map(|(i, v)| i as f64 * v).sum::<f64>() / total
    };
    // cells away from the border: a padded border cuts the edge cells' fields short
    let along = |axis: i64, cells: i64, size: i64| -> (f64, f64) {
        if cells == 1 {
            return (centroid(axis, 0), size as f64);
        }
        let (a, b) = if cells >= 4 { (cells / 4, cells - 1 - cells / 4) } else { (0, cells - 1) };
        let (ca, cb) = (centroid(axis, a), centroid(axis, b));
        let step = (cb - ca) / (b - a) as f64;
        if !(step > 0.0 && step.is_finite()) {
            // no gradient reached the input: spread the cells evenly over it
            let step = size as f64 / cells as f64;
            return (step / 2.0 - 0.5, step);
        }
        (ca - a as f64 * step, step)
    };
    [along(2, mh, h), along(3, mw, w)]
}

/// The Grad-CAM map of class `classes[i]` for each image `i` of `x` (`[n, channels,
/// height, width]`, on the network's device) at stage `layer` (see [`cam_layer`]),
/// whose cells sit at `centres` (see [`cell_centres`]): `height * width` values per
/// image, interpolated bilinearly between the cells' centres (the nearest cell's value
/// beyond them) and scaled so that the largest is 1 (all 0 where nothing in the image
/// counted for the class).
pub fn grad_cam(
    network: &Network,
    x: &Tensor,
    layer: &str,
    centres: [(f64, f64); 2],
    classes: &[i64],
) -> Vec<Vec<f32>> {
    let (n, h, w) = (x.size()[0], x.size()[2] as usize, x.size()[3] as usize);
    assert_eq!(n as usize, classes.len(), "one class per image");
    // the input takes part in the graph so that frozen stages still pass gradients on
    let x = x.detach().set_requires_grad(true);
    let (logits, maps) = network.forward_tapped(&x, layer).expect("the layer was checked by cam_layer");
    let index = Tensor::from_slice(classes).to_device(logits.device()).view([-1, 1]);
    let score = logits.gather(1, &index, false).sum(Kind::Float);
    let gradients = Tensor::run_backward(&[&score], &[&maps], false, false);
    let (mh, mw) = (maps.size()[2] as usize, maps.size()[3] as usize);
    let cams = tch::no_grad(|| {
        let weights = gradients[0].mean_dim([2i64, 3].as_slice(), true, Kind::Float);
        (weights * &maps).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).relu().to_device(tch::Device::Cpu)
    });
    // for each output row (column): the two cells around it and the weight of the second
    let spans = |(first, step): (f64, f64), size: usize, cells: usize| -> Vec<(usize, usize, f32)> {
        (0..size)
            .map(|i| {
                let u = ((i as f64 - first) / step).clamp(0.0, (cells - 1) as f64);
                let lower = u.floor() as usize;
                (lower, (lower + 1).min(cells - 1), (u - lower as f64) as f32)
            })
            .collect()
    };
    let (rows, columns) = (spans(centres[0], h, mh), spans(centres[1], w, mw));
    (0..n)
        .map(|i| {
            let cam = Vec::<f32>::try_from(cams.get(i).flatten(0, -1)).expect("float tensor");
            let at = |r: usize, c: usize| cam[r * mw + c];
            let mut map = Vec::with_capacity(h * w);
            for &(r0, r1, fr) in &rows {
                for &(c0, c1, fc) in &columns {
                    let top = at(r0, c0) * (1.0 - fc) + at(r0, c1) * fc;
                    let bottom = at(r1, c0) * (1.0 - fc) + at(r1, c1) * fc;
                    map.push(top * (1.0 - fr) + bottom * fr);
                }
            }
            let peak = map.iter().copied().fold(0.0f32, f32::max);
            if peak > 0.0 {
                map.iter_mut().for_each(|v| *v /= peak);
            }
            map
        })
        .collect()
}

/// The share of a heat map's mass inside `region` (same length, row-major): 1 when all
/// of it is there; 0 for an empty map.
pub fn share_inside(map: &[f32], region: &[bool]) -> f64 {
    let total: f64 = map.iter().map(|&v| v as f64).sum();
    if total <= 0.0 {
        return 0.0;
    }
    map.iter().zip(region).filter(|(_, inside)| **inside).map(|(&v, _)| v as f64).sum::<f64>() / total
}

#[cfg(test)]
mod tests {
    use super::*;
    use radrun_settings::{CnnSettings, ModelSettings};
    use tch::Device;

    /// The tutorial's CNN with weights drawn from its own seeded generator: libtorch's
    /// global one is shared with the tests running beside this one, so `manual_seed`
    /// before `build` gave other weights (and at times all-zero maps) from run to run.
    fn cnn() -> Network {
        use rand::{Rng, SeedableRng};
        let settings = ModelSettings::Cnn(CnnSettings::default());
        let network = Network::build(&settings, [1, 32, 32], 2, Device::Cpu).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        tch::no_grad(|| {
            for (_, mut tensor) in network.trainable_parameters() {
                let size = tensor.size();
                // uniform in +-1/sqrt(fan in), as libtorch initialises layers
                let fan_in = size.iter().skip(1).product::<i64>().max(1) as f32;
                let bound = 1.0 / fan_in.sqrt();
                let values: Vec<f32> = (0..tensor.numel()).map(|_| rng.random_range(-bound..bound)).collect();
                tensor.copy_(&Tensor::from_slice(&values).view(size.as_slice()));
            }
        });
        network
    }

    #[test]
    fn the_layer_is_the_last_feature_map_or_a_named_one() {
        let network = cnn();
        let layers = network.feature_map_layers();
        assert!(layers.len() >= 2, "{layers:?}");
        assert_eq!(cam_layer(&network, "auto", "k").unwrap(), *layers.last().unwrap());
        assert_eq!(cam_layer(&network, &layers[0], "k").unwrap(), layers[0]);
        let e = cam_layer(&network, "dense", "report.gradcam_layer").unwrap_err().to_string();
        assert!(e.contains("report.gradcam_layer") && e.contains(&layers[0]), "{e}");
    }

    #[test]
    fn maps_are_image_sized_scaled_to_one_and_follow_the_evidence() {
        let network = cnn();
        let layer = cam_layer(&network, "auto", "k").unwrap();
        // a bright square in one corner, nothing elsewhere
        let x = Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let _ = x.narrow(2, 0, 10).narrow(3, 0, 10).fill_(1.0);
        let centres = cell_centres(&network, &layer, [1, 32, 32]);
        let maps = grad_cam(&network, &x, &layer, centres, &[0, 1]);
        assert_eq!(maps.len(), 2);
        for map in &maps {
            assert_eq!(map.len(), 1024);
            // scaled by the largest value: 1 up to a float32 rounding or two (1.2e-7 each)
            assert!(map.iter().all(|&v| (0.0..=1.0 + 1e-6).contains(&v)));
            let peak = map.iter().copied().fold(0.0f32, f32::max);
            assert!(peak == 0.0 || (peak - 1.0).abs() < 1e-5, "{peak}");
        }
        // Grad-CAM's weights are gradients of a linear function of the maps for a
        // network without nonlinearity after them; here: the two classes' maps differ
        assert_ne!(maps[0], maps[1]);
    }

    #[test]
    fn cells_sit_where_their_receptive_fields_are() {
        // 32 -> conv 30 -> conv 28 -> pool 14 -> conv 12 -> conv 10 -> pool 5: cell q of
        // block2 is centred on input pixel 4q + 7.5 (hand-computed for valid 3x3
        // convolutions and 2x2 pooling)
        let network = cnn();
        // not rounding: centroids of the gradients of random images, which ReLUs and max
        // pools route through part of each field: within half a pixel of the centre, and a
        // step within 0.15 of the true one, still tell a cell one pixel off
        for (first, step) in cell_centres(&network, "block2", [1, 32, 32]) {
            assert!((first - 7.5).abs() < 0.5 && (step - 4.0).abs() < 0.15, "{first} {step}");
        }
        let [(first, step), _] = cell_centres(&network, "block1", [1, 32, 32]);
        assert!((first - 2.5).abs() < 0.5 && (step - 2.0).abs() < 0.15, "{first} {step}");
    }

    #[test]
    fn share_inside_counts_mass() {
        assert_eq!(share_inside(&[1.0, 3.0, 0.0, 0.0], &[true, false, true, false]), 0.25);
        assert_eq!(share_inside(&[0.0; 4], &[true; 4]), 0.0);
    }
}
