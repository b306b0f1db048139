#!/usr/bin/env python3
"""One line per bench row from a device run's files: fovea's wall time, TFLOP/s and host
recording time, PyTorch's wall time and the ratio, and the three slowest kernels per run (from
the profiled pass).

    python3 benches/device_summary.py DIR [KERNELS_JSON ...]

DIR holds fovea.json, and optionally fovea_kernels.json and torch.json (as device_run.sh
writes them); further fovea-bench JSON files (e.g. a run under FOVEA_TILES) add columns,
as do DIR's fovea_ab.json and fovea_ab_kernels.json (device_run.sh under DEVICE_AB)."""
import json
import os
import sys


def rows(path):
    try:
        with open(path) as f:
            return {r["name"]: r for r in json.load(f)["rows"]}
    except (OSError, ValueError, KeyError):
        return {}


def kernels(r):
    ks = sorted(r.get("kernels") or [], key=lambda k: -k["ms"])[:3]
    return " ".join(f"{k['name']}={k['ms']:.3f}" for k in ks)


d = sys.argv[1]
fovea, prof, torch = (rows(os.path.join(d, f)) for f in ("fovea.json", "fovea_kernels.json", "torch.json"))
ab = [os.path.join(d, f) for f in ("fovea_ab.json", "fovea_ab_kernels.json")]
extra = [(os.path.basename(p), rows(p)) for p in sys.argv[2:] + [p for p in ab if os.path.exists(p)]]
for name, r in fovea.items():
    t = torch.get(name)
    tf = f"{r['tflops']:.1f}" if r.get("tflops") else "-"
    line = f"{name[:58]:58} {r['ms']:8.3f} {tf:>5}"
    if r.get("host_ms") is not None:
        line += f" host {r['host_ms']:7.3f}"
    if t:
        line += f" | torch {t['ms']:7.3f} x{r['ms'] / t['ms']:.2f}"
    for label, e in extra:
        if name in e:
            line += f" | {label} {e[name]['ms']:.3f} [{kernels(e[name])}]"
    if name in prof:
        line += f" | {kernels(prof[name])}"
    print(line)
