#!/usr/bin/python3
"""The vmoer torch custom operators (integrations/torch/vmoer_torch_ops.cpp) against an
independent pure-torch implementation differentiated by torch autograd.

Loads the ops library into torch with torch.ops.load_library, routes random inputs with
every torch.ops.vmoer.route_* op, and rebuilds the same forward in torch: the parameter
layout from its documented slot order, the Gaussian noise transforms of
check_gradients.py, vmoer's Philox noise (torch.ops.vmoer.logit_noise / dropout_masks)
and vmoer's expert ids held fixed. Compares ids, weights, probs, signals and the KL, then
the gradients of
    L = sum dweights * weights + sum dprobs * probs + beta * kl
with respect to hidden and the flat parameters. Also checks that bad input raises a
named error and that a parameter changed in place before the backward is caught.
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
    head = {"mean_field": E, "full_covariance": E * (E + 1) // 2, "low_rank": E * (1 + r)}[family]
    return [("router.weight", E, D), ("encoder.trunk.weight", H, D), ("router.bias", 1, E),
            ("encoder.trunk.bias", 1, H), ("encoder.mean.weight", E, H), ("encoder.scale.weight", head, H),
            ("encoder.mean.bias", 1, E), ("encoder.scale.bias", 1, head)]


def slots(flat, lay):
    out, offset = {}, 0
    for name, rows, cols in lay:
        out[name] = flat[offset : offset + rows * cols].reshape(rows, cols)
        offset += rows * cols
    assert offset == flat.numel()
    return out


def entropy(p):
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


def reference(case, x, flat, ids):
    """Pure-torch forward: (weights, probs, kl, signals) with vmoer's ids."""
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
    tau, kind = case["temperature"], case["score"]
    if case.get("average_logits", False):
        probs = score(kind, zs.mean(1) / tau)
    else:
        probs = score(kind, zs / tau).mean(1)
    chosen = probs.gather(1, ids)
    weights = chosen / chosen.sum(1, keepdim=True) if case["normalize"] else chosen
    # Signals from the tempered softmax of each sample (signals.hpp), checked for softmax scores.
    ps = torch.softmax(zs / tau, -1)
    pbar = ps.mean(1)
    mc = ps.var(1, unbiased=True).sum(-1) if S > 1 else torch.zeros(T)
    mi = (entropy(pbar) - entropy(ps).mean(1)).clamp_min(0)
    signals = torch.stack([trace, mc, entropy(pbar), mi, torch.full((T,), tau)], 1)
    return weights, probs, kl, signals


def op_args(case, D):
    """Positional arguments of the case's op after (hidden, params)."""
    f = case["family"]
    sel = [case["top_k"], case["temperature"], case["score"], case["normalize"]]
    sampling = [case.get("average_logits", False), case["seed"], case.get("layer", 0), case.get("token_offset", 0)]
    if f == "dirac":
        return [case["experts"]] + sel
    if f == "mc_dropout":
        return [case["experts"], case["rate"], case["samples"]] + sel + sampling
    shape = [case["experts"], case["encoder_width"]] + ([case["rank"]] if f == "low_rank" else [])
    return shape + [case["samples"]] + sel + sampling + [True, case["prior_sigma"]]


def random_params(case, D, g):
    lay = layout(case["family"], case["experts"], D, case.get("encoder_width", 0), case.get("rank", 0))
    flat = 0.4 * torch.randn(sum(r * c for _, r, c in lay), generator=g, dtype=torch.float64)
    if case["family"] not in ("dirac", "mc_dropout"):
        slots(flat, lay)["encoder.scale.bias"].sub_(1.0)  # logit standard deviations around 0.6
    return flat


def check_case(case, dtype):
    print(f"{case['family']} ({dtype})")
    g = torch.Generator().manual_seed(case["seed"] + 17)
    T, D, E, K = 11, 7, case["experts"], case["top_k"]
    x64 = torch.randn(T, D, generator=g, dtype=torch.float64)
    p64 = random_params(case, D, g)
    dw, dp = torch.randn(T, K, generator=g, dtype=torch.float64), torch.randn(T, E, generator=g, dtype=torch.float64)
    beta = 0.3

    x = x64.to(dtype).clone().requires_grad_(True)
    params = p64.to(dtype).clone().requires_grad_(True)
    op = getattr(OPS, "route_" + case["family"])
    ids, weights, probs, signals, kl = op(x, params, *op_args(case, D))
    loss = (dw.to(dtype) * weights).sum() + (dp.to(dtype) * probs).sum() + beta * kl
    loss.backward()

    xr, pr = x64.detach().clone().requires_grad_(True), p64.detach().clone().requires_grad_(True)
    w_ref, p_ref, kl_ref, s_ref = reference(case, xr, pr, ids)
    ((dw * w_ref).sum() + (dp * p_ref).sum() + beta * kl_ref).backward()

    tight = dtype == torch.float64
    fwd, bwd = (1e-10, 1e-9) if tight else (2e-5, 2e-4)
    top = p_ref.detach().topk(K, 1).indices
    if not torch.equal(top, ids):
        FAILED.append(case["family"] + " ids")
        print("  ids MISMATCH")
    compare("weights", weights, w_ref, fwd)
    compare("probs", probs, p_ref, fwd)
    compare("kl", kl.reshape(1), kl_ref.reshape(1), fwd)
    if case["score"] == "softmax" and not case.get("average_logits", False) and case["family"] != "mc_dropout":
        compare("signals", signals, s_ref, 1e-8 if tight else 1e-4)
    compare("hidden grad", x.grad, xr.grad, bwd)
    lay = layout(case["family"], E, D, case.get("encoder_width", 0), case.get("rank", 0))
    got, want = slots(params.grad, lay), slots(pr.grad, lay)
    for name, _, _ in lay:
        compare("params grad " + name, got[name], want[name], bwd)


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
    expect_error("unknown family", "family", lambda: OPS.init_params("swag", w, b, 3, 0, 0.5, 0))
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
]


def main():
    global OPS
    torch.set_default_dtype(torch.float64)
    torch.ops.load_library(sys.argv[1])
    OPS = torch.ops.vmoer
    for case in CASES:
        check_case(case, torch.float64)
    check_case(CASES[2], torch.float32)
    check_case(CASES[4], torch.float32)
    check_init_params()
    check_errors()
    check_script()
    print("all match" if not FAILED else "MISMATCH: " + ", ".join(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
