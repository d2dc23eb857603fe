#!/usr/bin/env python3
"""Reference values from Keras itself, for the tests that keep radrun faithful to the
tutorial. Run by make_references.py; writes OUT_DIR/keras/:

- augment.json: images transformed by the tutorial-era Keras (keras-preprocessing 1.1.0,
  the oldest that TensorFlow 2.1 accepts) and by Keras 3's legacy ImageDataGenerator, for
  seeded parameters and every fill mode, and 2,000 draws of the tutorial's
  ImageDataGenerator.get_random_transform;
- resize.json: Pillow's nearest (what flow_from_directory uses), bilinear and bicubic;
- optimizers.json: 100 steps of Keras 3's optimizers (torch backend, float64) on fixed
  gradients, and TF 2.1's formulas for the two rules Keras 3 changed (RMSprop without
  momentum, Nadam's momentum schedule);
- cnn/*.safetensors, cnn.json: the tutorial's build_cnn written in Keras 3 for a grid of
  settings: its weights under radrun's names (kernels HWIO -> OIHW), an input, the
  logits in inference, per-block output shapes and parameter counts;
- training/: twelve deterministic training steps of build_cnn (no dropout, fixed
  batches) with Adam, and with SGD and batch norm: initial weights, batches, every step's loss, the
  weights after training (`trained.<name>`) and the logits of held-out images;
- unet/*.safetensors, unet.json: the same for the tutorial's U_Net.
"""

import json
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

FILL_MODES = ["nearest", "constant", "reflect", "wrap"]


def augmentation(out: Path):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator as Keras3Generator
    from keras_preprocessing.image import ImageDataGenerator as TutorialGenerator

    rng = np.random.default_rng(14)
    cases = []

    def image(h, w):
        rows, cols = np.mgrid[0:h, 0:w]
        smooth = 0.5 + 0.3 * np.sin(rows / 3.0) * np.cos(cols / 4.0)
        return (smooth + rng.uniform(-0.2, 0.2, (h, w))).clip(0, 1).astype(np.float32)

    for i in range(320):
        keras3 = i >= 240  # the last 80 on square images, through Keras 3
        h = int(rng.integers(6, 30))
        w = h if keras3 else int(rng.integers(6, 30))
        if w == h and not keras3:
            w += 3
        params = dict(
            theta=float(rng.uniform(-40, 40)) if rng.random() < 0.9 else 0.0,
            tx=float(rng.uniform(-0.4, 0.4) * h),
            ty=float(rng.uniform(-0.4, 0.4) * w),
            zx=float(rng.uniform(0.6, 1.4)),
            zy=float(rng.uniform(0.6, 1.4)),
            flip_horizontal=bool(rng.random() < 0.3),
            flip_vertical=bool(rng.random() < 0.3),
        )
        fill = FILL_MODES[i % 4]
        x = image(h, w)
        generator = (Keras3Generator if keras3 else TutorialGenerator)(
            fill_mode=fill, cval=0.3, data_format="channels_last"
        )
        y = generator.apply_transform(x[:, :, None], params)[:, :, 0]
        cases.append(
            dict(
                keras="3.15.1 legacy" if keras3 else "keras-preprocessing 1.1.0",
                height=h,
                width=w,
                fill=fill,
                fill_value=0.3,
                image=x.ravel().tolist(),
                transformed=y.ravel().tolist(),
                **params,
            )
        )

    # the tutorial's settings on its 175 x 250 images
    generator = TutorialGenerator(
        rotation_range=15,
        width_shift_range=0.2,
        height_shift_range=0.2,
        zoom_range=0.3,
        fill_mode="nearest",
        data_format="channels_last",
    )
    np.random.seed(14)
    draws = [generator.get_random_transform((175, 250, 1)) for _ in range(2000)]
    keys = ["theta", "tx", "ty", "zx", "zy"]
    random_transform = dict(height=175, width=250, **{k: [float(d[k]) for d in draws] for k in keys})
    (out / "augment.json").write_text(json.dumps(dict(cases=cases, random_transform=random_transform)))


def resize(out: Path):
    from PIL import Image

    rng = np.random.default_rng(15)
    cases = []
    for (h, w), (th, tw) in [
        ((13, 17), (8, 5)),
        ((30, 40), (48, 64)),
        ((73, 100), (32, 32)),
        ((9, 7), (21, 10)),
        ((175, 250), (64, 64)),
        ((64, 64), (175, 250)),
        ((5, 5), (5, 12)),
    ]:
        pixels = rng.integers(0, 256, (h, w), dtype=np.uint8)
        gray = Image.fromarray(pixels, "L")
        floats = Image.fromarray(pixels.astype(np.float32) / 255, "F")
        cases.append(
            dict(
                height=h,
                width=w,
                target_height=th,
                target_width=tw,
                pixels=pixels.ravel().tolist(),
                # flow_from_directory: load_img(..., interpolation="nearest") on 8-bit images
                nearest=np.asarray(gray.resize((tw, th), Image.NEAREST)).ravel().tolist(),
                bilinear=np.asarray(floats.resize((tw, th), Image.BILINEAR)).ravel().tolist(),
                bicubic=np.asarray(floats.resize((tw, th), Image.BICUBIC)).ravel().tolist(),
            )
        )
    (out / "resize.json").write_text(json.dumps(cases))


def optimizers(out: Path):
    import keras

    rng = np.random.default_rng(16)
    shapes = [(3, 4), (5,)]
    initial = [rng.normal(0, 1, s) for s in shapes]
    # gradients over five orders of magnitude, so that where epsilon goes matters
    grads = [[rng.normal(0, 1, s) * 10.0 ** rng.uniform(-4, 1, s) for s in shapes] for _ in range(100)]
    # learning rates that float32 holds exactly: Keras keeps the rate in a float32 variable
    configs = [
        ("adam", 0.015625, 0.0, False, keras.optimizers.Adam(learning_rate=0.015625)),
        ("adamax", 0.015625, 0.0, False, keras.optimizers.Adamax(learning_rate=0.015625)),
        ("nadam", 0.015625, 0.0, False, keras.optimizers.Nadam(learning_rate=0.015625)),
        ("rmsprop", 0.015625, 0.5, False, keras.optimizers.RMSprop(learning_rate=0.015625, rho=0.9, momentum=0.5)),
        ("rmsprop", 0.015625, 0.0, False, keras.optimizers.RMSprop(learning_rate=0.015625, rho=0.9)),
        ("sgd", 0.0625, 0.0, False, keras.optimizers.SGD(learning_rate=0.0625)),
        ("sgd", 0.0625, 0.9, False, keras.optimizers.SGD(learning_rate=0.0625, momentum=0.9)),
        ("sgd", 0.0625, 0.9, True, keras.optimizers.SGD(learning_rate=0.0625, momentum=0.9, nesterov=True)),
    ]
    def nadam_mu(t):
        # Dozat's momentum schedule as TF 2.1 had it, 0.96^(0.004 t) (Keras 3: 0.96^t)
        return 0.9 * (1 - 0.5 * 0.96 ** (0.004 * t))

    def tf21_rmsprop(t, g, slot, lr, product):
        # epsilon outside the root (Keras 3: inside)
        slot["v"] = 0.9 * slot["v"] + 0.1 * g * g
        return lr * g / (np.sqrt(slot["v"]) + 1e-7)

    def tf21_nadam(t, g, slot, lr, product):
        slot["m"] = 0.9 * slot["m"] + 0.1 * g
        slot["v"] = 0.999 * slot["v"] + 0.001 * g * g
        mu_t, mu_next = nadam_mu(t), nadam_mu(t + 1)
        m_bar = (1 - mu_t) * g / (1 - product) + mu_next * slot["m"] / (1 - product * mu_next)
        return lr * m_bar / (np.sqrt(slot["v"] / (1 - 0.999**t)) + 1e-7)

    tf21_rules = {"rmsprop": tf21_rmsprop, "nadam": tf21_nadam}
    cases = []
    for name, lr, momentum, nesterov, optimizer in configs:
        variables = [keras.Variable(v.copy(), dtype="float64") for v in initial]
        for step in grads:
            optimizer.apply_gradients(
                [(keras.ops.convert_to_tensor(g, dtype="float64"), v) for g, v in zip(step, variables)]
            )
        keras_final = [keras.ops.convert_to_numpy(v).ravel().tolist() for v in variables]
        case = dict(name=name, learning_rate=lr, momentum=momentum, nesterov=nesterov, keras3=keras_final)
        rule = tf21_rules.get(name if momentum == 0.0 else None)
        if rule is not None:
            # where Keras 3 changed the rule of TF 2.1's tf.keras, TF 2.1's formula too
            params = [v.copy() for v in initial]
            state = [dict(m=np.zeros_like(v), v=np.zeros_like(v)) for v in initial]
            product = 1.0
            for t, step in enumerate(grads, start=1):
                product *= nadam_mu(t)
                for p, slot, g in zip(params, state, step):
                    p -= rule(t, g, slot, lr, product)
            case["tf21"] = [p.ravel().tolist() for p in params]
        cases.append(case)
    document = dict(
        shapes=[list(s) for s in shapes],
        initial=[v.ravel().tolist() for v in initial],
        gradients=[[g.ravel().tolist() for g in step] for step in grads],
        cases=cases,
    )
    (out / "optimizers.json").write_text(json.dumps(document))


def _randomise(layer, rng):
    """Random biases and batch-norm statistics, so that the comparison sees them."""
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        n = layer.gamma.shape[0]
        layer.set_weights(
            [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)]
        )
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape)])


def _radrun_tensors(pairs, flatten_from=None):
    """Keras weights under radrun's names: conv kernels HWIO -> OIHW, dense kernels
    (in, out) -> (out, in); the first dense layer's inputs reordered from Keras' flatten
    order (rows, cols, maps) to radrun's (maps, rows, cols)."""
    import keras

    tensors = {}
    for layer, name in pairs:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            tensors.update(
                {
                    f"{name}.weight": gamma,
                    f"{name}.bias": beta,
                    f"{name}.running_mean": mean,
                    f"{name}.running_var": var,
                }
            )
            continue
        kernel, bias = layer.get_weights()
        if kernel.ndim == 4:
            kernel = kernel.transpose(3, 2, 0, 1)
        elif flatten_from is not None and name == "dense":
            h, w, c = flatten_from
            kernel = kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
        else:
            kernel = kernel.T
        tensors[f"{name}.weight"] = np.ascontiguousarray(kernel, dtype=np.float32)
        tensors[f"{name}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    return tensors


def build_cnn(shape, classes, blocks=2, feature_maps=32, kernel_size=3, activation="relu", dropout=0.5,
              batch_norm=False, dense_units=64):
    """The tutorial's build_cnn, in Keras 3 (REFERENCE.md), returning the model (logits
    output, the softmax left out), the (layer, radrun name) pairs, the per-block outputs
    and the shape that reaches Flatten."""
    import keras
    from keras import layers

    dropout = min(dropout, 0.5)
    init = "lecun_normal" if activation == "selu" else "glorot_uniform"
    drop = layers.AlphaDropout if activation == "selu" else layers.Dropout
    pairs, stages = [], []
    inputs = keras.Input(shape)
    y = inputs
    for b in range(blocks):
        maps = feature_maps * 2**b
        for c in (1, 2):
            conv = layers.Conv2D(maps, kernel_size, padding="valid", activation=activation, kernel_initializer=init)
            y = conv(y)
            pairs.append((conv, f"block{b + 1}.conv{c}"))
        if batch_norm:
            bn = layers.BatchNormalization()
            y = bn(y)
            pairs.append((bn, f"block{b + 1}.batch_norm"))
        y = layers.MaxPooling2D(2)(y)
        rate = dropout / 2.5 if b == 0 else dropout
        if rate > 0:
            y = drop(rate)(y)
        stages.append((f"block{b + 1}", y))
    flatten_from = tuple(y.shape[1:])
    y = layers.Flatten()(y)
    stages.append(("flatten", y))
    dense = layers.Dense(dense_units, activation=activation, kernel_initializer=init)
    y = dense(y)
    pairs.append((dense, "dense"))
    if dropout > 0:
        y = drop(dropout)(y)
    stages.append(("dense", y))
    output = layers.Dense(classes, kernel_initializer=init)
    logits = output(y)
    pairs.append((output, "output"))
    stages.append(("output", logits))
    return keras.Model(inputs, logits), pairs, stages, flatten_from


def _shape_nchw(tensor):
    shape = list(tensor.shape[1:])
    return [1] + ([shape[2], shape[0], shape[1]] if len(shape) == 3 else shape)


def _write_model(out: Path, name: str, model, pairs, stages, inputs, flatten_from=None):
    import keras
    from safetensors.numpy import save_file

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for layer, _ in pairs:
        _randomise(layer, rng)
    logits = keras.ops.convert_to_numpy(model(inputs, training=False))
    tensors = _radrun_tensors(pairs, flatten_from)
    save_file(tensors, str(out / f"{name}.safetensors"))
    # logits of a segmentation network come back as maps: NHWC -> NCHW
    if logits.ndim == 4:
        logits = logits.transpose(0, 3, 1, 2)
    save_file(
        {"input": np.ascontiguousarray(inputs.transpose(0, 3, 1, 2)), "logits": np.ascontiguousarray(logits)},
        str(out / f"{name}-io.safetensors"),
    )
    return dict(
        name=name,
        total_params=int(model.count_params()),
        trainable_params=int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        stages=[
            dict(
                layer=layer,
                shape=_shape_nchw(t),
                params=int(sum(l.count_params() for l, n in pairs if n == layer or n.startswith(layer + "."))),
            )
            for layer, t in stages
        ],
    )


def cnn(out: Path):
    import keras

    out = out / "cnn"
    out.mkdir(parents=True, exist_ok=True)
    grid = [
        # (height, width, channels, classes, settings)
        (64, 64, 1, 6, dict()),
        (70, 90, 1, 3, dict(blocks=1, feature_maps=8, kernel_size=5, activation="sigmoid")),
        (100, 90, 3, 2, dict(blocks=4, feature_maps=4, activation="elu", batch_norm=True, dense_units=16)),
        (60, 75, 1, 4, dict(blocks=2, feature_maps=6, kernel_size=7, activation="leaky_relu")),
        (48, 40, 3, 5, dict(blocks=3, feature_maps=5, activation="selu", dense_units=12)),
        (52, 52, 1, 2, dict(blocks=2, feature_maps=8, activation="gelu", batch_norm=True, dropout=0.8)),
        (45, 61, 1, 3, dict(blocks=3, feature_maps=4, kernel_size=3, activation="relu", dropout=0.0)),
        (38, 50, 3, 2, dict(blocks=2, feature_maps=6, kernel_size=5, activation="selu", batch_norm=True)),
    ]
    rng = np.random.default_rng(17)
    cases = []
    for i, (h, w, c, classes, settings) in enumerate(grid):
        keras.utils.set_random_seed(100 + i)
        model, pairs, stages, flatten_from = build_cnn((h, w, c), classes, **settings)
        inputs = rng.uniform(0, 1, (2, h, w, c)).astype(np.float32)
        case = _write_model(out, f"cnn{i}", model, pairs, stages, inputs, flatten_from)
        case.update(height=h, width=w, channels=c, classes=classes, settings=settings)
        cases.append(case)
    (out / "cnn.json").write_text(json.dumps(cases))


def training(out: Path):
    """A few epochs of build_cnn training in Keras 3, deterministic (no dropout, no
    augmentation, fixed batches): the initial weights, the batches, the loss of every
    step and the logits of held-out images after training."""
    import keras
    from safetensors.numpy import save_file

    out = out / "training"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(19)
    cases = []
    for i, (settings, optimizer) in enumerate(
        [
            (dict(blocks=2, feature_maps=4, dropout=0.0, dense_units=16), ("adam", 0.001, 0.0)),
            # SGD where batch norm follows a convolution: that bias's gradient is zero up to
            # rounding, which Adam-type rules would blow up into steps of noise
            (
                dict(blocks=2, feature_maps=4, dropout=0.0, dense_units=16, activation="elu", batch_norm=True),
                ("sgd", 0.03125, 0.9),
            ),
        ]
    ):
        keras.utils.set_random_seed(300 + i)
        h, w, classes, batches, batch = 30, 38, 3, 12, 8
        model, pairs, _, flatten_from = build_cnn((h, w, 1), classes, **settings)
        initial = _radrun_tensors(pairs, flatten_from)
        # images whose class shows in their mean brightness, so that the loss falls
        labels = rng.integers(0, classes, (batches, batch))
        images = rng.uniform(0, 1, (batches, batch, h, w, 1)) * 0.5 + labels[:, :, None, None, None] * 0.2
        images = images.astype(np.float32)
        held_out = rng.uniform(0, 1, (4, h, w, 1)).astype(np.float32)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=optimizer[1])
            if optimizer[0] == "adam"
            else keras.optimizers.SGD(learning_rate=optimizer[1], momentum=optimizer[2]),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        )
        losses = [
            float(model.train_on_batch(x, keras.utils.to_categorical(y, classes))) for x, y in zip(images, labels)
        ]
        logits = keras.ops.convert_to_numpy(model(held_out, training=False))
        trained = {f"trained.{k}": v for k, v in _radrun_tensors(pairs, flatten_from).items()}
        save_file(
            dict(
                initial,
                **trained,
                images=np.ascontiguousarray(images.transpose(0, 1, 4, 2, 3)),
                labels=labels.astype(np.int64),
                held_out=np.ascontiguousarray(held_out.transpose(0, 3, 1, 2)),
                logits=logits,
            ),
            str(out / f"training{i}.safetensors"),
        )
        cases.append(dict(name=f"training{i}", height=h, width=w, classes=classes, settings=settings,
                          optimizer=optimizer[0], learning_rate=optimizer[1], momentum=optimizer[2], losses=losses))
    (out / "training.json").write_text(json.dumps(cases))


def unet_model(shape, initial=64):
    """The tutorial's U_Net, in Keras 3 (REFERENCE.md); logits out (sigmoid left out)."""
    import keras
    from keras import layers

    pairs, stages = [], []

    def conv(y, maps, size, name, activation="relu"):
        layer = layers.Conv2D(maps, size, activation=activation, padding="same", kernel_initializer="he_normal")
        pairs.append((layer, name))
        return layer(y)

    def double(y, maps, name):
        return conv(conv(y, maps, 3, f"{name}.conv1"), maps, 3, f"{name}.conv2")

    inputs = keras.Input(shape)
    y, skips = inputs, []
    for level in range(1, 5):
        y = double(y, initial * 2 ** (level - 1), f"encoder{level}")
        if level == 4:
            y = layers.Dropout(0.5)(y)
        stages.append((f"encoder{level}", y))
        skips.append(y)
        y = layers.MaxPooling2D(2)(y)
    y = layers.Dropout(0.5)(double(y, initial * 16, "bottleneck"))
    stages.append(("bottleneck", y))
    for level in range(4, 0, -1):
        up = conv(layers.UpSampling2D(2)(y), initial * 2 ** (level - 1), 2, f"decoder{level}.up")
        y = double(layers.concatenate([skips[level - 1], up], axis=3), initial * 2 ** (level - 1), f"decoder{level}")
        stages.append((f"decoder{level}", y))
    y = conv(y, 2, 3, "head.conv")
    logits = conv(y, 1, 1, "head.output", activation=None)
    stages.append(("head", logits))
    return keras.Model(inputs, logits), pairs, stages


def unet(out: Path):
    import keras

    out = out / "unet"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(18)
    cases = []
    for i, (h, w, initial) in enumerate([(32, 48, 64), (48, 32, 4)]):
        keras.utils.set_random_seed(200 + i)
        model, pairs, stages = unet_model((h, w, 1), initial)
        inputs = rng.uniform(0, 1, (1, h, w, 1)).astype(np.float32)
        case = _write_model(out, f"unet{i}", model, pairs, stages, inputs)
        case.update(height=h, width=w, initial_features=initial)
        cases.append(case)
    (out / "unet.json").write_text(json.dumps(cases))


def write(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    augmentation(out)
    resize(out)
    optimizers(out)
    cnn(out)
    training(out)
    unet(out)


if __name__ == "__main__":
    write(Path(sys.argv[1]))
