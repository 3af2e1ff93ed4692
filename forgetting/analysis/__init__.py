"""Tidy tables -> fits, pre-registered verdicts and summaries for Part 2's two experiments
(docs/protocol.md, section 4). No plotting and no text (forgetting/report_text.py words a summary).

Inputs are the sweep table (one row per run) and the probe tables (one row per replayed step, per probed
run, per (run, example)). Every interval is a 95% interval. Each module imports only those before it:
intervals (t and bootstrap intervals), tables (rows in, JSON records out), sweep_fits and probe_fits,
verdicts (every pre-registered constant and rule), summary (one study's summary.json), scores
(per-example forgetting scores, pooled over seeds: `forgetting scores`), and prune (a prune study's
test accuracy against the fraction removed, and its pre-registered rule).
"""
