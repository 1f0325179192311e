"""Structured logs on stdout, one logfmt line per record (journald keeps them, grep reads them).

When stdout is the journal (systemd sets JOURNAL_STREAM), each line starts with a `<N>` syslog
priority so `journalctl -p warning` works.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


#: characters of one field a line keeps: a library that logs what a device sent (a hex dump of a
#: garbage frame) must not write megabytes per line
MAX_FIELD_CHARS = 2000


def _quote(value: object) -> str:
    s = str(value)
    if len(s) > MAX_FIELD_CHARS:
        s = f"{s[:MAX_FIELD_CHARS]}… ({len(s):,} characters)"
    if s == "" or any(c in s for c in ' ="\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [
            f"ts={ts}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        line = " ".join(parts)
        if self.journald:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LogfmtFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp is chatty at INFO about things the runtime already reports; pymodbus logs each bad
    # frame as an ERROR with a hex dump of everything received (a device answering garbage wrote
    # 126 MB of log in 40 s, formatted on the event loop): the Modbus driver counts and reports
    # those failures itself (device health, errors, its own log lines)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
