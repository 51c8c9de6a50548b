"""``nce.estimate_mi`` on the public benchmark-mi suite (Czyż et al., 2023, arXiv:2306.11078), next
to the suite's own neural estimators (InfoNCE, NWJ, MINE, on JAX) and its KSG, on the same samples.

The tasks, their samplers and their ground-truth mutual information come from the suite itself
(``bmi.BENCHMARK_TASKS``): its 1 × 1 normal, the dense and sparse (2-pair) multinormals, the
Student-t tasks, and the transformed ones (half-cube, spiral, normal-CDF, asinh), N = 5000 rows
drawn with the suite's sampler (seed 0). Every estimator sees the same rows. The suite's neural
estimators run with their own defaults (a 16-8 ReLU concatenated critic, batch 256, Adam at 0.1,
half the rows held out) except the step budget, ``--bmi-steps`` (the suite's default is 10,000);
KSG is the suite's ``KSGEnsembleFirstEstimator`` at its defaults (k = 5 and 10, averaged).

Each measurement is stored in ``benchmarks/results/mi_bmi.json`` under (estimator, task, N, seed),
so that the baselines, which do not depend on this library, are run once, and each setting of
``estimate_mi`` tried for its defaults is one more set of rows. ``--settings`` names the settings
to run (see ``SETTINGS``); ``--write`` renders the BENCHMARKS.md section from the stored rows.

benchmark-mi is not a dependency of the library; it lives in a venv of its own::

    python3 -m venv /work/venvs/bmi
    /work/venvs/bmi/bin/pip install torch==2.13.0          # first: the CPU wheel
    /work/venvs/bmi/bin/pip install -e . benchmark-mi
    # benchmark-mi 0.1.3 needs the JAX stack of its time:
    /work/venvs/bmi/bin/pip install jax==0.4.23 jaxlib==0.4.23 scipy==1.11.4 chex==0.1.85

    OMP_NUM_THREADS=1 /work/venvs/bmi/bin/python benchmarks/mi_bmi.py --baselines   # ~1 CPU h
    OMP_NUM_THREADS=1 /work/venvs/bmi/bin/python benchmarks/mi_bmi.py --settings defaults
    /work/venvs/bmi/bin/python benchmarks/mi_bmi.py --write

Every worker runs one thread (torch, XLA and BLAS): the machine is shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mi_bmi.json"
N_ROWS = 5000
SEED = 0

TASKS = (
    "1v1-normal-0.75",
    "normal_cdf-1v1-normal-0.75",
    "half_cube-1v1-normal-0.75",
    "student-identity-1-1-1",
    "asinh-student-identity-1-1-1",
    "multinormal-dense-2-2-0.5",
    "multinormal-dense-3-3-0.5",
    "multinormal-dense-5-5-0.5",
    "multinormal-dense-25-25-0.5",
    "multinormal-dense-50-50-0.5",
    "multinormal-sparse-2-2-2-2.0",
    "multinormal-sparse-3-3-2-2.0",
    "multinormal-sparse-5-5-2-2.0",
    "multinormal-sparse-25-25-2-2.0",
    "student-identity-2-2-1",
    "student-identity-2-2-2",
    "student-identity-3-3-2",
    "student-identity-3-3-3",
    "student-identity-5-5-2",
    "student-identity-5-5-3",
    "normal_cdf-multinormal-sparse-3-3-2-2.0",
    "normal_cdf-multinormal-sparse-5-5-2-2.0",
    "normal_cdf-multinormal-sparse-25-25-2-2.0",
    "half_cube-multinormal-sparse-3-3-2-2.0",
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "half_cube-multinormal-sparse-25-25-2-2.0",
    "spiral-multinormal-sparse-3-3-2-2.0",
    "spiral-multinormal-sparse-5-5-2-2.0",
    "spiral-multinormal-sparse-25-25-2-2.0",
    "spiral-normal_cdf-multinormal-sparse-3-3-2-2.0",
    "spiral-normal_cdf-multinormal-sparse-5-5-2-2.0",
    "spiral-normal_cdf-multinormal-sparse-25-25-2-2.0",
    "asinh-student-identity-2-2-1",
    "asinh-student-identity-3-3-2",
    "asinh-student-identity-5-5-2",
)

BASELINES = ("bmi-infonce", "bmi-nwj", "bmi-mine", "ksg")
LABELS = {
    "bmi-infonce": "benchmark-mi InfoNCE",
    "bmi-nwj": "benchmark-mi NWJ",
    "bmi-mine": "benchmark-mi MINE",
    "ksg": "benchmark-mi KSG",
}

SETTINGS: dict[str, dict] = {
    # the library's defaults as they stand at the measuring commit
    "defaults": {},
    # the default critic before the Gaussian start: a separable MLP alone
    "separable": {"critic": "separable"},
    "tre": {"estimator": "tre"},
    # evaluation protocol: two critics, each trained on one half and evaluated on the other
    "cross-fit": {"cross_fit": True},
}
"""Settings of ``estimate_mi`` tried for its defaults: name -> keyword arguments."""

TARGET_MAE = 0.06
BMI_STEPS_DONE = 2000
"""The step budget of the stored benchmark-mi neural runs (``--bmi-steps``)."""

PRIORITY = (
    "1v1-normal-0.75",
    "multinormal-dense-5-5-0.5",
    "multinormal-sparse-5-5-2-2.0",
    "student-identity-3-3-2",
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "spiral-multinormal-sparse-5-5-2-2.0",
    "asinh-student-identity-3-3-2",
    "multinormal-dense-25-25-0.5",
    "normal_cdf-multinormal-sparse-5-5-2-2.0",
    "multinormal-sparse-25-25-2-2.0",
    "spiral-multinormal-sparse-25-25-2-2.0",
    "multinormal-dense-50-50-0.5",
    "student-identity-5-5-2",
)
"""Tasks run first (one or two of each family), so that a run cut short still covers every
family; the rest follow in the suite's order."""


def key(estimator: str, task: str, n: int, seed: int) -> str:
    return f"{estimator}|{task}|{n}|{seed}"


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(rows: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1, sort_keys=True))
    tmp.replace(RESULTS)


def sample(task_id: str, n: int, seed: int):
    import bmi

    task = bmi.BENCHMARK_TASKS[task_id]
    x, y = task.sample(n, seed=seed)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), task


def run_one(job):
    """One estimate: (key, row) with the value, truth, wall and CPU seconds."""
    estimator, task_id, n, seed, bmi_steps = job
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    x, y, task = sample(task_id, n, seed)
    wall, cpu = time.perf_counter(), time.process_time()
    extra = {}
    if estimator in BASELINES:
        import bmi

        common = dict(verbose=False, max_n_steps=bmi_steps, seed=seed)
        if estimator == "ksg":
            value = bmi.estimators.KSGEnsembleFirstEstimator().estimate(x, y)
            extra["steps"] = 0
        else:
            cls = {
                "bmi-infonce": bmi.estimators.InfoNCEEstimator,
                "bmi-nwj": bmi.estimators.NWJEstimator,
                "bmi-mine": bmi.estimators.MINEEstimator,
            }[estimator]
            value = cls(**common).estimate(x, y)
            extra["steps"] = bmi_steps
    else:
        from nce.mi import estimate_mi

        kwargs = dict(SETTINGS[estimator])
        if kwargs.pop("cross_fit", False):
            value, extra["stderr"] = cross_fit(x, y, seed, **kwargs)
        else:
            est = estimate_mi(x, y, random_state=seed, progress=False, **kwargs)
            value = est.value
            extra.update(stderr=est.stderr, best_step=int(est.best_step), converged=est.converged)
    row = dict(
        value=float(value),
        truth=float(task.mutual_information),
        wall_s=time.perf_counter() - wall,
        cpu_s=time.process_time() - cpu,
        commit=os.environ.get("MI_BMI_COMMIT") or _report.commit(),
        **extra,
    )
    return key(estimator, task_id, n, seed), row


def cross_fit(x, y, seed: int, critic: str = "gaussian-separable"):
    """Cross-fitting with ``estimate_mi``'s parts and default settings: the rows cut in two
    halves at random, a critic trained on each half (its early-stopping monitor the first 1024
    rows of the other) and evaluated on the other half; the two held-out InfoNCE bounds
    averaged. Returns ``(value, stderr)``."""
    import torch

    from nce._random import seeded
    from nce.mi.critics import build_critic
    from nce.mi.estimators import get_estimator
    from nce.mi.evaluate import evaluate_critic
    from nce.mi.standardize import standardize_columns
    from nce.mi.train import train_critic

    xt = standardize_columns("x", torch.as_tensor(x), "rank", built_in_critic=True)
    yt = standardize_columns("y", torch.as_tensor(y), "rank", built_in_critic=True)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(xt.shape[0], generator=generator)
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    record = get_estimator("infonce")
    dx, dy = xt.shape[1], yt.shape[1]
    values, variances = [], []
    for train, held in ((first, second), (second, first)):
        with seeded(seed):
            model = build_critic(
                critic, dx, dy, hidden=256, layers=2, embed_dim=max(32, 2 * max(dx, dy))
            )
            if critic == "gaussian-separable":
                model.initialize(xt[train], yt[train])
            train_critic(
                model, record, xt[train], yt[train], xt[held[:1024]], yt[held[:1024]],
                batch_size=256, max_steps=4000, lr=3e-4, weight_decay=0.0, eval_every=50,
                patience=10, clip=5.0, generator=generator, progress=False,
            )  # fmt: skip
            value, stderr, _ = evaluate_critic(model, record, xt[held], yt[held], 4096, 5.0)
        values.append(value)
        variances.append(stderr**2)
    return float(np.mean(values)), float(math.sqrt(sum(variances)) / 2)


def run(estimators, workers: int, bmi_steps: int, force: bool) -> None:
    rows = load()
    jobs = [
        (e, t, N_ROWS, SEED, bmi_steps)
        for t in (*PRIORITY, *(t for t in TASKS if t not in PRIORITY))
        for e in estimators
        if force or key(e, t, N_ROWS, SEED) not in rows
    ]
    print(f"{len(jobs)} estimates to run", flush=True)
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=8) as pool:
        for k, row in pool.imap_unordered(run_one, jobs):
            rows = load()
            rows[k] = row
            save(rows)
            print(k, f"{row['value']:.3f} (truth {row['truth']:.3f}) {row['cpu_s']:.0f} CPU s",
                  flush=True)  # fmt: skip


def mae(rows: dict, estimator: str) -> tuple[float, int]:
    errors = [
        abs(rows[k]["value"] - rows[k]["truth"])
        for t in TASKS
        if (k := key(estimator, t, N_ROWS, SEED)) in rows
    ]
    return (float(np.mean(errors)) if errors else math.nan), len(errors)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", action="store_true", help="run benchmark-mi's estimators")
    parser.add_argument("--settings", nargs="*", default=[], help=f"of {tuple(SETTINGS)}")
    parser.add_argument("--bmi-steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="rerun stored rows")
    parser.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    opts = parser.parse_args()
    estimators = (list(BASELINES) if opts.baselines else []) + list(opts.settings)
    if estimators:
        run(estimators, opts.workers, opts.bmi_steps, opts.force)
    rows = load()
    for e in (*BASELINES, *SETTINGS, *EARLIER):
        value, count = mae(rows, e)
        print(f"{e:24s} MAE {value:.4f} over {count} tasks")
    if opts.write:
        write(rows)


SETTING_NOTES = {
    "defaults": '`estimate_mi(x, y)`: Gaussian-start critic (`critic="gaussian-separable"`)',
    "separable": '`critic="separable"`: the separable MLP alone (the default before)',
    "tre": '`estimator="tre"` at its defaults (quadratic heads)',
    "cross-fit": "cross-fitting: a Gaussian-start critic per half, evaluated on the other half",
    "edge": "Gaussian start keeping only the canonical pairs above the noise edge (commit 5001d68)",
}
EARLIER = ("edge",)
"""Settings measured at an earlier commit and kept in the results, not runnable from this one."""


def family(task: str) -> str:
    """The family of a task: "spiral", "Student-t" (incl. asinh), or "Gaussian copula" (normal,
    multinormal and their monotone per-column transforms: half-cube, normal-CDF)."""
    if task.startswith("spiral"):
        return "spiral"
    return "Student-t" if "student" in task else "Gaussian copula"


def families(rows: dict, shown, names) -> str:
    """A sentence per family: each column's MAE over the family's tasks it ran."""
    text = ["**By family** (MAE over the tasks each column ran, count in brackets):"]
    for name in ("Gaussian copula", "Student-t", "spiral"):
        parts = []
        for e in shown:
            found = [rows[k] for t in TASKS if family(t) == name
                     and (k := key(e, t, N_ROWS, SEED)) in rows]  # fmt: skip
            if found:
                error = np.mean([abs(r["value"] - r["truth"]) for r in found])
                parts.append(f"{names[e]} {error:.3f} ({len(found)})")
        text.append(f"{name}: {', '.join(parts)}.")
    return " ".join(text)


def cell(rows, estimator, task):
    row = rows.get(key(estimator, task, N_ROWS, SEED))
    return "—" if row is None else f"{row['value']:.3f}"


def write(rows: dict) -> None:
    """Render the BENCHMARKS.md section 'mi-bmi' from the stored rows."""
    shown = [e for e in ("defaults", "separable", "tre", "cross-fit", *BASELINES)
             if mae(rows, e)[1]]  # fmt: skip
    names = {**{e: e for e in SETTINGS}, **LABELS, "defaults": "nce defaults",
             "separable": "nce separable"}  # fmt: skip
    import bmi

    lines = []
    for t in TASKS:
        if not any(key(e, t, N_ROWS, SEED) in rows for e in shown):
            continue
        truth = bmi.BENCHMARK_TASKS[t].mutual_information
        lines.append(
            f"| {bmi.BENCHMARK_TASKS[t].name} | {truth:.3f} | "
            + " | ".join(cell(rows, e, t) for e in shown)
            + " |"
        )
    common = [t for t in TASKS if all(key(e, t, N_ROWS, SEED) in rows for e in shown)]

    def mae_over(e, tasks):
        found = [rows[k] for t in tasks if (k := key(e, t, N_ROWS, SEED)) in rows]
        errors = [abs(r["value"] - r["truth"]) for r in found]
        return float(np.mean(errors)) if errors else math.nan

    mae_all = " | ".join(f"{mae(rows, e)[0]:.3f} ({mae(rows, e)[1]})" for e in shown)
    mae_common = " | ".join(f"{mae_over(e, common):.3f}" for e in shown)

    def cpu(e):
        found = [rows[k] for t in TASKS if (k := key(e, t, N_ROWS, SEED)) in rows]
        cpu_s, wall_s = np.mean([r["cpu_s"] for r in found]), np.mean([r["wall_s"] for r in found])
        return f"{cpu_s:.0f} / {wall_s:.0f}"

    times = " | ".join(cpu(e) for e in shown)
    default_mae, default_n = mae(rows, "defaults")
    met = default_mae <= TARGET_MAE and default_n == len(TASKS)

    def verdict(e):
        value, count = mae(rows, e)
        return "met" if value <= TARGET_MAE and count == len(TASKS) else "not met"

    tried = "\n".join(
        f"| {e} | {SETTING_NOTES.get(e, '')} | {mae(rows, e)[0]:.3f} | "
        f"{mae(rows, e)[1]} | {mae_over(e, common):.3f} | {verdict(e)} |"
        for e in (*SETTINGS, *EARLIER)
        if mae(rows, e)[1]
    )
    library = (*SETTINGS, *EARLIER)
    commits = sorted({r["commit"] for k, r in rows.items() if k.split("|")[0] in library})
    with_defaults = [t for t in TASKS if key("defaults", t, N_ROWS, SEED) in rows]

    def paired(e):
        tasks = [t for t in with_defaults if key(e, t, N_ROWS, SEED) in rows]
        return f"{mae_over(e, tasks):.3f} ({len(tasks)})" if tasks else "—"

    mae_paired = " | ".join(paired(e) for e in shown)
    reading = textwrap.fill(families(rows, shown, names), width=100)
    body = f"""### Mutual information: the benchmark-mi suite

Command: `python benchmarks/mi_bmi.py --baselines --settings defaults separable tre cross-fit`
then `--write` (in the benchmark-mi venv, see the script's docstring) — commit `{_report.commit()}`,
the library's rows measured at {", ".join(f"`{c}`" for c in commits)} (each row keeps its commit
in `benchmarks/results/mi_bmi.json`; the suite's own estimators do not use the library) —
{_report.machine()}; one worker thread per process on a shared 2-core machine; part of the rows were
measured under a load average of 10–25 (other jobs), where wall times are about ten times CPU
times, the rest (the suite's estimators, 19 of the 35 default rows) on an otherwise idle machine.

The suite's own tasks, samplers and ground truths (`bmi.BENCHMARK_TASKS`, benchmark-mi 0.1.3):
N = {N_ROWS} rows, seed {SEED}, the same rows for every estimator. benchmark-mi's InfoNCE, NWJ and
MINE run with the suite's defaults (16-8 ReLU concatenated critic, batch 256, Adam 0.1, half the
rows held out) except the step budget, {BMI_STEPS_DONE} steps instead of 10,000 (CPU time on this
machine); KSG is its `KSGEnsembleFirstEstimator` (k = 5, 10). A "—" is a run that did not fit in
the time.

**Target**: `estimate_mi` defaults with a mean absolute error ≤ {TARGET_MAE} nats over the
{len(TASKS)} tasks: **{"met" if met else "not met"}** — MAE {default_mae:.3f} over
{default_n} of {len(TASKS)} tasks.

| task | true MI | {" | ".join(names[e] for e in shown)} |
|---|---:|{"---:|" * len(shown)}
{chr(10).join(lines)}
| **MAE** (tasks run) | | {mae_all} |
| **MAE** on the tasks `nce defaults` ran (count) | | {mae_paired} |
| **MAE**, the {len(common)} tasks every column ran | | {mae_common} |
| CPU / wall s per estimate | | {times} |

{reading}

Settings of `estimate_mi` tried for its defaults (MAE over the tasks each ran; the target needs
all {len(TASKS)}):

| setting | what | MAE | tasks | MAE, common tasks | target |
|---|---|---:|---:|---:|---|
{tried}
"""
    _report.write_section("mi-bmi", body)
    print("wrote BENCHMARKS.md section 'mi-bmi'")


if __name__ == "__main__":
    main()
