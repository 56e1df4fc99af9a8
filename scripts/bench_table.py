#!/usr/bin/env python3
"""Markdown tables from bench_route's Google Benchmark JSON output.

    build/benchmarks/bench_route --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \\
        --benchmark_format=json --benchmark_out=bench.json
    python3 scripts/bench_table.py bench.json [--stat median|mean|min] [--only throughput,ratios,...]

Benchmark names look like
    route/<composition>/T:256/D:2048/E:64/K:8[/S:32][/threads:2][/H:16][/real_time]
    baseline/<eigen_gemm|naive_eigen_topk|naive_eigen_mean_field|naive_eigen_mean_field_std>/...
    part/<stage>/...
H, the encoder trunk width, is the run's default (context encoder_hidden_H) where the
name has none. Times are wall-clock (the benchmarks use UseRealTime). With repetitions, the chosen
aggregate (default: median) is used; without, the mean over the runs of a name.

Tables:
    throughput  tokens/s per composition and shape
    ratios      time of each variant over Dirac + MeanOnly + TopK at the same shape
    gemm        Dirac + TopK time over Eigen's GEMM alone (Y = X W^T)
    goals       both goal ratios (Dirac / GEMM, mean-field S = 32 / Dirac), a row per (D, E, K)
    naive       naive-Eigen time over the library's at the same shape
    parts       the pipeline stages run alone
A header comment counts single-threaded cases whose wall time exceeds their CPU time by
more than 5%: a sign that another process took the core during the run.
Standard library only.
"""

import argparse
import gzip
import json
import sys
from collections import defaultdict

UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
SHAPE_KEYS = ("T", "D", "E", "K", "S", "threads", "H")
IGNORED_TAGS = ("real_time", "process_time", "manual_time")

LABELS = {
    "dirac_topk": "Dirac + MeanOnly + TopK",
    "dirac_temperature": "Dirac + MeanOnly + Temperature",
    "dirac_sample_k": "Dirac + MeanOnly + SampleK",
    "mean_field_mc_topk": "MeanField + MonteCarlo + TopK",
    "full_covariance_mc_topk": "FullCovariance + MonteCarlo + TopK",
    "low_rank_mc_topk": "LowRank(r=8) + MonteCarlo + TopK",
    "mean_field_mean_topk": "MeanField + MeanOnly + TopK",
    "eigen_gemm": "Eigen GEMM alone",
    "naive_eigen_topk": "naive Eigen Dirac + TopK",
    "naive_eigen_mean_field": "naive Eigen MeanField S=32 (rng::normals)",
    "naive_eigen_mean_field_std": "naive Eigen MeanField S=32 (std::normal_distribution)",
}
ORDER = list(LABELS)


def parse_name(name, default_h):
    """('route', 'dirac_topk', {'T': 256, ...}) or None for names of another program."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0] not in ("route", "baseline", "part"):
        return None
    shape = {"S": 0, "threads": 1, "H": default_h}
    for tag in parts[2:]:
        if tag in IGNORED_TAGS or ":" not in tag:
            continue
        key, _, value = tag.partition(":")
        if key in SHAPE_KEYS:
            shape[key] = int(value)
    if any(k not in shape for k in ("T", "D", "E", "K")):
        return None
    return parts[0], parts[1], shape


def load(path, stat):
    """{(family, variant, shape tuple): record} with record['seconds'] per call."""
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:  # the full grid is stored gzipped
        doc = json.load(f)
    aggregates, iterations = {}, defaultdict(list)
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        run_name = b.get("run_name", b["name"])
        seconds = b["real_time"] * UNIT_SECONDS[b.get("time_unit", "ns")]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == stat:
                aggregates[run_name] = (seconds, b)
        else:
            iterations[run_name].append((seconds, b))
    runs = dict(aggregates)
    for run_name, rs in iterations.items():
        if run_name in runs:
            continue
        times = [s for s, _ in rs]
        value = min(times) if stat == "min" else sorted(times)[len(times) // 2] if stat == "median" else sum(times) / len(times)
        runs[run_name] = (value, rs[0][1])
    context = doc.get("context", {})
    default_h = int(context.get("encoder_hidden_H", 64))
    table = {}
    for run_name, (seconds, b) in runs.items():
        parsed = parse_name(run_name, default_h)
        if parsed is None:
            continue
        family, variant, shape = parsed
        key = (family, variant, tuple(shape[k] for k in SHAPE_KEYS))
        table[key] = {"seconds": seconds, "bench": b, "shape": shape}
    return context, table


def si(x):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def duration(seconds):
    for div, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if seconds >= div:
            return f"{seconds / div:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def with_(shape, **changes):
    """The shape tuple with some keys replaced."""
    d = dict(zip(SHAPE_KEYS, shape))
    d.update(changes)
    return tuple(d[k] for k in SHAPE_KEYS)


def markdown(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def group_title(d, e, k, threads):
    t = f"D = {d}, E = {e}, K = {k}"
    return t + (f", {threads} threads" if threads != 1 else ", 1 thread")


def label(variant, s, h=None):
    base = LABELS.get(variant, variant)
    return base + (f", S = {s}" if s and not variant.startswith("naive") else "") + (f", H = {h}" if h else "")


def sort_key(variant, s, h=None):
    return (ORDER.index(variant) if variant in ORDER else len(ORDER), variant, s, h or 0)


def pivot(table, families, value, title):
    """One table per (D, E, K, threads): rows variant (and S), columns T; cells value(key, rec)."""
    groups = defaultdict(dict)
    hs = defaultdict(set)  # encoder widths per composition: H is named where a composition has several
    for (family, variant, shape), rec in table.items():
        hs[variant].add(shape[-1])
    for (family, variant, shape), rec in table.items():
        if family not in families:
            continue
        t, d, e, k, s, th, h = shape
        cell = value((family, variant, shape), rec)
        if cell is None:
            continue
        groups[(d, e, k, th)][(variant, s, h if len(hs[variant]) > 1 else None, t)] = cell
    out = []
    for g in sorted(groups, key=lambda g: (g[3], g[0], g[1], g[2])):
        d, e, k, th = g
        cells = groups[g]
        ts = sorted({t for *_, t in cells})
        rows_keys = sorted({(v, s, h) for v, s, h, _ in cells}, key=lambda vsh: sort_key(*vsh))
        rows = [[label(v, s, h)] + [cells.get((v, s, h, t), "") for t in ts] for v, s, h in rows_keys]
        out.append(f"**{title}, {group_title(d, e, k, th)}**\n\n" + markdown(["composition"] + [f"T = {t}" for t in ts], rows))
    return "\n\n".join(out)


def throughput(table):
    def value(key, rec):
        return si(rec["shape"]["T"] / rec["seconds"])

    return pivot(table, ("route", "baseline"), value, "tokens/s")


def ratios(table):
    def value(key, rec):
        family, variant, shape = key
        if variant == "dirac_topk":
            return None
        ref = table.get(("route", "dirac_topk", with_(shape, S=0, H=dirac_h)))
        if ref is None:
            return None
        return f"{rec['seconds'] / ref['seconds']:.2f}x"

    dirac_h = next((shape[-1] for (f, v, shape) in table if v == "dirac_topk"), None)

    return pivot(table, ("route",), value, "time / time(Dirac + MeanOnly + TopK)")


def gemm(table):
    rows = []
    for (family, variant, shape), rec in table.items():
        if (family, variant) != ("route", "dirac_topk"):
            continue
        ref = table.get(("baseline", "eigen_gemm", shape))
        if ref is None:
            continue
        t, d, e, k, s, th, _ = shape
        flops = 2.0 * t * d * e
        rows.append(((th, d, e, k, t), [t, d, e, k, th, duration(ref["seconds"]),
                                            f"{flops / ref['seconds'] / 1e9:.1f}",
                                        duration(rec["seconds"]), f"{flops / rec['seconds'] / 1e9:.1f}",
                                        f"**{rec['seconds'] / ref['seconds']:.2f}x**"]))
    rows.sort(key=lambda r: r[0])
    return markdown(["T", "D", "E", "K", "threads", "Eigen GEMM", "GEMM GFLOP/s", "Dirac + TopK", "Dirac GFLOP/s",
                     "Dirac / GEMM"], [r for _, r in rows])


def goals(table):
    """Issue 2's two goals over every (D, E, K) of the run: Dirac + TopK / Eigen GEMM and
    mean-field S = 32 / Dirac, one row per shape, one column per T (one thread, default H)."""
    default_h = next((shape[-1] for (f, v, shape) in table if v == "dirac_topk"), None)
    cells = defaultdict(dict)
    for (family, variant, shape), rec in table.items():
        t, d, e, k, s, th, h = shape
        if family != "route" or th != 1 or h != default_h:
            continue
        if variant == "dirac_topk":
            gemm_rec = table.get(("baseline", "eigen_gemm", shape))
            if gemm_rec:
                cells[(d, e, k)][("gemm", t)] = rec["seconds"] / gemm_rec["seconds"]
        elif variant == "mean_field_mc_topk" and s == 32:
            dirac = table.get(("route", "dirac_topk", with_(shape, S=0)))
            if dirac:
                cells[(d, e, k)][("mf", t)] = rec["seconds"] / dirac["seconds"]
    ts = sorted({t for c in cells.values() for _, t in c})
    rows = []
    for d, e, k in sorted(cells):
        c = cells[(d, e, k)]
        rows.append([d, e, k] + [f"{c[(g, t)]:.2f}x" if (g, t) in c else "" for g in ("gemm", "mf") for t in ts])
    return markdown(["D", "E", "K"] + [f"Dirac / GEMM, T = {t}" for t in ts] + [f"MF S=32 / Dirac, T = {t}" for t in ts],
                    rows)


def naive(table):
    pairs = {"naive_eigen_topk": ("dirac_topk", False), "naive_eigen_mean_field": ("mean_field_mc_topk", True),
             "naive_eigen_mean_field_std": ("mean_field_mc_topk", True)}
    rows = []
    for (family, variant, shape), rec in table.items():
        if family != "baseline" or variant not in pairs:
            continue
        ours_variant, sampled = pairs[variant]
        ours = table.get(("route", ours_variant, shape if sampled else with_(shape, S=0)))
        if ours is None:
            continue
        t, d, e, k, s, th, _ = shape
        rows.append(((ORDER.index(variant), th, d, e, k, t),
                     [LABELS[variant], label(ours_variant, s), t, d, e, k, duration(rec["seconds"]),
                      duration(ours["seconds"]), f"**{rec['seconds'] / ours['seconds']:.2f}x**"]))
    rows.sort(key=lambda r: r[0])
    return markdown(["naive", "vmoer", "T", "D", "E", "K", "naive time", "vmoer time", "naive / vmoer"],
                    [r for _, r in rows])


def parts(table):
    rows = []
    for (family, variant, shape), rec in table.items():
        if family != "part":
            continue
        t, d, e, k, s, th, _ = shape
        b = rec["bench"]
        extra = ""
        if "s_per_normal" in b:
            extra = f"{b['s_per_normal'] * 1e9:.2f} ns / normal"
        rows.append(((e, variant), [variant, t, d, e, k, s or "",
                                        duration(rec["seconds"]),
                                    duration(rec["seconds"] / t), extra]))
    rows.sort(key=lambda r: r[0])
    return markdown(["stage", "T", "D", "E", "K", "S", "time / call", "time / token", "note"], [r for _, r in rows])


SECTIONS = {
    "throughput": ("Throughput (tokens/s)", throughput),
    "ratios": ("Cost relative to Dirac + MeanOnly + TopK (same shape, same run)", ratios),
    "gemm": ("Dirac + TopK over Eigen GEMM alone", gemm),
    "goals": ("Issue 2's goals per shape (Dirac / GEMM and mean-field S = 32 / Dirac)", goals),
    "naive": ("Naive Eigen over vmoer", naive),
    "parts": ("Pipeline stages alone", parts),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="Google Benchmark JSON (--benchmark_format=json --benchmark_out=...)")
    ap.add_argument("--stat", choices=("median", "mean", "min"), default="median",
                    help="aggregate of the repetitions (default: median)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--level", type=int, default=3, help="Markdown heading level of the sections (default 3)")
    args = ap.parse_args(argv)

    context, table = load(args.json, args.stat)
    if not table:
        sys.exit(f"{args.json}: no route/, baseline/ or part/ benchmarks found")
    load_avg = context.get("load_avg")
    print(f"<!-- {args.json}: {len(table)} benchmarks, {args.stat} of repetitions; host {context.get('host_name', '?')}, "
          f"{context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz, "
          f"load average at start {load_avg}, {context.get('date', '')} -->")
    disturbed = []
    for (family, variant, shape), rec in table.items():
        b = rec["bench"]
        if shape[SHAPE_KEYS.index("threads")] == 1 and b.get("cpu_time"):
            ratio = b["real_time"] / b["cpu_time"]
            if ratio > 1.05:
                disturbed.append((ratio, b.get("run_name", b["name"])))
    disturbed.sort(reverse=True)
    print(f"<!-- interference: {len(disturbed)} single-threaded cases with wall / CPU time > 1.05"
          + ("; worst: " + ", ".join(f"{n} {r:.2f}" for r, n in disturbed[:3]) if disturbed else "") + " -->")
    for name in args.only.split(","):
        name = name.strip()
        if name not in SECTIONS:
            sys.exit(f"unknown section '{name}'")
        title, fn = SECTIONS[name]
        body = fn(table)
        if body:
            print(f"\n{'#' * args.level} {title}\n\n{body}")


if __name__ == "__main__":
    main()
