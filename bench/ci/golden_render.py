"""The golden suite's tables: per network against the baseline, backend parity, failing checks,
and the half-precision gate's table (plain or GitHub markdown)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.ci.judge import INCONCLUSIVE, MISSING, OK, REGRESSION, VERDICTS, Comparison, Finding
from bench.ci.record_rows import rows_from_record
from bench.ci.regression_table import render
from bench.core.errors import UsageError

# ----------------------------------------------------------------------------------------------
# Tables


def _worst(verdicts: Iterable[str]) -> str:
    present = set(verdicts)
    return next((v for v in VERDICTS if v in present), OK)


def _width_label(width_divisor: str | None) -> str:
    return "full" if width_divisor in (None, "1") else f"1/{width_divisor}"


def render_golden(comparison: Comparison, current: dict[str, Any], fmt: str = "plain", *,
                  elapsed_s: float | None = None) -> str:
    """Three parts: one line per network, the backend parity summary, then the failing checks.

    Per network: current mean IU and pixel accuracy, confusion-matrix pixels moved and label
    pixels changed against the baseline, near-tie pixels, label digest, worst verdict.
    """
    if fmt not in ("github", "plain"):
        raise UsageError(f"unknown format {fmt!r}; choose from github, plain")
    tablefmt = "github" if fmt == "github" else "simple"
    by_identity: dict[tuple, list[Finding]] = {}
    for finding in comparison.findings:
        by_identity.setdefault(finding.identity, []).append(finding)
    rows = rows_from_record(current, Path("current run"))
    known = {row.identity for row in rows}
    missing = [key for key in by_identity if key not in known]

    def delta_of(key: tuple, metric: str) -> str:
        found = [f for f in by_identity.get(key, []) if f.metric == metric]
        return "" if not found or found[0].delta is None else str(found[0].delta)

    def verdict_of(key: tuple) -> str:
        verdict = _worst(f.verdict for f in by_identity.get(key, []))
        return f"**{verdict}**" if fmt == "github" and verdict in (REGRESSION, MISSING) else verdict

    networks, parity = [], []
    for row in rows:
        identity = dict(row.identity)
        width = _width_label(identity.get("width_divisor"))
        if " vs " in identity.get("backend", ""):
            mismatch = row.metrics.get("label_mismatch_px")
            pixels = row.metrics.get("num_pixels")
            parity.append([identity["variant"], width, identity["backend"],
                           f"{mismatch} / {pixels}", _sci(row.metrics.get("score_max_rel_diff")),
                           verdict_of(row.identity)])
            continue
        if row.metrics.get("status") != "ok":
            error = row.error or "?"
            short = error if len(error) <= 60 else error[:57] + "..."  # full text below
            networks.append([identity["variant"], width, identity["backend"], "", "", "", "", "",
                             f"failed: {short}", verdict_of(row.identity)])
            continue
        digest_changed = any(f.metric == "label_digest" and f.note == "changed"
                             for f in by_identity.get(row.identity, []))
        digest = str(row.metrics.get("label_digest", ""))[:12]
        networks.append([
            identity["variant"], width, identity["backend"],
            f"{100 * row.metrics['mean_iou']:.2f}", f"{100 * row.metrics['pixel_accuracy']:.2f}",
            delta_of(row.identity, "confusion_matrix"), delta_of(row.identity, "label_maps"),
            str(row.metrics.get("near_tie_pixels", "")),
            f"{digest} ({'changed' if digest_changed else 'same'})", verdict_of(row.identity)])
    for key in missing:
        identity = dict(key)
        networks.append([identity.get("variant", ""), _width_label(identity.get("width_divisor")),
                         identity.get("backend", ""), "", "", "", "", "", "not run",
                         verdict_of(key)])

    heading = "### " if fmt == "github" else ""
    lines = [f"{heading}Golden suite: outputs against {comparison.baseline}", ""]
    lines.append(tabulate(networks, headers=[
        "variant", "width", "backend", "mean IU %", "pixel acc. %", "CM px moved",
        "label px changed", "near ties", "label digest", "verdict"], tablefmt=tablefmt,
        disable_numparse=True))
    lines += ["", f"{heading}Backend parity (same inputs and weights, this run)", ""]
    lines.append(tabulate(parity, headers=["variant", "width", "backends", "labels differing",
                                           "max rel. score diff", "verdict"],
                          tablefmt=tablefmt, disable_numparse=True)
                 if parity else "(fewer than two backends ran: no parity to report)")
    problems = [f for f in comparison.findings if f.fails or f.verdict == INCONCLUSIVE]
    if problems:
        lines += ["", f"{heading}Failing checks", ""]
        lines.append(render(Comparison(problems, comparison.baseline, comparison.current), fmt,
                            summary=False).rstrip("\n"))
    lines.append("")
    lines += [f"note: {note}" for note in comparison.notes]
    timing = f" in {elapsed_s:.1f} s" if elapsed_s is not None else ""
    lines.append(f"golden{timing}: {comparison.summary()}")
    return "\n".join(lines) + "\n"


def _sci(value: Any) -> str:
    return "" if value is None else f"{float(value):.1e}"



def render_half_precision(rows: Sequence[dict[str, Any]], fmt: str = "plain") -> str:
    """The half-precision gate's table: agreement with fp32 on the decided pixels per network."""
    table, notes = [], []
    for row in rows:
        head = [row["variant"], row["backend"], row["precision"]]
        if row["status"] != "ok":
            verdict = "unsupported" if row["status"] == "unsupported" else "FAIL"
            table.append([*head, "", "", "", "", f"**{verdict}**" if fmt == "github" else verdict])
            notes.append(f"note: {' '.join(head)} {row['status']}: {row.get('error') or '?'}")
            continue
        verdict = "ok" if row["passed"] else "FAIL"
        table.append([*head, f"{100 * row['label_agreement_with_fp32']:.3f}",
                      f"{row['decided_pixels']} / {row['label_pixels']}",
                      f"{100 * row['label_agreement_all_pixels']:.3f}",
                      f">= {100 * row['gate']:.1f}",
                      f"**{verdict}**" if fmt == "github" and verdict == "FAIL" else verdict])
    heading = "### " if fmt == "github" else ""
    failed = sum(1 for row in rows if row.get("passed") is False)
    unsupported = sum(1 for row in rows if row["status"] == "unsupported")
    skipped = (f" ({unsupported} unsupported by the backend in this precision: not gated)"
               if unsupported else "")
    text = tabulate(table, headers=["variant", "backend", "precision", "agree decided %",
                                    "decided px", "agree all %", "gate %", "verdict"],
                    tablefmt="github" if fmt == "github" else "simple", disable_numparse=True)
    return (f"{heading}Half precision: labels against fp32 on the decided pixels "
            f"(docs/latency.md)\n\n{text}\n\n{len(rows) - failed - unsupported} of "
            f"{len(rows) - unsupported} half-precision rows pass{skipped}\n"
            + "".join(f"{note}\n" for note in notes))
