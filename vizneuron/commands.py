"""What each `vizneuron` command does once its arguments are parsed: call the library and print.

The parser lives in `cli.py`, which loads this module (and with it torch) only when a command runs,
so `vizneuron --help` and argument errors come back at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import torch

from .circuit import circuit, expanded_weights
from .circuit.report import write_circuit
from .distributed import RayEngine
from .errors import VizneuronError, warn_user
from .gallery import write_examples_page, write_gallery
from .imageio import image_files, writable_folder
from .mine import ExampleIndex, index_path, merge, mine, mine_sample
from .models import MODEL_PRESETS, bundled_saes, list_sources, load_model
from .optim.cache import RenderCache
from .optim.config import RenderConfig, preset
from .optim.render import render
from .probe import build_concepts, parse_named_paths, probe
from .probe.atlas import layer_atlas
from .probe.report import write_atlas, write_report
from .sae import (
    NotConverged,
    SAETrainConfig,
    evaluate_sae,
    extract_activations,
    load_sae,
    read_sae_config,
    train_layer_saes,
)
from .sae.formats import FOREIGN, layer_for_hook
from .sae.train import layer_checkpoint
from .samples import SAMPLE_DIR, SAMPLE_NAME, sample_misfit
from .shift.report import write_shift
from .shift.run import SAE_NAME, shift
from .shift.task import BIASED_MODEL, CUE_LAYER, build_cue_task, build_sample_cue_task, task_concepts
from .site import site
from .stream import stream_batch
from .units import parse_unit, parse_units


def cmd_models(args: argparse.Namespace) -> None:
    width = max(len(name) for name, _, _ in list_sources())
    for name, summary, example in list_sources():
        print(f"{name.ljust(width)}  {summary}  (e.g. {example})")
    print("\nNamed models (pass the spec):")
    for named in MODEL_PRESETS:
        where = f"downloads {named.downloads} once" if named.downloads else "nothing to download"
        print(f"  {named.spec}\n      {named.title}: {named.about} ({where})")


def cmd_layers(args: argparse.Namespace) -> None:
    model = load_model(args.model)
    print(f"{model.name}: input {model.input_size[0]}x{model.input_size[1]}")
    width = max(len(name) for name in model.layers)
    print(f"{'layer'.ljust(width)}  {'output shape':<18} {'layout':<8} channels")
    for info in model.layers.values():
        shape = "x".join(map(str, info.shape)) if info.shape is not None else "(not a tensor)"
        note = f"  (runs {info.calls}x per pass)" if info.calls > 1 else ""
        channels = info.channels if info.channels is not None else "-"
        print(f"{info.name.ljust(width)}  {shape:<18} {info.layout:<8} {channels}{note}")
    print(f"default layer for views: {model.default_layer}")


def _render_config(args: argparse.Namespace) -> RenderConfig:
    """The preset, with every render flag the user gave on top of it."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RenderConfig)
             if getattr(args, f.name, None) is not None}
    if given.get("batch") == "all":  # the library's spelling of "every unit in one batch"
        given["batch"] = None
    return preset(args.preset).with_settings(**given)


def cmd_render(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = _engine(args)
    model = load_model(args.model, device=args.device)
    units = parse_units(args.units, model)
    config = _render_config(args)
    if config.samples == 1 and args.diversity is not None:
        warn_user("--diversity is the weight of the diversity term between samples and does nothing with one sample; "
              "for N samples per unit say --samples N (--diversity N used to mean N samples)")
    index = None
    if args.index == SAMPLE_NAME:  # the bundled 300 images, mined for these units once (seconds)
        index = mine_sample(model, units, progress=not args.quiet)
        misfit = sample_misfit(model.input_size, model.labels)
        if misfit:
            warn_user(misfit)
    elif args.index:  # checked before rendering, so a wrong index fails fast
        index = ExampleIndex(args.index)
        missing = [u.name for u in units if u.name not in index.units()]
        if missing:
            raise VizneuronError(f"{args.index} has no examples for {', '.join(missing[:5])} (mine them first)")
    writable_folder(args.out)  # before rendering, not after
    run = RenderCache(args.cache).render if args.cache else render
    result = run(model, units, config, engine=engine, progress=not args.quiet)
    settings = {"model": args.model, "units": args.units, "preset": args.preset, "from": args.seed_image,
                **config.normalised(model, len(units)).key(), "index": index.path if index is not None else None}
    manifest = write_gallery(result, args.out, settings, title=f"{model.name} — {args.units}", index=index)
    for entry in manifest["units"]:
        print(f"{entry['unit']}: final activation {', '.join(f'{a:.3f}' for a in entry['final_activation'])}")
    print(f"wrote {len(manifest['units'])} units to {args.out}/index.html")


def cmd_mine(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.layers and not args.units:
        raise VizneuronError("give --layers (all their channels) and/or --units")
    engine = _engine(args)
    model = load_model(args.model, device=args.device)
    what = ";".join(part for part in (args.layers, args.units) if part)
    args.index = args.index or str(index_path("indexes", model, args.data, what, args.k,
                                              stream_batch(model, args.batch)))
    index = mine(model, what, args.data, k=args.k, index=args.index, batch_size=args.batch, workers=args.workers,
                 shard=args.shard, reduce=args.reduce, autocast=args.autocast,
                 checkpoint_every=args.checkpoint_every, engine=engine, progress=not args.quiet)
    summary = index.summary()
    print(f"mined {summary['mined']} of {summary['images']} images for {summary['units']} units into {args.index} "
          f"({summary['skipped']} skipped, {summary['converted']} converted)")
    for path, action, reason in index.notes():
        print(f"  {action}: {path}: {reason}")


def _engine(args: argparse.Namespace) -> str | RayEngine:
    """--engine/--address/--actors/--gpus-per-actor as the engine a job runs on."""
    if args.engine == "local":
        if args.address or args.actors or args.gpus_per_actor or args.cpus_per_actor:
            raise VizneuronError("--address, --actors, --gpus-per-actor and --cpus-per-actor need --engine ray")
        return "local"
    engine = RayEngine(address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                       cpus_per_actor=args.cpus_per_actor or 1.0)
    engine.start()  # a cluster that cannot be reached is reported before anything is written
    return engine


def cmd_merge(args: argparse.Namespace) -> None:
    summary = merge(args.output, args.shards).summary()
    print(f"merged {len(args.shards)} shards into {args.output}: {summary['mined']} images, {summary['units']} units")


def cmd_top(args: argparse.Namespace) -> None:
    index = ExampleIndex(args.index)
    model = load_model(args.model)
    index.check_model(model)
    unit = parse_unit(args.unit, model).name
    examples = index.examples(unit, bottom=args.bottom, k=args.k)
    page = write_examples_page(index, unit, args.out, k=args.k, bottom=args.bottom)
    if args.json:
        print(json.dumps([{"path": e.path, "activation": e.value,
                           "position": list(e.position) if e.position else None} for e in examples], indent=1))
        print(f"gallery: {page}", file=sys.stderr)
        return
    for e in examples:
        where = f"@{e.position[0]},{e.position[1]}" if e.position else ""
        print(f"{e.rank + 1:>3}  {e.value:>10.4f}  {where:<8} {e.label or '':<12} {e.path}")
    commonest = index.top_label(unit)
    if commonest and not args.bottom:
        print(f"commonest label among the top examples: {commonest[0]} ({commonest[1]} of {commonest[2]})")
    print(f"gallery: {page}")


def cmd_sae_train(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    layers = list(dict.fromkeys(model.resolve_layer(layer.strip()) for layer in args.layer.split(",") if layer.strip()))
    out = Path(args.out)
    writable_folder(out.parent)  # before training, not after
    outs = {layer: out if len(layers) == 1 else out.with_name(f"{out.stem}.{layer}{out.suffix}") for layer in layers}
    checkpoint = out.with_name(out.name + ".ckpt")
    config = SAETrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SAETrainConfig)
                               if getattr(args, f.name, None) is not None})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NotConverged)
        saes = train_layer_saes(model, layers, args.data, config, pool=args.pool, max_images=args.max_images,
                                device=args.device, checkpoint=checkpoint, progress=not args.quiet)
    for warning in caught:
        warn_user(str(warning.message))
    for layer, sae in saes.items():
        if args.eval_data:
            sae.config.metrics = evaluate_sae(sae, model, layer, args.eval_data, max_images=args.eval_max_images,
                                              progress=not args.quiet)
        sae.save(outs[layer])
        layer_checkpoint(checkpoint, layer, len(layers)).unlink(missing_ok=True)
        run = sae.config.training
        print(f"saved {outs[layer]} ({layer}: {sae.config.d_in} -> {sae.config.d_sae}, {sae.config.kind}, "
              f"{run['steps']} steps of {run['batch_size']}, training FVU {run['final_fvu']}, "
              f"{'converged' if run['converged'] else 'NOT converged'})")
        _print_metrics(sae.config.metrics)


def cmd_sae_extract(args: argparse.Namespace) -> None:
    engine = _engine(args)
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    folder = extract_activations(model, args.layer, args.data, args.out, pool=args.pool, batch_size=args.batch,
                                 batches_per_file=args.batches_per_file, max_images=args.max_images,
                                 workers=args.workers, engine=engine, progress=not args.quiet)
    print(f"{folder.manifest['layer']}: {folder.rows:,} rows of width {folder.manifest['width']} in "
          f"{len(folder.manifest['files'])} files under {args.out} (train with `sae train ... --data {args.out}`)")


def cmd_sae_eval(args: argparse.Namespace) -> None:
    model = load_model(args.model, device=args.device)
    recorded = read_sae_config(args.sae).layer
    layer = args.layer or layer_for_hook(model.layers, recorded) or recorded
    if layer is None:
        raise VizneuronError(f"{args.sae} does not record its layer; pass --layer")
    sae = load_sae(args.sae, d_in=model.layer(layer).channels).to(model.device)
    sae.config.metrics = evaluate_sae(sae, model, layer, args.data, max_images=args.max_images,
                                      progress=not args.quiet)
    if sae.config.training.get("format") in FOREIGN:  # another library's folder: reported, not rewritten
        print(f"{args.sae} is a {sae.config.training['format']} SAE: metrics printed, not stored")
    else:
        sae.save(args.sae)
    _print_metrics(sae.config.metrics)


def cmd_sae_export(args: argparse.Namespace) -> None:
    sae = load_sae(args.sae)
    written = sae.save(args.out, format=args.format)
    print(f"wrote {written} ({args.format}: {sae.config.d_in} -> {sae.config.d_sae}, {sae.config.kind})")


def cmd_probe(args: argparse.Namespace) -> None:
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    concepts = build_concepts(model, data=args.data, groups=args.concepts, folders=parse_named_paths(args.concept),
                              per_concept=args.per_concept)
    report = probe(model, args.unit, concepts, index=ExampleIndex(args.index) if args.index else None,
                   sae=args.sae, renders=args.renders, render_steps=args.steps, upstream=args.upstream)
    page = write_report(report, args.out)
    print(f"{report.unit}: {report.summary}, score {report.score:.2f}")
    for warning in report.warnings:
        warn_user(warning)
    for row in report.evidence_table():
        print(f"  {row['concept']:<20} mean {row['mean']:>8.3f}  z {row['z']:+.2f}  top range {row['top range']:>4}"
              f"{'  drives' if row['drives'] else ''}")
    if report.renders:
        print(f"  renders: {report.renders['summary']}")
    for row in report.split_table():
        print(f"  {row['feature']}: {row['share']}, {row['verdict']} ({row['concepts']})")
    for concept, edges in report.paths.get("by_concept", {}).items():
        print(f"  path on {concept}: " + ", ".join(f"{e['unit']} {e['contribution']:+.3g}" for e in edges[:4]))
    print(f"report: {page}")


def cmd_atlas(args: argparse.Namespace) -> None:
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    layer = model.resolve_layer(args.layer)
    sae = load_sae(args.sae, d_in=model.layer(layer).channels).to(model.device) if args.sae else None
    concepts = build_concepts(model, data=args.data, groups=args.concepts, folders=parse_named_paths(args.concept),
                              per_concept=args.per_concept)
    atlas = layer_atlas(model, layer, concepts, sae=sae, sae_name=Path(args.sae).stem if args.sae else None,
                        folder=Path(args.out) / "cache", progress=not args.quiet)
    page = write_atlas(atlas, args.out)
    driven_by = [c.strip() for c in args.driven_by.split(",") if c.strip()] if args.driven_by else []
    chosen = atlas.select(driven_by, [args.verdict] if args.verdict else [])
    print(f"{atlas.layer}{f' / SAE {atlas.sae}' if atlas.sae else ''}: {len(atlas.entries)} units, "
          + ", ".join(f"{n} {v}" for v, n in atlas.counts().items()))
    for note in atlas.notes:
        warn_user(note)
    print(f"{len(chosen)} units" + (f" driven by {' and '.join(driven_by)}" if driven_by else "")
          + (f", {args.verdict}" if args.verdict else "") + f"; the first {min(args.show, len(chosen))}:")
    for row in atlas.rows(chosen[: args.show]):
        print(f"  {row['unit']:<16} {row['verdict']:<13} {row['score']:.2f}  {row['concepts']}")
    print(f"atlas: {page}")


def cmd_circuit(args: argparse.Namespace) -> None:
    pictures = RenderConfig(steps=args.steps, samples=1) if args.steps else None  # checked before any work
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    saes = {name: load_sae(path) for name, path in parse_named_paths(args.sae).items()}
    index = ExampleIndex(args.index) if args.index else None
    concepts = build_concepts(model, data=args.concept_data, groups=args.concepts,
                              folders=parse_named_paths(args.concept), per_concept=args.per_concept) \
        if args.concepts or args.concept else None
    found = circuit(model, args.unit, upstream=args.upstream, downstream=args.downstream, data=args.data or SAMPLE_DIR,
                    index=index, k=args.k, examples=args.examples, concepts=concepts, saes=saes)
    names = [found.unit] + [e.unit for e in found.edges]
    renders = dict(zip(names, render(model, names, pictures, saes=saes, progress=not args.quiet).images)) \
        if pictures else {}
    mined = set(index.units()) if index is not None else set()
    examples = {name: [index.crop(e) for e in index.examples(name, k=4)] for name in names if name in mined}
    kernels, why = (expanded_weights(model, args.unit, args.upstream, saes=saes) if args.upstream
                    else (None, "downstream edges are effects of ablating the unit: no weights view"))
    kernels = {e.unit: kernels[e.unit] for e in found.edges} if kernels else None
    page = write_circuit(found, args.out, renders, examples, kernels, why)
    side = "fed by" if found.side == "upstream" else "feeds"
    print(f"{found.unit} {side} {found.layer}: mean value {found.value:.4g}"
          + (f", baseline {found.baseline:.4g}, contributions add up within {found.completeness:.1%}"
             if found.baseline is not None else ""))
    for edge in found.edges:
        print(f"  {edge.unit:<20} {edge.contribution:+.4g}  ({edge.share:.0%})")
    for concept, edges in found.paths.items():
        print(f"  on {concept}: " + ", ".join(f"{e.unit} {e.contribution:+.3g}" for e in edges[:4]))
    print(f"  weights: {why}")
    print(f"circuit: {page}")


def cmd_site(args: argparse.Namespace) -> None:
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    data = args.data or SAMPLE_DIR
    concepts = build_concepts(model, data=data, groups=args.concepts, folders=parse_named_paths(args.concept),
                              per_concept=args.per_concept)
    renders = RenderConfig(samples=2, **({"steps": args.steps} if args.steps else {}))
    built = site(model, args.layers, data, out=args.out, concepts=concepts, saes=parse_named_paths(args.sae),
                 k=args.k, renders=renders, engine=_engine(args), progress=not args.quiet,
                 on_stage=None if args.quiet else lambda name: print(f"{name}...", flush=True))
    made = ", ".join(f"{n} {stage}" for stage, n in built.work.items()) or "nothing (every part was cached)"
    print(f"{len(built.layers)} layers, {built.units} units, {built.pages} pages; computed: {made}")
    print("seconds: " + ", ".join(f"{stage} {s:.1f}" for stage, s in built.seconds.items()))
    print(f"site: {built.home}")


def _units_list(text: str | None) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()] if text else []


def cmd_cue_task(args: argparse.Namespace) -> None:
    task = (build_cue_task(args.cifar, args.out, seed=args.seed, limit=args.limit) if args.cifar
            else build_sample_cue_task(args.out))
    for split in sorted(p for p in task.iterdir() if p.is_dir()):
        print(f"  {split.name:<15} {len(image_files(split)):>6,} images")
    sae = next(iter(bundled_saes(BIASED_MODEL, CUE_LAYER).values()))
    concepts = " ".join(f"--concept {c}={path}" for c, path in task_concepts(task).items())
    print(f"next: vizneuron shift {BIASED_MODEL} --layer {CUE_LAYER} --sae {sae} --data {task / 'train-biased'} "
          f"{concepts} --test {task / 'test-balanced'}")


def cmd_shift(args: argparse.Namespace) -> None:
    pictures = RenderConfig(steps=args.steps, samples=1) if args.steps else None  # checked before any work
    model = load_model(args.model, device=args.device)
    writable_folder(args.out)
    concepts = parse_named_paths(args.concept)
    result = shift(model, args.layer, args.sae, args.data, concepts, ignore=_units_list(args.ignore) or None,
                   top=args.top, accept=_units_list(args.accept) if args.accept is not None else None,
                   drop=_units_list(args.drop), add=_units_list(args.add), mode=args.mode, test=args.test,
                   cuefree=args.cuefree, retrain=not args.no_retrain, max_images=args.max_images)
    saes = {SAE_NAME: load_sae(args.sae)} if args.sae else {}
    names = [c.unit for c in result.candidates]
    renders = dict(zip(names, render(model, names, pictures, saes=saes, progress=not args.quiet).images)) \
        if pictures and names else {}
    page = write_shift(result, args.out, renders)
    print(f"{result.layer} ({result.units}): {len(result.candidates)} units ranked, {len(result.ablated)} ablated")
    for candidate in result.candidates:
        mark = "ablate" if candidate.chosen else ("proposed" if candidate.proposed else "")
        print(f"  {candidate.unit:<18} {candidate.attribution:+.4f}  {candidate.verdict:<13} "
              f"{', '.join(candidate.concepts) or '-':<16} {mark}")
    for note in result.notes:
        warn_user(note)
    for row in result.table():
        print(f"  {row['model']:<16} balanced {row['balanced']:>6}  worst group {row['worst group']:>6}  "
              f"cue-free {row['cue-free']:>6}  cue readable {row['cue readable']:>6}")
    print(f"shift: {page}")


def _print_metrics(metrics: dict) -> None:
    for key, value in metrics.items():
        print(f"  {key:<24} {value:.4f}" if isinstance(value, float) else f"  {key:<24} {value}")
