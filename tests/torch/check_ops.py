#!/usr/bin/python3
"""The vmoer torch custom operators (integrations/torch/vmoer_torch_ops.cpp) against an
independent pure-torch implementation differentiated by torch autograd.

Loads the ops library into torch with torch.ops.load_library, routes random inputs with
every torch.ops.vmoer.route_* op, and rebuilds the same forward in torch: the parameter
layout from its documented slot order, the Gaussian noise transforms of
check_gradients.py, SWAG's sampled weights, VTSR's temperature MLP, vmoer's Philox noise
(torch.ops.vmoer.logit_noise / dropout_masks / weight_noise / gumbel_noise) and vmoer's
expert ids held fixed. Sampled selection (sample_k) is checked by recomputing the
Gumbel-top-K choice in torch from that noise. Compares ids, weights, probs, signals, the
KL and the temperature term, then the gradients of
    L = sum dweights * weights + sum dprobs * probs + beta * kl + gamma * temperature_term
with respect to hidden, the flat parameters and the temperature parameters. Also checks
that bad input raises a named error and that a parameter changed in place before the
backward is caught.
Exit 0: all match; 1: a mismatch; 77: torch is absent.
Usage: check_ops.py <libvmoer_torch_ops.so>
"""
import math
import os
import sys

try:
    import torch
except ImportError:
    print("torch is not installed: skipping the custom-operator check")
    sys.exit(77)

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_gradients import finalise, covariance, score  # noqa: E402 (the Gaussian reference)

OPS = None
FAILED = []


def compare(label, got, want, tol):
    got, want = got.detach().double(), want.detach().double().reshape(got.shape)
    scale = max(want.abs().max().item() if want.numel() else 0.0, 1e-3)
    err = (got - want).abs().max().item() / scale if want.numel() else 0.0
    bad = not err < tol
    if bad:
        FAILED.append(label)
    print(f"  {label:40s} rel err {err:.2e} {'MISMATCH' if bad else 'ok'}")


def layout(family, E, D, H, r):
    """(name, rows, cols) of the flat buffer, in vmoer's documented slot order."""
    if family in ("dirac", "mc_dropout"):
        return [("router.weight", E, D), ("router.bias", 1, E)]
    if family == "swag":  # r = rank deviation columns
        return [("router.weight", E, D), ("router.bias", 1, E), ("swag.second_moment.weight", E, D),
                ("swag.second_moment.bias", 1, E), ("swag.deviations.weight", r, E * D),
                ("swag.deviations.bias", r, E), ("swag.snapshots", 1, 1)]
    head = {"mean_field": E, "full_covariance": E * (E + 1) // 2, "low_rank": E * (1 + r)}[family]
    return [("router.weight", E, D), ("encoder.trunk.weight", H, D), ("router.bias", 1, E),
            ("encoder.trunk.bias", 1, H), ("encoder.mean.weight", E, H), ("encoder.scale.weight", head, H),
            ("encoder.mean.bias", 1, E), ("encoder.scale.bias", 1, head)]


def temperature_layout(case, E, D):
    """(name, rows, cols) of a learned temperature's buffer (LearnedTemperature::layout)."""
    h, g = case["temperature_hidden"], E if case.get("per_expert_temperature", False) else 1
    return [("temperature.trunk.weight", h, D), ("temperature.trunk.bias", 1, h), ("temperature.head.weight", g, h),
            ("temperature.head.bias", 1, g)]


def learned_temperature(case, x, tflat):
    """T(u) [T, G] = min(softplus(Wt2 relu(Wt1 u + bt1) + bt2) + floor, ceiling)."""
    p = slots(tflat, temperature_layout(case, case["experts"], x.shape[1]))
    h = torch.relu(x @ p["temperature.trunk.weight"].T + p["temperature.trunk.bias"][0])
    a = h @ p["temperature.head.weight"].T + p["temperature.head.bias"][0]
    t = torch.nn.functional.softplus(a) + case.get("temperature_floor", 0.05)
    return t.clamp(max=case.get("temperature_ceiling", 20.0))


def swag_logits(case, x, p):
    """z [T, S, E] from S sampled routers theta_s = mean + c1 sqrt(diag) z1_s + c2 Dev^T z2_s."""
    E, S, r, scale = case["experts"], case["samples"], case["rank"], case["scale"]
    T, D = x.shape
    P = E * (D + 1)
    mean = torch.cat([p["router.weight"].reshape(-1), p["router.bias"][0]])
    second = torch.cat([p["swag.second_moment.weight"].reshape(-1), p["swag.second_moment.bias"][0]])
    k = min(int(round(p["swag.snapshots"].item())), r)
    dev = torch.cat([p["swag.deviations.weight"], p["swag.deviations.bias"]], 1)[:k]
    z = OPS.weight_noise(case["seed"], case["layer"], S, P + r)
    c1, c2 = scale / math.sqrt(2), scale / math.sqrt(2 * max(k - 1, 1))
    theta = mean + c1 * torch.sqrt((second - mean * mean).clamp_min(0)) * z[:, :P] + c2 * z[:, P : P + k] @ dev
    w, b = theta[:, : E * D].reshape(S, E, D), theta[:, E * D :]
    return torch.einsum("td,sed->tse", x, w) + b


def slots(flat, lay):
    out, offset = {}, 0
    for name, rows, cols in lay:
        out[name] = flat[offset : offset + rows * cols].reshape(rows, cols)
        offset += rows * cols
    assert offset == flat.numel()
    return out


def entropy(p):
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def reference(case, x, flat, tflat, ids):
    """Pure-torch forward: (weights, probs, kl, signals, temperature term, expected ids),
    the weights with vmoer's ids; tflat: the learned temperature's buffer or None."""
    family, E, S = case["family"], case["experts"], case.get("samples", 1)
    H, r = case.get("encoder_width", 0), case.get("rank", 0)
    T, D = x.shape
    p = slots(flat, layout(family, E, D, H, r))
    W, b = p["router.weight"], p["router.bias"][0]
    l_det = x @ W.T + b
    kl = torch.zeros(())
    trace = torch.zeros(T)
    if family == "dirac":
        zs = l_det[:, None, :]
    elif family == "mc_dropout":
        masks = OPS.dropout_masks(case["seed"], case["layer"], case["token_offset"], T, S, D, case["rate"])
        zs = torch.einsum("tsd,ed->tse", masks * x[:, None, :], W) + b
    elif family == "swag":
        zs = swag_logits(case, x, p)
    else:
        h = torch.relu(x @ p["encoder.trunk.weight"].T + p["encoder.trunk.bias"][0])
        m = h @ p["encoder.mean.weight"].T + p["encoder.mean.bias"][0]
        s = h @ p["encoder.scale.weight"].T + p["encoder.scale.bias"][0]
        cov = family
        n = E + r if family == "low_rank" else E
        eps = OPS.logit_noise(case["seed"], case["layer"], case["token_offset"], T, S, n)
        rows, kls, traces = [], [], []
        v = case["prior_sigma"] ** 2
        for i in range(T):
            f = finalise(cov, s[i], E, r)
            rows.append(torch.stack([l_det[i] + m[i] + f(eps[i, k]) for k in range(S)]))
            sigma = covariance(cov, s[i], E, r)
            traces.append(torch.trace(sigma))
            kls.append(0.5 * (torch.trace(sigma) / v + m[i] @ m[i] / v - E + E * math.log(v) - torch.logdet(sigma)))
        zs = torch.stack(rows)
        kl = torch.stack(kls).mean()
        trace = torch.stack(traces)
    if family in ("mc_dropout", "swag") and S > 1:  # weight space: the sample estimate of tr Cov(z)
        trace = zs.var(1, unbiased=True).sum(-1)
    kind, term = case["score"], torch.zeros(())
    if tflat is None:
        tau = torch.full((T, E), case["temperature"])
    else:
        t = learned_temperature(case, x, tflat)
        term = (-torch.log(t).mean(1)).mean()
        tau = t.expand(T, E)
    if case.get("average_logits", False):
        probs = score(kind, zs.mean(1) / tau)
        untempered = score(kind, zs.mean(1))
    else:
        probs = score(kind, zs / tau[:, None, :]).mean(1)
        untempered = score(kind, zs).mean(1)
    # Sampled selection draws by Gumbel-top-K from the tempered scores and weights the
    # chosen experts by the untempered ones; top-K uses the tempered scores for both.
    sampled = case.get("sample_k", False)
    keys = probs.detach()
    if sampled:
        keys = torch.log(keys) + OPS.gumbel_noise(case["seed"], case.get("layer", 0), case.get("token_offset", 0), T, E)
    chosen = (untempered if sampled else probs).gather(1, ids)
    weights = chosen / chosen.sum(1, keepdim=True) if case["normalize"] else chosen
    # Signals from the tempered softmax of each sample (signals.hpp), checked for softmax scores.
    ps = torch.softmax(zs / tau[:, None, :], -1)
    pbar = ps.mean(1)
    mc = ps.var(1, unbiased=True).sum(-1) if S > 1 else torch.zeros(T)
    mi = (entropy(pbar) - entropy(ps).mean(1)).clamp_min(0)
    signals = torch.stack([trace, mc, entropy(pbar), mi, tau.mean(1)], 1)
    return weights, probs, kl, signals, term, keys.topk(case["top_k"], 1).indices


def op_args(case, D):
    """Positional arguments of the case's op after (hidden, params)."""
    f = case["family"]
    sel = [case["top_k"], case["temperature"], case["score"], case["normalize"]]
    sampling = [case.get("average_logits", False), case["seed"], case.get("layer", 0), case.get("token_offset", 0)]
    if f == "dirac":
        return [case["experts"]] + sel + sampling[1:]
    if f == "mc_dropout":
        return [case["experts"], case["rate"], case["samples"]] + sel + sampling
    if f == "swag":
        return [case["experts"], case["rank"], case["scale"], case["samples"]] + sel + sampling
    shape = [case["experts"], case["encoder_width"]] + ([case["rank"]] if f == "low_rank" else [])
    return shape + [case["samples"]] + sel + sampling + [True, case["prior_sigma"]]


def selection_kwargs(case, tparams):
    """Keyword arguments of the selection (sample_k, learned temperature)."""
    kw = dict(sample_k=case.get("sample_k", False))
    if tparams is not None:
        kw.update(temperature_params=tparams, temperature_hidden=case["temperature_hidden"],
                  per_expert_temperature=case.get("per_expert_temperature", False),
                  temperature_floor=case.get("temperature_floor", 0.05),
                  temperature_ceiling=case.get("temperature_ceiling", 20.0))
    return kw


def random_params(case, D, g):
    lay = layout(case["family"], case["experts"], D, case.get("encoder_width", 0), case.get("rank", 0))
    flat = 0.4 * torch.randn(sum(r * c for _, r, c in lay), generator=g, dtype=torch.float64)
    s = slots(flat, lay)
    if case["family"] == "swag":  # a second moment above the squared mean (variances 0.05 to ~0.3)
        for w in ("weight", "bias"):
            m = s["router." + w]
            s["swag.second_moment." + w].copy_(m * m + 0.05 + 0.1 * torch.randn(m.shape, generator=g).abs())
        s["swag.snapshots"].fill_(case["snapshots"])
    elif case["family"] not in ("dirac", "mc_dropout"):
        s["encoder.scale.bias"].sub_(1.0)  # logit standard deviations around 0.6
    return flat


def random_temperature(case, D, g):
    """A learned temperature's buffer, or None; temperatures spread around 1."""
    if "temperature_hidden" not in case:
        return None
    lay = temperature_layout(case, case["experts"], D)
    return 0.6 * torch.randn(sum(r * c for _, r, c in lay), generator=g, dtype=torch.float64)


def describe(case):
    extra = [k for k in ("sample_k",) if case.get(k)]
    if "temperature_hidden" in case:
        extra.append("VTSR" + (" per expert" if case.get("per_expert_temperature") else ""))
    return case["family"] + (" + " + ", ".join(extra) if extra else "")


def check_case(case, dtype):
    print(f"{describe(case)} ({dtype})")
    g = torch.Generator().manual_seed(case["seed"] + 17)
    T, D, E, K = 11, 7, case["experts"], case["top_k"]
    x64 = torch.randn(T, D, generator=g, dtype=torch.float64)
    p64 = random_params(case, D, g)
    t64 = random_temperature(case, D, g)
    dw, dp = torch.randn(T, K, generator=g, dtype=torch.float64), torch.randn(T, E, generator=g, dtype=torch.float64)
    beta, gamma = 0.3, 0.4

    x = x64.to(dtype).clone().requires_grad_(True)
    params = p64.to(dtype).clone().requires_grad_(True)
    tparams = None if t64 is None else t64.to(dtype).clone().requires_grad_(True)
    op = getattr(OPS, "route_" + case["family"])
    ids, weights, probs, signals, kl, term = op(x, params, *op_args(case, D), **selection_kwargs(case, tparams))
    loss = (dw.to(dtype) * weights).sum() + (dp.to(dtype) * probs).sum() + beta * kl + gamma * term
    loss.backward()

    xr, pr = x64.detach().clone().requires_grad_(True), p64.detach().clone().requires_grad_(True)
    tr = None if t64 is None else t64.detach().clone().requires_grad_(True)
    w_ref, p_ref, kl_ref, s_ref, term_ref, top = reference(case, xr, pr, tr, ids)
    loss_ref = (dw * w_ref).sum() + (dp * p_ref).sum() + beta * kl_ref + gamma * term_ref
    loss_ref.backward()

    tight = dtype == torch.float64
    fwd, bwd = (1e-10, 1e-9) if tight else (2e-5, 2e-4)
    if not torch.equal(top, ids):
        FAILED.append(describe(case) + " ids")
        print("  ids MISMATCH")
    compare("weights", weights, w_ref, fwd)
    compare("probs", probs, p_ref, fwd)
    compare("kl", kl.reshape(1), kl_ref.reshape(1), fwd)
    compare("temperature_term", term.reshape(1), term_ref.reshape(1), fwd)
    if case["score"] == "softmax" and not case.get("average_logits", False):
        compare("signals", signals, s_ref, 1e-8 if tight else 1e-4)
    compare("hidden grad", x.grad, xr.grad, bwd)
    lay = layout(case["family"], E, D, case.get("encoder_width", 0), case.get("rank", 0))
    got, want = slots(params.grad, lay), slots(pr.grad, lay)
    for name, _, _ in lay:
        compare("params grad " + name, got[name], want[name], bwd)
    if tr is not None:
        lay = temperature_layout(case, E, D)
        got, want = slots(tparams.grad, lay), slots(tr.grad, lay)
        for name, _, _ in lay:
            compare("temperature_params grad " + name, got[name], want[name], bwd)


def expect_error(label, fragment, fn):
    try:
        fn()
    except Exception as e:  # vmoer::invalid_argument arrives as ValueError, torch's checks as RuntimeError
        ok = fragment in str(e)
        print(f"  {label:40s} {'ok' if ok else 'WRONG MESSAGE'}: {str(e).splitlines()[0]}")
        if not ok:
            FAILED.append(label)
        return
    print(f"  {label:40s} NO ERROR")
    FAILED.append(label)


def check_errors():
    print("bad input")
    x = torch.randn(4, 5, dtype=torch.float64)
    w, b = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    p = OPS.init_params("mean_field", w, b, 3, 0, 0.5, 0)
    mf = OPS.route_mean_field
    expect_error("wrong parameter count", "params has", lambda: mf(x, p[:-1], 6, 3, 2, 2))
    expect_error("top_k > experts", "top_k", lambda: mf(x, p, 6, 3, 2, 7))
    bad = x.clone()
    bad[1, 2] = float("nan")
    expect_error("non-finite hidden", "hidden has non-finite", lambda: mf(bad, p, 6, 3, 2, 2))
    expect_error("dtype mismatch", "params must have hidden's dtype", lambda: mf(x.float(), p, 6, 3, 2, 2))
    expect_error("unknown score", "score", lambda: mf(x, p, 6, 3, 2, 2, 1.0, "tanh"))
    expect_error("wrong hidden width", "params has", lambda: mf(torch.randn(4, 6, dtype=torch.float64), p, 6, 3, 2, 2))
    expect_error("zero samples", "samples", lambda: mf(x, p, 6, 3, 0, 2))
    expect_error("unknown family", "family", lambda: OPS.init_params("gaussian", w, b, 3, 0, 0.5, 0))
    expect_error("SWAG init without deviation columns", "rank = 0", lambda: OPS.init_params("swag", w, b, 3, 0))
    # SWAG: the snapshot count is part of the buffer and must be a whole number >= 1.
    sw = OPS.init_params("swag", w, b, 0, 2)
    expect_error("SWAG rank mismatch", "params has", lambda: OPS.route_swag(x, sw, 6, 3, 0.5, 2, 2))
    expect_error("SWAG rank 0", "rank = 0", lambda: OPS.route_swag(x, sw, 6, 0, 0.5, 2, 2))
    expect_error("SWAG negative scale", "scale = -0.5", lambda: OPS.route_swag(x, sw, 6, 2, -0.5, 2, 2))
    for n in (0.0, 2.5):
        bad_count = sw.clone()
        bad_count[-1] = n
        expect_error(f"SWAG snapshots = {n}", "swag.snapshots", lambda: OPS.route_swag(x, bad_count, 6, 2, 0.5, 2, 2))
    # VTSR: the temperature buffer is checked like params, and replaces the fixed temperature.
    tp = OPS.init_temperature_params(6, 5, 4)
    vt = dict(temperature_params=tp, temperature_hidden=4)
    expect_error("temperature_params size", "temperature_params has",
                 lambda: mf(x, p, 6, 3, 2, 2, **dict(vt, temperature_params=tp[:-1])))
    expect_error("temperature_params width", "temperature_params has",
                 lambda: mf(x, p, 6, 3, 2, 2, **dict(vt, per_expert_temperature=True)))
    expect_error("temperature_params dtype", "temperature_params must have hidden's dtype",
                 lambda: mf(x, p, 6, 3, 2, 2, **dict(vt, temperature_params=tp.float())))
    bad_tp = tp.clone()
    bad_tp[0] = float("inf")
    expect_error("temperature_params non-finite", "temperature_params has non-finite",
                 lambda: mf(x, p, 6, 3, 2, 2, **dict(vt, temperature_params=bad_tp)))
    expect_error("temperature with temperature_params", "temperature = 2",
                 lambda: mf(x, p, 6, 3, 2, 2, 2.0, **vt))
    expect_error("temperature_floor", "temperature_floor", lambda: mf(x, p, 6, 3, 2, 2, **vt, temperature_floor=1.0))
    expect_error("temperature_ceiling", "temperature_ceiling",
                 lambda: mf(x, p, 6, 3, 2, 2, **vt, temperature_ceiling=0.5))
    expect_error("temperature_hidden", "temperature_hidden", lambda: mf(x, p, 6, 3, 2, 2, **dict(vt, temperature_hidden=0)))
    expect_error("non-positive temperature", "temperature = 0", lambda: mf(x, p, 6, 3, 2, 2, 0.0))
    expect_error("gumbel_noise layer", "layer", lambda: OPS.gumbel_noise(0, -1, 0, 3, 4))
    expect_error("weight_noise size", "size", lambda: OPS.weight_noise(0, 0, 2, 0))
    # The backward rebuilds the router from the saved parameters: changing them in place
    # between forward and backward must fail, not differentiate a different router.
    q = p.clone().requires_grad_(True)
    out = mf(x, q, 6, 3, 2, 2)
    with torch.no_grad():
        q.add_(0.1)
    expect_error("params modified before backward", "inplace operation", lambda: out[1].sum().backward())


def check_init_params():
    print("init_params")
    w, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    for family, r in (("dirac", 0), ("mean_field", 0), ("full_covariance", 0), ("low_rank", 2)):
        flat = OPS.init_params(family, w, b, 5, r, 0.25, 3)
        s = slots(flat, layout(family, 4, 3, 5, r))
        compare(family + " router.weight", s["router.weight"], w, 1e-15)
        compare(family + " router.bias", s["router.bias"], b, 1e-15)
        if family != "dirac":
            compare(family + " mean head is zero", s["encoder.mean.weight"], torch.zeros(4, 5), 1e-15)
            compare(family + " log-variance 2 log sigma", s["encoder.scale.bias"][0, :4],
                    torch.full((4,), 2 * math.log(0.25)), 1e-6)


def check_init_swag_and_temperature():
    print("init_params (swag), init_temperature_params")
    w, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    s = slots(OPS.init_params("swag", w, b, 0, 3), layout("swag", 4, 3, 0, 3))
    compare("swag mean = first snapshot", s["router.weight"], w, 1e-15)
    compare("swag second moment = its square", s["swag.second_moment.bias"], b * b, 1e-15)
    compare("swag deviation of one snapshot", s["swag.deviations.weight"], torch.zeros(3, 12), 1e-15)
    compare("swag one snapshot", s["swag.snapshots"], torch.ones(1, 1), 1e-15)
    case = dict(experts=4, temperature_hidden=5, per_expert_temperature=True, temperature_floor=0.2)
    tp = OPS.init_temperature_params(4, 3, 5, True, 0.2, 7)
    x = torch.randn(9, 3, dtype=torch.float64)
    compare("initial learned temperature is 1", learned_temperature(case, x, tp), torch.ones(9, 4), 1e-12)


def check_script():
    """The ops are callable from TorchScript, as a schema-registered op should be."""
    print("TorchScript")

    @torch.jit.script
    def scripted(x: torch.Tensor, p: torch.Tensor):
        return torch.ops.vmoer.route_dirac(x, p, 4, 2)[1]

    w, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    p = OPS.init_params("dirac", w, b)
    probs = torch.softmax(x @ w.T + b, -1)
    top = probs.topk(2, 1).values
    compare("scripted route_dirac weights", scripted(x, p), top / top.sum(1, keepdim=True), 1e-12)


CASES = [
    dict(family="dirac", experts=6, top_k=2, temperature=0.7, score="softmax", normalize=True, seed=1),
    dict(family="mc_dropout", experts=5, top_k=2, temperature=1.0, score="softmax", normalize=True, rate=0.25,
         samples=4, average_logits=True, seed=2, layer=1, token_offset=50),
    dict(family="mean_field", experts=6, top_k=2, temperature=1.0, score="softmax", normalize=True, encoder_width=5,
         samples=3, seed=11, layer=2, token_offset=100, prior_sigma=0.8),
    dict(family="full_covariance", experts=5, top_k=3, temperature=1.3, score="sigmoid", normalize=False,
         encoder_width=4, samples=2, average_logits=True, seed=12, layer=0, token_offset=7, prior_sigma=1.0),
    dict(family="low_rank", experts=6, top_k=2, temperature=0.9, score="softmax", normalize=True, encoder_width=4,
         rank=2, samples=3, seed=13, layer=5, token_offset=0, prior_sigma=1.2),
    # SWAG: fewer snapshots than deviation columns (K = n = 3 of r = 4), then a full ring
    # (n = 7 > r = 3) with sampled selection.
    dict(family="swag", experts=5, top_k=2, temperature=1.0, score="softmax", normalize=True, rank=4, scale=0.5,
         snapshots=3, samples=3, seed=21, layer=4, token_offset=30),
    dict(family="swag", experts=6, top_k=3, temperature=1.2, score="sigmoid", normalize=False, rank=3, scale=0.8,
         snapshots=7, samples=2, average_logits=True, sample_k=True, seed=22, layer=1, token_offset=9),
    # Temperature sampling (SampleK) on the deterministic and a Gaussian router.
    dict(family="dirac", experts=6, top_k=2, temperature=1.5, score="softmax", normalize=True, sample_k=True, seed=23,
         layer=2, token_offset=400),
    dict(family="mean_field", experts=6, top_k=2, temperature=0.8, score="softmax", normalize=True, encoder_width=5,
         samples=2, sample_k=True, seed=24, layer=3, token_offset=60, prior_sigma=1.0),
    # VTSR: a shared temperature with top-K (a low ceiling clamps some tokens), one per
    # expert with sampling, and a shared one with sampling on MC dropout.
    dict(family="dirac", experts=5, top_k=2, temperature=1.0, score="softmax", normalize=True, seed=25,
         temperature_hidden=4, temperature_floor=0.1, temperature_ceiling=1.6),
    dict(family="low_rank", experts=6, top_k=2, temperature=1.0, score="softmax", normalize=True, encoder_width=4,
         rank=1, samples=3, seed=26, layer=0, token_offset=5, prior_sigma=1.0, sample_k=True, temperature_hidden=5,
         per_expert_temperature=True),
    dict(family="mc_dropout", experts=5, top_k=2, temperature=1.0, score="softmax", normalize=True, rate=0.2,
         samples=3, average_logits=True, sample_k=True, seed=27, layer=6, token_offset=2, temperature_hidden=3),
]


def main():
    global OPS
    torch.set_default_dtype(torch.float64)
    torch.ops.load_library(sys.argv[1])
    OPS = torch.ops.vmoer
    for case in CASES:
        check_case(case, torch.float64)
    for i in (2, 4, 6, 10):
        check_case(CASES[i], torch.float32)
    check_init_params()
    check_init_swag_and_temperature()
    check_errors()
    check_script()
    print("all match" if not FAILED else "MISMATCH: " + ", ".join(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
