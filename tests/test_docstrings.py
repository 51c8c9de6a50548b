"""Every public function and class says what it computes, the shapes it takes and returns, and
the paper it implements.

The public API is ``nce`` and each of its direct submodules whose name does not start with an
underscore, except the command line ``nce.cli`` (documented by ``nce --help``). Its objects are the
names in a module's ``__all__``, or, for a module without ``__all__``, the functions and classes it
defines whose names do not start with an underscore.

Each public function or class must have a docstring with

(a) a formula: a ``.. math::`` block, a relation written with spaces around it (`` = ``,
    `` ≈ ``, `` ≤ ``, `` ≥ ``, `` ∝ ``, `` < ``, `` > ``), a sum, product, integral, norm or
    expectation sign (Σ ∑ ∏ ∫ ‖ 𝔼, ``\\sum``, ``\\prod``, ``\\frac``, ``\\mathbb{E}``), or a
    ``:math:`` role holding an equation or an operation (``=``, ``+``, ``\\sim``, ``\\mapsto``,
    ``\\odot``, ``\\approx``, ``\\propto``, ``\\cdot``);
(b) shapes, when it takes or returns tensors: a ``Shape:`` section or a shape written as a tuple
    of letters or numbers with a comma, such as ``(N,)``, ``(N, D)`` or ``(B, 1, 8, 8)``;
(c) a reference: an arXiv id (``arXiv:1807.03748``), authors and a year at most 40 characters
    apart (``Gutmann & Hyvärinen, JMLR 13:307, 2012``, ``Chuang et al. 2020``), or one author
    and a year after a comma or parenthesis (``Hyvärinen (1999)``, ``Hyvärinen, 1999``).

A class passes (a) with its own docstring or one of its entry points' (``forward``, ``fit``, ...),
(b) likewise, and (c) with its own docstring. Each public method a class defines needs a
docstring (inherited from a base class of this package counts); an entry point that takes or
returns tensors needs shapes, in its own docstring or in its class's ``Shape:`` section.

Exemptions, each with its reason, are the two tables below; exceptions and warnings only need a
docstring (they compute nothing), and so do records (dataclasses and named tuples), whose formula,
if any, is in the function that fills them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path

import nce

# Objects that compute a quantity with a standard definition or implement no published method:
# formula and shapes are required, a reference is not.
NO_REFERENCE = {
    "nce.contrastive.sparsity": "a fraction of near-zero entries, a definition",
    "nce.contrastive.knn_accuracy": "the classical k-nearest-neighbour classifier",
    "nce.contrastive.linear_probe": "a logistic-regression probe, a classical classifier",
    "nce.contrastive.evaluate_representation": "runs the probes and metrics documented there",
    "nce.contrastive.ConvEncoder": "a small convolutional network, an architecture choice",
    "nce.contrastive.MLPEncoder": "a multilayer perceptron, an architecture choice",
    "nce.lm.perplexity": "the exponentiated mean negative log-likelihood, a definition",
    "nce.lm.log_partition_stats": "mean and spread of log Z over contexts, a summary",
    "nce.lm.generate": "ancestral sampling from the model's softmax",
    "nce.retrieval.ranks": "the rank of each positive among the scores, a definition",
    "nce.retrieval.retrieval_metrics": "recall@K and mean reciprocal rank, definitions",
    "nce.retrieval.top_k": "exact top-K search by inner product",
    "nce.retrieval.evaluate_pairs": "recall@K and MRR of a model on pairs, definitions",
    "nce.retrieval.text_features": "hashed n-gram feature ids, a featurization",
    "nce.retrieval.feature_bucket": "a string hash into buckets",
    "nce.noise.DistributionNoise": "an adapter of torch.distributions",
    "nce.models.EnergyModel": "the interface every energy model implements",
    "nce.contrastive.RandomAffine": "a generic image augmentation",
    "nce.contrastive.RandomRotation": "a generic image augmentation",
    "nce.contrastive.GaussianNoise": "a generic augmentation: additive noise",
    "nce.contrastive.RandomMask": "a generic augmentation: entries set to zero",
}

# Objects that read, write, split or move data and compute nothing a formula describes: they need
# a docstring (and shapes when they handle tensors), neither a formula nor a reference.
NO_FORMULA = {
    "nce.noise.as_noise": "converts an argument into a noise distribution",
    "nce.contrastive.load_digits_split": "loads a data set",
    "nce.contrastive.digits_augmentation": "assembles the augmentations documented each",
    "nce.contrastive.Compose": "applies transforms in turn",
    "nce.contrastive.KeyQueue": "a first-in first-out buffer of keys",
    "nce.contrastive.ProjectionHead": "a two-layer perceptron, an architecture choice",
    "nce.retrieval.load_bible_pairs": "loads a data set",
    "nce.retrieval.parse_verses": "parses a text file",
    "nce.retrieval.read_pairs": "parses a text file",
    "nce.retrieval.repeated_verses": "finds duplicate strings",
    "nce.retrieval.split_by_chapter": "splits a data set",
    "nce.retrieval.text_ids": "maps strings to ids",
    "nce.retrieval.hard_negatives_supported": "answers whether an option applies",
    "nce.retrieval.FeatureTable": "a lookup table of feature ids",
    "nce.lm.parameter_shapes": "lists parameter shapes",
    "nce.lm.batchify": "reshapes a token stream into batches",
    "nce.lm.read_checkpoint": "reads a file",
    "nce.lm.load_model": "reads a file",
    "nce.lm.check_resume": "compares two configurations",
    "nce.text.tokenize": "splits text into tokens",
    "nce.text.kjv_verses": "loads a data set",
    "nce.text.read_lines": "reads a file",
    "nce.text.read_corpus": "reads a file",
    "nce.text.corpus_checksum": "hashes a file",
    "nce.text.check_corpus": "compares checksums",
    "nce.text.split_lines": "splits a data set",
    "nce.distributed.is_initialized": "answers whether a process group exists",
    "nce.distributed.layout": "reads ranks and sizes",
    "nce.distributed.gather_rows": "concatenates tensors across processes",
    "nce.distributed.reduce_across_ranks": "sums a tensor across processes",
}

# Methods that need shapes and may carry the formula of their class.
ENTRY_POINTS = {
    "__call__", "forward", "fit", "score_samples", "score", "log_ratio", "partition_function",
    "sample", "log_prob", "log_partition", "transform", "encode", "embed", "batch_loss", "search",
    "update", "log_q", "log_expected_count", "scores",
}
# Methods that only implement a hook of torch.nn.Module's printing.
HOOKS = {"extra_repr"}

FORMULA = re.compile(
    r"\.\. math::|\s[=≈≤≥∝<>]\s|[Σ∑∏∫‖𝔼]|\\(?:sum|prod|frac|mathbb\{E\}|int)(?![A-Za-z])"
    r"|:math:`[^`]*(?:=|\+|\\sim|\\mapsto|\\odot|\\approx|\\propto|\\cdot)[^`]*`"
)
SHAPE_SECTION = re.compile(r"^\s*Shape:\s*$", re.MULTILINE)
_DIM = r"(?:\d*[A-Z][\w'+\-]*|\d+|\*|\.\.\.|…)"
SHAPE_TUPLE = re.compile(rf"\({_DIM}(?:(?:, ?{_DIM})+,?|,)\)")
_NAME = r"[A-Z](?:[^\W\d_]|['\-])+"
_YEAR = r"\b(?:19|20)\d{2}\b"
REFERENCE = re.compile(
    r"arXiv:\s?\d{4}\.\d{4,5}"
    rf"|{_NAME}(?: et al\.?| (?:&|and) {_NAME})[^\n]{{0,40}}?{_YEAR}"
    rf"|{_NAME}(?:, | \()(?:[A-Z][A-Za-z]+ )?{_YEAR}"
)
TENSOR_ANNOTATION = re.compile(r"Tensor|ndarray|ArrayLike|array")
TENSOR_NAMES = {
    "x", "y", "X", "Y", "z", "z1", "z2", "query", "key", "keys", "negatives", "embeddings",
    "labels", "targets", "view1", "view2", "input", "inputs", "logits", "scores", "context",
    "hidden", "images", "tokens", "values", "features", "queries", "counts",
}


def public_modules() -> list[str]:
    """``nce`` and its direct submodules that are not private and not the command line."""
    names = [
        f"nce.{info.name}"
        for info in pkgutil.iter_modules(nce.__path__)
        if not info.name.startswith("_") and info.name != "cli"
    ]
    return ["nce", *sorted(names)]


def public_objects() -> dict[str, object]:
    """Qualified public name -> function or class, each object once (its first public name)."""
    found: dict[str, object] = {}
    seen: set[int] = set()
    for modname in public_modules():
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                n for n, o in vars(module).items()
                if not n.startswith("_") and getattr(o, "__module__", None) == modname
            ]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or id(obj) in seen:
                continue
            seen.add(id(obj))
            found[f"{modname}.{name}"] = obj
    return found


def _own_doc(cls: type, name: str) -> str:
    """The docstring of method ``name``, from ``cls`` or a base class of this package."""
    for base in cls.__mro__:
        if not base.__module__.startswith("nce") or name not in vars(base):
            continue
        attr = vars(base)[name]
        func = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        doc = getattr(func, "__doc__", None)
        if doc and doc.strip():
            return _prose(doc)
    return ""


def _methods(cls: type) -> dict[str, object]:
    """Public methods and properties ``cls`` defines itself, plus ``__call__``."""
    out = {}
    for name, attr in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if name in HOOKS:
            continue
        func = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        if inspect.isfunction(func):
            out[name] = func
    return out


def takes_tensors(func) -> bool:
    """Whether ``func`` takes or returns tensors: by its annotations or its argument names."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    if TENSOR_ANNOTATION.search(str(signature.return_annotation)):
        return True
    for name, param in signature.parameters.items():
        if name in ("self", "cls"):
            continue
        if TENSOR_ANNOTATION.search(str(param.annotation)):
            return True
        if name in TENSOR_NAMES or name.startswith("log_"):
            return True
    return False


def _is_record(obj) -> bool:
    return inspect.isclass(obj) and (
        dataclasses.is_dataclass(obj) or (issubclass(obj, tuple) and hasattr(obj, "_fields"))
    )


def _prose(doc: str) -> str:
    """``doc`` without its doctest lines (code in an example is not a formula)."""
    lines = textwrap.dedent(doc).splitlines()
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith((">>>", "...")))


def docstring_problems(name: str, obj) -> list[str]:
    """What the docstring of ``obj`` (published as ``name``) lacks; empty when it passes."""
    doc = _prose(obj.__doc__ or "")
    if not doc.strip():
        return [f"{name}: no docstring"]
    if inspect.isclass(obj) and (issubclass(obj, BaseException) or _is_record(obj)):
        return []
    problems = []
    methods = _methods(obj) if inspect.isclass(obj) else {}
    entry_docs = [_own_doc(obj, m) for m in methods if m in ENTRY_POINTS]
    if name not in NO_FORMULA and not any(FORMULA.search(d) for d in [doc, *entry_docs]):
        problems.append(f"{name}: no formula (a '.. math::' block, ' = ', Σ, ‖...)")
    if name not in NO_FORMULA and name not in NO_REFERENCE and not REFERENCE.search(doc):
        problems.append(f"{name}: no reference (an arXiv id or 'Author et al. YEAR')")
    if inspect.isclass(obj):
        class_shapes = bool(SHAPE_SECTION.search(doc) or SHAPE_TUPLE.search(doc))
        init_doc = doc + _own_doc(obj, "__init__")
        if takes_tensors(obj.__init__) and not (
            class_shapes or SHAPE_TUPLE.search(init_doc)
        ):
            problems.append(f"{name}: takes tensors but no shape ('Shape:' or '(N, D)')")
        for method, func in methods.items():
            mdoc = _own_doc(obj, method)
            if not mdoc.strip():
                problems.append(f"{name}.{method}: no docstring")
            elif (
                method in ENTRY_POINTS
                and takes_tensors(func)
                and not (class_shapes or SHAPE_SECTION.search(mdoc) or SHAPE_TUPLE.search(mdoc))
            ):
                problems.append(f"{name}.{method}: takes tensors but no shape")
    elif takes_tensors(obj) and not (SHAPE_SECTION.search(doc) or SHAPE_TUPLE.search(doc)):
        problems.append(f"{name}: takes tensors but no shape ('Shape:' or '(N, D)')")
    return problems


def test_public_api_is_found():
    objects = public_objects()
    for expected in ("nce.binary_nce", "nce.NCEDensity", "nce.losses.InfoNCE", "nce.text.tokenize"):
        assert expected in objects
    assert "nce.cli" not in public_modules()


def test_exemptions_name_public_objects():
    objects = public_objects()
    stale = sorted((set(NO_REFERENCE) | set(NO_FORMULA)) - set(objects))
    assert not stale, f"exemptions name objects that are not public: {stale}"


CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _all_docstrings():
    for name, obj in public_objects().items():
        yield name, obj.__doc__ or ""
        if inspect.isclass(obj):
            for method, func in _methods(obj).items():
                yield f"{name}.{method}", func.__doc__ or ""
    for modname in public_modules():
        yield modname, importlib.import_module(modname).__doc__ or ""


def test_no_docstring_holds_a_control_character():
    # "\tau" or "\alpha" in a docstring that is not a raw string becomes a tab or a bell.
    assert CONTROL.search(":math:`\tau`") and not CONTROL.search(r":math:`\tau`" + "\n")
    bad = [name for name, doc in _all_docstrings() if CONTROL.search(doc)]
    assert not bad, f"docstrings with a control character (use r-strings): {bad}"


def test_every_exemption_is_needed():
    objects = public_objects()
    unneeded = []
    for table in (NO_REFERENCE, NO_FORMULA):
        for name in list(table):
            reason = table.pop(name)
            try:
                if not docstring_problems(name, objects[name]):
                    unneeded.append(name)
            finally:
                table[name] = reason
    assert not unneeded, f"these pass without their exemption, remove it: {unneeded}"


def test_every_public_module_has_a_docstring():
    bare = [m for m in public_modules() if not (importlib.import_module(m).__doc__ or "").strip()]
    assert not bare, f"modules without a docstring: {bare}"


def test_every_public_object_is_documented():
    problems = [p for name, obj in public_objects().items() for p in docstring_problems(name, obj)]
    assert not problems, "docstrings lacking:\n" + "\n".join(problems)


def _undocumented(query, key):
    return query @ key.T


def _no_shapes(query, key):
    """Scores, s = q·k (van den Oord et al. 2018, arXiv:1807.03748)."""
    return query @ key.T


def _no_formula(query):
    """Scores of the query (van den Oord et al. 2018). Shape: (N, D) -> (N,).

    >>> s = _no_formula(1)
    """
    return query


def _no_reference(query):
    """Scores s = q·k of the query, shape (N, D) -> (N,)."""
    return query


def _complete(query, key):
    r"""Scores :math:`s_{ij} = q_i \cdot k_j` (van den Oord et al. 2018, arXiv:1807.03748).

    Shape:
        - query: (N, D), key: (M, D); output: (N, M)
    """
    return query @ key.T


class _ModuleWithoutForwardDoc:
    """Scores s = q·k (Mnih & Teh 2012), query (N, D)."""

    def forward(self, query):
        return query


def test_the_checker_flags_what_is_missing():
    assert docstring_problems("f", _undocumented) == ["f: no docstring"]
    assert docstring_problems("f", _no_shapes) == [
        "f: takes tensors but no shape ('Shape:' or '(N, D)')"
    ]
    assert docstring_problems("f", _no_formula) == [
        "f: no formula (a '.. math::' block, ' = ', Σ, ‖...)"
    ]
    assert docstring_problems("f", _no_reference) == [
        "f: no reference (an arXiv id or 'Author et al. YEAR')"
    ]
    assert docstring_problems("f", _complete) == []
    assert docstring_problems("C", _ModuleWithoutForwardDoc) == ["C.forward: no docstring"]


def test_reference_and_shape_patterns():
    for text in ("Gutmann & Hyvärinen 2010", "Chuang et al. 2020", "Mnih & Teh (ICML 2012)",
                 "arXiv:2103.00020", "Oord et al., 2018", "Gutmann & Hyvärinen, JMLR 13:307, 2012",
                 "Hyvärinen (1999)"):
        assert REFERENCE.search(text), text
    for text in ("float16 tops out at 65504", "see the README", "Default 2000 rows",
                 "Gaussian 2D"):
        assert not REFERENCE.search(text), text
    for text in ("(N,)", "(N, D)", "(B, 1, 8, 8)", "(N, K, D)", "(N, 2N)"):
        assert SHAPE_TUPLE.search(text), text
    for text in ("(see above)", "(N)", "(a, b)"):
        assert not SHAPE_TUPLE.search(text), text


DOCS = Path(__file__).resolve().parent.parent / "docs"


def _automodules(text: str) -> set[str]:
    return set(re.findall(r"^\.\. automodule:: (\S+)\s*$", text, re.MULTILINE))


def test_the_api_reference_has_a_page_for_every_public_module():
    index = (DOCS / "index.rst").read_text()
    toctree = set(re.findall(r"^\s+(api/\S+)\s*$", index, re.MULTILINE))
    pages = {p.stem: _automodules(p.read_text()) for p in (DOCS / "api").glob("*.rst")}
    assert "nce" in _automodules(index)
    missing = [
        m for m in public_modules()[1:]
        if m not in pages.get(m, set()) or f"api/{m}" not in toctree
    ]
    assert not missing, f"public modules without a page listed in docs/index.rst: {missing}"
    stale = sorted(set(pages) - set(public_modules()))
    assert not stale, f"docs/api pages of modules that are not public: {stale}"


def test_make_docs_builds_offline_and_fails_on_warnings():
    makefile = (DOCS.parent / "Makefile").read_text()
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe and "sphinx" in recipe.group(1) and " -W " in recipe.group(1)
    conf = (DOCS / "conf.py").read_text()
    assert "sphinx.ext.intersphinx" not in conf and "mathjax_path = MATHJAX_FILE" in conf
