"""Train vizneuron's bundled models (narrow ResNet-9s) from the CIFAR-10 JPEG folders: `default`
(all ten classes) and the SHIFT benchmark's cat-vs-dog pair, `cue-biased` (trained on the split
where the stripe cue follows the label 95 % of the time) and `cue-oracle` (the same images, the
cue on half of each class); see `vizneuron/shift/task.py`.

Reproducible: one seed drives the initialisation, the shuffling and the augmentation; the run
decodes the images once, trains with SGD + a one-cycle schedule, evaluates top-1 on the test
split and writes the weights as safetensors plus a metrics JSON next to them (the model card is
weights/MODEL_CARD.md).

    python scripts/train_default_model.py --data ../shared/data/cifar10 --epochs 12 --seed 0
    python scripts/train_default_model.py --model cue-biased --epochs 4 --lr 0.05 --seed 0
    python scripts/train_default_model.py --model cue-oracle --epochs 4 --lr 0.05 --seed 0

The cue models start from the bundled default model's weights (its `fc` replaced by a fresh
two-class head), as most classifiers start from a pretrained network: the biased one then knows
cats and dogs as well as the cue, and the question is which of the two it uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vizneuron.imageio import image_files  # noqa: E402
from vizneuron.models.cifar_net import CifarNet  # noqa: E402
from vizneuron.models.default import BUNDLED, CIFAR_MEAN, CIFAR_STD, WEIGHTS_DIR  # noqa: E402
from vizneuron.models.weights import load_state_dict  # noqa: E402
from vizneuron.optim.transforms import random_crop  # noqa: E402
from vizneuron.shift.task import build_cue_task  # noqa: E402


def load_split(folder: Path, cache: Path, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a split to a uint8 (N, 3, 32, 32) tensor once, caching the result on disk."""
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        return data["images"], data["labels"]
    images, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(folder / name)
        for path in tqdm(files, desc=f"decode {folder.name}/{name}", leave=False):
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels, dtype=torch.long)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": x, "labels": y}, cache)
    return x, y


def normalise(x_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x_uint8.float() / 255.0) - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (reflect padding) and horizontal flip, each image its own draw."""
    out = random_crop(F.pad(x, (pad, pad, pad, pad), mode="reflect"), gen, x.shape[2:])
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        xb = normalise(x[i : i + batch]).contiguous(memory_format=torch.channels_last)
        correct += (model(xb).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[name or "default" for name in BUNDLED], default="default")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
    ap.add_argument("--task", type=Path, default=ROOT / ".cache" / "cue-task", help="where the cue task is built")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    name = "" if args.model == "default" else args.model
    bundled = BUNDLED[name]
    if name:  # the cue task: train on its biased or balanced split, test on the cue-balanced one
        root = build_cue_task(args.data, args.task)
        built = hashlib.sha256((root / "task.json").read_bytes()).hexdigest()[:12]  # a rebuilt task: fresh caches
        train_split = root / ("train-biased" if name == "cue-biased" else "train-balanced")
        x_train, y_train = load_split(train_split, args.cache / f"{name}-train-{built}.pt", bundled.classes)
        x_test, y_test = load_split(root / "test-balanced", args.cache / f"cue-test-balanced-{built}.pt",
                                    bundled.classes)
    else:
        x_train, y_train = load_split(args.data / "train", args.cache / "cifar10-train.pt", bundled.classes)
        x_test, y_test = load_split(args.data / "test", args.cache / "cifar10-test.pt", bundled.classes)

    model = CifarNet(bundled.widths, len(bundled.classes))
    if name:  # fine-tune the bundled default model: every weight but the head
        pretrained = load_state_dict(WEIGHTS_DIR / f"{BUNDLED[''].weights}.safetensors")
        model.load_state_dict({k: v for k, v in pretrained.items() if not k.startswith("fc.")}, strict=False)
    model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, momentum=0.9, nesterov=True,
    )
    steps_per_epoch = len(x_train) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
        pct_start=0.2, anneal_strategy="linear", div_factor=10, final_div_factor=100,
    )
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=10)
        for step in bar:
            idx = order[step * args.batch : (step + 1) * args.batch]
            xb = augment(normalise(x_train[idx]), gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        print(f"epoch {epoch + 1}: last loss {loss.item():.3f}, {time.time() - start:.0f}s", flush=True)

    accuracy = evaluate(model, x_test, y_test)
    print(f"test top-1 on {len(x_test)} images: {accuracy:.4f}", flush=True)
    model = model.to(memory_format=torch.contiguous_format)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "architecture": f"CifarNet (vizneuron.models.cifar_net), widths {'/'.join(map(str, bundled.widths))}",
        "classes": ",".join(bundled.classes),
        "test_top1": f"{accuracy:.4f}",
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "train_seconds": f"{time.time() - start:.0f}",
        "torch": torch.__version__,
    }
    save_file(state, str(args.out / f"{bundled.weights}.safetensors"), metadata=meta)
    (args.out / f"{bundled.weights}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("wrote", args.out / f"{bundled.weights}.safetensors")


if __name__ == "__main__":
    main()
