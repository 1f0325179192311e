"""Protocol drivers, one package each; each declares itself in its plugin.py (`edge.plugins`)."""
