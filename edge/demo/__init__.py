"""`edge demo`: a simulated community site. Every site loads this package for its manifest
(`edge.demo.plugin`), so it holds no code: the site the demo writes is in `edge.demo.site`, its
command in `edge.demo.cli`, the kiosk's drivers in `edge.demo.kiosk`."""
