"""Saving and loading a fitted :class:`~nce.density.NCEDensity`: the file holds only plain
values (tensors, numbers, strings, lists and dicts), so that ``torch.load(weights_only=True)``
reads it back; built-in models and noises are recorded by class name and rebuilt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.distributions import Distribution

from nce._atomic import atomic_torch_save
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
_FORMAT = "nce.NCEDensity"


def save_estimator(estimator: NCEDensity, path, *, metadata: dict | None = None) -> None:
    """:meth:`NCEDensity.save <nce.density.NCEDensity.save>`: writes ``estimator`` to ``path``."""
    estimator._check_fitted()
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    model, noise = estimator.model_, estimator.noise_
    noise_entry = {"class": type(noise).__name__, "state": None}
    if (
        type(noise).__name__ in _BUILTIN_NOISES
        and type(noise) is _BUILTIN_NOISES[type(noise).__name__][0]
    ):
        names = _BUILTIN_NOISES[type(noise).__name__][1]
        noise_entry["state"] = {k: getattr(noise, k).detach().cpu() for k in names}
    payload = {
        "format": _FORMAT,
        "version": 1,
        "model": {
            "class": type(model).__name__,
            "builtin": _BUILTIN_MODELS.get(type(model).__name__) is type(model),
            "config": model.config(),
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        "noise": noise_entry,
        "params": _params(estimator),
        "fitted": {
            "log_partition_": estimator.log_partition_,
            "n_features_in_": estimator.n_features_in_,
            "n_iter_": estimator.n_iter_,
            "n_noise_samples_": estimator.n_noise_samples_,
            "loss_curve_": list(estimator.loss_curve_),
            "validation_curve_": list(estimator.validation_curve_),
            "fit_time_": estimator.fit_time_,
        },
        "metadata": _plain(dict(metadata or getattr(estimator, "metadata_", {}) or {}), "metadata"),
    }
    atomic_torch_save(payload, path)


def load_estimator(
    cls: type[NCEDensity],
    path,
    *,
    model: EnergyModel | None = None,
    noise: Noise | Distribution | None = None,
) -> NCEDensity:
    """:meth:`NCEDensity.load <nce.density.NCEDensity.load>`: reads a saved ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a saved NCEDensity ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a saved NCEDensity (no {_FORMAT!r} header)")
    entry = payload["model"]
    if model is None:
        if not entry["builtin"]:
            raise ValueError(
                f"{path} holds a custom model of class {entry['class']!r}; pass an instance "
                "as model= to load its state"
            )
        model = _BUILTIN_MODELS[entry["class"]](**entry["config"])
    elif not isinstance(model, EnergyModel):
        raise TypeError(f"model must be an nce.models.EnergyModel, got {type(model).__name__}")
    dtype = next(iter(entry["state"].values())).dtype
    model = model.to(dtype)
    try:
        model.load_state_dict(entry["state"])
    except RuntimeError as err:
        raise ValueError(
            f"{path}: the model state does not fit {type(model).__name__}: {err}"
        ) from err
    noise_entry = payload["noise"]
    if noise is None:
        if noise_entry["state"] is None:
            raise ValueError(
                f"{path} was fitted with a custom noise of class {noise_entry['class']!r}; "
                "pass it as noise= to load"
            )
        noise_cls, names = _BUILTIN_NOISES[noise_entry["class"]]
        noise = noise_cls(*(noise_entry["state"][k] for k in names))
    else:
        noise = as_noise(noise, name="noise")
    estimator = cls(model=model, noise=noise, **payload["params"])
    estimator.model_ = model.eval()
    estimator.noise_ = noise
    for key, value in payload["fitted"].items():
        setattr(estimator, key, value)
    estimator.metadata_ = payload.get("metadata", {})
    return estimator


def _params(estimator: NCEDensity) -> dict:
    """The constructor arguments of ``estimator``, as plain values (a seed only if an int)."""
    params = {
        key: getattr(estimator, key)
        for key in (
            "noise_ratio",
            "optimizer",
            "lr",
            "batch_size",
            "epochs",
            "resample_noise",
            "validation_fraction",
            "patience",
            "tol",
            "lbfgs_steps",
            "noise_components",
            "box_margin",
            "progress",
        )
    }
    params["random_state"] = (
        estimator.random_state if isinstance(estimator.random_state, int) else None
    )
    return {key: _plain(value, key) for key, value in params.items()}


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
