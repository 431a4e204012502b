"""Judging a trained model: evaluation on a test split, scoring new images, metrics, the decision
rule and threshold helpers, heatmap files and overlays."""
