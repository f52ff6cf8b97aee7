"""A SHIFT run on disk: `shift.json`, the edits as `edit.json` (and `edit-retrained.json`), and an
`index.html` with the ranked units and their evidence (render, top concept images, the probe's
verdict and z-scores, proposed and ablated marks), the results table and per-group accuracies."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch

from ..edit import EditError
from ..gallery import safe_name
from ..imageio import ImageSkipped, enlarged, png_bytes, read_rgb, to_model_input, write_atomic
from .run import ShiftResult


def write_shift(result: ShiftResult, out: str | Path, renders: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `result` into `out`; `renders`: unit name -> image (3, H, W)."""
    out = Path(out)
    data = result.to_dict()
    pictures: dict[str, dict[str, Any]] = {}
    for name, image in (renders or {}).items():
        file = f"{safe_name(name)}_render.png"
        write_atomic(out / file, png_bytes(enlarged(image, 96)))
        pictures.setdefault(name, {})["render"] = file
    for candidate in result.candidates:
        files = []
        for i, (key, _) in enumerate(candidate.top_examples):
            try:
                rgb, _ = read_rgb(key)
            except (ImageSkipped, OSError):
                continue  # the report still shows the value; a vanished file is not fatal
            files.append(f"{safe_name(candidate.unit)}_top{i}.png")
            write_atomic(out / files[-1], png_bytes(enlarged(to_model_input(rgb, rgb.shape[:2]), 64)))
        pictures.setdefault(candidate.unit, {})["examples"] = files
    try:
        data["edit"] = result.edited.save(out / "edit.json").name
        if result.retrained is not None:
            data["edit_retrained"] = result.retrained.save(out / "edit-retrained.json").name
    except EditError as err:  # an SAE given in memory: the page is still worth having
        result.notes.append(f"edit not saved: {err}")
    data["files"], data["notes"] = pictures, result.notes
    write_atomic(out / "shift.json", (json.dumps(data, indent=1) + "\n").encode())
    page = out / "index.html"
    write_atomic(page, _html(data, result).encode())
    return page


def _html(data: dict[str, Any], result: ShiftResult) -> str:
    esc, files = html.escape, data["files"]
    concepts = list(result.candidates[0].z) if result.candidates else []
    head = "".join(f"<th>z {esc(c)}</th>" for c in concepts)
    rows = []
    for c in result.candidates:
        pics = files.get(c.unit, {})
        render = f"<img src='{esc(pics['render'])}'>" if "render" in pics else ""
        examples = "".join(f"<img src='{esc(f)}'>" for f in pics.get("examples", []))
        z = "".join(f"<td>{c.z.get(name, 0):+.2f}</td>" for name in concepts)
        mark = "ablated" if c.chosen else ("proposed, dropped" if c.proposed else "")
        rows.append(f"<tr class='{'chosen' if c.chosen else ''}'><td>{esc(c.unit)}</td><td>{c.attribution:+.4f}</td>"
                    f"<td>{esc(c.verdict)} ({esc(', '.join(c.concepts) or '-')})</td>{z}<td>{render}</td>"
                    f"<td>{examples}</td><td>{mark}</td></tr>")
    table = result.group_table()
    head_row = "".join(f"<th>{esc(k)}</th>" for k in (table[0] if table else {"model": ""}))
    scores = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row.values()) + "</tr>" for row in table)
    notes = "".join(f"<p class='note'>{esc(n)}</p>" for n in result.notes)
    edit = (f"<p>Edit: <code>{esc(data['edit'])}</code> (load it as <code>edit:PATH</code>)</p>"
            if "edit" in data else "")
    return f"""<!doctype html><meta charset="utf-8"><title>SHIFT: {esc(result.layer)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}}
tr.chosen{{background:#fde8e8}} img{{image-rendering:pixelated;margin:1px}} .note{{color:#a40}}</style>
<h1>SHIFT on {esc(result.layer)} ({esc(result.units)})</h1>
<p>Concepts to ignore: {esc(', '.join(result.ignore))}. Ablated: {len(result.ablated)} units.</p>{notes}{edit}
<h2>Results, overall and per test group</h2><table><tr>{head_row}</tr>
{scores}</table>
<h2>Units the classifier leans on</h2>
<table><tr><th>unit</th><th>attribution</th><th>probe</th>{head}<th>render</th><th>top concept images</th><th></th></tr>
{''.join(rows)}</table>
"""
