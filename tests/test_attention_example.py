"""Attention as an energy model: InfoNCE over keys is the negative log attention weight."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F

import nce

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attention_as_ebm.py"


def test_in_batch_info_nce_is_minus_log_sdpa_weight_of_the_right_key():
    g = torch.Generator().manual_seed(0)
    d = 16
    q = torch.randn(12, d, generator=g, dtype=torch.float64)
    k = torch.randn(12, d, generator=g, dtype=torch.float64)
    weights = F.scaled_dot_product_attention(q[None], k[None], torch.eye(12, dtype=q.dtype)[None])
    loss = nce.info_nce(q, k, temperature=math.sqrt(d), normalize=False, reduction="none")
    torch.testing.assert_close(loss, -weights[0].diagonal().log())


def test_info_nce_with_given_negatives_is_minus_log_sdpa_weight_of_the_positive():
    g = torch.Generator().manual_seed(1)
    n, m, d = 5, 7, 8
    q = torch.randn(n, d, generator=g, dtype=torch.float64)
    positive = torch.randn(n, d, generator=g, dtype=torch.float64)
    negatives = torch.randn(n, m, d, generator=g, dtype=torch.float64)
    keys = torch.cat([positive[:, None], negatives], dim=1)  # (N, 1 + M, D), positive first
    values = torch.eye(m + 1, dtype=q.dtype).expand(n, m + 1, m + 1)
    weights = F.scaled_dot_product_attention(q[:, None], keys, values)[:, 0]  # (N, 1 + M)
    loss = nce.info_nce(
        q, positive, negatives, temperature=math.sqrt(d), normalize=False, reduction="none"
    )
    torch.testing.assert_close(loss, -weights[:, 0].log())


def test_example_learns_to_retrieve_and_plots(tmp_path):
    spec = importlib.util.spec_from_file_location("attention_as_ebm", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "energies.png"
    result = example.run(example.parse_args(["--slots", "8", "--steps", "40", "--out", str(out)]))
    assert result["after"]["accuracy"] == 1.0 > result["before"]["accuracy"]
    assert result["after"]["loss"] < result["before"]["loss"]
    for stage in ("before", "after"):
        assert result[stage]["identity_gap"] < 1e-4
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
