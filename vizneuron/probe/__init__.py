"""The polysemanticity probe: does a unit fire on unrelated concepts? A score, a verdict, evidence."""

from .concepts import (
                       IMAGENET_GROUPS,
                       build_concepts,
                       concepts_key,
                       default_groups,
                       imagenet_concepts,
                       label_groups,
                       parse_label_groups,
                       parse_named_paths,
)
from .run import ConceptEvidence, ProbeReport, penultimate_layer, probe, probe_units, verdict_of

__all__ = ["IMAGENET_GROUPS", "ConceptEvidence", "ProbeReport", "build_concepts", "concepts_key", "default_groups", "imagenet_concepts", "label_groups",
           "parse_label_groups", "parse_named_paths", "penultimate_layer", "probe", "probe_units", "verdict_of"]
