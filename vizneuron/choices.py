"""The names the jobs accept, in one torch-free module: the library checks values against these,
and the CLI builds its parser from them without loading torch, so `vizneuron --help` is instant."""

from __future__ import annotations

#: image parameterisations (`optim.param` builds each one)
PARAMETERISATIONS = ("fft", "pixel", "maco")
#: how a render's step size moves: held at `lr`, or warmed up over the first 1/8 of the steps and
#: then decayed to 0 along a cosine (which tolerates a larger `lr`)
SCHEDULES = ("constant", "cosine")
#: the number format of a render's forward and backward passes: bfloat16 autocast where the device
#: multiplies it in hardware ("auto"), or always one of the two
PRECISIONS = ("auto", "float32", "bfloat16")
#: a unit's probe verdicts, in the order reports list them
VERDICTS = ("monosemantic", "polysemantic", "unclear", "rare")
#: what an ablated unit is held at: zero, or its mean over the data
MODES = ("zero", "mean")
#: where a job runs: this process, or a Ray cluster
ENGINES = ("local", "ray")
