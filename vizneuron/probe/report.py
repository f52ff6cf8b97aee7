"""Probe results on disk: a unit's report (`report.json`, `index.html`, renders) and a layer atlas."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..gallery import safe_name
from ..imageio import enlarged, png_bytes, write_atomic
from .atlas import Atlas
from .run import ProbeReport


def write_report(report: ProbeReport, out: str | Path) -> Path:
    """Write the report into `out`; returns the HTML page's path."""
    out = Path(out)
    data = report.to_dict()
    renders = data.pop("renders", {}) or {}
    images = renders.pop("images", None)
    files = []
    if images is not None:
        for i, image in enumerate(images):
            name = f"{safe_name(report.unit)}_render{i}.png"
            write_atomic(out / name, png_bytes(enlarged(image)))
            files.append(name)
    data["renders"] = renders | {"files": files}
    for entry in data["sae_split"]:
        picture = entry.pop("render", None)
        entry["render_file"] = None
        if picture is not None:
            entry["render_file"] = f"{safe_name(entry['feature'])}_render.png"
            write_atomic(out / entry["render_file"], png_bytes(enlarged(picture)))
    write_atomic(out / "report.json", (json.dumps(data, indent=1) + "\n").encode())
    page = out / "index.html"
    write_atomic(page, _html(data).encode())
    return page


def _html(data: dict[str, Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr{' class=drive' if e['drives'] else ''}><td>{esc(e['name'])}</td><td>{e['images']}</td>"
        f"<td>{e['mean']:.3g}</td><td>{e['z']:+.2f}</td><td>{e['top_fraction']:.0%}</td>"
        f"<td>{'yes' if e['drives'] else ''}</td><td class=small>"
        + "<br>".join(f"{esc(path)} ({value:.3g})" for path, value in e["top_examples"]) + "</td></tr>"
        for e in sorted(data["evidence"], key=lambda e: -e["z"]))
    renders = data["renders"]
    render_cells = "".join(
        f'<figure><img src="{esc(f)}" alt="render {i}"><figcaption>{esc(c)}<br>near {esc(n)}</figcaption></figure>'
        for i, (f, c, n) in enumerate(zip(renders.get("files", []), renders.get("classified_as", []),
                                          renders.get("nearest_concept", []))))
    split = "".join(
        f"<li>{esc(f['feature'])}: {f['share']:.0%} of the unit on its driving images; "
        f"{esc(f['verdict'])} ({esc(', '.join(f['concepts']) or '-')})"
        + (f'<br><img src="{esc(f["render_file"])}" alt="render">' if f["render_file"] else "")
        + "<br><span class=small>" + "<br>".join(f"{esc(p)} ({v:.3g})" for p, v in f["top_examples"]) + "</span></li>"
        for f in data["sae_split"])
    clusters = "".join(f"<li>{len(g['members'])} images, mean {g['mean_value']:.3g}: "
                       f"<span class=small>{esc(', '.join(g['members'][:6]))}</span></li>"
                       for g in data["example_clusters"])
    names = list(data["relatedness"])
    related = "".join(f"<tr><th>{esc(a)}</th>" + "".join(f"<td>{data['relatedness'][a][b]:+.2f}</td>" for b in names)
                      + "</tr>" for a in names)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(data['unit'])}: {esc(data['summary'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left}}tr.drive{{background:#fff3d6}}.small{{font-size:11px}}
figure{{display:inline-block;margin:4px;text-align:center;font-size:12px}}img{{width:128px;height:128px}}</style>
</head><body>
<h1>{esc(data['unit'])}: {esc(data['summary'])}</h1>
<p>score {data['score']:.2f} (0: one group of related concepts carries the unit; 0.5: two equal unrelated
groups). Baseline: {esc(data['background']['source'])}, mean {data['background']['mean']:.3g},
std {data['background']['std']:.3g}.</p>
<h2>Concepts</h2>
<table><tr><th>concept</th><th>images</th><th>mean</th><th>z</th><th>top range</th><th>drives</th>
<th>top examples</th></tr>{rows}</table>
<h2>Renders</h2><p>{esc(renders.get('summary', 'not requested'))}</p>{render_cells}
<h2>Top dataset examples, grouped by the model's own features</h2><ul>{clusters or '<li>no index given</li>'}</ul>
<h2>SAE split</h2><ul>{split or '<li>no SAE given</li>'}</ul>
<h2>Input paths by driving concept</h2>{_paths(data['paths'])}
<h2>Relatedness (cosine of centred penultimate means)</h2>
<table><tr><th></th>{''.join(f'<th>{esc(n)}</th>' for n in names)}</tr>{related}</table>
</body></html>
"""


def _paths(paths: dict[str, Any]) -> str:
    """Each driving concept's top upstream units, side by side: one path per concept."""
    if not paths:
        return "<p>not requested (probe with an upstream layer)</p>"
    esc = html.escape
    concepts = list(paths["by_concept"])
    depth = max(len(edges) for edges in paths["by_concept"].values())
    rows = "".join("<tr>" + "".join(
        f"<td>{esc(paths['by_concept'][c][i]['unit'])} {paths['by_concept'][c][i]['contribution']:+.3g}</td>"
        if i < len(paths["by_concept"][c]) else "<td></td>" for c in concepts) + "</tr>" for i in range(depth))
    agreement = "; ".join(f"{esc(pair)}: cosine {value:.2f}" for pair, value in paths["agreement"].items())
    return (f"<p>from {esc(paths['upstream'])}; agreement between the paths (1: the same inputs): "
            f"{agreement or 'one concept only'}</p><table><tr>{''.join(f'<th>on {esc(c)}</th>' for c in concepts)}"
            f"</tr>{rows}</table>")


def write_atlas(atlas: Atlas, out: str | Path) -> Path:
    """The atlas as `atlas.json` and a self-contained `index.html` (a table, filterable by typing
    concept names, verdicts or units); returns the page's path."""
    out = Path(out)
    atlas.save(out / "atlas.json")
    esc = html.escape
    counts = atlas.counts()
    rows = "".join(f"<tr><td>{esc(r['unit'])}</td><td>{esc(r['verdict'])}</td><td>{r['score']:.3f}</td>"
                   f"<td>{esc(r['concepts'])}</td><td>{r['fires on']}</td></tr>" for r in atlas.rows())
    title = f"{atlas.model} {atlas.layer}" + (f" / SAE {atlas.sae}" if atlas.sae else " channels")
    page = out / "index.html"
    write_atomic(page, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Atlas: {esc(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left}}input{{font-size:14px;width:28em}}</style>
</head><body>
<h1>Atlas: {esc(title)}</h1>
<p>{len(atlas.entries)} units probed against {len(atlas.concepts)} concepts ({atlas.images:,} images):
{', '.join(f'{n} {v}' for v, n in counts.items())}. "rare": fired on too few concept images to judge.
Most polysemantic first.</p>
{''.join(f"<p><b>Note:</b> {esc(note)}</p>" for note in atlas.notes)}
<p><input id=q placeholder="filter: words that must all appear, e.g. cat automobile" oninput="filter()"></p>
<table id=t><tr><th>unit</th><th>verdict</th><th>score</th><th>driving concepts (groups)</th><th>fires on</th></tr>
{rows}</table>
<script>function filter(){{const w=document.getElementById('q').value.toLowerCase().split(/\\s+/).filter(Boolean);
for(const r of document.querySelectorAll('#t tr:not(:first-child)')){{const t=r.textContent.toLowerCase();
r.style.display=w.every(x=>t.includes(x))?'':'none'}}}}</script>
</body></html>
""".encode())
    return page
