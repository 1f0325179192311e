"""A small RTSP server for the camera tests, run by the SYSTEM python (GStreamer's RTSP server
through PyGObject: Debian packages gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly).

    /usr/bin/python3 tests/camera/rtsp_server.py PORT [MOUNT]

Serves a live test pattern (H.264) at rtsp://127.0.0.1:PORT/MOUNT and prints `READY <url>` once
it listens. SIGUSR1 freezes the source: a valve in front of the encoder drops every frame, so
the RTSP session stays connected (the socket open, RTCP still flowing) while no video arrives —
what a camera whose encoder hangs does to a client. SIGUSR2 thaws it. Each change is
acknowledged with a `FROZEN` or `THAWED` line. SIGTERM or SIGINT stops the server.
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! valve name=freeze drop=false"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15"
    " ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> int:
    port = int(sys.argv[1])
    mount = "/" + (sys.argv[2] if len(sys.argv) > 2 else "cam").lstrip("/")
    Gst.init(None)
    loop = GLib.MainLoop()
    valves: list[Gst.Element] = []  # one shared media, so one valve once a client has connected
    frozen = [False]

    def configured(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        valve = media.get_element().get_by_name("freeze")
        valve.set_property("drop", frozen[0])
        valves.append(valve)

    def set_frozen(value: bool) -> bool:
        frozen[0] = value
        for valve in valves:
            valve.set_property("drop", value)
        print("FROZEN" if value else "THAWED", flush=True)
        return GLib.SOURCE_CONTINUE

    def quit_loop() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    factory.connect("media-configure", configured)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, set_frozen, True)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, set_frozen, False)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)
    print(f"READY rtsp://127.0.0.1:{port}{mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
