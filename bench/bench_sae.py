"""vizneuron's SAEs against overcomplete's (PyPI overcomplete 0.3.0) and a minimal TopK step.

    pip install overcomplete==0.3.0      # bench only; not a dependency of vizneuron
    python bench/bench_sae.py [toy layer3 mobilenet]    # each row into bench/results/sae.json
    python bench/bench_sae.py speed     # vizneuron's TopK step against the minimal one, interleaved
    python bench/bench_sae.py toy --methods jumprelu   # only those rows, the others kept

One process, and for each data set the same rows for every method: the same dictionary size,
the same k, the same number of training samples (`budget` epochs), and the same held-out rows on
which FVU, L0 and the dead fraction are computed by one function (`score`). Methods:

- vizneuron kinds (topk, batchtopk, jumprelu, matryoshka) with that budget, and TopK as a plain
  call (`train_sae(x, d_sae=, k=)`, defaults: stops on its own plateau);
- overcomplete's TopK, BatchTopK + AuxK loss and JumpReLU with the recipe of its README (Adam
  5e-4, batch 1024, MSE; BatchTopK's k is per batch, so k x 1024; JumpReLU on standardised data
  as its docstring advises, L0 penalty through its Heaviside pseudo-gradient, its weight picked
  from 0.01 / 0.1 / 1 by a short run each as the one whose L0 is nearest k);
- a minimal TopK SAE step written here (linear encoder, top-k, linear decoder, MSE, Adam): the
  speed limit for a TopK step on this machine, at vizneuron's batch size.

Speed is training samples per second (data already in memory). Timings on a shared 2-core
machine are noisy; the methods run one after another in one process.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from types import SimpleNamespace

import torch
from common import SHARED, coral, save_results

from vizneuron import load_model
from vizneuron.sae import evaluate_sae, layer_activations, mean_max_cosine, toy_superposition, train_sae
from vizneuron.sae.train import auto_batch_size
from vizneuron.sources import as_source

EVAL_IMAGES = 2000  # CIFAR-10 test images for the spliced accuracy (a seeded sample of all classes)
OVERCOMPLETE_BATCH = 1024
OVERCOMPLETE_LR = 5e-4


def data_sets(names: list[str]) -> dict[str, dict]:
    """name -> train rows, held-out rows, d_sae, k, budget (epochs), ground truth (toy only)."""
    found = {}
    if "toy" in names:  # the toy set: 512 features in 128 dims
        toy = toy_superposition(n=512, d=128, seed=0)
        found["toy (512 features in 128 d)"] = dict(train=toy.sample(100_000, torch.Generator().manual_seed(1)),
                                                    held=toy.sample(20_000, torch.Generator().manual_seed(2)),
                                                    d_sae=1024, k=10, budget=10, truth=toy.features)
    if "layer3" in names:  # the bundled model's layer3, 16 positions per image
        cifar = SHARED / "data" / "cifar10"
        model = load_model("default")
        train = _rows(model, "layer3", as_source(cifar / "train"), 5000)
        held = _rows(model, "layer3", as_source(cifar / "test"), 1000)
        found["bundled layer3 (CIFAR-10)"] = dict(train=train, held=held, d_sae=1024, k=16, budget=10, model=model,
                                                  layer="layer3", eval=cifar / "test")
    if "mobilenet" in names:  # MobileNet-v2's last block, 49 positions per image
        model = load_model(coral("mobilenet_v2_1.0_224_quant"))
        rows = _rows(model, "expanded_conv_16_project", as_source(SHARED / "data" / "imagenet-sample"), None)
        cut = 800 * 49  # 800 images to train on, 200 held out
        found["MobileNet-v2 expanded_conv_16_project"] = dict(train=rows[:cut], held=rows[cut:], d_sae=2560, k=32,
                                                                budget=10)
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


def run_vizneuron(data: dict, kind: str, plain: bool) -> dict:
    options = {} if plain else {"epochs": data["budget"]}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae = train_sae(data["train"], d_sae=data["d_sae"], k=data["k"], kind=kind, progress=False, **options)
    seconds = time.perf_counter() - start
    result = score(sae.reconstruct, sae.encode, data["held"])
    result.update(seconds=seconds, samples=sae.config.training["samples_seen"], decoder=sae.W_dec,
                  splice=(sae.reconstruct, sae.encode),
                  note="" if not caught else "warned: not converged")
    return result


def _overcomplete():
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # overcomplete 0.3.0 imports a function matplotlib 3.9 removed
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    import overcomplete.sae as oc

    return oc


def calibrated_penalty(data: dict) -> float:
    """overcomplete's JumpReLU has no setting for a target L0: try L0 weights on a fifth of the
    budget and keep the one whose L0 lands nearest k (so the comparison is at about equal L0)."""
    short = dict(data, budget=max(1, data["budget"] // 5))
    tried = {penalty: run_overcomplete(short, "jumprelu", penalty)["l0"] for penalty in (1e-2, 1e-1, 1.0)}
    best = min(tried, key=lambda penalty: abs(math.log(max(tried[penalty], 0.1) / data["k"])))
    print(f"  overcomplete JumpSAE L0 by penalty: {tried}; using {best}", flush=True)
    return best


def run_overcomplete(data: dict, kind: str, penalty: float | None = None) -> dict:
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

        penalty = calibrated_penalty(data) if penalty is None else penalty
        sae = oc.JumpSAE(d, nb_concepts=data["d_sae"])

        def criterion(x, x_hat, pre_codes, codes, dictionary):
            l0 = heaviside(torch.relu(pre_codes), sae.thresholds.exp(), sae.kernel_fn, sae.bandwidth)
            return _mse(x, x_hat, pre_codes, codes, dictionary) + penalty * l0.sum(1).mean()
    loader = DataLoader(TensorDataset((train - mean) / std), batch_size=OVERCOMPLETE_BATCH, shuffle=True)
    optimiser = torch.optim.Adam(sae.parameters(), lr=OVERCOMPLETE_LR)
    start = time.perf_counter()
    with _silenced():
        oc.train_sae(sae, loader, criterion, optimiser, nb_epochs=data["budget"], monitoring=0)
    seconds = time.perf_counter() - start
    sae.eval()

    def codes(x):
        return sae.encode((x - mean) / std)[1]

    def reconstruct(x):
        return sae.decode(codes(x)) * std + mean

    result = score(reconstruct, codes, data["held"])
    result.update(seconds=seconds, samples=data["budget"] * len(train), decoder=sae.get_dictionary().detach(),
                  note=f"L0 weight {penalty}" if kind == "jumprelu" else "",
                  splice=(reconstruct, codes))
    return result


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


def run_minimal_topk(data: dict) -> dict:
    """The fewest operations a TopK SAE step needs: the speed limit, at vizneuron's batch size."""
    torch.manual_seed(0)
    train, k = data["train"], data["k"]
    d, d_sae = train.shape[1], data["d_sae"]
    w_dec = torch.nn.Parameter(torch.randn(d_sae, d) / math.sqrt(d))
    w_enc = torch.nn.Parameter(w_dec.detach().T.clone())
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(d_sae)), torch.nn.Parameter(train.mean(0).clone())
    optimiser = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=1e-3)
    batch = auto_batch_size(len(train))

    def codes(x):
        pre = (x - b_dec) @ w_enc + b_enc
        values, indices = pre.topk(k, dim=1)
        return torch.zeros_like(pre).scatter(1, indices, torch.relu(values))

    start = time.perf_counter()
    for _ in range(data["budget"]):
        for x in train[torch.randperm(len(train))].split(batch):
            loss = (x - (codes(x) @ w_dec + b_dec)).pow(2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        result = score(lambda x: codes(x) @ w_dec + b_dec, codes, data["held"])
    result.update(seconds=seconds, samples=data["budget"] * len(train), decoder=w_dec.detach(), note="",
                  splice=(lambda x: codes(x) @ w_dec + b_dec, codes))
    return result


METHODS = [
    ("vizneuron topk", lambda data: run_vizneuron(data, "topk", plain=False)),
    ("vizneuron topk, plain call", lambda data: run_vizneuron(data, "topk", plain=True)),
    ("vizneuron batchtopk", lambda data: run_vizneuron(data, "batchtopk", plain=False)),
    ("vizneuron jumprelu", lambda data: run_vizneuron(data, "jumprelu", plain=False)),
    ("vizneuron jumprelu, plain call", lambda data: run_vizneuron(data, "jumprelu", plain=True)),
    ("vizneuron matryoshka", lambda data: run_vizneuron(data, "matryoshka", plain=False)),
    ("overcomplete TopKSAE", lambda data: run_overcomplete(data, "topk")),
    ("overcomplete BatchTopKSAE + AuxK", lambda data: run_overcomplete(data, "batchtopk")),
    ("overcomplete JumpSAE", lambda data: run_overcomplete(data, "jumprelu")),
    ("minimal TopK step (speed limit)", run_minimal_topk),
]


def speed(rounds: int = 3) -> None:
    """vizneuron's TopK training step against the minimal one, interleaved (A B A B ...) on the
    same rows and batch size, so machine noise hits both alike; the median ratio is the result."""
    toy = toy_superposition(n=512, d=128, seed=0)
    data = dict(train=toy.sample(100_000, torch.Generator().manual_seed(1)),
                held=toy.sample(4_000, torch.Generator().manual_seed(2)), d_sae=1024, k=16, budget=2)
    ratios = []
    for round_ in range(rounds):
        ours = run_vizneuron(data, "topk", plain=False)
        limit = run_minimal_topk(data)
        ratios.append(limit["samples"] / limit["seconds"] / (ours["samples"] / ours["seconds"]))
        print(f"round {round_ + 1}: vizneuron {ours['samples'] / ours['seconds']:,.0f} samples/s, minimal step "
              f"{limit['samples'] / limit['seconds']:,.0f}: the minimal step is {ratios[-1]:.2f}x faster", flush=True)
    print(f"median: {sorted(ratios)[len(ratios) // 2]:.2f}x (goal: at most 1.3x)")
    save_results("sae_speed", {"minimal_over_vizneuron": ratios, "rows": 100_000, "d_sae": 1024, "k": 16},
                 {"rounds": rounds})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["toy", "layer3", "mobilenet"])
    parser.add_argument("--methods", default="", help="run only the methods whose names contain this text "
                        "(the other rows of the results file stay as they were)")
    args = parser.parse_args()
    if "speed" in args.sets:
        return speed()
    for name, data in data_sets(args.sets).items():
        print(f"\n{name}: {len(data['train']):,} train rows, {len(data['held']):,} held out, "
              f"d_sae {data['d_sae']}, k {data['k']}, {data['budget']} epochs", flush=True)
        for method, run in METHODS:
            if args.methods not in method:
                continue
            result = run(data)
            if "truth" in data:
                result["mmcs"] = mean_max_cosine(data["truth"], result["decoder"])
            del result["decoder"]
            reconstruct, codes = result.pop("splice")
            if "model" in data:
                result["accuracy"], data["clean"] = spliced_accuracy(data, reconstruct, codes)
            result["samples_per_s"] = result["samples"] / result["seconds"]
            if "clean" in data:
                result["clean_accuracy"] = data["clean"]
            print(method, {k: v for k, v in result.items() if k != "note"}, flush=True)
            save_results("sae", {"set": name, "method": method, "train_rows": len(data["train"]),
                                 "held_rows": len(data["held"]), "d_sae": data["d_sae"], "k": data["k"],
                                 "epochs": data["budget"], **result}, args, part=f"{name} / {method}")

if __name__ == "__main__":
    main()
