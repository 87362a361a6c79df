"""Evaluation: generate and grade (eval), paired comparison (compare), shard merging (merge)."""
