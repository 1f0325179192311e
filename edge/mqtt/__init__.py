"""The MQTT upstream: a push sink publishing to a broker at QoS 1 (see README.md)."""
