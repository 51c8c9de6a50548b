"""Naive loop references, written from each paper's equation, one scalar term at a time.

They are slow and obviously correct; the tests compare the library against them in value and
gradient (autograd flows through these loops too).
"""

from __future__ import annotations

import math

import torch


def _cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def _sim(a, b, normalize):
    return _cos(a, b) if normalize else a @ b


def _logsigmoid(x):
    return -torch.log1p(torch.exp(-x)) if x >= 0 else x - torch.log1p(torch.exp(x))


def binary_nce(lm_x, ln_x, lm_y, ln_y, nu=None):
    """Gutmann & Hyvarinen 2012, eq. 8: -J_T, h(u) = 1 / (1 + nu exp(-(lm - ln)))."""
    n = lm_x.shape[0]
    if nu is None:
        nu = lm_y.shape[1] if lm_y.dim() == 2 else lm_y.numel() / n
    total = 0.0
    for i in range(n):
        h = 1 / (1 + nu * torch.exp(ln_x[i] - lm_x[i]))
        total = total + torch.log(h)
    for y_m, y_n in zip(lm_y.reshape(-1), ln_y.reshape(-1), strict=True):
        h = 1 / (1 + nu * torch.exp(y_n - y_m))
        total = total + torch.log(1 - h)
    return -total / n


def info_nce_terms(q, k, negatives=None, tau=0.1, normalize=True, log_q=None, hits=None):
    """Per-query -log softmax of the positive among [positive, negatives]."""
    n = q.shape[0]
    out = []
    for i in range(n):
        pos = _sim(q[i], k[i], normalize) / tau
        logits = [pos]
        if negatives is None:
            cands = [(j, k[j]) for j in range(n) if j != i]
        elif negatives.dim() == 2:
            cands = list(enumerate(negatives))
        else:
            cands = list(enumerate(negatives[i]))
        for j, neg in cands:
            if hits is not None and hits(i, j):
                continue
            s = _sim(q[i], neg, normalize) / tau
            if log_q is not None:
                s = s - (log_q[i, j] if log_q.dim() == 2 else log_q[j])
            logits.append(s)
        denom = sum(torch.exp(s) for s in logits)
        out.append(-(pos - torch.log(denom)))
    return torch.stack(out)


def joint_terms(q, k, negatives=None, tau=0.1, normalize=True, log_q=None, ids=None):
    """Per-query -log softmax of the positive key i among the columns that every query scores:
    the N keys, then the given negatives ((M, D) shared, or (N, K, D): all N*K of them, query-
    major), with log_q = (key_log_q, negative_log_q) subtracted from every column, the positive's
    included (Yi et al. 2019), and, with ids = (key_ids, negative_ids), every column whose id is
    the positive's dropped except the positive itself."""
    n = q.shape[0]
    cols = list(k)
    lq = [] if log_q is None else list(log_q[0])
    cid = [] if ids is None else list(ids[0])
    if negatives is not None:
        cols += list(negatives.reshape(-1, negatives.shape[-1]))
        if log_q is not None:
            lq += list(log_q[1].reshape(-1))
        if ids is not None:
            cid += list(ids[1].reshape(-1))
    out = []
    for i in range(n):
        logits = []
        for c, col in enumerate(cols):
            if ids is not None and c != i and cid[c] == ids[0][i]:
                continue
            s = _sim(q[i], col, normalize) / tau
            if log_q is not None:
                s = s - lq[c]
            logits.append(s)
            if c == i:
                positive = s
        out.append(torch.log(sum(torch.exp(s) for s in logits)) - positive)
    return torch.stack(out)


def clip_terms(q, k, tau=0.1, normalize=True):
    """CLIP: mean of the image->text and text->image cross-entropies, per pair."""
    return 0.5 * (
        info_nce_terms(q, k, None, tau, normalize) + info_nce_terms(k, q, None, tau, normalize)
    )


def pairwise_terms(q, k, tau=0.1, bias=-10.0, labels=None, normalize=True):
    """SigLIP (Zhai et al. 2023, eq. 1), per query: -sum_j log 1 / (1 + exp(-z_ij s_ij)),
    s_ij = q_i . k_j / tau + b, z_ij = 1 for the positive pairs (the diagonal, or equal labels)."""
    n = q.shape[0]
    out = []
    for i in range(n):
        row = 0.0
        for j in range(n):
            positive = i == j if labels is None else bool(labels[i] == labels[j])
            z = 1.0 if positive else -1.0
            row = row - _logsigmoid(z * (_sim(q[i], k[j], normalize) / tau + bias))
        out.append(row)
    return torch.stack(out)


def nt_xent_terms(v1, v2, tau=0.5):
    """SimCLR eq. 1 for each of the 2N anchors: -log exp(s_ij/t) / sum_{k != i} exp(s_ik/t)."""
    z = torch.cat([v1, v2])
    n2 = z.shape[0]
    out = []
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(torch.exp(_cos(z[i], z[a]) / tau) for a in range(n2) if a != i)
        out.append(-torch.log(torch.exp(_cos(z[i], z[j]) / tau) / denom))
    return torch.stack(out)


def supcon_terms(z, labels, tau=0.1):
    """Khosla et al. 2020, eq. 2 (L_out), per anchor; None for anchors without a positive."""
    n = z.shape[0]
    out = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not pos:
            out.append(None)
            continue
        denom = sum(torch.exp(_cos(z[i], z[a]) / tau) for a in range(n) if a != i)
        terms = [torch.log(torch.exp(_cos(z[i], z[p]) / tau) / denom) for p in pos]
        out.append(-sum(terms) / len(pos))
    return out


def debiased_terms(q, k, tau_plus, beta, t):
    """Chuang et al. 2020 / Robinson et al. 2021, computed in exp space as their equations read."""
    n = q.shape[0]
    m = n - 1
    out = []
    for i in range(n):
        pos = torch.exp(_cos(q[i], k[i]) / t)
        negs = [torch.exp(_cos(q[i], k[j]) / t) for j in range(n) if j != i]
        imp = [x**beta for x in negs]
        mean_imp = sum(imp) / m
        reweighted = sum(w * x for w, x in zip(imp, negs, strict=True)) / mean_imp
        ng = (-tau_plus * m * pos + reweighted) / (1 - tau_plus)
        ng = torch.clamp(ng, min=m * math.exp(-1 / t))
        out.append(-torch.log(pos / (pos + ng)))
    return torch.stack(out)


def soft_terms(q, k, targets, tau=0.1, normalize=True):
    """-sum_j t_ij log softmax_j(s_ij)."""
    out = []
    for i in range(q.shape[0]):
        s = [_sim(q[i], k[j], normalize) / tau for j in range(k.shape[0])]
        log_den = torch.log(sum(torch.exp(x) for x in s))
        out.append(-sum(targets[i, j] * (s[j] - log_den) for j in range(k.shape[0])))
    return torch.stack(out)
