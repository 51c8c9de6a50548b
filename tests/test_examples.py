"""Every script of examples/ runs as its docstring says, on tiny settings, and prints sane numbers.

The examples run in child processes of ``sys.executable`` with this checkout's ``src`` first on
the path and one thread each: the single-process ones in two groups side by side, each one as
``__main__`` with its own command line and output (a group imports torch once), and the DDP one
under ``python -m torch.distributed.run`` with two processes, all at the same time. The commands
shown in the README and in the examples' docstrings are checked to name real scripts and options.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def _arguments(data: Path) -> dict[str, list[str]]:
    """The command line of each example, after ``python``."""
    return {
        "density_csv": [
            "examples/density_csv.py",
            "--columns", "alcohol,flavanoids,total_phenols,color_intensity",
            "--epochs", "3", "--samples", "2000", "--top", "2",
            "--save-builtin", str(data / "saved_wine.csv"),
        ],
        "output_layer": [
            "examples/output_layer.py",
            "--lines", "300", "--vocabulary", "400", "--epochs", "1", "--dim", "16",
        ],
        "simclr_arrays": [
            "examples/simclr_arrays.py",
            "--x", str(data / "images.npy"), "--y", str(data / "labels.npy"),
            "--epochs", "1", "--width", "2", "--batch-size", "128",
        ],
        "align_two_modalities": [
            "examples/align_two_modalities.py",
            "--a", str(data / "a.npy"), "--b", str(data / "b.npy"),
            "--labels", str(data / "ab_labels.npy"),
            "--epochs", "2", "--hidden", "16", "--dim", "8",
        ],
        "retrieval_pairs": [
            "examples/retrieval_pairs.py", str(data / "pairs.tsv"),
            "--epochs", "1", "--batch-size", "32", "--buckets", "4096", "--dim", "16",
        ],
        "mi_columns": [
            "examples/mi_columns.py", str(data / "wine.csv"),
            "--x", "flavanoids", "--y", "total_phenols,od280/od315_of_diluted_wines",
            "--max-steps", "20",
        ],
        "ddp_simclr": [
            "-m", "torch.distributed.run", "--nproc_per_node=2",
            "examples/ddp_simclr.py", "--epochs", "1", "--batch-size", "256",
        ],
    }  # fmt: skip


def _write_inputs(data: Path) -> None:
    """A CSV with a header, image and vector arrays, and a pairs file, as a user would have."""
    from sklearn.datasets import load_digits, load_wine

    from nce.retrieval import load_bible_pairs

    wine = load_wine()
    with open(data / "wine.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(wine.feature_names)
        writer.writerows(wine.data.tolist())
    digits = load_digits()
    np.save(data / "images.npy", digits.images[:300])
    np.save(data / "labels.npy", digits.target[:300])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    latent = 2 * np.eye(4)[labels] + rng.standard_normal((300, 4))
    np.save(data / "a.npy", np.tanh(latent @ rng.standard_normal((4, 10))))
    np.save(data / "b.npy", latent @ rng.standard_normal((4, 6)) + 0.1 * rng.random((300, 6)))
    np.save(data / "ab_labels.npy", labels)
    verses = load_bible_pairs()
    lines = [
        f"{en}\t{es}" for en, es in zip(verses.english[:400], verses.spanish[:400], strict=True)
    ]
    (data / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


# Runs examples one after the other in one process, each as ``__main__`` with its own argv and
# output: {name: [exit status, stdout, stderr]} as JSON on stdout.
_RUNNER = r"""
import contextlib, io, json, runpy, sys, traceback
results = {}
for name, argv in json.loads(sys.argv[1]):
    out, err, status = io.StringIO(), io.StringIO(), 0
    sys.argv = argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            if not isinstance(stop.code, (int, type(None))):
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            status = 1
    results[name] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""

# The single-process examples in two groups that run side by side (one per core), each group in
# one process so that torch is imported once per group; the DDP example runs next to them.
_GROUPS = (
    ("density_csv", "output_layer", "simclr_arrays"),
    ("align_two_modalities", "retrieval_pairs", "mi_columns"),
)


def _run_all(data: Path) -> dict[str, tuple[int, str, str]]:
    """{example: (exit status, stdout, stderr)} of every example on its tiny settings."""
    commands = _arguments(data)
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    launched = {
        group: [sys.executable, "-c", _RUNNER, json.dumps([[n, commands[n]] for n in group])]
        for group in _GROUPS
    }
    launched[("ddp_simclr",)] = [sys.executable, *commands["ddp_simclr"]]
    processes = {
        group: subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for group, argv in launched.items()
    }
    results = {}
    try:
        for group, process in processes.items():
            stdout, stderr = process.communicate(timeout=900)
            if group == ("ddp_simclr",):
                results["ddp_simclr"] = (process.returncode, stdout, stderr)
            elif process.returncode != 0:
                results.update({n: (process.returncode, "", stderr) for n in group})
            else:
                results.update({n: tuple(r) for n, r in json.loads(stdout).items()})
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _number(text: str, pattern: str) -> float:
    """The number that ``pattern`` (one ``{n}`` marks it) finds in ``text``; it must be finite."""
    match = re.search(pattern.format(n=NUMBER), text)
    assert match, f"no {pattern!r} in:\n{text}"
    value = float(match.group(1))
    assert math.isfinite(value), f"{pattern!r}: {value}"
    return value


def test_all_examples_are_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")} - {"attention_as_ebm"}
    assert scripts == set(_arguments(Path("."))), "every example needs a tiny run here"


def test_every_example_documents_its_command():
    for script in EXAMPLES.glob("*.py"):
        text = script.read_text()
        assert text.startswith(('"""', 'r"""')), f"{script.name} has no module docstring"
        assert f"examples/{script.name}" in text.split('"""')[1], f"{script.name}: no command"


def _shell_lines(text: str) -> list[str]:
    """The commands of the ```bash blocks of a Markdown text, comments dropped, split at ';'."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            lines += [part.strip() for part in line.split("#")[0].split(";") if part.strip()]
    return lines


def _docstring_commands(script: Path) -> list[str]:
    """The command lines shown in an example's module docstring."""
    docstring = script.read_text().split('"""')[1]
    commands = [line.split("#")[0].strip() for line in docstring.splitlines()]
    return [c for c in commands if c.startswith(("python ", "torchrun ")) and "examples/" in c]


def test_readme_and_docstring_commands_name_real_scripts_and_options():
    from nce.cli.main import build_parser

    readme = (ROOT / "README.md").read_text()
    commands = _shell_lines(readme)
    commands += [c for script in EXAMPLES.glob("*.py") for c in _docstring_commands(script)]
    parser = build_parser()
    checked = 0
    for command in commands:
        words = shlex.split(command)
        words[0] = Path(words[0]).name
        if words[0] == "nce":
            parser.parse_args(words[1:])  # exits (a test failure) on an unknown option
            checked += 1
        scripts = [w for w in words if w.startswith("examples/")]
        for script in scripts:
            source = (ROOT / script).read_text()
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                if option.startswith("--nproc"):
                    continue
                assert f'"{option}"' in source, f"{command}: {script} has no option {option}"
            checked += 1
    assert checked >= 20


def test_readme_links_and_picture_exist():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#][^)]*)\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert "docs/img/report.png" in local and any(t.startswith("examples/") for t in local)
    for target in local:
        assert (ROOT / target).is_file(), f"README links to {target}, which does not exist"
    assert (ROOT / "docs/img/report.png").stat().st_size < 400_000


def _row(text: str, label: str) -> tuple[float, ...]:
    """The numbers of the printed table row that starts with ``label``."""
    match = re.search(rf"^{re.escape(label)}((?:\s+{NUMBER})+)\s*$", text, flags=re.M)
    assert match, f"no row {label!r} in:\n{text}"
    return tuple(float(v) for v in match.group(1).split())


def _check_density_csv(out: str, data: Path) -> None:
    learned = _number(out, r"learned log Z\s+{n}")
    sampled = _number(out, r"importance sampled\s+{n}")
    assert abs(learned - sampled) < 0.5
    assert _number(out, r"held-out log-likelihood per row: {n}") < 0
    for auc in re.findall(rf"anomaly AUC .*?: {NUMBER}", out):
        assert 0 <= float(auc) <= 1
    assert len((data / "saved_wine.csv").read_text().splitlines()) == 1 + 178


def _check_output_layer(out: str, data: Path) -> None:
    trained = _number(out, r"held-out perplexity \(exact softmax over \d+ words\): {n}")
    unigram = _number(out, r"unigram {n}")
    assert 1 < trained < 400 and 1 < unigram < 400
    _number(out, r"learned log Z {n}")


def _check_simclr_arrays(out: str, data: Path) -> None:
    assert "300 samples of shape (8, 8)" in out
    for name in ("linear_probe_accuracy", "linear_probe_accuracy_10_per_class", "knn_accuracy"):
        features, raw = _row(out, name)
        assert 0 <= features <= 1 and 0 <= raw <= 1


def _check_align_two_modalities(out: str, data: Path) -> None:
    at_1 = _number(out, r"recall@1 {n}")
    at_5 = _number(out, r"recall@5 {n}")
    assert 0 <= at_1 <= at_5 <= 1
    assert 0 <= _number(out, r"zero-shot accuracy {n}") <= 1
    assert _number(out, r"learned temperature {n}") > 0


def _check_retrieval_pairs(out: str, data: Path) -> None:
    assert "320 training pairs, 80 held out" in out
    for key in ("recall_at_1", "recall_at_10", "mrr"):
        untrained, trained = _row(out, key)
        assert 0 <= untrained <= 1 and 0 <= trained <= 1
    assert _row(out, "recall_at_1")[1] <= _row(out, "recall_at_10")[1]


def _check_mi_columns(out: str, data: Path) -> None:
    value = _number(out, r"I\(X; Y\) = {n}")
    assert _number(out, r"± {n}") >= 0
    cap = _number(out, r"log N cap {n}")
    held_out = _number(out, r"rows to train, {n} held out")
    assert value <= cap and cap == pytest.approx(math.log(held_out), abs=1e-4)
    assert _number(out, r"Gaussian \(linear\) value {n}") > 0


def _check_ddp_simclr(out: str, data: Path) -> None:
    assert "2 ranks" in out
    assert _number(out, r"epoch 1: loss {n}") > 0
    assert 0 <= _number(out, r"5-NN accuracy on held-out digits: {n}") <= 1


def test_every_example_runs_on_tiny_settings_and_prints_sane_numbers(tmp_path):
    _write_inputs(tmp_path)
    results = _run_all(tmp_path)
    checks = {name: globals()[f"_check_{name}"] for name in _arguments(tmp_path)}
    failures = []
    for name, check in checks.items():
        status, out, err = results[name]
        try:
            assert status == 0, f"exit status {status}:\n{err[-3000:]}"
            check(out, tmp_path)
        except AssertionError as error:
            failures.append(f"examples/{name}.py: {error}")
    assert not failures, "\n\n".join(failures)
