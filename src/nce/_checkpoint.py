"""One file format for every model and checkpoint the library writes: fitted
:class:`~nce.density.NCEDensity` files, language-model checkpoints (:mod:`nce.lm`),
:class:`~nce.contrastive.ContrastiveTrainer` checkpoints and the encoder of ``nce pretrain -o``.

A file is a two-line header followed by the payload, a dict saved by :func:`torch.save`::

    nce checkpoint
    {"kind":"lm","version":2,"sha256":"<64 hex digits>"}
    <torch.save bytes of the payload>

``sha256`` is the SHA-256 of ``"<kind>\\n<version>\\n"`` followed by the payload bytes, so any
change to the file after it was written (a flipped bit, a truncated copy, an edited header) is
detected on load. Files are written whole or not at all (:func:`nce._atomic.atomic_write_bytes`) and
the payload is read with ``torch.load(weights_only=True)``: it holds only tensors, numbers, strings,
lists and dicts, and a file asking to run pickled code is refused.

Files written before this format (a bare :func:`torch.save` dict, version 1) are still read, as
*legacy* files, where they were read before: they carry no hash, so their integrity cannot be
checked; every entry is still validated, and the next save writes the current format.

Every problem is reported as one :class:`CheckpointError` (a :class:`ValueError`) whose one-line
message names the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import torch

from nce._atomic import atomic_write_bytes

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "build_module",
    "load_checkpoint",
    "load_state",
    "save_checkpoint",
]

MAGIC = b"nce checkpoint\n"
VERSION = 2  # version 1: the legacy files, a bare torch.save dict without header
KINDS = {
    "density": "a saved NCEDensity",
    "lm": "an nce language-model checkpoint",
    "contrastive": "a trainer checkpoint",
    "encoder": "an nce encoder file",
    "align": "an nce align trainer checkpoint",
    "align_model": "a model written by nce align",
    "retrieval": "an nce retrieve model or checkpoint",
}
_ZIP = b"PK\x03\x04"  # torch.save's own format: the legacy files
_MAX_DETAIL = 240


class CheckpointError(ValueError):
    """A model or checkpoint file that cannot be used: missing, damaged, of another kind, or with
    entries that do not fit; the message names the file and the problem on one line."""


class Checkpoint(dict):
    """The payload of a checkpoint file, which knows where it came from (``source``) to name it
    in errors; :meth:`entry` reads a required entry."""

    def __init__(self, data: dict, source: str, *, legacy: bool = False):
        super().__init__(data)
        self.source = source
        self.legacy = legacy

    def error(self, problem: str) -> CheckpointError:
        """A :class:`CheckpointError` saying ``problem`` about this file."""
        return CheckpointError(f"{self.source}: {problem}")

    def check_config(self, expected: dict) -> None:
        """Refuse a file written by a trainer of another configuration (entry ``config``)."""
        if self.entry("config", dict) != expected:
            raise self.error(
                f"was written by a trainer with another configuration: {self['config']} vs "
                f"{expected}"
            )

    def restore_generator(self, generator: torch.Generator, key: str = "generator") -> None:
        """``generator.set_state(self[key])``, a state that does not fit named as such."""
        try:
            generator.set_state(self.entry(key, torch.Tensor))
        except (RuntimeError, TypeError) as err:
            raise self.error(f"entry {key!r} is not a random-generator state") from err

    def entry(self, key: str, types=None, *, within: dict | None = None, name: str | None = None):
        """``self[key]`` (or ``within[key]``, called ``name`` in messages), refused with a clear
        message when it is missing or is not of ``types`` (a type or a tuple of types)."""
        where = self if within is None else within
        name = key if name is None else name
        if not isinstance(where, dict) or key not in where:
            raise self.error(f"missing entry {name!r}")
        value = where[key]
        if types is not None and not isinstance(value, types):
            names = types if isinstance(types, tuple) else (types,)
            expected = " or ".join(t.__name__ for t in names)
            raise self.error(f"entry {name!r} must be a {expected}, got {type(value).__name__}")
        return value


def save_checkpoint(payload: dict, path: str | Path, *, kind: str) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically, with a
    header naming ``kind`` and the current version, and the payload's SHA-256."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = {"kind": kind, "version": VERSION, "sha256": _digest(kind, VERSION, body)}
    data = MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
    atomic_write_bytes(path, data)


def load_checkpoint(
    path: str | Path,
    *,
    kind: str,
    legacy: Callable[[dict], str | None] | None = None,
    source: str | None = None,
) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` for ``kind``; verify its hash, kind and
    version. A legacy file (a bare ``torch.save`` dict) is accepted when ``legacy(payload)`` returns
    None, and refused with the reason it returns otherwise. ``source`` names the file in messages
    (default: the path)."""
    path = Path(path)
    source = str(path) if source is None else source
    what = KINDS[kind]
    if not path.is_file():
        raise CheckpointError(f"{source}: no such file")
    data = path.read_bytes()
    if data.startswith(MAGIC):
        return Checkpoint(_read_current(data, source, kind), source)
    if data.startswith(_ZIP) and legacy is not None:
        payload = _torch_load(data, source, what)
        reason = legacy(payload) if isinstance(payload, dict) else "not a dict"
        if reason is None:
            return Checkpoint(payload, source, legacy=True)
        raise CheckpointError(f"{source}: not {what} ({reason})")
    raise CheckpointError(f"{source}: not {what} (no nce checkpoint header)")


def load_state(target, state, checkpoint: Checkpoint, key: str) -> None:
    """``target.load_state_dict(state)`` for a module, optimizer, scheduler or queue, with any
    mismatch reported as a :class:`CheckpointError` naming the entry ``key``."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise checkpoint.error(f"entry {key!r} does not fit: {_one_line(err)}") from err


def build_module(
    checkpoint: Checkpoint,
    module_cls: type,
    config: dict,
    state: dict,
    *,
    config_key: str,
    state_key: str,
):
    """``module_cls(**config)`` in the dtype of its saved weights ``state``, with them loaded, once
    a build on the meta device (no memory) has shown that its parameters have the saved shapes: a
    damaged config (a huge width) is refused before anything is allocated. ``config_key`` and
    ``state_key`` name the entries in messages."""
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in module_cls(**config).state_dict().items()}
    except Exception as err:
        raise checkpoint.error(
            f"entry '{config_key}' does not build a {module_cls.__name__}: {_one_line(err)}"
        ) from err
    for name, shape in shapes.items():
        found = tuple(state[name].shape) if isinstance(state.get(name), torch.Tensor) else None
        if found != shape:
            have = "is missing" if found is None else f"has shape {found}"
            raise checkpoint.error(
                f"entry '{state_key}' does not fit its config {config}: {name} {have} but the "
                f"config needs {shape}"
            )
    module = module_cls(**config)
    dtypes = [
        v.dtype for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]
    if dtypes:
        module = module.to(dtypes[0])  # float64 weights stay float64
    load_state(module, state, checkpoint, state_key)
    return module


def _read_current(data: bytes, source: str, kind: str) -> dict:
    what = KINDS[kind]
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end].decode("ascii")) if end > 0 else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or sorted(header) != ["kind", "sha256", "version"]:
        raise CheckpointError(f"{source} is damaged: its header cannot be read")
    found, version = header["kind"], header["version"]
    if found not in KINDS:
        raise CheckpointError(f"{source} is damaged: its header names an unknown kind {found!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 2:
        raise CheckpointError(f"{source} is damaged: its header has an invalid version {version!r}")
    body = data[end + 1 :]
    if header["sha256"] != _digest(found, version, body):
        raise CheckpointError(
            f"{source} is damaged: its content hash does not match (the file changed after it "
            "was written)"
        )
    if found != kind:
        raise CheckpointError(f"{source} is {KINDS[found]}, not {what}")
    if version > VERSION:
        raise CheckpointError(
            f"{source} was written by a newer version of nce (format version {version}; this "
            f"one reads up to {VERSION}): upgrade nce to read it"
        )
    payload = _torch_load(body, source, what)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{source}: not {what} (its payload is not a dict)")
    return payload


def _torch_load(data: bytes, source: str, what: str):
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{source}: not {what} ({_one_line(err)})") from err


def _digest(kind: str, version: int, body: bytes) -> str:
    digest = hashlib.sha256(f"{kind}\n{version}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (whitespace collapsed), shortened to a readable length."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
