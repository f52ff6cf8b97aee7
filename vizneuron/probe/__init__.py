"""The polysemanticity probe: does a unit fire on unrelated concepts? A score, a verdict, evidence."""

from .concepts import IMAGENET_GROUPS, imagenet_concepts, label_groups, parse_label_groups
from .run import ConceptEvidence, ProbeReport, penultimate_layer, probe, probe_units, verdict_of

__all__ = ["IMAGENET_GROUPS", "ConceptEvidence", "ProbeReport", "imagenet_concepts", "label_groups", "parse_label_groups",
           "penultimate_layer", "probe", "probe_units", "verdict_of"]
