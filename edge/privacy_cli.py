"""`edge privacy report`: the record of processing for an auditor, from the site file and its
journal (read-only; the gateway may be running)."""

from __future__ import annotations

import argparse
import json
import sys

from edge.cli import Subcommands, add_command, add_command_group, arg

JSON_SHAPE = """\
--json prints one object:
  site, config, journal          the site id, the site file, the journal file
  recipients[]                   id, kind (sink|consumer), type, enabled, max_privacy, include,
                                 pseudonymise (null when the recipient has no pseudonymise: block)
  classes.{public,personal,sensitive}
                                 retention_s (null: kept until the byte cap), encrypted_at_rest,
                                 held (records in the journal now; null when there is no journal)
  held_note                      why held is null, or "" when the counts were read
  points[]                       point, source (device), privacy, retention_s, encrypted_at_rest,
                                 recipients.{ID: {receives: clear|pseudonymised|fields_withheld|withheld,
                                 why (withheld, fields_withheld), fields (pseudonymised),
                                 withheld_fields (fields_withheld)}}
  events[]                       kind, source (device, rules or gateway), privacy, note, and the
                                 same retention_s, encrypted_at_rest and recipients"""


def register(sub: Subcommands) -> None:
    group = add_command_group(
        sub,
        "privacy",
        help="the record of processing: who receives which personal data, kept how long",
        description="Privacy of residents' data (PIPL): what the site collects, who receives it and\n"
        "how long it is kept. See docs/privacy.md.",
        dest="privacy_command",
    )
    add_command(
        group,
        "report",
        help="the record of processing for an auditor, per point and event kind",
        description="For every point of the site's devices and every event kind the site can produce\n"
        "(the devices' declared events, the shipped drivers' own kinds, the rule packs' alert and\n"
        "event actions, the gateway's kinds), its privacy class, and for every upstream sink and\n"
        "pull consumer whether it receives it in clear, pseudonymised or withheld (judged by the\n"
        "same filter the sinks and the pull API apply: include lists and max_privacy). Then each\n"
        "class's retention (privacy.retention, else storage.keep_history), whether it is encrypted\n"
        "at rest (not yet: said plainly), and the records the journal holds now per class (read-\n"
        "only; a site that has not run yet has none). A rule's alert or event takes the class of\n"
        "what fired it: it is listed at the most private class of the points its trigger matches.\n\n"
        + JSON_SHAPE,
        epilog="examples:\n  edge privacy report -c /etc/community-edge/site.yaml\n"
        "  edge privacy report -c site.yaml --json > record-of-processing.json",
        func=cmd_privacy_report,
        config=True,
        args=[arg("--json", action="store_true", help="print the report as JSON (shape above)")],
    )


def cmd_privacy_report(args: argparse.Namespace) -> int:
    from edge.cli import load_or_report
    from edge.privacy.report import build, render_text

    site = load_or_report(args.config)
    if site is None:
        return 1
    report = build(site)
    if args.json:
        json.dump(report.as_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return 0
