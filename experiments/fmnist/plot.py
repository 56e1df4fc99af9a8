#!/usr/bin/python3
"""Plots of a vmoer-fmnist run: reliability diagrams, per-layer Jaccard vs gamma, OoD score histograms;
and the run's tables in Markdown (RESULTS_DIR/results_table.md).

    /usr/bin/python3 experiments/fmnist/plot.py RESULTS_DIR OUTPUT_DIR
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def reliability(src, dst):
    data = defaultdict(lambda: defaultdict(lambda: [0, 0.0, 0.0]))  # method -> bin -> [count, conf*n, acc*n]
    for r in rows(src / "reliability.csv"):
        n = int(r["count"])
        cell = data[r["method"]][int(r["bin"])]
        cell[0] += n
        cell[1] += n * float(r["confidence"])
        cell[2] += n * float(r["accuracy"])
    methods = list(data)
    cols = 3  # 9 methods: a 3 x 3 grid
    fig, axes = plt.subplots((len(methods) + cols - 1) // cols, cols, figsize=(3.2 * cols, 3.2 * ((len(methods) + cols - 1) // cols)),
                             squeeze=False)
    for ax, m in zip(axes.flat, methods):
        width = 1 / len(data[m])
        bins = [b for b in sorted(data[m]) if data[m][b][0]]  # an empty bin has no accuracy or confidence
        centers = [(b + 0.5) * width for b in bins]
        acc = [data[m][b][2] / data[m][b][0] for b in bins]
        conf = [data[m][b][1] / data[m][b][0] for b in bins]
        ax.bar(centers, acc, width=width, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot(centers, conf, "r.", label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_title(m, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Reliability diagrams, Fashion-MNIST test (all seeds pooled)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the suptitle
    fig.savefig(dst / "fmnist_reliability.png", dpi=110)


def stability(src, dst):
    curves = defaultdict(lambda: defaultdict(list))  # layer -> gamma -> [jaccard over seeds]
    for r in rows(src / "stability.csv"):
        curves[int(r["layer"])][float(r["gamma"])].append(float(r["jaccard"]))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for layer in sorted(curves):
        gammas = sorted(curves[layer])
        mean = [sum(curves[layer][g]) / len(curves[layer][g]) for g in gammas]
        ax.plot(gammas, mean, "o-", label=f"layer {layer}")
    ax.set_xscale("log")
    ax.set_xlabel("gamma (noise std / mean input norm)")
    ax.set_ylabel("mean Jaccard of top-2 sets")
    ax.set_title("MAP router stability per layer (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst / "fmnist_stability.png", dpi=110)


def histograms(src, dst):
    data = defaultdict(list)  # (method, signal, set) -> scores
    for r in rows(src / "scores.csv"):
        data[(r["method"], r["signal"], r["set"])].append(float(r["score"]))
    panels = [(m, s) for (m, s, st) in data if st == "FMNIST test"]
    panels = [p for p in dict.fromkeys(panels) if max(data[(p[0], p[1], "FMNIST test")]) > min(data[(p[0], p[1], "FMNIST test")])]
    wanted = [p for p in panels if p[1] in ("predictive entropy", "mutual information", "gate entropy", "temperature")]
    cols = 4
    n = len(wanted)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.4 * cols, 2.8 * ((n + cols - 1) // cols)), squeeze=False)
    for ax, (m, s) in zip(axes.flat, wanted):
        for st, colour in (("FMNIST test", "tab:blue"), ("MNIST", "tab:red"), ("inverted", "tab:green")):
            ax.hist(data[(m, s, st)], bins=40, alpha=0.5, density=True, color=colour, label=st)
        ax.set_title(f"{m}\n{s}", fontsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))  # SWAG's mutual information is ~1e-4
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("OoD scores (seed 0): in-distribution vs MNIST vs inverted Fashion-MNIST")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the suptitle
    fig.savefig(dst / "fmnist_ood_histograms.png", dpi=100)


SIGNALS = ["predictive entropy", "gate entropy", "logit variance", "MC variance", "mutual information", "temperature"]


def cell(values, digits=3):
    """mean ± sample standard deviation over seeds."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def tables(src):
    """Markdown tables (mean ± sd over seeds) from results.csv, written to RESULTS_DIR/results_table.md,
    and the paired differences to the fine-tuned MAP control.
    A signal a method does not produce is a constant score (AUROC exactly 0.5 on every seed): shown as n/a."""
    by = defaultdict(lambda: defaultdict(list))  # method -> metric -> values over seeds
    hyper = {}
    for r in rows(src / "results.csv"):
        by[r["method"]][r["metric"]].append(float(r["value"]))
        hyper[r["method"]] = r["hyper"]
    methods = list(by)
    seeds = len(next(iter(by.values()))["accuracy"])
    out = [f"Mean ± standard deviation over {seeds} seeds; the chosen hyperparameter follows the name.\n"]

    def table(title, columns, fmt):
        out.append(f"\n#### {title}\n\n| method | " + " | ".join(h for h, _ in columns) + " |")
        out.append("|---|" + "---|" * len(columns))
        for m in methods:
            out.append(f"| {m} ({hyper[m]}) | " + " | ".join(fmt(m, key) for _, key in columns) + " |")

    main_cols = [("accuracy", "accuracy"), ("NLL", "NLL"), ("ECE", "ECE"), ("MCE", "MCE"), ("Brier", "Brier"),
                 ("Jaccard γ=0.01", "Jaccard@0.01"), ("FLOPs overhead %", "FLOPs overhead %"),
                 ("wall-clock overhead %", "time overhead %")]
    table("Calibration, stability and cost (Fashion-MNIST test)", main_cols,
          lambda m, k: cell(by[m][k], 1 if "overhead" in k else 4 if k in ("ECE",) else 3))
    for st, name in (("MNIST", "MNIST"), ("inverted", "inverted Fashion-MNIST")):
        for metric in ("AUROC", "AUPRC", "FPR95"):
            def fmt(m, k, st=st, metric=metric):
                signal = k
                if all(v == 0.5 for v in by[m][f"AUROC {st} {signal}"]):
                    return "n/a"
                return cell(by[m][f"{metric} {st} {signal}"])
            table(f"OoD {metric}, {name} ({'lower' if metric == 'FPR95' else 'higher'} is better)",
                  [(s, s) for s in SIGNALS], fmt)
    control = "MAP + fine-tune"
    if control in by:
        # Seeds share the MAP model, so paired differences separate the method from the seed.
        paired = [("accuracy", "accuracy"), ("NLL", "NLL"), ("ECE", "ECE"), ("Brier", "Brier"),
                  ("Jaccard γ=0.01", "Jaccard@0.01"), ("AUROC MNIST, pred. entropy", "AUROC MNIST predictive entropy"),
                  ("AUROC inverted, pred. entropy", "AUROC inverted predictive entropy")]
        table(f"Paired difference to {control} (method − control on the same seed)", paired,
              lambda m, k: cell([a - b for a, b in zip(by[m][k], by[control][k])], 4 if k == "ECE" else 3))
    (src / "results_table.md").write_text("\n".join(out) + "\n")


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    reliability(src, dst)
    stability(src, dst)
    histograms(src, dst)
    tables(src)


if __name__ == "__main__":
    main()
