"""`edge backup --out FILE` and `edge restore FILE`: the site's data as one archive, taken while
the gateway runs and put back while it is stopped (edge/backup.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.cli import Subcommands, add_command, arg


def register(sub: Subcommands) -> None:
    add_command(
        sub,
        "backup",
        help="write a consistent backup of the journal, state DB, trend index and snapshots",
        description="Write the site's journal, state DB (rules, accounts, tokens, audit log), trend index\n"
        "and camera snapshots to one .tar.gz with a manifest (site id, schema versions, the\n"
        "journal's last seq, a SHA-256 per file). The gateway may be running: each database is\n"
        "copied by SQLite's backup API as one snapshot, so the archive holds every record\n"
        "committed before the backup began. Each copy must pass PRAGMA integrity_check, as a\n"
        "restore requires: a damaged database fails the backup (exit 1) and no archive is\n"
        "written. The file is readable by its owner only: it holds the site's personal data\n"
        "and the accounts' password hashes.",
        epilog="example:\n  edge backup -c /etc/community-edge/site.yaml --out /var/backups/edge-$(date +%F).tar.gz",
        func=cmd_backup,
        config=True,
        args=[
            arg("--out", metavar="FILE", required=True, help="the archive to write (replaced if it exists)")
        ],
    )
    add_command(
        sub,
        "restore",
        help="put a backup back onto a stopped gateway",
        description="Replace the site's journal, state DB, trend index and snapshots with those of a backup\n"
        "written by `edge backup`. Refused while any process has the journal or state DB open\n"
        "(stop the service first), and for an archive of another site, one whose checksums or\n"
        "PRAGMA integrity_check fail, or one written by a newer schema. Nothing is replaced\n"
        "until the whole archive has been checked and written beside the files it replaces, and\n"
        "a failure puts everything back (all or nothing); the replaced files are kept beside the\n"
        "new ones as *.pre-restore. A second restore before the gateway has started is refused\n"
        "while edge.db.pre-restore holds records the first one left out. New records continue\n"
        "above the replaced journal's last seq (no seq a receiver or consumer holds is issued\n"
        "again); its records after the backup's last seq stay in edge.db.pre-restore, and the\n"
        "next start journals their range (journal_restored). That holds for a journal that went\n"
        "on from the backup's (it holds the backup's newest records). Where there is no journal\n"
        "to replace, it cannot be read, or it is one of its own (a replacement box started once),\n"
        "nothing says how far the gateway went on after the backup: the restore is refused\n"
        "unless --continue-after names the highest seq the receivers hold. The backup's rule\n"
        "timers (pending `for:` conditions, `notify: repeat` alerts' next repeats) are dropped,\n"
        "counted and said: their conditions must hold again on fresh readings; `no_data`\n"
        "watches count from the next start, not from the backup's last readings. KPI days the\n"
        "replaced journal closed after the backup stay closed (no second kpi_daily); a day the\n"
        "restore's gap touches closes with its figures marked partial (restore_gap).",
        epilog="example:\n  systemctl stop community-edge\n"
        "  edge restore -c /etc/community-edge/site.yaml /var/backups/edge-2026-12-06.tar.gz\n"
        "  systemctl start community-edge",
        func=cmd_restore,
        config=True,
        args=[
            arg("archive", metavar="FILE", help="the backup archive"),
            arg(
                "--continue-after",
                metavar="SEQ",
                type=_seq,
                help="the highest seq of this gateway the central platform and pull consumers hold "
                "(or a higher one): new records continue above it. Needed where there is no journal "
                "to replace, it cannot be read, or it did not go on from the backup's (a "
                "replacement box started once)",
            ),
        ],
    )


def _seq(text: str) -> int:
    try:
        seq = int(text)
    except ValueError:
        seq = -1
    if seq < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seq (a whole number, 0 or more)")
    return seq


def _run(args: argparse.Namespace, action: str, path: str) -> int:
    """`edge backup` or `edge restore`: the site file, then the archive; one line either way."""
    from edge import backup, fmt
    from edge.cli import load_or_report

    site = load_or_report(args.config)
    if site is None:
        return 1
    if action == "backup" and Path(path).is_dir():
        print(f"error: {path}: a directory; --out names the archive file to write", file=sys.stderr)
        return 1
    try:
        if action == "backup":
            summary = backup.create(site, Path(path))
        else:
            summary = backup.restore(site, Path(path), args.continue_after)
    except (backup.BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    files = fmt.count(summary.files, "file")
    if action == "backup":
        print(
            f"backup of site {summary.site_id} written to {summary.path}: {files}, "
            f"journal up to seq {summary.last_seq}, {summary.bytes} bytes"
        )
    else:
        print(
            f"restored site {summary.site_id} from {summary.path}: {files}, journal up to "
            f"seq {summary.last_seq}"
            + ("; the replaced files are kept as *.pre-restore" if summary.set_aside else "")
        )
        if summary.replaced_earlier:
            print(
                "the *.pre-restore files of an earlier restore were deleted to make way: "
                + ", ".join(str(p) for p in summary.replaced_earlier)
            )
        if summary.left_out and summary.kept is None:
            first, last = summary.left_out
            print(
                f"new records continue from seq {last + 1} (--continue-after {summary.continued_after}): "
                f"seqs {first}-{last} are skipped, none of them is kept here, and the next start "
                "journals a journal_restored event naming that range"
            )
        elif summary.left_out:
            first, last = summary.left_out
            print(
                f"the replaced journal's records {first}-{last} are not in the backup: those it held "
                f"are kept in {summary.kept} (a restore after the next start replaces it); new records "
                f"continue from seq {last + 1}, so no seq a receiver holds is issued again, and "
                "the next start journals a journal_restored event naming that range"
            )
        elif summary.continued_after is not None:
            print(
                f"new records continue from seq {summary.last_seq + 1}, right after the backup's "
                f"(--continue-after {summary.continued_after} is not above it); the next start "
                "journals a journal_restored event"
            )
        if summary.foreign_journal:
            kept, last = summary.foreign_journal
            print(
                f"the replaced journal (seqs up to {last}) did not go on from this backup (a journal "
                f"of its own, such as this box's first start): it is kept whole in {kept} (a restore "
                "after the next start replaces it); none of its records is in the restored journal"
            )
        for line in summary.state_changes:
            print(line)
        for warning in summary.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    return _run(args, "backup", args.out)


def cmd_restore(args: argparse.Namespace) -> int:
    return _run(args, "restore", args.archive)
