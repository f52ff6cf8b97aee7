"""Gallery outputs: one PNG per (unit, sample), a contact sheet per unit, a self-contained
`index.html` (inline CSS, relative links, opens from disk) and `manifest.json`.

Files are written atomically and contain no timestamps, so the same render gives the same bytes.
"""

from __future__ import annotations

import html
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .imageio import enlarged, png_bytes, to_pil, write_atomic
from .optim.render import RenderResult
from .version import __version__


def contact_sheet(images: torch.Tensor, scale: int = 1, gap: int = 2, columns: int | None = None) -> Image.Image:
    """Images (N, 3, H, W) on a white grid, `columns` wide (default: one row)."""
    tiles = [to_pil(img, scale) for img in images]
    columns = columns or len(tiles)
    rows = -(-len(tiles) // columns)
    w, h = tiles[0].size
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return sheet


def safe_name(unit_name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in unit_name)


def write_examples(index, unit: str, out: Path, k: int | None = None, bottom: bool = False) -> list[dict[str, Any]]:
    """A unit's dataset examples from an `ExampleIndex` as PNGs (crop and heatmap overlay) in `out`."""
    records = []
    side = "bottom" if bottom else "top"
    for example in index.examples(unit, bottom=bottom, k=k):
        stem = f"{safe_name(unit)}_{side}{example.rank}"
        crop = index.crop(example)
        write_atomic(out / f"{stem}_crop.png", png_bytes(crop.resize((128, 128), Image.BICUBIC)))
        picture = index.overlay(example)
        write_atomic(out / f"{stem}_image.png", png_bytes(picture.resize((128, 128), Image.BICUBIC)))
        records.append({"rank": example.rank, "path": example.path, "label": example.label,
                        "activation": round(example.value, 6), "position": example.position, "box": example.box,
                        "crop": f"{stem}_crop.png", "image": f"{stem}_image.png"})
    return records


def write_gallery(result: RenderResult, out: str | Path, settings: dict[str, Any], title: str,
                  index=None) -> dict[str, Any]:
    """Write the gallery of `result` into `out` (with each unit's top dataset examples when an
    `ExampleIndex` is given); returns the manifest."""
    out = Path(out)
    scale = max(1, 128 // result.images.shape[-1])  # small renders are shown enlarged
    entries = []
    for u_index, unit in enumerate(result.units):
        stem = safe_name(unit.name)
        slots = range(u_index * result.samples, (u_index + 1) * result.samples)
        files = []
        for s, slot in enumerate(slots):
            name = f"{stem}_{s}.png"
            write_atomic(out / name, png_bytes(enlarged(result.images[slot])))
            files.append(name)
        sheet = f"{stem}_sheet.png"
        write_atomic(out / sheet, png_bytes(contact_sheet(result.images[list(slots)], scale)))
        acts = [round(float(result.activations[slot]), 6) for slot in slots]
        entry = {"unit": unit.name, "images": files, "sheet": sheet, "final_activation": acts}
        if result.seed_distance is not None:  # accentuated: how far each image moved from its seed
            entry["seed_distance"] = [round(float(result.seed_distance[slot]), 6) for slot in slots]
        if index is not None:
            entry["examples"] = write_examples(index, unit.name, out, k=8)
        entries.append(entry)
    manifest = {
        "title": title,
        "settings": settings,
        "versions": _versions(),
        "units": entries,
    }
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    write_atomic(out / "index.html", _html(manifest).encode())
    return manifest


def _versions() -> dict[str, str]:
    return {"vizneuron": __version__, "torch": torch.__version__, "torchvision": metadata.version("torchvision"),
            "python": platform.python_version()}


def _html(manifest: dict[str, Any]) -> str:
    esc = html.escape
    rows = []
    for entry in manifest["units"]:
        cells = "".join(
            f'<figure><a href="{esc(f)}"><img src="{esc(f)}" alt="{esc(entry["unit"])} sample {i}"></a>'
            f"<figcaption>{a:.3g}</figcaption></figure>"
            for i, (f, a) in enumerate(zip(entry["images"], entry["final_activation"]))
        )
        examples = _example_cells(entry.get("examples", []))
        if examples:
            examples = f'<p class="note">top dataset examples (crop around the hottest spot, and where it fired)</p>' \
                       f'<div class="row">{examples}</div>'
        rows.append(f'<section><h2>{esc(entry["unit"])}</h2><div class="row">{cells}</div>{examples}</section>')
    settings = esc(json.dumps(manifest["settings"], indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(manifest['title'])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}}
.row{{display:flex;flex-wrap:wrap;gap:8px}}
.note{{font-size:12px;color:#777;margin:.4em 0}}
figure{{margin:0;text-align:center;font-size:12px;color:#555}}
img{{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ddd}}
h2{{font-size:15px;margin:1em 0 .3em}}
pre{{background:#eee;padding:.5em;font-size:11px}}
</style></head><body>
<h1>{esc(manifest['title'])}</h1>
<p>Each image is optimised to maximise the unit; the number under it is the unit's activation on that image.</p>
{''.join(rows)}
<details><summary>settings</summary><pre>{settings}</pre></details>
</body></html>
"""


def _example_cells(records: list[dict[str, Any]]) -> str:
    esc = html.escape
    return "".join(
        f'<figure><img src="{esc(r["crop"])}" alt="crop {r["rank"]}"><img src="{esc(r["image"])}" '
        f'alt="image {r["rank"]}"><figcaption title="{esc(r["path"])}">{r["activation"]:.3g}'
        f'{" · " + esc(r["label"]) if r["label"] else ""}</figcaption></figure>'
        for r in records
    )


def write_examples_page(index, unit: str, out: str | Path, k: int | None = None, bottom: bool = False) -> Path:
    """A small self-contained HTML page of one unit's top (or bottom) dataset examples."""
    out = Path(out)
    records = write_examples(index, unit, out, k=k, bottom=bottom)
    stats = index.stats(unit)
    esc = html.escape
    title = f"{unit}: {'bottom' if bottom else 'top'} {len(records)} of {stats.count} images"
    note = index.tie_note(index.examples(unit, bottom=bottom, k=k))
    tie = f"<p>{esc(note)}</p>" if note else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}.row{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0;text-align:center;font-size:12px;color:#555}}img{{width:128px;height:128px;display:block}}</style>
</head><body><h1>{esc(title)}</h1>
<p>{esc(index.meta["model"])} on {esc(index.meta["dataset"]["root"])}. mean {stats.mean:.3g}, std {stats.std:.3g},
max {stats.max:.3g}, active on {stats.active:.0%} of images.</p>
<div class="row">{_example_cells(records)}</div>{tie}</body></html>
"""
    path = out / f"{safe_name(unit)}_{'bottom' if bottom else 'top'}.html"
    write_atomic(path, page.encode())
    return path
