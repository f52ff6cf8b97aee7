"""The `vizneuron` command: it parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import sys

import torch


def _cmd_layers(args: argparse.Namespace) -> None:
    from .models import load_model

    model = load_model(args.model)
    print(f"{model.name}: input {model.input_size[0]}x{model.input_size[1]}")
    width = max(len(name) for name in model.layers)
    print(f"{'layer'.ljust(width)}  {'output shape':<18} {'layout':<8} channels")
    for info in model.layers.values():
        shape = "x".join(map(str, info.shape)) if info.shape is not None else "(not a tensor)"
        note = f"  (runs {info.calls}x per pass)" if info.calls > 1 else ""
        channels = info.channels if info.channels is not None else "-"
        print(f"{info.name.ljust(width)}  {shape:<18} {info.layout:<8} {channels}{note}")


def _cmd_render(args: argparse.Namespace) -> None:
    from .gallery import write_gallery
    from .models import load_model
    from .optim.render import RenderResult, render
    from .units import parse_units

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    units = parse_units(args.units, model)
    settings = {
        "model": args.model, "units": args.units, "diversity": args.diversity, "steps": args.steps,
        "size": args.size or model.input_size[0], "param": args.param, "seed": args.seed, "lr": args.lr,
        "batch": args.batch, "model_input_size": args.model_input_size, "redirect_steps": args.redirect_steps,
    }
    results = []
    for start in range(0, len(units), args.batch):
        chunk = units[start : start + args.batch]
        results.append(render(
            model, chunk, samples=args.diversity, diversity=args.diversity_weight if args.diversity > 1 else 0.0,
            param=args.param, size=args.size, model_input_size=args.model_input_size, steps=args.steps,
            lr=args.lr, seed=args.seed + start, device=args.device, redirect_steps=args.redirect_steps,
            progress=not args.quiet,
        ))
    merged = RenderResult.concat(results)
    manifest = write_gallery(merged, args.out, settings, title=f"{model.name} — {args.units}")
    for entry in manifest["units"]:
        print(f"{entry['unit']}: final activation {', '.join(f'{a:.3f}' for a in entry['final_activation'])}")
    print(f"wrote {len(manifest['units'])} units to {args.out}/index.html")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vizneuron", description="What does this neuron respond to?")
    sub = parser.add_subparsers(dest="command", required=True)

    layers = sub.add_parser("layers", help="list every hookable layer with its output shape")
    layers.add_argument("model", help="model spec, e.g. default, torchvision:resnet18?weights=none")
    layers.set_defaults(func=_cmd_layers)

    rend = sub.add_parser("render", help="render feature visualisations into a gallery")
    rend.add_argument("model", help="model spec, e.g. default")
    rend.add_argument("--units", required=True, help="e.g. 'layer3:0-15', 'layer3:3,7', 'layer3:*', 'logit:cat'; ';' separates specs")
    rend.add_argument("--diversity", type=int, default=1, help="samples per unit, pushed apart by the diversity term")
    rend.add_argument("--diversity-weight", type=float, default=1e2)
    rend.add_argument("--steps", type=int, default=256)
    rend.add_argument("--size", type=int, default=None, help="image size in pixels (default: the model's input size)")
    rend.add_argument("--model-input-size", type=int, default=None, help="resize images to this before the model")
    rend.add_argument("--param", choices=["fft", "pixel", "maco"], default="fft")
    rend.add_argument("--lr", type=float, default=0.05)
    rend.add_argument("--redirect-steps", type=int, default=16,
                      help="first steps in which ReLU/ReLU6 pass gradient to clipped units (0: off)")
    rend.add_argument("--seed", type=int, default=0)
    rend.add_argument("--batch", type=int, default=16, help="units optimised together in one batch")
    rend.add_argument("--device", default=None, help="cpu, cuda, mps (default: cpu)")
    rend.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    rend.add_argument("--out", default="gallery", help="output folder")
    rend.add_argument("--quiet", action="store_true", help="no progress bars")
    rend.set_defaults(func=_cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .models import LayerError, WeightsUnavailable
    from .units import UnitError

    try:
        args.func(args)
    except (UnitError, LayerError, WeightsUnavailable, ValueError) as err:
        print(f"vizneuron: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
