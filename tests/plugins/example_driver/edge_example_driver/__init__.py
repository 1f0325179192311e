"""An example driver shipped as its own package (`driver: example`): see plugin.py and driver.py."""
