"""Review → retrain: what the new run will be, checked before it is launched.

The retrain keeps the parent's model, preset and settings, trains on the dataset as it is now,
and carries the reviewed threshold policy: the rule of the active threshold (F1-max, OK-only at
the target false-reject rate, zero escapes) and its review band become the new run's
`auto_threshold` / `auto_review_band`, so its first threshold is made the same way.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.state import sessions
from dashboard.widgets.results_data import RULE_NAMES, ActiveThreshold
from dashboard.widgets.review_actions import same_config_overrides
from db import datasets as dq
from db import decisions as tq
from db import runs as rq
from engine.config import default

CARRIED_RULES = ("f1_max", "ok_only", "zero_escape")  # rules a new evaluation can apply by itself


def policy_overrides(config: dict, active: ActiveThreshold | None) -> tuple[dict[str, Any], list[str]]:
    """(config overrides, sentences) that carry the active threshold's rule and band to a retrain."""
    out: dict[str, Any] = {}
    lines: list[str] = []
    rule = (active.rule or "manual") if active else None
    if rule in CARRIED_RULES:
        out["auto_threshold"] = rule
        lines.append(f"First threshold: **{RULE_NAMES.get(rule, rule)}**, as the reviewed one.")
    else:
        keep = config.get("auto_threshold") or default("auto_threshold")
        lines.append(f"First threshold: **{RULE_NAMES.get(keep, keep)}** — the reviewed one was "
                     f"{RULE_NAMES.get(rule, rule) if rule else 'not set'} ({active.image:.4g})"
                     if active else f"First threshold: **{RULE_NAMES.get(keep, keep)}**.")
        if active:
            lines[-1] += "; a value set by hand belongs to this run's scores: set it again after checking."
    out["auto_review_band"] = bool(active and active.band)
    lines.append("Review band: **the suggested band** (OK hold-out / NOK percentiles), as the reviewed "
                 "threshold had one." if active and active.band
                 else "Review band: **none**, as the reviewed threshold.")
    return out, lines


def retrain_preview_ui(run_id: int) -> dict[str, Any]:
    """The new run's settings, data and threshold policy; returns the overrides to launch it with."""
    with sessions().begin() as s:
        parent = rq.get_run(s, run_id)
        model, preset, config = parent.model, parent.preset, dict(parent.config or {})
        changed = same_config_overrides(parent)
        active = ActiveThreshold.of(tq.active_threshold(s, run_id))
        counts = next((c for c in dq.dataset_counts(s) if c.id == parent.dataset_id), None)
    extra, lines = policy_overrides(config, active)
    with st.container(border=True):
        st.markdown(f"**New run:** {model.upper()}, preset `{preset}`, the settings of run #{run_id}"
                    + (": " + ", ".join(f"`{k}={v}`" for k, v in sorted(changed.items())) if changed else "."))
        if counts is not None:
            st.markdown(f"**Data, as it is now:** {counts.train_ok} OK training images (a share held out), "
                        f"{counts.test_ok} OK and {counts.test_nok} NOK test images, {counts.masks} masks.")
        for line in lines:
            st.markdown(line)
        target = st.number_input(
            "Target false-reject rate of the OK-only rule (%)", min_value=0.01, max_value=50.0, step=0.5,
            value=100 * float(config.get("target_frr", default("target_frr"))), format="%.2f",
            key=f"review_retrain_frr_{run_id}", help="Carried from this run; the OK-only threshold of the new "
            "run rejects about this share of held-out OK parts.")
        st.caption("The new run is tested on today's test split: its metrics are measured on other images "
                   "than this run's. Results → Compare runs compares the two on their common test images.")
    return extra | {"target_frr": round(float(target) / 100, 6)}
