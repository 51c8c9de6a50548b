"""Densities on real tables: ``NCEDensity()`` with its defaults next to what a practitioner would
otherwise pick, on scikit-learn tables that ship with the package (no download).

For each table and each of 5 random 70/30 splits: PCA (digits only) and the column means and
standard deviations are fitted on the training split, both splits are mapped with them, and every
method fits the standardized training rows; the score is the held-out log-likelihood in nats per
row, in those standardized units for every method. Methods:

- ``NCEDensity()`` with every default, scored twice: with its learned log Z and with an
  importance-sampled one (``partition_function``, 200,000 draws), so that normalization error shows;
- ``GaussianMixture``: 1–10 components and the covariance type ("full", "tied", "diag",
  "spherical") chosen by BIC on the training rows, among mixtures with fewer free parameters than
  training rows;
- ``KernelDensity`` (Gaussian kernel): bandwidth by 5-fold cross-validation over 30 values;
- a zuko masked autoregressive flow (3 transforms, two hidden layers of 64) trained by maximum
  likelihood with Adam and early stopping on 10 % of the training rows.

Run (a benchmark-only venv; zuko is not a dependency of nce)::

    python3 -m venv /work/venvs/tables
    /work/venvs/tables/bin/pip install torch==2.13.0        # first: the CPU wheel
    /work/venvs/tables/bin/pip install -e . zuko scikit-learn matplotlib
    OMP_NUM_THREADS=1 /work/venvs/tables/bin/python benchmarks/density_tables.py

``--tables wine,iris`` and ``--splits 2`` run a part (without writing BENCHMARKS.md); ``--methods``
picks methods; results are cached per (table, method, split) in ``--cache`` (a JSON file), and
``--report`` writes the section from a cache (the splits every method finished on each table).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KernelDensity

from nce import NCEDensity

from _report import commit, machine, write_section

SPLITS = 5
METHODS = ("nce", "gmm", "kde", "maf")
TARGET = 0.1


def tables() -> dict[str, tuple[np.ndarray, int | None]]:
    """Name -> (raw rows, PCA components or None)."""
    digits = datasets.load_digits().data
    return {
        "wine": (datasets.load_wine().data, None),
        "iris": (datasets.load_iris().data, None),
        "diabetes": (datasets.load_diabetes().data, None),
        "linnerud": (datasets.load_linnerud().data, None),
        "breast_cancer": (datasets.load_breast_cancer().data, None),
        "digits PCA 10": (digits, 10),
        "digits PCA 20": (digits, 20),
        "digits PCA 40": (digits, 40),
    }


def split(X: np.ndarray, components: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The standardized 70/30 split of seed ``seed`` (PCA and statistics from the training rows)."""
    train, test = train_test_split(X, test_size=0.3, random_state=seed)
    if components is not None:
        pca = PCA(components, random_state=seed).fit(train)
        train, test = pca.transform(train), pca.transform(test)
    mean, std = train.mean(0), train.std(0)
    return (train - mean) / std, (test - mean) / std


def fit_nce(train, test, seed, **options):
    wall, cpu = time.perf_counter(), time.process_time()
    est = NCEDensity(progress=False, random_state=seed, **options).fit(train)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    learned = float(est.score(test))
    check = est.partition_function(n_samples=200_000, random_state=seed)
    return {
        "ll": learned,
        "ll_sampled": learned + float(check.difference),
        "converged": bool(est.converged_),
        "epochs": est.n_iter_,
        "optimizer": est.optimizer_,
        "noise_ratio": est.noise_ratio_,
        "s": wall,
        "cpu_s": cpu,
    }


def gmm_parameters(k: int, covariance: str, dim: int) -> int:
    """Free parameters of a k-component mixture (as ``GaussianMixture._n_parameters``)."""
    per_component = {"full": dim * (dim + 1) // 2, "diag": dim, "spherical": 1}
    shared = dim * (dim + 1) // 2 if covariance == "tied" else 0
    return k * (dim + per_component.get(covariance, 0)) + shared + k - 1


def fit_gmm(train, test, seed):
    best, best_bic = None, math.inf
    for covariance in ("full", "tied", "diag", "spherical"):
        for k in range(1, 11):
            if gmm_parameters(k, covariance, train.shape[1]) >= len(train):
                break
            gmm = GaussianMixture(k, covariance_type=covariance, random_state=seed).fit(train)
            bic = gmm.bic(train)
            if bic < best_bic:
                best, best_bic = gmm, bic
    return {"ll": float(best.score(test)), "choice": f"{best.n_components} {best.covariance_type}"}


def fit_kde(train, test, seed):
    folds = min(5, len(train))
    search = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1.5, 0.5, 30)}, cv=folds)
    search.fit(train)
    bandwidth = search.best_params_["bandwidth"]
    return {"ll": float(search.best_estimator_.score_samples(test).mean()), "choice": bandwidth}


def fit_maf(train, test, seed, epochs=1000, patience=30, batch_size=128):
    import zuko

    torch.manual_seed(seed)
    x = torch.as_tensor(train, dtype=torch.float32)
    order = torch.randperm(len(x))
    n_val = max(2, round(0.1 * len(x)))
    x_val, x_fit = x[order[:n_val]], x[order[n_val:]]
    flow = zuko.flows.MAF(x.shape[1], transforms=3, hidden_features=(64, 64))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    best, best_state, wait = math.inf, None, 0
    for _ in range(epochs):
        for rows in torch.randperm(len(x_fit)).split(batch_size):
            loss = -flow().log_prob(x_fit[rows]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            held_out = float(-flow().log_prob(x_val).mean())
        if held_out < best - 1e-4:
            best, wait = held_out, 0
            best_state = {k: v.clone() for k, v in flow.state_dict().items()}
        else:
            wait += 1
            if wait >= patience:
                break
    flow.load_state_dict(best_state)
    with torch.no_grad():
        ll = float(flow().log_prob(torch.as_tensor(test, dtype=torch.float32)).mean())
    return {"ll": ll}


def fit_nce_auto(train, test, seed):
    return fit_nce(train, test, seed, noise_ratio="auto")


FITS = {"nce": fit_nce, "gmm": fit_gmm, "kde": fit_kde, "maf": fit_maf, "nce_auto": fit_nce_auto}


def run(names, methods, splits, cache_path: Path) -> dict:
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for name in names:
        X, components = tables()[name]
        for seed in range(splits):
            train, test = split(X, components, seed)
            for method in methods:
                key = f"{name}|{method}|{seed}"
                if key in cache:
                    continue
                wall, cpu = time.perf_counter(), time.process_time()
                result = FITS[method](train, test, seed)
                result.setdefault("s", time.perf_counter() - wall)
                result.setdefault("cpu_s", time.process_time() - cpu)
                result["n_train"], result["dim"] = train.shape
                cache[key] = result
                cache_path.write_text(json.dumps(cache, indent=1))
                print(key, json.dumps(result), flush=True)
    return cache


def mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def table_rows(cache: dict, names, splits) -> tuple[list[str], list[str]]:
    rows = [
        "| table | D | N train | splits | NCEDensity (learned log Z) | "
        "NCEDensity (sampled log Z) | GMM (BIC) | KDE (CV bandwidth) | zuko MAF (MLE) | "
        "best − NCE | learned − sampled |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    times = [
        "| table | NCEDensity | GMM (BIC) | KDE (CV) | zuko MAF | NCE epochs | NCE optimizer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for name in names:
        done = [s for s in range(splits) if all(f"{name}|{m}|{s}" in cache for m in METHODS)]
        if not done:
            continue
        got = {m: [cache[f"{name}|{m}|{s}"] for s in done] for m in METHODS}
        ll = {m: np.array([r["ll"] for r in got[m]]) for m in METHODS}
        sampled = np.array([r["ll_sampled"] for r in got["nce"]])
        means = {m: ll[m].mean() for m in METHODS}
        best = max(means.values())
        cells = {m: mean_sd(ll[m]) for m in METHODS}
        for m in METHODS:
            if means[m] == best:
                cells[m] = f"**{cells[m]}**"
        gap = best - means["nce"]
        calibration = np.abs(ll["nce"] - sampled).mean()
        first = got["nce"][0]
        rows.append(
            f"| {name} | {first['dim']} | {first['n_train']} | {len(done)} | {cells['nce']} | "
            f"{mean_sd(sampled)} | {cells['gmm']} | {cells['kde']} | {cells['maf']} | "
            f"{gap:.2f} | {calibration:.2f} |"
        )

        def seconds(m, got=got):
            wall = np.mean([r["s"] for r in got[m]])
            cpu = np.mean([r["cpu_s"] for r in got[m]])
            return f"{wall:.1f} ({cpu:.1f} CPU)"

        epochs = np.mean([r["epochs"] for r in got["nce"]])
        optimizers = sorted({r["optimizer"] for r in got["nce"]})
        times.append(
            f"| {name} | {seconds('nce')} | {seconds('gmm')} | {seconds('kde')} | "
            f"{seconds('maf')} | {epochs:.0f} | {', '.join(optimizers)} |"
        )
    return rows, times


#: Why a table's gap is what it is: properties of the data, not of one run.
WHY = {
    "wine": "three cultivars, 124 training rows in 13-D: KDE and a small mixture put mass at "
    "each cultivar; the network's correction has little data to learn it from",
    "iris": "three species, one far from the other two: a two-component full-covariance mixture "
    "is the right model, and 105 rows leave the network's correction little to learn from",
    "diabetes": "the column `sex` takes two values: a continuous density's likelihood is "
    "unbounded on it, and a mixture with components at both values and a variance at its floor "
    "(reg_covar 10⁻⁶) earns several nats per row from that column alone; NCEDensity's energy, a "
    "Gaussian plus a bounded network, cannot put a spike on two values that its noise never hits",
    "linnerud": "14 training rows in 3-D and 6 held out: the held-out rows decide the order "
    "(see the ±), and nothing beyond a smoothed Gaussian can be learned",
    "breast_cancer": "radius, perimeter and area (mean and worst) are nearly functions of one "
    "another: the rows lie near a thin surface that full-covariance mixture components follow "
    "piece by piece, which a Gaussian base with a bounded correction does not",
    "digits": "ten digit classes make a clustered law in PCA space; KDE and a 10-component GMM "
    "place mass on each cluster, while NCE learns the correction against a Gaussian noise whose "
    "draws land ever more rarely where the data are as D grows (the density chasm), which is "
    "also what the importance-sampling check draws from",
}


def reading(cache: dict, names, splits) -> list[str]:
    """One line per table: the gap to the best method and the log Z check, against the target."""
    lines = []
    for name in names:
        done = [s for s in range(splits) if all(f"{name}|{m}|{s}" in cache for m in METHODS)]
        if not done:
            continue
        means = {m: np.mean([cache[f"{name}|{m}|{s}"]["ll"] for s in done]) for m in METHODS}
        nce = [cache[f"{name}|nce|{s}"] for s in done]
        gap = max(means.values()) - means["nce"]
        calibration = np.mean([abs(r["ll"] - r["ll_sampled"]) for r in nce])
        met = gap <= TARGET and calibration <= TARGET
        verdict = "met" if met else "missed"
        why = "" if met else f" — {WHY[name.split()[0]]}"
        lines.append(
            f"- *{name}*: {verdict} (best − NCE {gap:.2f}, |learned − sampled| "
            f"{calibration:.2f}){why}."
        )
    return lines


def auto_rows(cache: dict, names, splits) -> list[str]:
    """``noise_ratio="auto"`` next to the default 10, on the tables where it was run."""
    rows = [
        "| table | N train | ν auto | ν = 10: learned | sampled | CPU s | ν auto: learned | "
        "sampled | CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        keys = [f"{name}|nce_auto|{s}" for s in range(splits)]
        if not all(key in cache for key in keys):
            continue
        cells = []
        for method in ("nce", "nce_auto"):
            got = [cache[f"{name}|{method}|{s}"] for s in range(splits)]
            cells += [
                mean_sd([r["ll"] for r in got]),
                mean_sd([r["ll_sampled"] for r in got]),
                f"{np.mean([r['cpu_s'] for r in got]):.1f}",
            ]
        auto = cache[keys[0]]
        rows.append(
            f"| {name} | {auto['n_train']} | {auto['noise_ratio']:.0f} | {' | '.join(cells)} |"
        )
    return rows if len(rows) > 2 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default=",".join(tables()))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--splits", type=int, default=SPLITS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/density_tables.json"))
    parser.add_argument(
        "--report", action="store_true", help="write the section from the cache without fitting"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.tables.split(",")
    methods = args.methods.split(",")
    cache = run(names, methods, args.splits, args.cache) if not args.report else {}
    if args.report:
        cache = json.loads(args.cache.read_text())
    if names != list(tables()) or tuple(methods) != METHODS:
        return
    rows, times = table_rows(cache, names, args.splits)
    auto = auto_rows(cache, names, args.splits)
    if auto:
        auto = [
            "",
            '`NCEDensity(noise_ratio="auto")` (ν = max(10, 20,000 / N), the rest default) next '
            "to the default ν = 10, same splits (`--methods nce_auto`):",
            "",
            *auto,
        ]
    body = "\n".join(
        [
            "## Densities on real tables: `NCEDensity()` against GMM, KDE and a flow",
            "",
            f"Command: `python benchmarks/density_tables.py` — commit `{commit()}` — {machine()}. "
            "Held-out log-likelihood in nats per row (higher is better), mean ± sd over the "
            "random 70/30 splits of the 'splits' column (seeds 0, 1, …); on each split PCA "
            "(digits) and the column means and standard deviations "
            "are fitted on the training rows and every method is scored in those standardized "
            "units. `NCEDensity()` has every default; 'sampled' replaces its learned log Z by an "
            "importance-sampled one (200,000 draws of its noise). GMM: 1–10 components × 4 "
            "covariance types by BIC, among mixtures with fewer parameters than training rows "
            "(without that bound BIC picks 7 full components for linnerud's 14 rows, −18,705 "
            "nats/row; with it, full covariances are out on breast_cancer: 495 parameters for "
            "398 rows); "
            "KDE: Gaussian kernel, bandwidth by 5-fold CV over 30 values "
            "in [0.03, 3.2]; zuko MAF: 3 transforms, hidden (64, 64), Adam (lr 1e-3, batch 128), "
            "early stopping (patience 30) on 10 % of the training rows. 'best − NCE' is the best "
            "mean minus NCEDensity's (learned log Z); 'learned − sampled' the mean over splits of "
            f"|learned − sampled| (target: both ≤ {TARGET}).",
            "",
            *rows,
            "",
            "Against the target, table by table:",
            "",
            *reading(cache, names, args.splits),
            "",
            "Fit time per split, seconds wall (CPU) — the machine's 2 cores were shared with "
            "other jobs, so wall times are only comparable within a row; the NCE column includes "
            "neither the importance-sampling check nor the scoring:",
            "",
            *times,
            *auto,
        ]
    )
    write_section("density-tables", body)


if __name__ == "__main__":
    main()
