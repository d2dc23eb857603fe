#!/usr/bin/env python3
"""The tutorial's own Keras pipeline, for bench/parity.sh.

    parity_keras.py mirror ROOT OUT
        Links (or copies) into OUT/{Train,Test}/<class>/ every 8-bit gray PNG or JPEG of ROOT's
        class folders: the files Keras' flow_from_directory and radrun read alike
        (Keras skips DICOM and reads 16-bit PNG unscaled). Prints what it kept.
    parity_keras.py train ROOT SEED HEIGHT WIDTH EPOCHS BATCH AUGMENT
        Trains the tutorial's build_cnn (tests/reference/keras_fidelity.py, Keras 3 on
        the torch backend) on ROOT/Train with the tutorial's ImageDataGenerator
        (keras-preprocessing 1.1.0, as TensorFlow 2.1 shipped it: rescale 1/255,
        rotation 15, shifts 0.2, zoom 0.3, fill nearest, validation_split 0.11), Adam,
        nearest resizing, then evaluates the last epoch's weights on ROOT/Test.
        Prints one JSON line: test accuracy, training loss per epoch.
"""

import json
import os
import runpy
import shutil
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402


def mirror(root: Path, out: Path):
    from PIL import Image

    kept = skipped = 0
    for split in ("Train", "Test"):
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            target = out / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(class_dir.rglob("*")):
                try:
                    with Image.open(path) as image:
                        usable = image.format in ("PNG", "JPEG") and image.mode == "L"
                except (OSError, ValueError):
                    usable = False
                if not usable:
                    skipped += path.is_file()
                    continue
                link = target / path.relative_to(class_dir).as_posix().replace("/", "__")
                if not link.exists():
                    try:
                        os.link(path, link)
                    except OSError:  # another file system
                        shutil.copy2(path, link)
                kept += 1
    print(f"parity: {kept} 8-bit gray PNG/JPEG images kept, {skipped} other files left out")


def train(root: Path, seed: int, height: int, width: int, epochs: int, batch: int, augment: bool):
    import keras
    from keras_preprocessing.image import ImageDataGenerator

    keras.utils.set_random_seed(seed)
    arguments = dict(rotation_range=15, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.3) if augment else {}
    flow = dict(target_size=(height, width), color_mode="grayscale", class_mode="categorical", interpolation="nearest")
    training = ImageDataGenerator(rescale=1 / 255, fill_mode="nearest", validation_split=0.11, **arguments)
    train_it = training.flow_from_directory(root / "Train", batch_size=batch, subset="training", seed=seed, **flow)
    test_it = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        root / "Test", batch_size=batch, shuffle=False, **flow
    )
    script = Path(__file__).resolve().parents[1] / "tests/reference/keras_fidelity.py"
    build_cnn = runpy.run_path(str(script))["build_cnn"]
    model, *_ = build_cnn((height, width, 1), train_it.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    losses = []
    for _ in range(epochs):
        total = seen = 0.0
        for _ in range(len(train_it)):
            x, y = next(train_it)
            total += float(model.train_on_batch(x, y)) * len(x)
            seen += len(x)
        losses.append(total / seen)
    correct = 0
    for i in range(len(test_it)):
        x, y = test_it[i]
        logits = keras.ops.convert_to_numpy(model(x, training=False))
        correct += int((logits.argmax(1) == y.argmax(1)).sum())
    print(json.dumps(dict(seed=seed, test_accuracy=correct / test_it.samples, train_loss=losses)))


if __name__ == "__main__":
    if sys.argv[1] == "mirror":
        mirror(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        root, seed, height, width, epochs, batch, augment = sys.argv[2:9]
        train(Path(root), int(seed), int(height), int(width), int(epochs), int(batch), augment == "on")
