"""Saving and loading a fitted :class:`~nce.density.NCEDensity`, in the library's checkpoint format
(:mod:`nce._checkpoint`: a header with a content hash, verified on load). The payload holds only
plain values (tensors, numbers, strings, lists and dicts), so that ``torch.load(weights_only=True)``
reads it back; built-in models and noises are recorded by class name and rebuilt."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.distributions import Distribution

from nce._checkpoint import (
    Checkpoint,
    _one_line,
    build_module,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from nce.models import ConditionalMLPEnergy, EnergyModel, GaussianEnergy, ICAEnergy, MLPEnergy
from nce.noise import Box, Gaussian, GaussianMixture, Noise, as_noise

if TYPE_CHECKING:
    from nce.density.estimator import NCEDensity

__all__ = ["load_estimator", "save_estimator"]

_BUILTIN_MODELS = {
    cls.__name__: cls for cls in (GaussianEnergy, ICAEnergy, MLPEnergy, ConditionalMLPEnergy)
}
_BUILTIN_NOISES = {
    "Gaussian": (Gaussian, ("mean", "covariance")),
    "GaussianMixture": (GaussianMixture, ("weights", "means", "covariances")),
    "Box": (Box, ("low", "high")),
}
_FORMAT = "nce.NCEDensity"  # the marker of files written before the checkpoint format
_FITTED = (
    "log_partition_",
    "n_features_in_",
    "n_iter_",
    "n_noise_samples_",
    "loss_curve_",
    "validation_curve_",
    "fit_time_",
)


def save_estimator(estimator: NCEDensity, path, *, metadata: dict | None = None) -> None:
    """:meth:`NCEDensity.save <nce.density.NCEDensity.save>`: writes ``estimator`` to ``path``."""
    estimator._check_fitted()
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    model, noise = estimator.model_, estimator.noise_
    noise_entry = {"class": type(noise).__name__, "state": None}
    if estimator.noise == "conditional":  # noise_ is then the proposal that normalized the fit
        noise_entry["conditional"] = True
    if (
        type(noise).__name__ in _BUILTIN_NOISES
        and type(noise) is _BUILTIN_NOISES[type(noise).__name__][0]
    ):
        names = _BUILTIN_NOISES[type(noise).__name__][1]
        noise_entry["state"] = {k: getattr(noise, k).detach().cpu() for k in names}
    payload = {
        "model": {
            "class": type(model).__name__,
            "builtin": _BUILTIN_MODELS.get(type(model).__name__) is type(model),
            "config": model.config(),
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        "noise": noise_entry,
        "params": _params(estimator),
        "fitted": {
            key: _plain(getattr(estimator, key), key)
            for key in (*_FITTED, "converged_", "optimizer_", "noise_ratio_", "batch_size_")
        }
        | {"standardization_": _plain_pair(getattr(estimator, "standardization_", None))}
        | {"waymark_alphas_": _plain_alphas(getattr(estimator, "waymark_alphas_", None))}
        | {"noise_scale_": _plain(getattr(estimator, "noise_scale_", None), "noise_scale_")},
        "metadata": _plain(dict(metadata or getattr(estimator, "metadata_", {}) or {}), "metadata"),
    }
    save_checkpoint(payload, path, kind="density")


def load_estimator(
    cls: type[NCEDensity],
    path,
    *,
    model: EnergyModel | None = None,
    noise: Noise | Distribution | None = None,
) -> NCEDensity:
    """:meth:`NCEDensity.load <nce.density.NCEDensity.load>`: reads a saved ``cls``.

    Every entry is checked before anything is built, so a damaged or foreign file raises one
    :class:`~nce._checkpoint.CheckpointError` naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    saved = load_checkpoint(path, kind="density", legacy=_is_legacy)
    model = _load_model(saved, model)
    noise = _load_noise(saved, noise, model.dim)
    params = dict(saved.entry("params", dict))
    if "max_epochs" in params and "epochs" not in params:  # files written before the rename
        params["epochs"] = params.pop("max_epochs")
    conditional = saved.entry("noise", dict).get("conditional") is True
    try:
        estimator = cls(model=model, noise="conditional" if conditional else noise, **params)
    except (TypeError, ValueError) as err:
        raise saved.error(f"entry 'params' does not fit {cls.__name__}: {err}") from err
    estimator.model_ = model.eval()
    estimator.noise_ = noise
    fitted = saved.entry("fitted", dict)
    for key in _FITTED:
        setattr(estimator, key, saved.entry(key, within=fitted, name=f"fitted.{key}"))
    # Files written before these were recorded: a saved fit counted as converged.
    estimator.converged_ = bool(fitted.get("converged_", True))
    estimator.optimizer_ = str(fitted.get("optimizer_", params.get("optimizer", "adam")))
    estimator.noise_ratio_ = fitted.get("noise_ratio_", params.get("noise_ratio", 10))
    estimator.batch_size_ = fitted.get("batch_size_", params.get("batch_size", 256))
    pair = fitted.get("standardization_")
    estimator.standardization_ = None if pair is None else tuple(torch.tensor(v) for v in pair)
    alphas = fitted.get("waymark_alphas_")
    if estimator.waymarks is not None:  # the intermediate waymark models are not saved
        estimator.waymark_alphas_ = (
            None if alphas is None else torch.tensor(alphas, dtype=torch.float64)
        )
    if fitted.get("noise_scale_") is not None:
        estimator.noise_scale_ = float(fitted["noise_scale_"])
    estimator.metadata_ = saved.get("metadata", {})
    return estimator


def _is_legacy(payload: dict) -> str | None:
    """None for a file written by the earlier format (a ``torch.save`` dict marked ``_FORMAT``)."""
    return None if payload.get("format") == _FORMAT else f"no {_FORMAT!r} header"


def _load_model(saved: Checkpoint, model: EnergyModel | None) -> EnergyModel:
    """The saved energy model, its config and weights checked before it is built."""
    entry = saved.entry("model", dict)
    name = saved.entry("class", str, within=entry, name="model.class")
    state = saved.entry("state", dict, within=entry, name="model.state")
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise saved.error("entry 'model.state' must map parameter names to tensors")
    if model is None:
        if not saved.entry("builtin", bool, within=entry, name="model.builtin"):
            raise saved.error(
                f"holds a custom model of class {name!r}; pass an instance as model= to load its "
                "state"
            )
        if name not in _BUILTIN_MODELS:
            raise saved.error(
                f"unknown model class {name!r} (the built-in ones are {', '.join(_BUILTIN_MODELS)})"
            )
        config = saved.entry("config", dict, within=entry, name="model.config")
        return build_module(
            saved,
            _BUILTIN_MODELS[name],
            config,
            state,
            config_key="model.config",
            state_key="model.state",
        )
    if not isinstance(model, EnergyModel):
        raise TypeError(f"model must be an nce.models.EnergyModel, got {type(model).__name__}")
    model = model.to(next(iter(state.values())).dtype)
    load_state(model, state, saved, "model.state")
    return model


def _load_noise(saved: Checkpoint, noise, dim: int) -> Noise:
    """The saved noise (built-in classes) or the given one."""
    entry = saved.entry("noise", dict)
    if noise is not None:
        return as_noise(noise, name="noise")
    name = saved.entry("class", str, within=entry, name="noise.class")
    state = saved.entry("state", (dict, type(None)), within=entry, name="noise.state")
    if state is None:
        raise saved.error(
            f"was fitted with a custom noise of class {name!r}; pass it as noise= to load"
        )
    if name not in _BUILTIN_NOISES:
        raise saved.error(
            f"unknown noise class {name!r} (the built-in ones are {', '.join(_BUILTIN_NOISES)})"
        )
    noise_cls, names = _BUILTIN_NOISES[name]
    values = [saved.entry(k, torch.Tensor, within=state, name=f"noise.state.{k}") for k in names]
    try:
        noise = noise_cls(*values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise saved.error(f"entry 'noise.state' does not build a {name}: {_one_line(err)}") from err
    if tuple(noise.event_shape) != (dim,):
        raise saved.error(
            f"the noise has event shape {tuple(noise.event_shape)} but the model has dimension "
            f"{dim}"
        )
    return noise


def _params(estimator: NCEDensity) -> dict:
    """The constructor's keyword arguments (read from its signature, so that the file follows the
    constructor), as plain values; ``random_state`` only if an int."""
    names = [
        name
        for name in inspect.signature(type(estimator).__init__).parameters
        if name not in ("self", "model", "noise") and hasattr(estimator, name)
    ]
    params = {name: getattr(estimator, name) for name in names}
    if not isinstance(params.get("random_state"), int):
        params["random_state"] = None
    return {key: _plain(value, key) for key, value in params.items()}


def _plain_pair(pair) -> list | None:
    return None if pair is None else [t.detach().cpu().tolist() for t in pair]


def _plain_alphas(alphas) -> list | None:
    return None if alphas is None else alphas.detach().cpu().tolist()


def _plain(value, name: str):
    """``value`` as plain Python (numpy scalars become numbers), so that ``torch.load(...,
    weights_only=True)`` can read it back; anything else raises, naming where it sits."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{name}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{name} must hold numbers, strings, lists and dicts to be saved, got "
        f"{type(value).__name__}"
    )
