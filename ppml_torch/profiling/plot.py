"""``ProfileReport.plot``: a PNG bar chart of the costliest rows (time, bytes, LAN/WAN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def bar_chart(report: Any, path: Path, top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    rows = report.leaves[:top]
    labels = [f"{r.label} ({r.kind})" if r.kind else r.label for r in rows][::-1]
    n = len(rows)
    lan, wan = report.estimate("lan"), report.estimate("wan")
    series = [
        ("time here (s)", [r.own.seconds for r in rows]),
        ("sent (MiB, all parties)", [r.own.bytes / 2**20 for r in rows]),
        ("estimated on lan (s)", [lan.rows[r.path].seconds for r in rows]),
        ("estimated on wan (s)", [wan.rows[r.path].seconds for r in rows]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 1.2 + 0.32 * max(n, 1)), sharey=True)
    for ax, (title, values) in zip(axes, series, strict=True):
        ax.barh(range(n), values[::-1], color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(n))
    axes[0].set_yticklabels(labels)
    fig.suptitle(f"{report.source}\n{report.session}, {report.route} route", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
