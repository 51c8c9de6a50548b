"""Out-of-distribution detection on scikit-learn's digits with an NCE-fitted density.

Fit on digits 0–4 (a PCA of the pixels, fitted on the training images), then score held-out
digits 0–4 against three out-of-distribution sets: digits 5–9, uniform-noise images (every pixel
uniform on its range) and constant images (every pixel the same value). The OOD score of each
candidate is "larger means more anomalous":

(a) the model's own normalized log-likelihood, −log p_θ(x) (``NCEDensity.score_samples``);
(b) a Gaussian likelihood, −log N(x; mean, covariance of the training data);
(c) the NCE log-ratio, −(log p_θ(x) − log q(x)) (``NCEDensity.log_ratio``), with the noise q a
    Gaussian fitted to the data (then (c) = (a) − (b)) and, as a second line, a 5-component
    Gaussian mixture.

The model is ``MLPEnergy`` (hidden (64, 64)) fitted by ``NCEDensity`` with ν = 10, Adam and early
stopping on a held-out NCE objective. AUROC (1 = perfect separation, 0.5 = chance) is averaged
over seeds, each a new train/test split and a new fit.

    python benchmarks/ood.py              # 5 seeds; prints and updates BENCHMARKS.md
    python benchmarks/ood.py --seeds 1    # a quick look, prints only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.density import NCEDensity  # noqa: E402
from nce.noise import Gaussian  # noqa: E402

import _report  # noqa: E402

COMPONENTS = 20
N_SYNTHETIC = 500
PNG = Path(__file__).resolve().parent / "results" / "ood_scores.png"
SCORES = (
    "(a) NCE model log-likelihood",
    "(b) Gaussian log-likelihood",
    "(c) NCE log-ratio, Gaussian noise",
    "(c) NCE log-ratio, mixture noise",
)


def datasets(seed):
    digits = load_digits()
    images, labels = digits.data / 16.0, digits.target
    inside = labels < 5
    train, test = train_test_split(
        images[inside], test_size=0.3, random_state=seed, stratify=labels[inside]
    )
    rng = np.random.default_rng(seed)
    ood = {
        "digits 5–9": images[~inside],
        "uniform-noise images": rng.uniform(0, 1, (N_SYNTHETIC, 64)),
        "constant images": np.repeat(rng.uniform(0, 1, (N_SYNTHETIC, 1)), 64, axis=1),
    }
    pca = PCA(COMPONENTS, random_state=seed).fit(train)
    return pca.transform(train), pca.transform(test), {k: pca.transform(v) for k, v in ood.items()}


def anomaly_scores(train, seed):
    """Functions X -> anomaly score (larger = more anomalous), one per candidate."""
    fits = {}
    for noise in ("gaussian", "mixture"):
        fits[noise] = NCEDensity(
            "mlp",
            noise,
            10,
            lr=3e-3,
            epochs=200,
            progress=False,
            random_state=seed,
        ).fit(train)
    gaussian = Gaussian.fit(train)
    return {
        SCORES[0]: lambda X: -np.asarray(fits["gaussian"].score_samples(X)),
        SCORES[1]: lambda X: -gaussian.log_prob(torch.as_tensor(X)).numpy(),
        SCORES[2]: lambda X: -np.asarray(fits["gaussian"].log_ratio(X)),
        SCORES[3]: lambda X: -np.asarray(fits["mixture"].log_ratio(X)),
    }, fits


def auroc(inside, outside):
    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    scores = np.r_[inside, outside]
    scores = np.nan_to_num(scores, nan=np.inf, posinf=1e300, neginf=-1e300)
    return roc_auc_score(labels, scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}  # (score, ood set) -> list of AUROC
    extra = {"log_z_gap": [], "fit_time": [], "epochs": [], "test_ll": []}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        train, test, ood = datasets(seed)
        scorers, fits = anomaly_scores(train, seed)
        for name, scorer in scorers.items():
            inside = scorer(test)
            for ood_name, X in ood.items():
                results.setdefault((name, ood_name), []).append(auroc(inside, scorer(X)))
        est = fits["gaussian"]
        check = est.partition_function(n_samples=100_000, random_state=seed)
        extra["log_z_gap"].append(abs(float(check.difference)))
        extra["fit_time"].append(est.fit_time_)
        extra["epochs"].append(est.n_iter_)
        extra["test_ll"].append(
            (
                float(est.score(test)),
                float(Gaussian.fit(train).log_prob(torch.as_tensor(test)).mean()),
            )
        )
        print(f"seed {seed + 1}/{args.seeds}: {time.perf_counter() - t0:.0f} s")
    ood_names = list(dict.fromkeys(k[1] for k in results))
    lines = [
        "### Out-of-distribution detection on digits: likelihood vs NCE log-ratio\n",
        f"Command: `python benchmarks/ood.py` — commit `{_report.commit()}` — {_report.machine()}. "
        f"Train on digits 0–4 (70 %, {COMPONENTS}-component PCA of the pixels fitted on it), "
        f"score the held-out 30 % of 0–4 against each OOD set ({N_SYNTHETIC} synthetic images "
        f"each); `MLPEnergy` fitted by `NCEDensity` (ν = 10, Adam, early stopping). AUROC, "
        f"mean ± sd over {args.seeds} seeds (split and fit).\n",
        "| score (larger = more anomalous) | " + " | ".join(ood_names) + " |",
        "|---|" + "---:|" * len(ood_names),
    ]
    for name in SCORES:
        cells = []
        for ood_name in ood_names:
            values = results[(name, ood_name)]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.3f} ± {sd:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    nce_ll = statistics.fmean(v[0] for v in extra["test_ll"])
    gauss_ll = statistics.fmean(v[1] for v in extra["test_ll"])
    lines.append(
        f"\nHeld-out 0–4 mean log-likelihood: NCE model {nce_ll:.2f}, Gaussian {gauss_ll:.2f} "
        f"(nats, {COMPONENTS}-dim PCA space). |learned log Z − importance-sampled log Z|: "
        f"mean {statistics.fmean(extra['log_z_gap']):.3f}. Fit: median "
        f"{statistics.median(extra['fit_time']):.1f} s, "
        f"{statistics.median(extra['epochs']):.0f} epochs."
    )
    body = "\n".join(lines)
    print(body)
    if args.seeds >= 5:
        _report.write_section("ood", body)
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
