"""Train vizneuron's bundled default model (a narrow ResNet-9) on the CIFAR-10 JPEG folders.

Reproducible: one seed drives the initialisation, the shuffling and the augmentation; the run
decodes the JPEGs once, trains with SGD + a one-cycle schedule, evaluates top-1 on the test
split and writes the weights as safetensors plus a model card next to them.

    python scripts/train_default_model.py --data ../shared/data/cifar10 --epochs 12 --seed 0
"""

from __future__ import annotations

import argparse
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

from vizneuron.models.cifar_net import CifarNet  # noqa: E402
from vizneuron.optim.transforms import random_crop  # noqa: E402
from vizneuron.models.default import CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, WEIGHTS_DIR  # noqa: E402


def load_split(folder: Path, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a split to a uint8 (N, 3, 32, 32) tensor once, caching the result on disk."""
    if cache.exists():
        data = torch.load(cache, weights_only=True)
        return data["images"], data["labels"]
    images, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        files = sorted((folder / name).glob("*.jpg"))
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
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10")
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
    x_train, y_train = load_split(args.data / "train", args.cache / "cifar10-train.pt")
    x_test, y_test = load_split(args.data / "test", args.cache / "cifar10-test.pt")

    model = CifarNet().to(memory_format=torch.channels_last)
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
    print(f"test top-1 on {len(x_test)} JPEG images: {accuracy:.4f}", flush=True)
    model = model.to(memory_format=torch.contiguous_format)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "architecture": "CifarNet (vizneuron.models.cifar_net), widths 32/64/128/128",
        "test_top1": f"{accuracy:.4f}",
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "train_seconds": f"{time.time() - start:.0f}",
        "torch": torch.__version__,
    }
    save_file(state, str(args.out / "default_cifar.safetensors"), metadata=meta)
    (args.out / "default_cifar.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("wrote", args.out / "default_cifar.safetensors")


if __name__ == "__main__":
    main()
