"""`edge rules import|export|check|test`: rule packs on the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge import fmt
from edge.cli import Subcommands, add_command, add_command_group, arg, config_arg


def register(sub: Subcommands) -> None:
    rs = add_command_group(
        sub,
        "rules",
        help="import, export, check and test rule packs",
        description="Rule packs (YAML) on the command line. On a running gateway, prefer the web UI/API.",
        dest="rules_command",
        required=False,
    )
    add_command(
        rs,
        "check",
        help="compile rule packs; exit 1 listing every error",
        description="Validate and compile every rule of each pack without touching any database.\n"
        "Prints every error as FILE:LINE: rule ID:FIELD: line L, column C: MESSAGE and exits 1.",
        func=cmd_check,
        args=[
            arg("packs", nargs="+", metavar="PACK.yaml", help="rule pack files to check"),
            arg(
                "-c",
                "--config",
                metavar="SITE.yaml",
                help="also check webhooks against this site's rules.webhook_allow (without it, destinations are not checked)",
            ),
        ],
    )
    add_command(
        rs,
        "test",
        help="replay recorded records through a pack, offline, without actions",
        description="Feed records (one JSON object per line, the `edge buffer tail --json` shape) through\n"
        "the rules of PACK.yaml in file order (the journal's order), executing no action, and print every firing as a\n"
        'JSON line: {"rule", "ts", "kind": fired|cleared|error, "message"}.',
        func=cmd_test,
        args=[
            arg("pack", metavar="PACK.yaml", help="the rule pack to test"),
            arg("--input", "-i", required=True, metavar="RECORDS.jsonl", help="records file ('-' = stdin)"),
            arg(
                "--timezone",
                default=None,
                help="timezone for hour()/between()/schedules (default: the site's, else UTC)",
            ),
            config_arg(required=False),
        ],
    )
    add_command(
        rs,
        "import",
        help="store the rules of packs in the site's state database",
        description="Compile the packs and store their rules (a new version each) in the state database.\n"
        "Nothing is stored unless every rule compiles. A running gateway of the site runs them within\n"
        "a few seconds (it watches the state database; each imported rule starts with a fresh state,\n"
        "as after a restart); a stopped one at its next start.",
        func=cmd_import,
        config=True,
        args=[
            arg("packs", nargs="+", metavar="PACK.yaml", help="rule pack files to import"),
            arg(
                "--dry-run",
                action="store_true",
                help="the same checks, then say what the import would do to each rule (new, replaced, "
                "unchanged; enabled or disabled by it; who changed it last) and store nothing",
            ),
        ],
    )
    add_command(
        rs,
        "export",
        help="print the stored rules as a YAML pack",
        description="Print every rule stored in the site's state database as one YAML rule pack.",
        func=cmd_export,
        config=True,
        args=[arg("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")],
    )


def _read(path: str) -> str:
    """A pack's text; a pack over the YAML size cap is a RulePackError, found before the file is
    read whole."""
    from edge.yamlpos import MAX_BYTES, YamlError, read_text, too_large
    from rules.model import RulePackError

    try:
        if path != "-":
            return read_text(path)
        text = sys.stdin.read(MAX_BYTES + 1)
        if len(text.encode("utf-8")) > MAX_BYTES:
            raise too_large("<stdin>", len(text.encode("utf-8")), MAX_BYTES)
        return text
    except YamlError as exc:
        raise RulePackError([str(p) for p in exc.problems]) from None
    except UnicodeDecodeError as exc:
        raise RulePackError([f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None


def _webhook_allow(config: str, site: Any = None) -> list[str]:
    """The site's `rules.webhook_allow` (empty: no webhook destination is allowed); `site`: the
    site file already loaded from `config`."""
    from edge.config import load_site

    rules = (site or load_site(config)).sections.get("rules")
    return list(getattr(rules, "webhook_allow", None) or [])


def cmd_check(args: argparse.Namespace) -> int:
    from edge.config import ConfigError
    from rules.model import RulePackError, compile_pack

    allow = None
    if args.config:
        try:
            allow = _webhook_allow(args.config)
        except (OSError, ConfigError) as exc:
            print(exc, file=sys.stderr)
            return 2
    failed = False
    for pack in args.packs:
        try:
            rules = compile_pack(_read(pack), pack, webhook_allow=allow)
        except OSError as exc:
            print(f"{pack}: cannot read: {exc}", file=sys.stderr)
            failed = True
        except RulePackError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            failed = True
        else:
            print(f"{pack}: {fmt.count(len(rules), 'rule')} OK")
    return 1 if failed else 0


def cmd_test(args: argparse.Namespace) -> int:
    import orjson

    from rules.cron import site_tz
    from rules.model import RulePackError, compile_pack
    from rules.replay import Replay, record_from_dict

    tzname = args.timezone
    if tzname is None and args.config:
        from edge.config import ConfigError, load_site

        try:
            tzname = load_site(args.config).site.timezone
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    try:
        rules = compile_pack(_read(args.pack), args.pack)
        tz = site_tz(tzname)
    except RulePackError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except (OSError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    replay = Replay(rules, tz)
    out = sys.stdout

    def emit(firings: list[dict[str, Any]]) -> None:
        for f in firings:
            out.write(orjson.dumps({k: f[k] for k in ("rule", "ts", "kind", "message")}).decode() + "\n")

    # bytes: a line that is not UTF-8 is a line that is not a record (orjson says so), not the end
    src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    bad = 0
    try:
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                rec = record_from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, ValueError) as exc:
                print(f"{args.input}:{n}: skipped: {exc}", file=sys.stderr)
                bad += 1
                continue
            emit(replay.feed([rec]))
        emit(replay.finish())
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    if bad:
        print(
            f"{fmt.count(bad, 'line')} skipped: {'it was' if bad == 1 else 'they were'} not records",
            file=sys.stderr,
        )
    return 0


def _store(config: str, site: Any = None) -> Any:
    """The site's rule store (`site`: the site file already loaded from `config`)."""
    from edge.config import load_site
    from edge.state import StateDB
    from rules.store import RuleStore

    site = site or load_site(config)
    return RuleStore(StateDB(site.storage.resolved_state_path(), journal=site.storage.path))


def _pack_change_line(c: dict[str, Any], tz: str) -> str:
    """One line of `edge rules import --dry-run`: what importing the pack would do to one rule
    (times in the site's zone `tz`)."""
    if c["change"] == "new":
        return f"new        {c['id']}" + ("" if c["enabled_after"] else " (disabled)")
    when = fmt.timestamp(c["updated"], tz) if c.get("updated") else "?"
    line = (
        f"{c['change']:<10} {c['id']} (version {c['version']}, last changed by {c.get('updated_by') or '?'}"
        f"{' (' + c['action'] + ')' if c.get('action') else ''} at {when})"
    )
    if c["enabled_before"] != c["enabled_after"]:
        line += " — the import would " + ("enable it" if c["enabled_after"] else "disable it")
    return line


def cmd_import(args: argparse.Namespace) -> int:
    from edge import audit
    from edge.config import ConfigError, load_site
    from edge.state import StateDBError
    from rules.model import RulePackError, compile_pack, configured_device, set_target_problems

    compiled = []
    try:
        site = load_site(args.config)  # once: for the allow-list and the store
        allow = _webhook_allow(args.config, site)
        devices = {d.id for d in site.devices}  # `set:` may not write their points

        def device_of(point: str) -> str | None:
            return configured_device(point, devices)

        for pack in args.packs:
            rules = compile_pack(_read(pack), pack, webhook_allow=allow)
            problems = [
                f"{pack}: {e}"
                for cr in rules
                if cr.rule.enabled
                for e in set_target_problems(cr.rule, device_of)
            ]
            if problems:
                raise RulePackError(problems)
            compiled.extend(rules)
        store = _store(args.config, site)
    except RulePackError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 1
    except (OSError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except StateDBError as exc:  # another journal's, or of a newer release: said, nothing imported
        print(exc, file=sys.stderr)
        return 1
    if args.dry_run:
        changes = store.pack_changes([cr.rule.doc() for cr in compiled])
        for c in changes:
            print(_pack_change_line(c, site.site.timezone))
        replaced = sum(1 for c in changes if c["change"] == "replaced")
        print(
            f"nothing was imported (dry run): {len(changes)} rules, {replaced} of them replacing a stored one"
        )
        return 0
    # one transaction: a running gateway looking meanwhile finds none of the packs' rules or all
    stored_rules = store.put_many([cr.rule.doc() for cr in compiled], "cli", "import") if compiled else []
    for stored, _, _ in stored_rules:
        audit.record(store.state, "cli", "rule_import", stored.id, version=stored.version)
        print(f"imported {stored.id} (version {stored.version})")
    if compiled:
        print(
            "a running gateway of this site runs them within a few seconds; a stopped one at its next start"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edge.backup import refuse_own_file
    from edge.config import ConfigError, load_site
    from edge.state import StateDBError
    from rules.model import dump_pack

    try:
        site = load_site(args.config)  # once: for the output's check and the store
        refused = refuse_own_file(site, args.output) if args.output else None
        if refused:  # before anything is read
            print(refused, file=sys.stderr)
            return 1
        store = _store(args.config, site)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StateDBError as exc:
        print(exc, file=sys.stderr)
        return 1
    text = dump_pack([s.doc for s in store.list_rules()])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
