"""Write every generated table into the pages that show it, from the results files in bench/results/.

A page marks a table with `<!-- table: NAME -->` ... `<!-- /table -->`; this script replaces what lies
between with the table NAME renders from its results file (or, with no file yet, the command that
makes it), followed by a line saying what produced the figures. Nobody types a measured number.

    python scripts/tables.py           # rewrite the tables in README.md and docs/**/*.md, redraw FIGURES
    python scripts/tables.py --check   # exit 1, naming each table that differs from its results
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARKED = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


class Missing(Exception):
    """A table's results file (or part of it) is not there yet."""


def results(name: str, part: str = "all") -> tuple[object, dict]:
    """The results and provenance of `part` of bench/results/NAME.json."""
    for found, record, source in parts(name):
        if found == part:
            return record, source
    raise Missing(f"{name} ({part})")


def grid(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def produced(*sources: dict) -> str:
    """One line per distinct producer: command, versions, machine, date."""
    lines = []
    for source in sources:
        machine = source["machine"]
        where = f"{machine['cpus']} CPUs, {machine['torch_threads']} torch threads"
        if machine.get("gpu"):
            where = f"{machine['gpu']}, " + where
        command = " ".join(["python", source["script"], *source["arguments"]])
        line = (f"<sub>Produced by `{command}` · vizneuron {source['vizneuron']} · torch {source['torch']} · "
                f"{where} · {source['date'][:10]}</sub>")
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def model_name(spec: str) -> str:
    """A model spec as a table shows it: a file source by its file's name, not the machine's path."""
    source, _, rest = spec.partition(":")
    return f"{source}:{rest.split('?')[0].rsplit('/', 1)[-1]}" if "/" in rest else spec


def percent(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}%}".replace("%", " %")


# --- the tables: NAME -> markdown ---------------------------------------------------------------

def parts(name: str, prefix: str = "") -> list[tuple[str, object, dict]]:
    """Every part of a results file whose name starts with `prefix`, in the order they were written."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise Missing(name)
    found = [(part, record["results"], record["produced_by"])
             for part, record in json.loads(path.read_text())["parts"].items() if part.startswith(prefix)]
    if not found:
        raise Missing(f"{name} ({prefix}...)")
    return found


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def spread(values: list[float], digits: int = 3) -> str:
    """Mean over seeds, with their range when there are several."""
    mean = sum(values) / len(values)
    text = f"{mean:.{digits}f}"
    return text if len(values) == 1 else f"{text} ({min(values):.{digits}f} to {max(values):.{digits}f})"


def test_tiers() -> str:
    found = parts("test_tiers")
    rows = [[name, tier["counts"].get("passed", 0), tier["counts"].get("failed", 0), f"{tier['wall_s']:.0f}",
             f"`{tier['command']}`"] for name, tier, _ in found]
    table = grid(["tier", "tests passed", "failed", "wall s", "command"], rows)
    return table + "\n\n" + produced(*(s for *_, s in found))


def app_defaults() -> str:
    rows, source = results("app_defaults")
    shown = [[row["action"], f"{row['seconds'] * 1000:.1f} ms" if row["seconds"] < 1 else f"{row['seconds']:.1f} s"]
             for row in rows]
    return grid(["app action (bundled model, CPU)", "time"], shown) + "\n\n" + produced(source)


def cli_start() -> str:
    rows, source = results("cli_start")
    shown = [[f"`{row['command']}`", f"{row['median_s']:.2f}", f"{row['min_s']:.2f}-{row['max_s']:.2f}"]
             for row in rows]
    return grid(["command", "median s", "range s"], shown) + "\n\n" + produced(source)


def redirect() -> str:
    found, source = results("redirect")
    rows = [[row["redirect_steps"], f"{row['grey']} / {row['units']}", f"{row['mean_activation']:.3f}"]
            for row in found["rows"]]
    return grid(["redirect steps", "grey renders", "mean final activation"], rows) + "\n\n" + produced(source)


def transfer() -> str:
    found = parts("transfer")
    rows = [[name, percent(row["source_top1"]), percent(row["judge_top5"]), f"{row['seconds']:.0f}"]
            for name, row, _ in found]
    return (grid(["settings", "mobilenet_v2's own top-1", "mobilenet_v1_0.5 top-5", "seconds"], rows) + "\n\n"
            + produced(*(s for *_, s in found)))


def whole_layer() -> str:
    found, source = results("whole_layer")
    base = found["rows"][0]
    rows = [[row["setting"], f"{row['median_s']:.1f}", f"{base['median_s'] / row['median_s']:.2f}x",
             f"{row['mean_activation']:.3f}", f"{row['mean_activation'] / base['mean_activation']:.2f}"]
            for row in found["rows"]]
    return (grid(["setting", "seconds", "speed-up", "mean activation", "vs the first row"], rows) + "\n\n"
            + produced(source))


def lucent() -> str:
    found = parts("lucent")
    rows = []
    for _, row, _ in found:
        step = row["seconds_per_step"]
        rows.append([row["workload"], row["device"], f"{step['lucent']:.3f}", f"{step['vizneuron']:.3f}",
                     f"{step['plain']:.3f}", f"{step['vizneuron'] / step['plain']:.2f}x",
                     f"{step['lucent'] / step['vizneuron']:.2f}x"])
    return (grid(["workload", "device", "lucent s/step", "vizneuron s/step", "plain frozen loop s/step",
                  "vizneuron vs plain", "speed-up vs lucent"], rows) + "\n\n" + produced(*(s for *_, s in found)))


def _quality(q: dict) -> str:
    top5 = f", top-5 {percent(q['top-5'])}" if q.get("top-5") is not None else ""
    return f"{q['activation']:.3f} ({q['real ratio']:.2f} of real){top5}"


def time_to_quality() -> str:
    found = parts("time_to_quality")
    rows = []
    for _, workload, _ in found:
        for row in workload:
            lucent_s = median(row["lucent_s"])
            if row["steps"] is None:
                rows.append([row["workload"], row["setting"], f"not within {row['within_steps']}", "-",
                             _quality(row["lucent_quality"]), "-", f"{lucent_s:.1f}", "-"])
                continue
            ours = median(row["seconds"])
            rows.append([row["workload"], row["setting"], row["steps"], _quality(row["quality"]),
                         _quality(row["lucent_quality"]), f"{ours:.1f}", f"{lucent_s:.1f}", f"{ours / lucent_s:.2f}"])
    return (grid(["workload", "vizneuron setting", "steps to match", "vizneuron quality", "lucent-512 quality",
                  "vizneuron s", "lucent s", "time ratio"], rows) + "\n\n" + produced(*(s for *_, s in found)))


def compile_step() -> str:
    found, source = results("compile_step")
    step = found["seconds_per_step"]
    rows = [["eager", f"{median(step['eager']):.3f}", "-"],
            ["torch.compile", f"{median(step['compiled']):.3f}", f"{found['compile_and_first_step_s']:.1f}"]]
    return grid(["step", "s per step", "compile + first step s"], rows) + "\n\n" + produced(source)


def accentuation_sweep() -> str:
    found = parts("accentuation_sweep")
    closes = [row["stay_close"] for row in found[0][1]["rows"]]
    default = found[0][1]["default_stay_close"]
    header = ["unit (its top example)", "on the seed"] + [
        f"**stay_close {c:g} (default)**" if c == default else f"stay_close {c:g}" for c in closes]
    rows = [[f"{unit} ({r['seed_label']})", f"{r['rows'][0]['on_seed']:.2f}"]
            + [f"{row['after']:.2f} / {row['rms']:.3f}" for row in r["rows"]] for unit, r, _ in found]
    return grid(header, rows) + "\n\n" + produced(*(s for *_, s in found))


def accentuation_faccent() -> str:
    found = parts("accentuation_faccent")
    rows, ratios = [], {"rms": [], "feature": []}
    for _, unit, _ in found:
        seed = unit["on_seed"]
        mean_time = sum(row["seconds"] for row in unit["vizneuron"]) / len(unit["vizneuron"])
        for row in unit["faccent"]:
            cells = [f"`{unit['unit']}` ({unit['seed_label']}, {seed:.2f})", f"{row['alpha']:g}",
                     f"{row['unit']:.3f} / {row['rms']:.3f} / {row['feature']:.3f}"]
            for distance in ("rms", "feature"):
                ours = sorted(unit["vizneuron"], key=lambda r, d=distance: r[d])
                matched = _interpolate(row[distance], [r[distance] for r in ours], [r["unit"] for r in ours])
                if matched is None:  # outside the distances vizneuron's sweep reached: no like-for-like figure
                    cells.append(f"outside the sweep ({min(r[distance] for r in ours):.3f}-"
                                 f"{max(r[distance] for r in ours):.3f})")
                elif row["unit"] - seed > 0.01 * abs(seed):
                    ratios[distance].append((matched - seed) / (row["unit"] - seed))
                    cells.append(f"{matched:.3f} ({ratios[distance][-1]:.2f}x)")
                else:
                    cells.append(f"{matched:.3f} (faccent: no gain)")
            rows.append([*cells, f"{row['seconds'] / mean_time:.0f}x"])
    summary = "; ".join(f"at equal {name} distance, vizneuron's gain over the seed is {median(values):.2f}x "
                        f"faccent's (median of {len(values)}, range {min(values):.2f}-{max(values):.2f})"
                        for name, values in (("pixel", ratios["rms"]), ("feature", ratios["feature"])) if values)
    return (grid(["unit (seed's label, unit on the seed)", "faccent `accent_reg_alpha`",
                  "faccent: unit / pixel RMS / feature distance", "vizneuron at that pixel distance (gain ratio)",
                  "vizneuron at that feature distance (gain ratio)", "faccent's time / vizneuron's"], rows)
            + f"\n\n{summary}. Steps: {found[0][1]['steps']}.\n\n" + produced(*(s for *_, s in found)))


def _interpolate(x: float, xs: list[float], ys: list[float]) -> float | None:
    """y at x, linear between the measured points; None outside them (no extrapolation)."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return ys[-1]


def mine_speed() -> str:
    found, source = results("mine")
    rows = []
    for row in found["rows"]:
        plain, mining = median(row["plain_images_per_s"]), median(row["mining_images_per_s"])
        rows.append([f"{row['model']} {row['layer']} ({row['channels']} ch)", f"{plain:.0f}", f"{mining:.0f}",
                     f"{mining / plain:.2f}x", f"{median(row['finalise_s']):.1f}"])
    memory = [[f"{row['images']:,}", f"{row['peak_rss_mib']:.0f}"] for row in found["memory"]]
    return (grid(["layer mined (all channels)", "plain forward img/s", "mining img/s", "ratio",
                  "crops and thumbnails pass s"], rows)
            + "\n\n" + grid(["images mined (peak memory)", "peak RSS MiB"], memory) + "\n\n" + produced(source))


def ray() -> str:
    found, source = results("ray")
    images, engines = found["images"], found["engines"]
    best = {name: min(run[0] for run in e["runs"]) for name, e in engines.items()}
    stream = {name: min(run[1] for run in e["runs"]) for name, e in engines.items()}
    rows = [[name, f"{images / best[name]:.0f}", f"{best[name]:.1f}", f"{images / stream[name]:.0f}",
             f"{best[name] / best[e['against']]:.2f}x" if e["against"] else "-",
             f"{'yes' if e['bit_identical'] else 'no'} (to {e['checked_against']})" if e["against"] else "-"]
            for name, e in engines.items()]
    memory = [[name, f"{mib:.0f}"] for name, mib in found["driver_max_rss_mib"].items()]
    return (grid(["engine", "images/s (whole run)", "seconds", "images/s (streaming pass)",
                  "time vs local at equal CPU",
                  "index bit-identical to local at the actors' thread count"], rows) + "\n\n"
            + grid(["driver (Ray, 2 actors)", "max RSS MiB"], memory) + "\n\n" + produced(source))


def sae_field(prefix: str) -> Callable[[], str]:
    def table() -> str:
        found = parts("sae", prefix)
        has_truth = any("mmcs" in row for _, row, _ in found)
        has_accuracy = any("accuracy" in row for _, row, _ in found)
        rates = sorted({float(lr) for _, row, _ in found for lr in row["validation"] if lr != "None"})
        header = (["method", "lr chosen", "validation FVU at lr " + " / ".join(f"{lr:g}" for lr in rates),
                   "L0", "FVU", "dead"] + (["MMCS"] if has_truth else [])
                  + (["spliced accuracy"] if has_accuracy else []) + ["samples", "note"])
        rows = []
        for _, row, _ in found:
            swept = {float(lr): v for lr, v in row["validation"].items() if lr != "None"}
            sweep = " / ".join(f"{swept[lr]['fvu']:.3f}" + ("" if swept[lr]["l0"] <= 1.5 * row["k"] else
                                                          f" (L0 {swept[lr]['l0']:.0f})")
                               if lr in swept else "-" for lr in rates)
            rows.append([row["method"], "default" if row["lr"] is None else f"{row['lr']:g}",
                         sweep if swept else "- (plain call)", f"{row['l0']:.1f}", f"{row['fvu']:.3f}",
                         percent(row["dead"])]
                        + ([f"{row['mmcs']:.3f}"] if has_truth else [])
                        + ([percent(row["accuracy"], 1)] if has_accuracy else [])
                        + [f"{row['samples']:,}", row["note"]])
        first = found[0][1]
        context = (f"{first['train_rows']:,} training rows, {first['val_rows']:,} validation rows (the learning "
                   f"rate is chosen on them), {first['test_rows']:,} test rows (every figure but the sweep), d_sae "
                   f"{first['d_sae']}, k {first['k']}, {first['epochs']} epochs")
        if "clean_accuracy" in first:
            context += f"; clean accuracy {percent(first['clean_accuracy'], 1)}"
        return grid(header, rows) + f"\n\n{context}.\n\n" + produced(*(s for *_, s in found))
    return table


def sae_speed() -> str:
    found = parts("sae_speed")
    rows = [[row["set"], f"{row['rows']:,}", len(row["minimal_over_vizneuron"]),
             f"{median(row['minimal_over_vizneuron']):.2f}x",
             ", ".join(f"{r:.2f}" for r in row["minimal_over_vizneuron"])] for _, row, _ in found]
    return (grid(["data set", "rows", "rounds", "minimal step's speed / vizneuron's (median)", "each round"], rows)
            + "\n\n" + produced(*(s for *_, s in found)))


def sae_layers() -> str:
    found = parts("sae_layers")
    rows = []
    for _, row, _ in found:
        m, t = row["metrics"], row["training"]
        rows.append([f"{row['model']} `{row['layer']}`, {'defaults' if not row['recipe'] else row['recipe']}",
                     f"{row['train_images']:,}", t.get("steps", "-"), "yes" if t.get("converged") else "no",
                     f"{m['l0']:.1f}", f"{m['fvu']:.3f}", percent(m["dead_fraction"], 1),
                     " / ".join(percent(m[k], 1) for k in ("accuracy_clean", "accuracy_sae", "accuracy_mean_ablated")
                                if k in m) or "-", f"{row['train_s']:.0f}"])
    return (grid(["SAE", "training images", "steps", "converged", "L0", "FVU", "dead",
                  "accuracy clean / SAE / mean-ablated", "training s"], rows) + "\n\n"
            + produced(*(s for *_, s in found)))


def sae_convergence() -> str:
    found = parts("sae_convergence")
    rows = []
    for _, row, _ in found:
        plain, longer = row["plain"], row["longer"]
        shape = f"{row['shape']}: {row['n']} in {row['d']} d, {row['rows']:,} rows, d_sae {row['d_sae']}, k {row['k']}"
        rows.append([shape, row["kind"], f"{plain['mmcs']:.3f}", percent(plain["recovered_0.9"]), f"{plain['l0']:.1f}",
                     f"{plain['fvu']:.3f}", plain["training"].get("steps"),
                     "yes" if plain["training"].get("converged") else "no",
                     f"{longer['mmcs']:.3f}", f"{longer['mmcs'] - plain['mmcs']:+.3f}"])
    return (grid(["toy shape", "kind", "plain MMCS", "features at cos > 0.9", "L0", "FVU", "steps", "converged",
                  "4x longer MMCS", "4x - plain"], rows) + "\n\n" + produced(*(s for *_, s in found)))


def site_cost() -> str:
    found = parts("site")
    rows = []
    for _, row, _ in found:
        first, again = row["runs"]["first build"], row["runs"]["rerun, nothing changed"]
        stages = ", ".join(f"{stage} {seconds:.0f}" for stage, seconds in first["stages"].items())
        rows.append([f"{model_name(row['model'])}: {', '.join(row['layers'])}", row["units"], row["pages"],
                     f"{row['bytes'] / 1e6:.1f} MB", f"{row['largest_page_bytes'] / 1e3:.0f} KB",
                     f"{first['seconds']:.0f} ({stages})", f"{again['seconds']:.1f}",
                     ", ".join(f"{n} {w}" for w, n in again["work"].items()) or "nothing"])
    return (grid(["site", "units", "pages", "size (cache left out)", "largest page", "first build, s (per stage)",
                  "rerun, s", "computed by the rerun"], rows) + "\n\n" + produced(*(s for *_, s in found)))


def loader() -> str:
    found = parts("loader")
    rows = []
    for _, row, _ in found:
        for measured in row["rows"]:
            whole = measured.get("whole_images_per_s")
            rows.append([f"{model_name(row['model'])} {row['layers']}, {row['images']:,} images", measured["tool"],
                         measured["workers"], f"{measured['images_per_s']:.1f}", f"{measured['vs_best_plain']:.2f}x",
                         "-" if whole is None else f"{whole:.1f}",
                         "-" if whole is None else f"{measured['whole_vs_best_plain']:.2f}x"])
    return (grid(["workload", "loop", "decoding workers", "images/s streaming", "vs the best plain loop",
                  "images/s, whole job", "whole job vs the best plain loop"], rows)
            + "\n\n" + produced(*(s for *_, s in found)))


def loader_decoders() -> str:
    found, source = results("loader_decoders")
    rows = [[name, f"{seconds:.2f}", f"{found['identical']:,} of {found['images']:,}" if name != "PIL" else "-"]
            for name, seconds in found["median_s"].items()]
    return grid(["decoder (CPU, 1 thread)", f"seconds for {found['images']:,} JPEGs", "pixels identical to PIL's"],
                rows) + "\n\n" + produced(source)


def worked_atlas() -> str:
    found, source = results("worked_mobilenet")
    concepts = ", ".join(f"{name} {count}" for name, count in found["concepts"].items())
    counts = ", ".join(f"{verdict} {count}" for verdict, count in found["counts"].items())
    rows = [[e["unit"], f"{e['score']:.3f}", ", ".join(e["concepts"])] for e in found["most_polysemantic"]]
    notes = "".join(f"\n\n> {note}" for note in found["notes"])
    return (f"{model_name(found['model'])} `{found['layer']}`: {found['units']:,} units; concepts (images): "
            f"{concepts}. Verdicts: {counts}.{notes}\n\n"
            + grid(["most polysemantic units", "score", "driving concepts"], rows) + "\n\n" + produced(source))


def worked_probe() -> str:
    found, source = results("worked_mobilenet")
    report = found["probe"]
    rows = [[e["concept"], e["images"], f"{e['mean']:.3f}", f"{e['z']:+.2f}", e["top range"], e["drives"]]
            for e in report["evidence"]]
    renders = report["renders"].get("summary") or ""
    warnings = "".join(f"\n\n> {w}" for w in report["warnings"])
    return (f"`{report['unit']}`: **{report['summary']}**, score {report['score']:.3f}. {renders}{warnings}\n\n"
            + grid(["concept", "images", "mean", "z", "top range", "drives"], rows) + "\n\n" + produced(source))


def scale_mine() -> str:
    found, source = results("scale_mine", "mine")
    ours, plain = found["vizneuron"], found["plain"]
    rss = ", ".join(f"{int(n):,} images: {r['peak_rss_mb']:,.0f} MB" for n, r in found["rss_by_images"].items())
    rows = [[f"{model_name(found['model'])} {found['layers']} (k {found['k']}), {found['images']:,} images",
             f"{median([r['images_per_s'] for r in ours]):.1f}", f"{median([r['images_per_s'] for r in plain]):.1f}",
             f"{found['stream_vs_plain']:.2f}x", f"{found['whole_vs_plain']:.2f}x", rss]]
    return (grid(["job", "vizneuron images/s (streaming)", "plain loop images/s", "streaming vs plain",
                  "whole job vs plain", "vizneuron peak RSS"], rows) + "\n\n" + produced(source))


def scale_sae() -> str:
    found, source = results("scale_sae", "sae")
    extract = found["extract"]
    rows = [[f"extract ({found['layer']}, every position, {found['images']:,} images)", f"{extract['rows']:,}",
             f"{extract['rows_per_s']:,.0f} rows/s", "-", "-", f"{extract['peak_rss_mb']:,.0f} MB"]]
    for name, run in found["runs"].items():
        ours = median([r["samples_per_s"] for r in run["vizneuron"]])
        minimal = median([r["samples_per_s"] for r in run["minimal"]])
        what = f"synthetic rows ({found['synthetic_width']} wide)" if name == "synthetic" else f"{found['layer']} rows"
        rss = ", ".join(f"{int(n):,} rows: {mb:,.0f} MB" for n, mb in run["rss_by_rows"].items())
        rows.append([f"train, {what}", f"{run['timed_rows']:,}", f"{ours:,.0f}", f"{minimal:,.0f}",
                     f"{run['vs_minimal']:.2f}x", rss])
    return (grid(["step", "rows timed", "vizneuron samples/s", "minimal TopK step samples/s", "vizneuron vs minimal",
                  "vizneuron peak RSS"], rows) + "\n\n" + produced(source))


def scale_render() -> str:
    found, source = results("scale_render", "render")
    batches = f"{found['batches']} batch{'es' if found['batches'] != 1 else ''}"
    rows = [[f"{batches} of {found['batch']} units", f"{found['seconds']:.0f}",
             f"{found['full_layer_estimate_s'] / 60:.0f} min"]]
    return grid(["timed", "seconds", "whole layer4 (2,048 channels), estimated"], rows) + "\n\n" + produced(source)


def gpu() -> str:
    found = parts("gpu")
    rows = []
    for _, run, _ in found:
        for part, measured in run["parts"].items():
            for what, figures in measured.items():
                memory = figures.get("peak_gpu_memory_gb")
                shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in figures.items() if k != "peak_gpu_memory_gb")
                rows.append([run["device"] + (" (tiny sizes)" if run["tiny"] else ""), part, what, shown,
                             "-" if memory is None else f"{memory:.1f} GB"])
    return grid(["device", "part", "what", "figures", "peak GPU memory"], rows) + "\n\n" + produced(
        *(s for *_, s in found))


def sae_convergence_diagnosis() -> str:
    found = parts("sae_convergence_diagnosis")
    rows = [[f"{row['kind']} on {row['shape']}", row["variant"], f"{row['mmcs']:.3f}", percent(row["recovered_0.9"]),
             f"{row['mmcs_frequent']:.3f}", f"{row['mmcs_rare']:.3f}", f"{row['l0']:.1f}", f"{row['fvu']:.3f}",
             row["training"].get("steps"), row["frequent_latents"], percent(row["unmatched_share"])]
            for _, row, _ in found]
    return (grid(["kind on shape", "variant", "MMCS", "features at cos > 0.9", "MMCS, most frequent quarter",
                  "MMCS, rarest quarter", "L0", "FVU", "steps", "latents firing on > 10 % of rows",
                  "firings from latents matching no feature"], rows)
            + "\n\n" + produced(*(s for *_, s in found)))


def absorption() -> str:
    found = parts("absorption")
    kinds: dict[str, list[dict]] = {}
    for _, row, _ in found:
        kinds.setdefault(row["kind"], []).append(row)
    rows = [[kind, len(runs), spread([r["absorption"] for r in runs]),
             spread([r["parent_recall_alone"] for r in runs], 2), spread([r["child_parent_cosine"] for r in runs], 2),
             spread([r["l0"] for r in runs], 1)] for kind, runs in kinds.items()]
    return (grid(["kind", "seeds", "absorption: mean (range)", "parent recall alone", "child→parent cos",
                  "L0 (k 8)"], rows) + "\n\n" + produced(found[0][2]))


def monosemantic(prefix: str) -> Callable[[], str]:
    def table() -> str:
        found = parts("monosemantic", prefix)
        rows = []
        for _, row, _ in found:
            shares, counts = row["fractions"], row["counts"]
            rows.append([row["units"], row["count"], percent(shares["monosemantic"]), percent(shares["polysemantic"]),
                         percent(shares["unclear"]), f"{counts['rare']} ({percent(shares['rare'])})",
                         f"{row['mean_score']:.2f}"])
        rare = found[0][1]["min_firing"]
        return (grid(["units", "count", "monosemantic", "polysemantic", "unclear", f"rare (< {rare} images)",
                      "mean score"], rows) + "\n\n" + produced(*(s for *_, s in found)))
    return table


def probe_layer() -> str:
    found, source = results("probe_layer")
    counts = ", ".join(f"{n} {verdict}" for verdict, n in found["counts"].items())
    judged = sorted((e for e in found["entries"] if e["verdict"] == "polysemantic"), key=lambda e: -e["score"])[:5]
    rows = [[e["unit"], e["verdict"], f"{e['score']:.2f}", " + ".join(" / ".join(g) for g in e["groups"])]
            for e in judged]
    return (f"All {len(found['entries'])} channels: {counts}. The most polysemantic:\n\n"
            + grid(["channel", "verdict", "score", "driving concept groups"], rows) + "\n\n" + produced(source))


def circuit(prefix: str) -> Callable[[], str]:
    def table() -> str:
        (_, found, source), = parts("circuit", prefix)
        counts, curves = found["counts"], found["curves"]
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        rows = [[ranking] + [percent(mean([c[ranking][i] for c in curves])) for i in range(len(counts))]
                for ranking in ("contribution", "gradient norm", "random")]
        searches = found.get("searches") or []
        for search in ("greedy", "swap search"):
            if searches:
                shares = [percent(mean([c[search][i] for c in searches])) for i in range(len(found["search_counts"]))]
                rows.append([f"{search} (heuristic)"] + shares + ["-"] * (len(counts) - len(shares)))
        gaps = found["completeness_gaps"]
        note = (f"{found['title']}: {len(curves)} units; share of each unit's mean value on its top images kept "
                f"when the top-m upstream units are mean-ablated. Completeness gap {percent(mean(gaps), 1)} on "
                f"average (largest {percent(max(gaps), 1)}); {mean(found['seconds']):.1f} s per circuit.")
        table = grid(["ablated by"] + [f"top {m}" for m in counts], rows) + f"\n\n{note}\n\n"
        if searches:  # every unit, at the largest count the searches reach
            at = len(found["search_counts"]) - 1
            m = found["search_counts"][at]
            table += f"Per unit, share kept with {m} channels ablated:\n\n" + grid(
                ["unit", "contribution", "greedy", "swap search", "random"],
                [[unit, percent(c["contribution"][at], 1), percent(g["greedy"][at], 1),
                  percent(g["swap search"][at], 1), percent(c["random"][at], 1)]
                 for unit, c, g in zip(found["units"], curves, searches)]) + "\n\n"
        return table + produced(source)
    return table


def shift() -> str:
    found, source = results("shift")
    rows_in = found["rows"]
    low = rows_in["biased model"]["balanced"]
    high = rows_in["oracle (trained with the cue balanced)"]["balanced"]
    shown = lambda v: "-" if v is None else percent(v, 1)  # noqa: E731
    rows = [[name, shown(s["balanced"]), shown(s["worst"]), shown(s["cuefree"]), shown(s["cue_readable"]),
             percent((s["balanced"] - low) / (high - low), 1)] for name, s in rows_in.items()]
    chosen = found["chosen"]
    return (grid(["model (test split, scored once)", "balanced", "worst group", "cue-free", "cue readable",
                  "gap recovered"], rows)
            + f"\n\nChosen on the validation split: rule \"{chosen['rule']}\", {chosen['ablated']} features "
              f"({'all proposed' if chosen['count'] is None else 'the top ' + str(chosen['count'])}), held at "
              f"{'their mean' if chosen['mode'] == 'mean' else 'zero'}; {found['positive']} of `{found['layer']}`'s "
              f"{found['d_sae']} SAE features have a positive attribution.\n\n" + produced(source))


def shift_validation() -> str:
    found, source = results("shift")
    rows = [[row["rule"], "all proposed" if row["count"] is None else f"top {row['count']}", row["mode"],
             row["ablated"], percent(row["balanced"], 1), percent(row["worst"], 1)] for row in found["validation"]]
    return (grid(["proposal rule", "features", "held at", "ablated", "validation balanced", "validation worst group"],
                 rows) + "\n\n" + produced(source))


def headlines() -> str:
    """Three figures for the README, each from its results file (or the command that makes it)."""
    rows = []

    def figure(question: str, page: str, command: str, compute: Callable[[], str]) -> None:
        link = f"[{page}](docs/benchmarks/{page.lower()}.md)"
        try:
            rows.append([question, compute(), link])
        except Missing:
            rows.append([question, f"not measured yet: `{command}`", link])

    def render_speed() -> str:
        ratios = [median(row["seconds"]) / median(row["lucent_s"]) for _, workload, _ in parts("time_to_quality")
                  for row in workload if row["setting"].startswith("defaults") and row["steps"] is not None]
        if not ratios:
            raise Missing("time_to_quality (defaults)")
        span = f"{min(ratios):.2f}" if f"{min(ratios):.2f}" == f"{max(ratios):.2f}" else \
            f"{min(ratios):.2f}-{max(ratios):.2f}"
        return (f"the defaults reach lucent's 512-step quality in {span} of its time ({len(ratios)} "
                f"workload{'s' if len(ratios) > 1 else ''}, median of interleaved rounds)")

    def circuit_faithfulness() -> str:
        (_, found, _), = parts("circuit", "bundled")
        eight = found["counts"].index(8)
        kept = {r: sum(c[r][eight] for c in found["curves"]) / len(found["curves"]) for r in ("contribution", "random")}
        return (f"ablating a unit's top 8 upstream channels removes {percent(1 - kept['contribution'])} of its value; "
                f"8 random ones {percent(1 - kept['random'])} (bundled model, {len(found['curves'])} units)")

    def shift_gap() -> str:
        found, _ = results("shift")
        rows_in = found["rows"]
        low = rows_in["biased model"]["balanced"]
        high = rows_in["oracle (trained with the cue balanced)"]["balanced"]
        closed = percent((rows_in["SHIFT"]["balanced"] - low) / (high - low), 1)
        return (f"SHIFT closes {closed} of the balanced-accuracy gap to a model trained without the cue (settings "
                "chosen on a validation split, the test split scored once)")

    figure("How fast is a good render?", "Rendering", "python bench/time_to_quality.py", render_speed)
    figure("Do circuits find what carries a unit?", "Circuits", "python bench/bench_circuit.py", circuit_faithfulness)
    figure("Can an edit take a cue out of a classifier?", "SHIFT", "python bench/bench_shift.py", shift_gap)
    return grid(["question", "figure", "details"], rows)


TABLES: dict[str, tuple[Callable[[], str], str]] = {
    "headlines": (headlines, "python scripts/tables.py"),
    # name: (renderer, the command that makes its results)
    "test-tiers": (test_tiers, "python bench/test_tiers.py"),
    "app-defaults": (app_defaults, "python bench/app_defaults.py"),
    "cli-start": (cli_start, "python bench/cli_start.py --runs 5"),
    "redirect": (redirect, "python bench/redirect.py --channels 0-31 --steps 48"),
    "transfer": (transfer, "python bench/transfer.py"),
    "whole-layer": (whole_layer, "python bench/whole_layer.py"),
    "lucent": (lucent, "python bench/bench_lucent.py --threads 2 --steps 32 --repeats 3"),
    "time-to-quality": (time_to_quality, "python bench/time_to_quality.py"),
    "compile-step": (compile_step, "python bench/compile_step.py"),
    "accentuation-sweep": (accentuation_sweep, "python bench/accentuation_sweep.py"),
    "accentuation-faccent": (accentuation_faccent, "python bench/bench_accentuation.py --faccent-python "
                                                   "/tmp/fvenv/bin/python --threads 1"),
    "mine": (mine_speed, "python bench/bench_mine.py --threads 1 --images 5000"),
    "ray": (ray, "python bench/bench_ray.py"),
    "sae-toy": (sae_field("toy"), "python bench/bench_sae.py toy"),
    "sae-layer3": (sae_field("bundled"), "python bench/bench_sae.py layer3"),
    "sae-mobilenet": (sae_field("MobileNet"), "python bench/bench_sae.py mobilenet"),
    "sae-speed": (sae_speed, "python bench/bench_sae.py speed"),
    "sae-layers": (sae_layers, "python bench/sae_layers.py"),
    "absorption": (absorption, "python bench/bench_absorption.py"),
    "sae-convergence": (sae_convergence, "python bench/sae_convergence.py"),
    "sae-convergence-diagnosis": (sae_convergence_diagnosis, "python bench/sae_convergence.py --diagnose"),
    "monosemantic-layer3": (monosemantic("bundled"), "python bench/bench_monosemantic.py layer3"),
    "monosemantic-mobilenet": (monosemantic("MobileNet"), "python bench/bench_monosemantic.py mobilenet"),
    "probe-layer": (probe_layer, "python bench/probe_layer.py"),
    "circuit-bundled": (circuit("bundled"), "python bench/bench_circuit.py bundled"),
    "circuit-mobilenet": (circuit("MobileNet"), "python bench/bench_circuit.py mobilenet"),
    "shift": (shift, "python bench/bench_shift.py"),
    "site": (site_cost, "python bench/site.py bundled mobilenet"),
    "shift-validation": (shift_validation, "python bench/bench_shift.py"),
    "loader": (loader, "python bench/bench_loader.py"),
    "worked-atlas": (worked_atlas, "python bench/worked_mobilenet.py"),
    "worked-probe": (worked_probe, "python bench/worked_mobilenet.py"),
    "loader-decoders": (loader_decoders, "python bench/bench_loader.py decoders"),
    "scale-mine": (scale_mine, "python bench/bench_scale.py mine"),
    "scale-sae": (scale_sae, "python bench/bench_scale.py sae"),
    "scale-render": (scale_render, "python bench/bench_scale.py render"),
    "gpu": (gpu, "python bench/gpu_suite.py --out bench/results/gpu.json"),
}


def monosemantic_bars() -> bytes | None:
    """Stacked bars of the monosemantic / polysemantic / unclear shares of every unit set in
    bench/results/monosemantic.json, grouped by layer; None without results."""
    from PIL import Image, ImageDraw

    try:
        found = parts("monosemantic")
    except Missing:
        return None
    groups: dict[str, list[tuple[str, dict]]] = {}
    for _, row, _ in found:
        groups.setdefault(row["set"], []).append((row["units"], row["fractions"]))
    colours = {"monosemantic": (76, 145, 80), "polysemantic": (220, 140, 40), "unclear": (170, 170, 170)}
    width, row_height, left = 760, 26, 300
    bars = sum(len(rows) for rows in groups.values())
    image = Image.new("RGB", (width, 40 + row_height * (bars + len(groups)) + 30), "white")
    draw = ImageDraw.Draw(image)
    y = 10
    for title, rows in groups.items():
        draw.text((10, y), title, fill="black")
        y += row_height
        for units, shares in rows:
            draw.text((20, y + 6), units, fill="black")
            x = left
            for verdict, colour in colours.items():
                span = int(shares[verdict] * (width - left - 20))
                draw.rectangle([x, y + 2, x + span, y + row_height - 4], fill=colour)
                if span > 30:
                    draw.text((x + 4, y + 6), f"{shares[verdict]:.0%}", fill="white")
                x += span
            y += row_height
    x = left
    for verdict, colour in colours.items():
        draw.rectangle([x, y + 8, x + 12, y + 20], fill=colour)
        draw.text((x + 16, y + 8), verdict, fill="black")
        x += 130
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


#: pictures drawn from results: path in the repository -> drawing (PNG bytes, None without results)
FIGURES: dict[str, Callable[[], bytes | None]] = {"docs/assets/monosemantic.png": monosemantic_bars}


def render(name: str) -> str:
    if name not in TABLES:
        raise SystemExit(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    renderer, command = TABLES[name]
    try:
        return renderer() + "\n"
    except Missing as missing:
        return f"*Not measured with today's script yet ({missing} missing): run `{command}`.*\n"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args()
    stale = []
    for page in pages():
        text = page.read_text()
        rendered = {m.group("name"): render(m.group("name")) for m in MARKED.finditer(text)}
        stale += [f"{page.relative_to(ROOT)}: {m.group('name')}" for m in MARKED.finditer(text)
                  if m.group("body") != rendered[m.group("name")]]
        new = MARKED.sub(lambda m, rendered=rendered: m.group(1) + rendered[m.group("name")] + m.group(4), text)
        if new != text and not args.check:
            page.write_text(new)
    for relative, draw in FIGURES.items():
        picture, path = draw(), ROOT / relative
        if picture is not None and (not path.is_file() or path.read_bytes() != picture):
            stale.append(f"{relative} (picture)")
            if not args.check:
                path.write_bytes(picture)
    if args.check and stale:
        print("tables that differ from their results (run python scripts/tables.py):\n  " + "\n  ".join(stale))
        return 1
    print(("stale: " if args.check else "rewritten: ") + (", ".join(stale) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
