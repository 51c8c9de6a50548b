"""Out-of-distribution detection on scikit-learn's digits: NCE likelihood, NCE log-ratio and
the telescoped (TRE) log-ratio against the scores a practitioner would otherwise use.

Fit on digits 0–4 (a PCA of the pixels, fitted on the training images), then score held-out
digits 0–4 against three out-of-distribution sets: digits 5–9 (the held-out classes),
uniform-noise images (every pixel uniform on its range) and constant images (every pixel the same
value). Every score is "larger means more anomalous":

* ``NCEDensity()`` with its defaults (an MLP energy on a Gaussian base, Gaussian noise fitted to
  the data, ν = 10): its normalized log-likelihood −log p_θ(x) and its log-ratio
  −(log p_θ(x) − log q(x));
* the same with ``waymarks=4`` (telescoping ratio estimation across four bridges from the data to
  the noise): likelihood and log-ratio;
* the log-ratio with a tight noise, a 5-component Gaussian mixture fitted to the data
  (``noise="mixture"``), single ratio and ``waymarks=4``;
* a Gaussian log-likelihood, scikit-learn's ``GaussianMixture`` log-likelihood (full
  covariances, 1–8 components chosen by BIC on the training rows) and ``IsolationForest``
  (−``score_samples``).

AUROC (1 = perfect separation, 0.5 = chance) is averaged over seeds, each a new train/test split
and new fits.

    python benchmarks/ood.py              # 3 seeds; prints and updates BENCHMARKS.md
    python benchmarks/ood.py --seeds 1    # a quick look, prints only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nce.density import NCEDensity  # noqa: E402
from nce.noise import Gaussian  # noqa: E402

import _report  # noqa: E402

COMPONENTS = 20
N_SYNTHETIC = 500
WAYMARKS = 4
SCORES = (
    "NCEDensity() log-likelihood",
    "NCEDensity() log-ratio (Gaussian noise)",
    f"NCEDensity(waymarks={WAYMARKS}) log-likelihood",
    f"NCEDensity(waymarks={WAYMARKS}) log-ratio (Gaussian noise)",
    "log-ratio, mixture noise",
    f"log-ratio, mixture noise, waymarks={WAYMARKS}",
    "Gaussian log-likelihood",
    "GaussianMixture (BIC) log-likelihood",
    "IsolationForest",
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
    """Functions X -> anomaly score (larger = more anomalous), one per candidate, and the fits."""
    fits = {}
    for name, options in {
        "default": {},
        "tre": {"waymarks": WAYMARKS},
        "mixture": {"noise": "mixture"},
        "mixture tre": {"noise": "mixture", "waymarks": WAYMARKS},
    }.items():
        fits[name] = NCEDensity(progress=False, random_state=seed, **options).fit(train)
    gaussian = Gaussian.fit(train)
    mixtures = [
        GaussianMixture(k, covariance_type="full", random_state=seed).fit(train)
        for k in range(1, 9)
    ]
    mixture = min(mixtures, key=lambda m: m.bic(train))
    forest = IsolationForest(random_state=seed).fit(train)

    def minus(values):
        return -np.asarray(values)

    return (
        {
            SCORES[0]: lambda X: minus(fits["default"].score_samples(X)),
            SCORES[1]: lambda X: minus(fits["default"].log_ratio(X)),
            SCORES[2]: lambda X: minus(fits["tre"].score_samples(X)),
            SCORES[3]: lambda X: minus(fits["tre"].log_ratio(X)),
            SCORES[4]: lambda X: minus(fits["mixture"].log_ratio(X)),
            SCORES[5]: lambda X: minus(fits["mixture tre"].log_ratio(X)),
            SCORES[6]: lambda X: minus(gaussian.log_prob(torch.as_tensor(X))),
            SCORES[7]: lambda X: minus(mixture.score_samples(X)),
            SCORES[8]: lambda X: minus(forest.score_samples(X)),
        },
        fits,
        mixture.n_components,
    )


def auroc(inside, outside):
    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    scores = np.r_[inside, outside]
    scores = np.nan_to_num(scores, nan=np.inf, posinf=1e300, neginf=-1e300)
    return roc_auc_score(labels, scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    results = {}  # (score, ood set) -> list of AUROC
    extra = {"components": [], "test_ll": [], "log_z_gap": [], "fit": {}}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        train, test, ood = datasets(seed)
        scorers, fits, components = anomaly_scores(train, seed)
        for name, scorer in scorers.items():
            inside = scorer(test)
            for ood_name, X in ood.items():
                results.setdefault((name, ood_name), []).append(auroc(inside, scorer(X)))
        extra["components"].append(components)
        for name in ("default", "tre"):
            est = fits[name]
            check = est.partition_function(n_samples=100_000, random_state=seed)
            extra["log_z_gap"].append((name, abs(float(check.difference))))
            extra["test_ll"].append((name, float(est.score(test))))
        for name, est in fits.items():
            extra["fit"].setdefault(name, []).append((est.fit_time_, est.n_iter_, est.converged_))
        print(f"seed {seed + 1}/{args.seeds}: {time.perf_counter() - t0:.0f} s", flush=True)
    cpu = time.process_time()
    ood_names = list(dict.fromkeys(k[1] for k in results))
    lines = [
        "### Out-of-distribution detection on digits: likelihood, NCE log-ratio, TRE log-ratio\n",
        f"Command: `python benchmarks/ood.py` — commit `{_report.commit()}` — {_report.machine()}; "
        f"machine load (1-minute average) {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on 2 cores shared with other jobs ({cpu:.0f} CPU "
        f"seconds in all). Train on digits 0–4 (70 %, {COMPONENTS}-component PCA of the pixels "
        f"fitted on it), score the held-out 30 % of 0–4 against each OOD set ({N_SYNTHETIC} "
        "synthetic images each). `NCEDensity()` with its defaults, alone and with "
        f'`waymarks={WAYMARKS}`; `noise="mixture"` is a 5-component Gaussian mixture fitted '
        f"to the data. AUROC, mean ± sd over {args.seeds} seeds (split and fits).\n",
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

    def mean_of(pairs, name):
        return statistics.fmean(v for n, v in pairs if n == name)

    fit_cells = []
    for name, runs in extra["fit"].items():
        fit_cells.append(
            f"{name} {statistics.median(r[0] for r in runs):.1f} s wall, "
            f"{statistics.median(r[1] for r in runs):.0f} epochs, "
            f"{sum(r[2] for r in runs)}/{len(runs)} converged"
        )
    lines.append(
        f"\nHeld-out 0–4 mean log-likelihood ({COMPONENTS}-dim PCA space, nats): "
        f"`NCEDensity()` {mean_of(extra['test_ll'], 'default'):.2f}, "
        f"`waymarks={WAYMARKS}` {mean_of(extra['test_ll'], 'tre'):.2f}. "
        "|learned log Z − importance-sampled log Z|: "
        f"{mean_of(extra['log_z_gap'], 'default'):.3f} and "
        f"{mean_of(extra['log_z_gap'], 'tre'):.3f}. GaussianMixture components chosen by BIC: "
        f"{', '.join(str(c) for c in extra['components'])}. Fits (median): "
        + "; ".join(fit_cells)
        + "."
    )
    body = "\n".join(lines)
    print(body)
    if args.seeds >= 3:
        _report.write_section("ood", body)
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
