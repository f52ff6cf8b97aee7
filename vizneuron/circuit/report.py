"""A circuit on disk: `circuit.json` and an `index.html` with the target unit and each edge unit,
its render, its top examples (from an index, when it holds them) and its signed edge weight, with
one column per concept."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..gallery import safe_name
from ..imageio import enlarged, png_bytes, write_atomic
from .run import Circuit


def write_circuit(found: Circuit, out: str | Path, renders: dict[str, torch.Tensor] | None = None,
                  examples: dict[str, list[Any]] | None = None,
                  kernels: dict[str, torch.Tensor] | None = None, weights_note: str = "") -> Path:
    """Write `found` into `out`. `renders`: unit name -> image (3, H, W); `examples`: unit name ->
    PIL images of its top examples; `kernels`: upstream unit -> expanded-weight kernel (kh, kw)."""
    out = Path(out)
    data = found.to_dict()
    pictures: dict[str, dict[str, Any]] = {}
    for name, image in (renders or {}).items():
        file = f"{safe_name(name)}_render.png"
        write_atomic(out / file, png_bytes(enlarged(image)))
        pictures.setdefault(name, {})["render"] = file
    for name, images in (examples or {}).items():
        files = []
        for i, picture in enumerate(images):
            files.append(f"{safe_name(name)}_top{i}.png")
            write_atomic(out / files[-1], png_bytes(picture.resize((96, 96))))
        pictures.setdefault(name, {})["examples"] = files
    for name, kernel in (kernels or {}).items():
        file = f"{safe_name(name)}_kernel.png"
        write_atomic(out / file, png_bytes(_kernel_picture(kernel)))
        pictures.setdefault(name, {})["kernel"] = file
    data["files"], data["weights"] = pictures, weights_note
    write_atomic(out / "circuit.json", (json.dumps(data, indent=1) + "\n").encode())
    page = out / "index.html"
    write_atomic(page, _html(data).encode())
    return page


def _kernel_picture(kernel: torch.Tensor, cell: int = 16):
    """Red for positive weights, blue for negative, scaled to the kernel's largest."""
    scaled = (kernel / kernel.abs().max().clamp(min=1e-12)).clamp(-1, 1)
    rgb = torch.stack([1 - scaled.clamp(max=0).abs(), 1 - scaled.abs(), 1 - scaled.clamp(min=0)])
    picture = Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).astype("uint8"))
    return picture.resize((kernel.shape[1] * cell, kernel.shape[0] * cell), Image.NEAREST)


def _html(data: dict[str, Any]) -> str:
    esc, files = html.escape, data["files"]

    def pictures(name: str) -> str:
        found = files.get(name, {})
        cells = [f'<img src="{esc(found["render"])}" alt="render" width=96>'] if "render" in found else []
        cells += [f'<img src="{esc(f)}" alt="example" width=64>' for f in found.get("examples", [])]
        if "kernel" in found:
            cells.append(f'<img src="{esc(found["kernel"])}" alt="expanded weights" title="expanded weights">')
        return " ".join(cells)

    concepts = list(data["paths"])
    by_concept = {c: {e["unit"]: e["contribution"] for e in data["paths"][c]} for c in concepts}
    head = "".join(f"<th>on {esc(c)}</th>" for c in concepts)
    rows = "".join(
        f"<tr><td>{esc(e['unit'])}</td><td class={'pos' if e['contribution'] > 0 else 'neg'}>"
        f"{e['contribution']:+.4g}</td><td>{e['share']:.0%}</td>"
        + "".join(f"<td>{by_concept[c][e['unit']]:+.3g}</td>" if e["unit"] in by_concept[c] else "<td></td>"
                  for c in concepts)
        + f"<td>{pictures(e['unit'])}</td></tr>" for e in data["edges"])
    paths = "".join(f"<li><b>{esc(c)}</b> ({data['path_images'][c]} images): "
                    + ", ".join(f"{esc(e['unit'])} {e['contribution']:+.3g}" for e in data["paths"][c]) + "</li>"
                    for c in concepts)
    agreement = "".join(f"<li>{esc(pair)}: cosine {value:.2f}</li>" for pair, value in data["path_agreement"].items())
    side = "fed by" if data["side"] == "upstream" else "feeds"
    balance = (f"<p>mean value {data['value']:.4g}; with {esc(data['layer'])} at its reference mean "
               f"{data['baseline']:.4g}; contributions add up to within {data['completeness']:.1%}"
               + (f"; SAE reconstruction error node {data['error']:+.4g}" if data["error"] is not None else "")
               + "</p>") if data["side"] == "upstream" else f"<p>mean value {data['value']:.4g}</p>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(data['unit'])} circuit</title>
<style>body{{font-family:sans-serif;margin:2em}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:middle}}
.pos{{color:#b22}} .neg{{color:#22b}}</style></head><body>
<h1>{esc(data['unit'])} {side} {esc(data['layer'])}</h1>
<p>{pictures(data['unit'])}</p>{balance}
<p>averaged over {len(data['images'])} images where the unit fires most. {esc(data.get('weights', ''))}</p>
<table><tr><th>unit</th><th>contribution</th><th>share</th>{head}<th>render, top examples, weights</th></tr>
{rows}</table>
{f'<h2>Paths by concept</h2><ul>{paths}</ul><h2>Do the paths agree?</h2><ul>{agreement}</ul>' if concepts else ''}
</body></html>
"""
