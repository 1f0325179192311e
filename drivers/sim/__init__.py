"""The simulated driver (`driver: sim`, drivers/sim/driver.py) and its manifest (plugin.py)."""
