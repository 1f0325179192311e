"""Camera driver (`driver: camera`): capture, parking-zone occupancy, redacted snapshots as blobs.

The manifest (plugin.py) declares the driver; config.py validates the device entries without
OpenCV, which only a site with a camera loads.
"""
