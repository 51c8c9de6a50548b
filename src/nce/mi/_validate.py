"""Checks of :func:`nce.mi.estimate_mi`'s options and samples, each error naming the argument."""

from __future__ import annotations

import torch
from torch import nn

from nce._convert import as_float_tensor
from nce._random import check_random_state
from nce._validation import check_int, check_positive
from nce.mi.critics import CRITICS
from nce.mi.standardize import STANDARDIZE
from nce.mi.waymarks import WAYMARK_MIXING


def check_options(
    *,
    critic,
    critics=CRITICS,
    max_steps,
    lr,
    weight_decay,
    embed_dim,
    validation_fraction,
    eval_every,
    patience,
    standardize,
    clip,
    cap_margin,
    random_state,
) -> None:
    """Every option of :func:`nce.mi.estimate_mi` but the estimator, the batch sizes and the
    waymarks; ``critics`` are the critic names the estimator accepts."""
    if not isinstance(critic, nn.Module) and critic not in critics:
        raise ValueError(f"critic must be one of {critics} or a torch.nn.Module, got {critic!r}")
    if standardize not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, got {standardize!r}")
    check_int("max_steps", max_steps, minimum=1)
    check_int("eval_every", eval_every, minimum=1)
    check_int("patience", patience, minimum=1)
    check_positive("lr", lr)
    check_positive("clip", clip)
    check_positive("cap_margin", cap_margin)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise TypeError(f"weight_decay must be a number, got {type(weight_decay).__name__}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if embed_dim is not None:
        check_int("embed_dim", embed_dim, minimum=1)
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)):
        raise TypeError(
            f"validation_fraction must be a number, got {type(validation_fraction).__name__}"
        )
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    check_random_state(random_state)
    if not isinstance(random_state, torch.Generator) and (random_state or 0) >= 2**64:
        raise ValueError(f"random_state must be below 2**64, got {random_state}")


def check_waymark_options(record, waymarks, mixing) -> None:
    """``waymarks`` and ``waymark_mixing`` belong to telescoping ratio estimation only; there
    ``waymarks`` is None or an int >= 1 and the mixing one of :data:`WAYMARK_MIXING`."""
    if not record.telescoping:
        if waymarks is not None or mixing != "linear":
            option = "waymarks" if waymarks is not None else "waymark_mixing"
            raise ValueError(
                f"{option} applies to estimator='tre' only (telescoping ratio estimation), got "
                f"{option}={waymarks if waymarks is not None else mixing!r} with "
                f"estimator={record.name!r}"
            )
        return
    if waymarks is not None:
        check_int("waymarks", waymarks, minimum=1)
    if mixing not in WAYMARK_MIXING:
        raise ValueError(f"waymark_mixing must be one of {WAYMARK_MIXING}, got {mixing!r}")


def as_columns(name: str, samples) -> torch.Tensor:
    """The samples as a finite (N, D) float64 CPU tensor (a 1-D input is one column).

    Shape:
        - samples: (N, D) or (N,)
        - output: (N, D)
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu()
    columns = as_float_tensor(name, samples, ndim=(1, 2), dtype=torch.float64)
    if columns.dim() == 1:
        columns = columns.unsqueeze(1)
    return columns


def check_varying(name: str, columns: torch.Tensor) -> None:
    """Refuse a constant column of an (N, D) tensor: it carries no information."""
    constant = (columns.amax(0) == columns.amin(0)).nonzero().flatten()
    if len(constant):
        j = int(constant[0])
        raise ValueError(
            f"{name} column {j} is constant (every value is {float(columns[0, j]):g}): it carries "
            "no information; drop it"
        )


def split_sizes(n_x: int, n_y: int, validation_fraction: float) -> tuple[int, int]:
    """``(n_train, n_valid)`` for paired samples of ``n_x`` and ``n_y`` rows: both at least 2."""
    if n_x != n_y:
        raise ValueError(
            f"x and y must have the same number of rows (paired samples): x has {n_x} "
            f"rows but y has {n_y}"
        )
    if n_x < 2:
        raise ValueError(f"estimate_mi needs at least 2 rows (paired samples), got N = {n_x}")
    n_valid = int(round(n_x * validation_fraction))
    n_train = n_x - n_valid
    if n_valid < 2 or n_train < 2:
        raise ValueError(
            f"estimate_mi needs at least 2 training and 2 held-out rows, got N = {n_x} with "
            f"validation_fraction={validation_fraction} ({n_train} for training, {n_valid} held "
            "out)"
        )
    return n_train, n_valid
