"""Upstream sync: push sinks (HTTP, InfluxDB), the pull API for central platforms, sync status,
and the Prometheus `/metrics` endpoint. See docs/sync.md."""
