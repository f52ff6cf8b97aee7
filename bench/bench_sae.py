"""vizneuron's SAEs against overcomplete's (PyPI overcomplete 0.3.0) and a minimal TopK step.

    pip install overcomplete==0.3.0      # bench only; not a dependency of vizneuron
    python bench/bench_sae.py [toy layer3 mobilenet]    # each row into bench/results/sae.json
    python bench/bench_sae.py speed [toy layer3 mobilenet]   # TopK step against the minimal one, interleaved
    python bench/bench_sae.py toy --methods jumprelu   # only those rows, the others kept

One process, and for each data set the same rows for every method: the same dictionary size,
the same k, the same number of training samples (`budget` epochs). Every method with a learning
rate of its own is trained at each of LRS; the one kept is chosen on validation rows by one rule
fixed in advance (`choose`: the lowest FVU among runs whose L0 is at most 1.5 k, else the L0
nearest k), and only that run is scored once on the test rows: FVU, L0 and the dead fraction by
one function (`score`), MMCS on the toy set, spliced accuracy on the bundled model. Methods:

- vizneuron kinds (topk, batchtopk, jumprelu, matryoshka) with that budget, and TopK as a plain
  call (`train_sae(x, d_sae=, k=)`, defaults: stops on its own plateau);
- overcomplete's TopK, BatchTopK + AuxK loss and JumpReLU with the recipe of its README (Adam,
  batch 1024, MSE; BatchTopK's k is per batch, so k x 1024; JumpReLU on standardised data as its
  docstring advises, L0 penalty through its Heaviside pseudo-gradient, its weight picked at each
  learning rate from 0.01 / 0.1 / 1 / 10 by a short run each as the one whose L0 is nearest k);
- a minimal TopK SAE step written here (linear encoder, top-k, dense linear decoder, MSE, Adam),
  at vizneuron's batch size: the fewest operations of a TopK step, the reference for its speed.

The "plain call" rows are vizneuron's defaults, learning rate included: what a user gets.
Training times in the sweep come from runs that share the machine, so the tables leave them out;
`speed` times vizneuron's TopK step against the minimal one interleaved, on each data set.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from types import SimpleNamespace

import torch
from common import SHARED, MinimalTopK, coral, drop_stale_parts, save_results

from vizneuron import load_model
from vizneuron.sae import evaluate_sae, layer_activations, mean_max_cosine, toy_superposition, train_sae
from vizneuron.sae.train import auto_batch_size
from vizneuron.sources import as_source

EVAL_IMAGES = 2000  # CIFAR-10 test images for the spliced accuracy (a seeded sample of all classes)
OVERCOMPLETE_BATCH = 1024
LRS = (3e-4, 1e-3, 3e-3, 1e-2)  # every swept method is trained at each


def data_sets(names: list[str]) -> dict[str, dict]:
    """name -> train rows, validation rows (to choose the learning rate), test rows, d_sae, k,
    budget (epochs), ground truth (toy only)."""
    found = {}
    if "toy" in names:  # the toy set: 512 features in 128 dims
        toy = toy_superposition(n=512, d=128, seed=0)
        found["toy (512 features in 128 d)"] = dict(train=toy.sample(100_000, torch.Generator().manual_seed(1)),
                                                    val=toy.sample(20_000, torch.Generator().manual_seed(3)),
                                                    held=toy.sample(20_000, torch.Generator().manual_seed(2)),
                                                    d_sae=1024, k=10, budget=10, truth=toy.features)
    if "layer3" in names:  # the bundled model's layer3, 16 positions per image
        cifar = SHARED / "data" / "cifar10"
        model = load_model("default")
        pool = _rows(model, "layer3", as_source(cifar / "train"), 6000)  # 5,000 images to train on, 1,000 to choose
        cut = len(pool) // 6 * 5
        held = _rows(model, "layer3", as_source(cifar / "test"), 1000)
        found["bundled layer3 (CIFAR-10)"] = dict(train=pool[:cut], val=pool[cut:], held=held, d_sae=1024, k=16,
                                                  budget=10, model=model,
                                                  layer="layer3", eval=cifar / "test")
    if "mobilenet" in names:  # MobileNet-v2's last block, 49 positions per image
        model = load_model(coral("mobilenet_v2_1.0_224_quant"))
        rows = _rows(model, "expanded_conv_16_project", as_source(SHARED / "data" / "imagenet-sample"), None)
        cut, test = 800 * 49, 900 * 49  # 800 images to train on, 100 to choose, 100 to test
        found["MobileNet-v2 expanded_conv_16_project"] = dict(train=rows[:cut], val=rows[cut:test], held=rows[test:],
                                                                d_sae=2560, k=32, budget=10)
    return found


def _rows(model, layer: str, source, images: int | None) -> torch.Tensor:
    return torch.cat(list(layer_activations(model, layer, source, max_images=images, batch_size=128)))


class Spliced:
    """Any method's reconstruction in the shape `evaluate_sae` splices into the model."""

    def __init__(self, reconstruct, codes, d_in: int, d_sae: int) -> None:
        self.reconstruct, self.codes = reconstruct, codes
        self.config = SimpleNamespace(d_in=d_in, d_sae=d_sae, pool=False)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reconstruct(x), self.codes(x)


def spliced_accuracy(data: dict, reconstruct, codes) -> float:
    """The model's accuracy on `eval_images` test images with the layer replaced by the reconstruction."""
    with torch.no_grad():
        metrics = evaluate_sae(Spliced(reconstruct, codes, data["train"].shape[1], data["d_sae"]), data["model"],
                               data["layer"], data["eval"], max_images=EVAL_IMAGES, progress=False)
    return metrics["accuracy_sae"], metrics["accuracy_clean"]


@torch.no_grad()
def score(reconstruct, codes, held: torch.Tensor) -> dict[str, float]:
    """FVU, mean L0 and the fraction of latents that never fire, on held-out rows, for any method."""
    err, active, fired = 0.0, 0.0, None
    for chunk in held.split(4096):
        z = codes(chunk)
        err += (chunk - reconstruct(chunk)).double().pow(2).sum().item()
        active += (z > 0).sum().item()
        fired = (z > 0).any(0) if fired is None else fired | (z > 0).any(0)
    variance = (held - held.mean(0)).double().pow(2).sum().item()
    return {"fvu": err / variance, "l0": active / len(held), "dead": 1 - fired.float().mean().item()}


class Trained(SimpleNamespace):
    """One method's trained SAE as the bench scores it: reconstruct(x), codes(x), the decoder rows,
    training seconds and samples, and a note."""


def run_vizneuron(data: dict, kind: str, lr: float | None) -> Trained:
    """lr None: a plain call, every default (learning rate and stopping rule included)."""
    options = {} if lr is None else {"epochs": data["budget"], "lr": lr}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae = train_sae(data["train"], d_sae=data["d_sae"], k=data["k"], kind=kind, progress=False, **options)
    return Trained(reconstruct=sae.reconstruct, codes=sae.encode, decoder=sae.W_dec,
                   seconds=time.perf_counter() - start, samples=sae.config.training["samples_seen"],
                   note="" if not caught else "warned: not converged")


def _overcomplete():
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # overcomplete 0.3.0 imports a function matplotlib 3.9 removed
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    import overcomplete.sae as oc

    return oc


def calibrated_penalty(data: dict, lr: float) -> float:
    """overcomplete's JumpReLU has no setting for a target L0: try L0 weights on a fifth of the
    budget and keep the one whose L0 (on the validation rows) lands nearest k."""
    short = dict(data, budget=max(1, data["budget"] // 5))
    tried = {}
    for penalty in (1e-2, 1e-1, 1.0, 10.0):
        trained = run_overcomplete(short, "jumprelu", lr, penalty)
        tried[penalty] = score(trained.reconstruct, trained.codes, data["val"])["l0"]
    best = min(tried, key=lambda penalty: abs(math.log(max(tried[penalty], 0.1) / data["k"])))
    print(f"  overcomplete JumpSAE at lr {lr}: L0 by penalty {tried}; using {best}", flush=True)
    return best


def run_overcomplete(data: dict, kind: str, lr: float, penalty: float | None = None) -> Trained:
    oc = _overcomplete()
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    d, train = data["train"].shape[1], data["train"]
    mean, std = torch.zeros(d), torch.ones(d)
    if kind == "jumprelu":  # its docstring: standardise the inputs first
        mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    if kind == "topk":
        sae = oc.TopKSAE(d, nb_concepts=data["d_sae"], top_k=data["k"])
        criterion = _mse
    elif kind == "batchtopk":
        sae = oc.BatchTopKSAE(d, nb_concepts=data["d_sae"], top_k=data["k"] * OVERCOMPLETE_BATCH)
        from overcomplete.sae.losses import top_k_auxiliary_loss as criterion
    else:
        from overcomplete.sae.jump_sae import heaviside

        penalty = calibrated_penalty(data, lr) if penalty is None else penalty
        sae = oc.JumpSAE(d, nb_concepts=data["d_sae"])

        def criterion(x, x_hat, pre_codes, codes, dictionary):
            l0 = heaviside(torch.relu(pre_codes), sae.thresholds.exp(), sae.kernel_fn, sae.bandwidth)
            return _mse(x, x_hat, pre_codes, codes, dictionary) + penalty * l0.sum(1).mean()
    loader = DataLoader(TensorDataset((train - mean) / std), batch_size=OVERCOMPLETE_BATCH, shuffle=True)
    optimiser = torch.optim.Adam(sae.parameters(), lr=lr)
    start = time.perf_counter()
    with _silenced():
        oc.train_sae(sae, loader, criterion, optimiser, nb_epochs=data["budget"], monitoring=0)
    seconds = time.perf_counter() - start
    sae.eval()

    def codes(x):
        return sae.encode((x - mean) / std)[1]

    def reconstruct(x):
        return sae.decode(codes(x)) * std + mean

    return Trained(reconstruct=reconstruct, codes=codes, decoder=sae.get_dictionary().detach(), seconds=seconds,
                   samples=data["budget"] * len(train), note=f"L0 weight {penalty}" if kind == "jumprelu" else "")


def _mse(x, x_hat, pre_codes, codes, dictionary):
    return (x - x_hat).square().mean()


class _silenced:
    """overcomplete's train_sae prints a line per epoch."""

    def __enter__(self):
        import contextlib
        import io

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)


def run_minimal_topk(data: dict, lr: float) -> Trained:
    """The fewest operations of a TopK SAE step with a dense decoder, at vizneuron's batch size."""
    train = data["train"]
    minimal = MinimalTopK(train.shape[1], data["d_sae"], data["k"], train.mean(0), lr)
    batch = auto_batch_size(len(train))
    start = time.perf_counter()
    for _ in range(data["budget"]):
        for x in train[torch.randperm(len(train))].split(batch):
            minimal.step(x)
    return Trained(reconstruct=minimal.reconstruct, codes=minimal.codes, decoder=minimal.w_dec.detach(),
                   seconds=time.perf_counter() - start, samples=data["budget"] * len(train), note="")


METHODS = {  # name -> train(data, lr); lr None for the plain calls, which keep every default
    "vizneuron topk": lambda data, lr: run_vizneuron(data, "topk", lr),
    "vizneuron topk, plain call": lambda data, lr: run_vizneuron(data, "topk", None),
    "vizneuron batchtopk": lambda data, lr: run_vizneuron(data, "batchtopk", lr),
    "vizneuron jumprelu": lambda data, lr: run_vizneuron(data, "jumprelu", lr),
    "vizneuron jumprelu, plain call": lambda data, lr: run_vizneuron(data, "jumprelu", None),
    "vizneuron matryoshka": lambda data, lr: run_vizneuron(data, "matryoshka", lr),
    "overcomplete TopKSAE": lambda data, lr: run_overcomplete(data, "topk", lr),
    "overcomplete BatchTopKSAE + AuxK": lambda data, lr: run_overcomplete(data, "batchtopk", lr),
    "overcomplete JumpSAE": lambda data, lr: run_overcomplete(data, "jumprelu", lr),
    "minimal TopK step (dense decoder)": run_minimal_topk,
}


def choose(sweep: dict[float, dict], k: int) -> float:
    """The rule fixed before any run: the lowest validation FVU among learning rates whose L0 is at
    most 1.5 k (a method cannot buy FVU with density), else the L0 nearest k."""
    sparse = [lr for lr, found in sweep.items() if found["l0"] <= 1.5 * k]
    if sparse:
        return min(sparse, key=lambda lr: sweep[lr]["fvu"])
    return min(sweep, key=lambda lr: abs(math.log(max(sweep[lr]["l0"], 0.1) / k)))


def sweep_method(data: dict, method: str) -> tuple[Trained, float | None, dict]:
    """Train at every learning rate (once for a plain call), keep the one `choose` picks."""
    plain = "plain call" in method
    sweep, kept = {}, {}
    for lr in [None] if plain else LRS:
        trained = METHODS[method](data, lr)
        sweep[lr] = score(trained.reconstruct, trained.codes, data["val"])
        print(f"  {method} at lr {lr}: validation {sweep[lr]}", flush=True)
        kept[lr] = trained
        best = None if plain else choose(sweep, data["k"])
        kept = {best: kept[best]}  # only the best so far stays in memory
    return kept[best], best, {str(lr): found for lr, found in sweep.items()}


def speed(names: list[str], rounds: int = 3) -> None:
    """vizneuron's TopK training step against the minimal one, interleaved (A B A B ...) on each
    data set's rows at one epoch, same learning rate and batch size, so machine noise hits both
    alike; the median ratio is the result."""
    for name, data in data_sets(names).items():
        data = dict(data, budget=1)
        ratios = []
        for round_ in range(rounds):
            ours = run_vizneuron(data, "topk", 1e-3)
            limit = run_minimal_topk(data, 1e-3)
            ratios.append(limit.samples / limit.seconds / (ours.samples / ours.seconds))
            print(f"{name} round {round_ + 1}: vizneuron {ours.samples / ours.seconds:,.0f} samples/s, minimal step "
                  f"{limit.samples / limit.seconds:,.0f}: the minimal step is {ratios[-1]:.2f}x faster", flush=True)
        save_results("sae_speed", {"set": name, "minimal_over_vizneuron": ratios, "rows": len(data["train"]),
                                   "d_sae": data["d_sae"], "k": data["k"]}, {"rounds": rounds}, part=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["toy", "layer3", "mobilenet"])
    parser.add_argument("--methods", default="", help="run only the methods whose names contain one of these "
                        "comma-separated texts (the other rows of the results file stay as they were)")
    args = parser.parse_args()
    if "speed" in args.sets:
        return speed([name for name in args.sets if name != "speed"] or ["toy", "layer3", "mobilenet"])
    for name, data in data_sets(args.sets).items():
        drop_stale_parts("sae", {f"{name} / {method}" for method in METHODS}, prefix=f"{name} / ")
        print(f"\n{name}: {len(data['train']):,} train rows, {len(data['val']):,} validation, "
              f"{len(data['held']):,} test, d_sae {data['d_sae']}, k {data['k']}, {data['budget']} epochs", flush=True)
        for method in METHODS:
            if not any(text in method for text in args.methods.split(",")):
                continue
            trained, lr, sweep = sweep_method(data, method)
            result = score(trained.reconstruct, trained.codes, data["held"])  # the test rows, once
            if "truth" in data:
                result["mmcs"] = mean_max_cosine(data["truth"], trained.decoder)
            if "model" in data:
                result["accuracy"], result["clean_accuracy"] = spliced_accuracy(data, trained.reconstruct,
                                                                                trained.codes)
            print(method, lr, result, flush=True)
            save_results("sae", {"set": name, "method": method, "lr": lr, "validation": sweep,
                                 "train_rows": len(data["train"]), "val_rows": len(data["val"]),
                                 "test_rows": len(data["held"]), "d_sae": data["d_sae"], "k": data["k"],
                                 "epochs": data["budget"], "samples": trained.samples, "note": trained.note,
                                 **result}, args, part=f"{name} / {method}")


if __name__ == "__main__":
    main()
