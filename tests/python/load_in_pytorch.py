"""A radrun run loaded in PyTorch, two ways, against `radrun predict`.

Usage: load_in_pytorch.py RUN EXPORTED.pt PREDICTIONS.csv

For every 8-bit PNG row of PREDICTIONS.csv (written by `radrun predict RUN ...`), the
image is decoded and resized as radrun does (/ 255, Pillow's bilinear resize on floats)
and given to
  1. the TorchScript file of `radrun export RUN` (its card, EXPORTED.pt.json, gives the
     classes and the image size), and
  2. torchvision's resnet18 holding RUN/best.safetensors with radrun's head, as the
     docs/commands.md shows.
Prints a JSON object: the number of images, for each way the largest absolute
difference from radrun's probabilities, and the largest magnitude of torchvision's
logits (float32 rounding scales with it: tests/cli/export.rs derives its bound from it).
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

run, exported, predictions = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
card = json.loads(Path(exported + ".json").read_text())
classes = card["classes"]
height, width = card["data"]["image_size"]


def image(path):
    """[1, height, width] in 0..1, as radrun decodes an 8-bit gray PNG."""
    gray = Image.open(path).convert("F").resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255)[None]


with open(predictions, newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["file"].endswith(".png") and Image.open(r["file"]).mode == "L"]
x = torch.stack([image(r["file"]) for r in rows])
radrun = torch.tensor([[float(r[f"p_{c}"]) for c in classes] for r in rows])

# 1. TorchScript: the preprocessing inside, probabilities out
scripted = torch.jit.load(exported)
p_script = scripted(x)

# 2. docs/commands.md's snippet: best.safetensors in torchvision's resnet18 with radrun's head
weights = load_file(run / "best.safetensors")
units = card["model"]["head_units"]
model = torchvision.models.resnet18()
model.fc = torch.nn.Sequential(
    torch.nn.Linear(512, units), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(units, len(classes))
)
names = {"head.dense.": "fc.0.", "head.output.": "fc.3."}
for old, new in names.items():
    weights = {k.replace(old, new): v for k, v in weights.items()}
missing, unexpected = model.load_state_dict(weights, strict=False)
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
model.eval()
mean = torch.tensor(card["normalize"]["mean"]).view(1, 3, 1, 1)
std = torch.tensor(card["normalize"]["std"]).view(1, 3, 1, 1)
with torch.no_grad():
    logits = model((x.expand(-1, 3, -1, -1) - mean) / std)
p_torchvision = logits.softmax(1)

print(json.dumps({
    "images": len(rows),
    "torchscript": (p_script - radrun).abs().max().item(),
    "torchvision": (p_torchvision - radrun).abs().max().item(),
    "largest_logit": logits.abs().max().item(),
}))
