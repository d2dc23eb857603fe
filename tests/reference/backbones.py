"""Reference backbones for radrun's transfer-learning equivalence test: each torchvision
(and timm legacy_xception) backbone built with random weights and randomised batch-norm
statistics, topped with radrun's head (global average pooling, Dense 256 + ReLU,
dropout, Dense 3), evaluated on a fixed input.

For each backbone NAME, OUT/NAME.safetensors holds the state dict under torchvision/timm
names (classifier and num_batches_tracked left out) plus head.dense.* and head.output.*,
and OUT/NAME-io.safetensors the input and the output. OUT/resnet18.pth is the same
state dict as resnet18's, saved by torch.save, to test reading .pth files.
"""

from pathlib import Path

import torch
import torch.nn as nn
import timm
import torchvision
from safetensors.torch import save_file


def inception_features(m):
    layers = [
        m.Conv2d_1a_3x3, m.Conv2d_2a_3x3, m.Conv2d_2b_3x3, m.maxpool1, m.Conv2d_3b_1x1, m.Conv2d_4a_3x3,
        m.maxpool2, m.Mixed_5b, m.Mixed_5c, m.Mixed_5d, m.Mixed_6a, m.Mixed_6b, m.Mixed_6c, m.Mixed_6d,
        m.Mixed_6e, m.Mixed_7a, m.Mixed_7b, m.Mixed_7c,
    ]
    return nn.Sequential(*layers)


def build(name):
    """(model, features module, prefix to drop from its state dict keys, input size)."""
    tv = torchvision.models
    if name in ("resnet18", "resnet50"):
        m = getattr(tv, name)(weights=None)
        return m, nn.Sequential(*list(m.children())[:-2]), 64
    if name in ("vgg16", "vgg19"):
        m = getattr(tv, name)(weights=None)
        return m, m.features, 64
    if name == "inception_v3":
        m = tv.inception_v3(weights=None, aux_logits=False, init_weights=True)
        return m, inception_features(m), 80
    if name == "mobilenet_v2":
        m = tv.mobilenet_v2(weights=None)
        return m, m.features, 64
    if name == "xception":
        m = timm.create_model("legacy_xception", pretrained=False)
        return m, m.forward_features, 80
    raise ValueError(name)


CLASSIFIER = ("fc.", "classifier.", "AuxLogits.")


def write(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    for name in ["resnet18", "resnet50", "vgg16", "vgg19", "inception_v3", "mobilenet_v2", "xception"]:
        torch.manual_seed(0)
        model, features, size = build(name)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.normal_(0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0, 0.1)
        model.eval()
        channels = 512 if name in ("resnet18", "vgg16", "vgg19") else 1280 if name == "mobilenet_v2" else 2048
        dense, output = nn.Linear(channels, 256), nn.Linear(256, 3)
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            f = features(x)
            y = output(torch.relu(dense(f.mean(dim=(2, 3)))))
        state = {
            k: v.contiguous()
            for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked") and not k.startswith(CLASSIFIER)
        }
        state.update({
            "head.dense.weight": dense.weight.detach(), "head.dense.bias": dense.bias.detach(),
            "head.output.weight": output.weight.detach(), "head.output.bias": output.bias.detach(),
        })
        save_file(state, str(out / f"{name}.safetensors"))
        save_file({"input": x, "output": y}, str(out / f"{name}-io.safetensors"))
        if name == "resnet18":
            torch.save(model.state_dict(), out / "resnet18.pth")
