"""The trend index: per-minute rollups of numeric points beside the journal (edge/store/trend.py)."""
