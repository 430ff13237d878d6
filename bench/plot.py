"""Plot the benchmark's JSON (bench/pipeline_bench.py --output): stream throughput by Spark cores, by
micro-batch size and by pass over the backlog in one JVM, against the Java driver's write ceiling
of the same run.

Usage: ``.venv/bin/python bench/plot.py bench/results/latest.json bench/results/throughput.png``
(matplotlib is in the ``dev`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(source: Path, target: Path) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/plot.py needs matplotlib: pip install -e '.[dev]'", file=sys.stderr)
        return 1
    figures = json.loads(source.read_text(encoding="utf-8"))
    ceiling = figures["write_ceiling"]["rows_per_s"]
    cores = figures["cores_scaling"]
    sweep = figures["batch_size_sweep"]
    warm_passes = (figures.get("warm") or {}).get("passes") or []
    panels = 3 if warm_passes else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), constrained_layout=True)
    left, right = axes[0], axes[1]
    names = sorted(cores)
    left.bar(names, [cores[n]["records_per_s"] for n in names], color="#4c72b0", label="all batches")
    left.bar(
        names,
        [cores[n]["warm_records_per_s"] or 0 for n in names],
        color="none",
        edgecolor="#dd8452",
        linewidth=2,
        label="after the first batch",
    )
    left.axhline(ceiling, color="#c44e52", linestyle="--", label=f"Java driver ceiling ({ceiling:,.0f}/s)")
    left.set_title(f"{figures['records']:,} records backlog, by Spark cores")
    left.set_ylabel("records/s")
    left.legend(fontsize=8)
    sizes = sorted(sweep, key=int)
    right.plot([int(s) for s in sizes], [sweep[s]["records_per_s"] for s in sizes], "o-", label="all batches")
    warm = [(int(s), sweep[s]["warm_records_per_s"]) for s in sizes if sweep[s]["warm_records_per_s"]]
    if warm:
        right.plot([w[0] for w in warm], [w[1] for w in warm], "s--", label="after the first batch")
    right.axhline(ceiling, color="#c44e52", linestyle="--", label="Java driver ceiling")
    right.set_xscale("log")
    right.set_title("by micro-batch size (maxOffsetsPerTrigger)")
    right.set_xlabel("records per micro-batch")
    right.set_ylabel("records/s")
    right.legend(fontsize=8)
    if warm_passes:
        passes = axes[2]
        numbers = [p["pass"] + 1 for p in warm_passes]
        passes.plot(numbers, [p["records_per_s"] for p in warm_passes], "o-", label="stream, one JVM")
        passes.axhline(ceiling, color="#c44e52", linestyle="--", label="Java driver ceiling")
        passes.set_title("the same backlog again in one JVM (JIT warm-up)")
        passes.set_xlabel("pass over the backlog")
        passes.set_ylabel("records/s")
        passes.set_xticks(numbers)
        passes.legend(fontsize=8)
    load = figures["stream"].get("loadavg_before")
    fig.suptitle(f"userstream stream throughput ({figures['cores']} cores, load average {load})", fontsize=10)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    print(f"plot written to {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
