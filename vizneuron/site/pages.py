"""The site's pages: the model page, a page per layer, a page per unit, one CSS file and the
thumbnails, all linked relatively so the folder opens from disk (`file://`) with no server and no
network. Images are lazy-loaded; filtering and sorting are a few lines of inline script."""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..choices import VERDICTS
from ..gallery import safe_name
from ..imageio import enlarged, jpeg_bytes, png_bytes, write_atomic
from ..mine.index import ExampleIndex, read_meta
from ..models.base import OUTPUT_LAYER, Model
from ..probe.atlas import most_polysemantic
from ..version import __version__

if TYPE_CHECKING:
    from ..sae.model import SAE
    from .build import SiteLayer, UnitCircuits

THUMB = 96  # px: renders and examples on the unit pages
STRIP = 4  # examples in a layer page's strip
SHOWN = {"top": 8, "bottom": 4}  # examples on a unit page
MOST_POLYSEMANTIC = 12  # units shown on the model page

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 1.5em;color:#222}
a{color:#1a56a8;text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;margin:1.2em 0 .4em}
nav{font-size:.9em;margin-bottom:.6em;color:#666}
table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.8em}
.card{border:1px solid #ddd;border-radius:6px;padding:.4em;background:#fff}
.card img{image-rendering:pixelated}
.strip img{width:40px;height:40px;margin-right:2px}
.thumb{width:96px;height:96px;image-rendering:pixelated;margin:2px}
.badge{display:inline-block;border-radius:4px;padding:0 .4em;font-size:.8em;color:#fff}
.monosemantic{background:#2e7d32}.polysemantic{background:#c62828}.unclear{background:#757575}
.rare{background:#9e9e9e}
.bar{display:flex;height:12px;width:240px;border-radius:3px;overflow:hidden;background:#eee}
.bar span{display:block;height:100%}
figure{display:inline-block;margin:0 .4em .4em 0;text-align:center;font-size:.8em}
code{background:#f4f4f4;padding:.1em .3em;border-radius:3px;font-size:.85em}
input,select{font-size:1em;padding:.2em .4em;margin-right:.6em}
.muted{color:#777;font-size:.9em}
"""

FILTER_SCRIPT = """
<script>
function refilter(){
  const verdict=document.getElementById('verdict').value, concept=document.getElementById('concept').value;
  const order=document.getElementById('order').value, grid=document.getElementById('units');
  const cards=[...grid.children];
  cards.forEach(c=>{c.hidden=(verdict&&c.dataset.verdict!==verdict)||
    (concept&&!c.dataset.concepts.split('|').includes(concept));});
  if(order){cards.sort((a,b)=>order==='score'?b.dataset.score-a.dataset.score:a.dataset.order-b.dataset.order);
    cards.forEach(c=>grid.appendChild(c));}
}
</script>
"""

SEARCH_SCRIPT = """
<script>
const UNITS=JSON.parse(document.getElementById('units-data').textContent);
function search(){
  const words=document.getElementById('q').value.toLowerCase().split(/[ ,]+/).filter(w=>w&&w!=='and');
  const list=document.getElementById('hits');list.innerHTML='';
  if(!words.length)return;
  const hits=UNITS.filter(u=>words.every(w=>u.name.toLowerCase().includes(w)||
    u.concepts.some(c=>c.toLowerCase()===w)));
  hits.slice(0,50).forEach(u=>{const li=document.createElement('li');const a=document.createElement('a');
    a.href=u.page;a.textContent=u.name;li.appendChild(a);
    li.appendChild(document.createTextNode(' '+u.verdict+(u.concepts.length?' ('+u.concepts.join(', ')+')':'')));
    list.appendChild(li);});
  if(hits.length>50){const li=document.createElement('li');li.textContent='and '+(hits.length-50)+' more';
    list.appendChild(li);}
}
</script>
"""


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width'><link rel='stylesheet' href='{up}style.css'>"
            f"</head><body>{body}</body></html>\n")


def unit_page(unit: str) -> str:
    """A unit's page, relative to the site's root."""
    return f"units/{safe_name(unit)}.html"


def layer_page(layer: str) -> str:
    return f"layer_{safe_name(layer)}.html"


def _badge(verdict: str) -> str:
    return f"<span class='badge {verdict}'>{verdict}</span>"


def _link(unit: str, known: set[str], depth: int, text: str | None = None) -> str:
    shown = html.escape(text or unit)
    return f"<a href='{'../' * depth}{unit_page(unit)}'>{shown}</a>" if unit in known else shown


def _bar(counts: dict[str, int]) -> str:
    total = max(1, sum(counts.values()))
    colours = {"monosemantic": "#2e7d32", "polysemantic": "#c62828", "unclear": "#757575", "rare": "#bdbdbd"}
    spans = "".join(f"<span style='width:{100 * n / total:.1f}%;background:{colours[v]}' title='{v}: {n}'></span>"
                    for v, n in counts.items() if n)
    return f"<div class='bar'>{spans}</div>"


class _Writer:
    """Writes files under the site's root and counts them."""

    def __init__(self, root: Path) -> None:
        self.root, self.pages, self.bytes = root, 0, 0

    def text(self, name: str, content: str) -> None:
        data = content.encode()
        write_atomic(self.root / name, data)
        self.pages += name.endswith(".html")
        self.bytes += len(data)

    def image(self, name: str, data: bytes) -> str:
        write_atomic(self.root / "img" / name, data)
        self.bytes += len(data)
        return f"img/{name}"


def write_pages(model: Model, site_layers: list[SiteLayer], pictures: dict[str, list],
                circuits: dict[str, UnitCircuits], saes: dict[str, dict[str, SAE]], out: Path,
                commands: dict[str, str]) -> tuple[int, int]:
    """Every page and thumbnail of the site (a unit's only where what it shows changed); returns the
    site's page count and the bytes written."""
    writer = _Writer(out)
    writer.text("style.css", CSS)
    known = {unit for entry in site_layers for unit in entry.units}
    judged = {e.unit: e for entry in site_layers for e in entry.atlas.entries}
    stamps_file = out / "cache" / "pages.json"
    try:
        written = json.loads(stamps_file.read_text())
    except (OSError, ValueError):
        written = {}
    strips: dict[str, list[str]] = {}
    site_key = hashlib.sha256(json.dumps([sorted(known), commands, sorted(f"{layer}/{name}" for layer, named in
                                          saes.items() for name in named)]).encode()).hexdigest()
    for entry in site_layers:
        index = ExampleIndex(entry.index)
        try:
            meta = read_meta(index.db)
            for unit in entry.units:
                found = judged[unit]
                stamp = _stamp(unit, meta, found, pictures[unit], circuits.get(unit), site_key)
                before = written.get(unit)
                if before and before["stamp"] == stamp and (out / unit_page(unit)).is_file():
                    strips[unit] = before["strip"]  # unchanged since the last run: its files stand
                    continue
                strips[unit] = _unit(model, unit, entry, found, index, pictures[unit], circuits.get(unit), saes, known,
                                     commands, writer)
                written[unit] = {"stamp": stamp, "strip": strips[unit]}
        finally:
            index.db.close()
        writer.text(layer_page(entry.name), _layer(entry, pictures, strips))
    writer.text("index.html", _model(model, site_layers))
    write_atomic(stamps_file, json.dumps(written).encode())
    return 1 + len(site_layers) + len(known), writer.bytes


def _stamp(unit: str, meta: dict[str, Any], found, renders: list, circuits: UnitCircuits | None, site_key: str) -> str:
    """Everything a unit's page and thumbnails are made from (`site_key`: the site's units, layers
    and commands), hashed: the same stamp, the same files."""
    digest = hashlib.sha256()
    for image in renders:
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
    parts = [__version__, {k: meta.get(k) for k in ("weights", "dataset", "k", "units", "complete")}, asdict(found),
             None if circuits is None else asdict(circuits), digest.hexdigest(), site_key, unit]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def _model(model: Model, site_layers: list[SiteLayer]) -> str:
    rows = []
    for entry in site_layers:
        counts = entry.atlas.counts()
        rows.append(f"<tr><td><a href='{layer_page(entry.name)}'>{html.escape(entry.name)}</a></td>"
                    f"<td>{len(entry.units)}</td>" + "".join(f"<td>{counts[v]}</td>" for v in VERDICTS)
                    + f"<td>{_bar(counts)}</td></tr>")
    polysemantic = sorted((e for entry in site_layers for e in most_polysemantic(entry.atlas)),
                          key=lambda e: -e.score)[:MOST_POLYSEMANTIC]
    thumbs = "".join(f"<figure><a href='{unit_page(e.unit)}'><img class='thumb' loading='lazy' alt='{e.unit}' "
                     f"src='img/{safe_name(e.unit)}_r0.png'></a><br>{_link(e.unit, {e.unit}, 0)}<br>"
                     f"{html.escape(', '.join(e.concepts))}</figure>" for e in polysemantic)
    units = [{"name": e.unit, "verdict": e.verdict, "concepts": e.concepts, "page": unit_page(e.unit)}
             for entry in site_layers for e in entry.atlas.entries]
    concepts = sorted({c for entry in site_layers for c in entry.atlas.concepts})
    body = (f"<h1>{html.escape(model.name)}</h1><p class='muted'>What each unit of {len(site_layers)} layers "
            f"responds to, judged against {len(concepts)} concepts ({html.escape(', '.join(concepts))}). "
            "Polysemantic: the unit answers to unrelated concepts.</p>"
            "<h2>Search</h2><input id='q' size='40' placeholder='unit name, or concepts: cat automobile' "
            "oninput='search()'><ul id='hits'></ul>"
            f"<script id='units-data' type='application/json'>{_json(units)}</script>"
            "<h2>Layers</h2><table><tr><th>layer</th><th>units</th>"
            + "".join(f"<th>{v}</th>" for v in VERDICTS) + "<th></th></tr>" + "".join(rows) + "</table>"
            + (f"<h2>Most polysemantic units</h2><div>{thumbs}</div>" if thumbs else "") + SEARCH_SCRIPT)
    return _page(model.name, body)


def _layer(entry: SiteLayer, pictures: dict[str, list], strips: dict[str, list[str]]) -> str:
    cards = []
    for order, e in enumerate(entry.atlas.entries):
        strip = "".join(f"<img loading='lazy' alt='' src='{src}'>" for src in strips[e.unit][:STRIP])
        cards.append(f"<div class='card' data-verdict='{e.verdict}' data-score='{e.score}' data-order='{order}' "
                     f"data-concepts='{html.escape('|'.join(e.concepts))}'><a href='{unit_page(e.unit)}'>"
                     f"<img class='thumb' loading='lazy' alt='{e.unit}' src='img/{safe_name(e.unit)}_r0.png'></a>"
                     f"<div><a href='{unit_page(e.unit)}'>{html.escape(e.unit)}</a> {_badge(e.verdict)} "
                     f"{e.score:.2f}</div><div class='muted'>{html.escape(', '.join(e.concepts))}</div>"
                     f"<div class='strip'>{strip}</div></div>")
    concepts = "".join(f"<option>{html.escape(c)}</option>" for c in entry.atlas.concepts)
    body = (f"<nav><a href='index.html'>model</a> / {html.escape(entry.name)}</nav><h1>{html.escape(entry.name)}</h1>"
            f"<p>{_bar(entry.atlas.counts())}</p>"
            + "".join(f"<p class='muted'>{html.escape(note)}</p>" for note in entry.atlas.notes)
            + "<p><select id='verdict' onchange='refilter()'><option value=''>every verdict</option>"
            + "".join(f"<option>{v}</option>" for v in VERDICTS) + "</select>"
            f"<select id='concept' onchange='refilter()'><option value=''>any concept</option>{concepts}</select>"
            "<select id='order' onchange='refilter()'><option value='order'>unit order</option>"
            "<option value='score'>most polysemantic first</option></select></p>"
            f"<div class='grid' id='units'>{''.join(cards)}</div>" + FILTER_SCRIPT)
    return _page(entry.name, body)


def _unit(model: Model, unit: str, entry: SiteLayer, found, index: ExampleIndex, renders: list,
          circuits: UnitCircuits | None, saes: dict[str, dict[str, SAE]], known: set[str],
          commands: dict[str, str], writer: _Writer) -> list[str]:
    """Writes the unit's page and thumbnails; returns its top examples' thumbnails (for the strips)."""
    stem = safe_name(unit)
    shots = [writer.image(f"{stem}_r{i}.png", png_bytes(enlarged(image, THUMB))) for i, image in enumerate(renders)]
    sides = {}
    for side, count in SHOWN.items():
        examples = index.examples(unit, bottom=side == "bottom", k=count)
        sides[side] = [(writer.image(f"{stem}_{side}{e.rank}.jpg",
                                     jpeg_bytes(index.overlay(e).resize((THUMB, THUMB)))), e) for e in examples]
    evidence = "".join(f"<tr><td>{html.escape(c)}</td><td>{z:+.2f}</td><td>{'drives' if c in found.concepts else ''}"
                       f"</td></tr>" for c, z in sorted(found.z.items(), key=lambda item: -item[1]))
    body = [f"<nav><a href='../index.html'>model</a> / <a href='../{layer_page(entry.name)}'>"
            f"{html.escape(entry.name)}</a> / {html.escape(unit)}</nav><h1>{html.escape(unit)} {_badge(found.verdict)}"
            f"</h1><p>Score {found.score:.2f}; driven by {html.escape(', '.join(found.concepts) or 'no concept')}"
            f"; fires on {found.firing} concept images.</p>",
            "<h2>Renders</h2>" + "".join(f"<img class='thumb' alt='render {i}' src='../{src}'>"
                                          for i, src in enumerate(shots))]
    for side, shown in sides.items():
        figures = "".join(f"<figure><img class='thumb' loading='lazy' alt='' src='../{src}'><br>"
                          f"{html.escape(e.label or '')} {e.value:.3g}</figure>" for src, e in shown)
        note = index.tie_note([e for _, e in shown])
        body.append(f"<h2>{side.capitalize()} examples (where it fired)</h2><div>{figures or 'none'}</div>"
                    + (f"<p class='note'>{html.escape(note)}</p>" if note else ""))
    body.append(f"<h2>Evidence per concept</h2><table><tr><th>concept</th><th>z</th><th></th></tr>{evidence}</table>")
    if circuits is not None:
        body.append(_circuit_html(model, circuits, known))
    body.append(_sae_html(model, unit, entry, saes, known))
    body.append("<h2>Reproduce</h2><ul>" + "".join(f"<li>{name}: <code>{html.escape(cmd.replace('UNIT', unit))}</code>"
                                                   f"</li>" for name, cmd in commands.items()) + "</ul>")
    writer.text(unit_page(unit), _page(unit, "".join(body), depth=1))
    return [src for src, _ in sides["top"]]


def _named(model: Model, unit: str) -> str:
    """`logit:3` as its class name, when the model has labels."""
    if unit.startswith("logit:") and model.labels and unit[6:].isdigit():
        return f"{unit} ({model.labels[int(unit[6:])]})"
    return unit


def _edge_rows(model: Model, edges: list[dict[str, Any]], known: set[str]) -> str:
    return "".join(f"<tr><td>{_link(e['unit'], known, 1, _named(model, e['unit']))}</td>"
                   f"<td>{e['contribution']:+.3g}</td></tr>" for e in edges)


def _circuit_html(model: Model, circuits: UnitCircuits, known: set[str]) -> str:
    parts = []
    if circuits.upstream:
        parts.append(f"<h2>What feeds it from {html.escape(circuits.upstream)}</h2><table><tr><th>unit</th>"
                     f"<th>contribution</th></tr>{_edge_rows(model, circuits.feeds, known)}</table>")
        for concept, edges in circuits.paths.items():
            parts.append(f"<h3>on {html.escape(concept)}</h3><table>{_edge_rows(model, edges[:5], known)}</table>")
    parts.append(f"<h2>What it pushes in {html.escape(circuits.downstream or '')}</h2><table><tr><th>unit</th>"
                 f"<th>contribution</th></tr>{_edge_rows(model, circuits.pushes, known)}</table>")
    if circuits.downstream != OUTPUT_LAYER and circuits.classes:
        parts.append(f"<h2>Which classes it pushes</h2><table><tr><th>class</th><th>contribution</th></tr>"
                     f"{_edge_rows(model, circuits.classes, known)}</table>")
    parts.extend(f"<p class='muted'>{html.escape(note)}</p>" for note in circuits.notes)
    return "".join(parts)


def _sae_html(model: Model, unit: str, entry: SiteLayer, saes: dict[str, dict[str, SAE]], known: set[str]) -> str:
    """For a channel: the SAE features whose decoder writes to it most; for a feature: the channels
    it writes to most."""
    if "/" in entry.name:  # an SAE feature
        layer, rest = unit.split("/", 1)
        name, feature = rest.split(":")
        row = saes[layer][name].W_dec[int(feature)]
        top = row.topk(min(5, len(row))).indices.tolist()
        links = ", ".join(_link(f"{layer}:{c}", known, 1) + f" {float(row[c]):+.2f}" for c in top)
        return f"<h2>Channels it writes to</h2><p>{links}</p>"
    channel = int(unit.rsplit(":", 1)[1])
    parts = []
    for name, sae in saes.get(entry.name, {}).items():
        column = sae.W_dec[:, channel]
        top = column.topk(min(5, len(column))).indices.tolist()
        parts.append(f"<p>{html.escape(name)}: " + ", ".join(
            _link(f"{entry.name}/{name}:{f}", known, 1) + f" {float(column[f]):+.2f}" for f in top) + "</p>")
    return ("<h2>SAE features that carry it</h2>" + "".join(parts)) if parts else ""


def _json(value: Any) -> str:
    """JSON safe inside a script element."""
    return json.dumps(value).replace("</", "<\\/")
