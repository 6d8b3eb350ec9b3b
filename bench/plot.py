"""Draw bench/results.png from bench/results.json (matplotlib, run in its own process).

``python bench/plot.py RESULTS_JSON OUT_PNG``, with matplotlib importable
(``run.py`` puts ``bench/.work/plot-deps`` on PYTHONPATH for it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib.pyplot as plt  # the backend comes from MPLBACKEND=Agg (run.py sets it)
from matplotlib import ticker


def main(results_path: str, out_path: str) -> None:
    results = json.loads(Path(results_path).read_text(encoding="utf-8"))
    planner = results["scale"]["planner"]
    sizes = [r["declared"] for r in planner]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))

    left.loglog(sizes, [r["plan_seconds"] * 1000 for r in planner], "o-", label="plan_changes")
    left.loglog(
        sizes, [r["parse_seconds"] * 1000 for r in planner], "s--", label="parse_properties"
    )
    left.set_xlabel("declared OUs")
    left.set_ylabel("ms (median)")
    left.set_title("Planner time")
    left.legend()
    left.grid(True, which="both", alpha=0.3)

    middle.loglog(sizes, [r["plan_peak_bytes"] / 1024 for r in planner], "o-", label="plan_changes")
    middle.loglog(
        sizes, [r["parse_peak_bytes"] / 1024 for r in planner], "s--", label="parse_properties"
    )
    middle.set_xlabel("declared OUs")
    middle.set_ylabel("KiB (tracemalloc peak)")
    middle.set_title("Planner peak memory")
    middle.legend()
    middle.grid(True, which="both", alpha=0.3)

    rows = [
        r for r in results["calls"]["rows"] if r["group"] == "ou" and "wall" in r and r["bound"]
    ]
    labels = [r["case"].removeprefix("OUs ") for r in rows]
    positions = range(len(rows))
    right.bar([p - 0.2 for p in positions], [r["wall"]["ours"] for r in rows], 0.4, label="ours")
    right.bar([p + 0.2 for p in positions], [r["wall"]["naive"] for r in rows], 0.4, label="naive")
    right.plot(
        list(positions), [r["wall"]["bound"] for r in rows], "k_", markersize=14, label="bound"
    )
    right.set_yscale("log")
    right.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_minor_formatter(ticker.NullFormatter())
    right.set_xticks(list(positions), labels, rotation=45, ha="right", fontsize=8)
    right.set_ylabel(f"s at {results['calls']['latency'] * 1000:.0f} ms/call")
    right.set_title("Update wall time")
    right.legend(fontsize=8)
    right.grid(True, axis="y", which="both", alpha=0.3)

    figure.tight_layout()
    figure.savefig(out_path, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
