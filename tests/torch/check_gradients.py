#!/usr/bin/python3
"""Cross-checks vmoer's routing forward and backward against PyTorch autograd.

Runs the exporter (tests/torch/export_cases.cpp), which writes, per composition, the
inputs, parameters, the Philox noise vmoer drew, upstream gradients, and vmoer's
forward outputs and gradients. This script rebuilds the same forward in torch (double
precision, with the exported noise and vmoer's expert ids held fixed), differentiates
    L = sum dweights * weights + sum dprobs * probs
        + beta * mean_valid KL(q || N(l_det, s^2 I)) + gamma * mean_valid(-mean_g log T_g)
with autograd, and compares. Exit 0: all match; 1: a mismatch; 77: torch is absent.
Usage: check_gradients.py <exporter> <scratch directory>
"""
import json
import math
import os
import struct
import subprocess
import sys

try:
    import torch
except ImportError:
    print("torch is not installed: skipping the PyTorch cross-check")
    sys.exit(77)

torch.set_default_dtype(torch.float64)
DTYPES = {"F64": torch.float64, "F32": torch.float32, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    """The tensors and metadata of a safetensors file (format: u64 header size, JSON, data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + size])
    meta = header.pop("__metadata__", {})
    data = blob[8 + size :]
    out = {}
    for name, h in header.items():
        begin, end = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[h["dtype"]]) if end > begin else torch.zeros(0, dtype=DTYPES[h["dtype"]])
        out[name] = t.reshape(h["shape"]).clone()
    return out, meta


def finalise(cov, s, experts, rank):
    """Noise transform of the scale head s [E + ...]: a function eps -> L eps."""
    d = torch.exp(s[:experts] / 2)
    if cov == "mean_field":
        return lambda eps: d * eps
    if cov == "full_covariance":  # diagonal exp(s_j / 2), then column j's strictly lower entries
        rows, cols, entries = [], [], []
        for j in range(experts):
            off = experts + j * (2 * experts - j - 1) // 2
            for i in range(j + 1, experts):
                rows.append(i)
                cols.append(j)
                entries.append(off + i - j - 1)
        L = torch.diag(d).index_put((torch.tensor(rows), torch.tensor(cols)), s[torch.tensor(entries)])
        return lambda eps: L @ eps
    V = s[experts:].reshape(rank, experts).T  # column k at E (1 + k)
    return lambda eps: d * eps[:experts] + V @ eps[experts:]


def covariance(cov, s, experts, rank):
    """Dense Sigma of one token, for the KL."""
    f = finalise(cov, s, experts, rank)
    n = experts if cov != "low_rank" else experts + rank
    cols = [f(torch.eye(n)[j]) for j in range(n)]
    A = torch.stack(cols, 1)
    return A @ A.T


def score(kind, z):
    return torch.softmax(z, -1) if kind == "softmax" else torch.sigmoid(z)


def check_case(path):
    t, meta = read_safetensors(path)
    cov, kind, aggregate = meta["posterior"], meta["score"], meta["aggregate"]
    sampled = meta["sampled"] == "true"
    samples, beta, prior_sigma, gamma, fixed_tau = t["settings"].tolist()
    samples = int(samples)
    x = t["x"].clone().requires_grad_(True)
    T, D = x.shape
    ids = t["ids"].long()
    K = ids.shape[1]
    params = {k[len("posterior.") :]: v.clone().requires_grad_(True) for k, v in t.items()
              if k.startswith("posterior.") and not k.endswith(".grad")}
    sel = {k[len("selector.") :]: v.clone().requires_grad_(True) for k, v in t.items()
           if k.startswith("selector.") and not k.endswith(".grad")}
    W, b = params["router.weight"], params["router.bias"][0]
    E = W.shape[0]
    valid = t["valid"].double()
    wtok = valid / valid.sum()

    # temperatures [T, E]
    if sel:
        floor, ceiling = t["tau_bounds"].tolist()
        h = torch.relu(x @ sel["temperature.trunk.weight"].T + sel["temperature.trunk.bias"][0])
        a = h @ sel["temperature.head.weight"].T + sel["temperature.head.bias"][0]
        tau_g = torch.clamp(torch.nn.functional.softplus(a) + floor, max=ceiling)
        tau = tau_g.expand(T, E)
    else:
        tau_g = None
        tau = torch.full((T, E), fixed_tau)

    l_det = x @ W.T + b
    kl_terms = torch.zeros(T)
    zs = []  # [T, S, E]
    if cov == "mc_dropout":
        masks = t["masks"].reshape(T, samples, D)
        z = torch.einsum("tsd,ed->tse", masks * x[:, None, :], W) + b
        zs = z
    else:
        rank = int(t["rank"].item())
        hid = torch.relu(x @ params["encoder.trunk.weight"].T + params["encoder.trunk.bias"][0])
        dmu = hid @ params["encoder.mean.weight"].T + params["encoder.mean.bias"][0]
        s = hid @ params["encoder.scale.weight"].T + params["encoder.scale.bias"][0]
        mu = l_det + dmu
        eps = t["eps"].reshape(T, samples, -1)
        rows = []
        v = prior_sigma ** 2
        kls = []
        for i in range(T):
            f = finalise(cov, s[i], E, rank)
            rows.append(torch.stack([mu[i] + f(eps[i, k]) for k in range(samples)]))
            sigma = covariance(cov, s[i], E, rank)
            m = dmu[i]
            kls.append(0.5 * (torch.trace(sigma) / v + m @ m / v - E + E * math.log(v) - torch.logdet(sigma)))
        zs = torch.stack(rows)
        kl_terms = torch.stack(kls)

    if aggregate == "probs":
        probs = score(kind, zs / tau[:, None, :]).mean(1)
        untempered = score(kind, zs).mean(1)
    else:
        probs = score(kind, zs.mean(1) / tau)
        untempered = score(kind, zs.mean(1))
    # Sampled selection (Gumbel-top-K at T) weights the chosen experts by the untempered scores.
    chosen = torch.gather(untempered if sampled else probs, 1, ids)
    weights = chosen / chosen.sum(1, keepdim=True)

    loss = (t["dweights"] * weights).sum() + (t["dprobs"] * probs).sum()
    if sampled:  # score-function term: advantage * log Plackett-Luce(ids | probs)
        q = probs / probs.sum(1, keepdim=True)
        picked = torch.gather(q, 1, ids)
        before = torch.cumsum(picked, 1) - picked  # mass chosen before each draw
        log_prob = (torch.log(picked) - torch.log(1 - before)).sum(1)
        loss = loss + (t["advantage"].reshape(-1) * log_prob).sum()
    reg = beta * (wtok * kl_terms).sum()
    if tau_g is not None:
        reg = reg + gamma * (wtok * (-torch.log(tau_g).mean(1))).sum()
    loss = loss + reg

    ok = True

    def compare(label, got, want, tol):
        nonlocal ok
        got, want = got.detach(), want.detach().reshape(got.shape)
        scale = max(want.abs().max().item(), got.abs().max().item(), 1e-300)
        err = (got - want).abs().max().item() / scale
        status = "ok" if err < tol else "MISMATCH"
        if err >= tol:
            ok = False
        print(f"  {label:45s} rel err {err:.2e} {status}")

    print(os.path.basename(path))
    compare("weights", weights, t["weights"], 1e-10)
    compare("probs", probs, t["probs"], 1e-10)
    compare("regularisers", reg.reshape(1), t["regularisers"], 1e-10)
    loss.backward()
    for k, p in params.items():
        compare("posterior." + k + " grad", p.grad, t["posterior." + k + ".grad"], 1e-9)
    for k, p in sel.items():
        compare("selector." + k + " grad", p.grad, t["selector." + k + ".grad"], 1e-9)
    compare("hidden grad", x.grad, t["hidden.grad"], 1e-9)
    return ok


def main():
    exporter, scratch = sys.argv[1], sys.argv[2]
    subprocess.run([exporter, scratch], check=True)
    files = sorted(f for f in os.listdir(scratch) if f.endswith(".safetensors"))
    if not files:
        print("the exporter wrote nothing")
        return 1
    results = [check_case(os.path.join(scratch, f)) for f in files]
    print("all match" if all(results) else "MISMATCH")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
