"""The runtime's HTTP server: health, APIs, the technicians' UI."""
