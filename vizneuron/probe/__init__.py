"""The polysemanticity probe: does a unit fire on unrelated concepts? A score, a verdict, evidence;
and the atlas: every unit of a layer probed with the same concepts."""

from .atlas import MIN_FIRING, Atlas, atlas_key, cached_atlas, layer_atlas, most_polysemantic, sample_atlas
from .concepts import (
    IMAGENET_GROUPS,
    as_concepts,
    build_concepts,
    concepts_key,
    default_groups,
    imagenet_concepts,
    label_groups,
    parse_label_groups,
    parse_named_paths,
)
from .run import ConceptEvidence, ProbeReport, penultimate_layer, probe, probe_units, verdict_of

__all__ = ["IMAGENET_GROUPS", "MIN_FIRING", "Atlas", "ConceptEvidence", "ProbeReport", "as_concepts", "atlas_key",
           "build_concepts", "cached_atlas", "concepts_key", "default_groups", "imagenet_concepts", "label_groups",
           "layer_atlas", "most_polysemantic", "parse_label_groups", "parse_named_paths", "penultimate_layer", "probe",
           "probe_units", "sample_atlas", "verdict_of"]
