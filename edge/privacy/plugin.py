"""The privacy manifest: with `privacy.master_key_file`, sensitive data is sealed at rest.

Its component starts before every other one: it opens the site's data keys (`keys.db` beside the
journal) with the master key, hands the sealer to the journal (so the sinks, the rules and the
trend index, which start after it, only ever see a journal that seals), seals what an earlier run
stored in clear, and journals the `subject_erased` notices `edge privacy forget` queued. Without a
master key, a site whose recipients have pseudonym keys gets a component that only notes a changed
key at start (`pseudonym_key_changed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin

if TYPE_CHECKING:
    from edge.config import Site
    from edge.plugins import ComponentContext


def component(ctx: ComponentContext) -> Any:
    site = ctx.site
    if site.privacy.master_key_file is None:
        if not any(getattr(s, "pseudonymise", None) for s in site.upstream) and not any(
            c.pseudonymise for c in site.consumers
        ):
            return None
        from edge.privacy.component import PseudonymKeyWatch  # a replaced key is said on every site

        return PseudonymKeyWatch(ctx)
    from edge.privacy.component import PrivacyComponent

    return PrivacyComponent(ctx)


def check(site: Site) -> list[str]:
    """The master key read as `edge run` will read it: a missing file or one others may read, a
    key that does not open the site's keys.db (another site's, or the one before a rotation), or a
    keys.db missing while sealed data exists is found by `edge check` (the unit's ExecStartPre),
    not at the gateway's start. Read-only."""
    path = site.privacy.master_key_file
    if path is None:
        return []
    from edge.privacy.atrest import key_store_problem
    from edge.privacy.keyfile import KeyFileError, load_master_key

    try:
        master = load_master_key(path)
    except KeyFileError as exc:
        return [f"privacy.master_key_file: {p}" for p in exc.problems]
    problem = key_store_problem(
        site.storage.path,
        master,
        site.storage.resolved_state_path(),
        site.storage.resolved_blob_dir(),
    )
    return [] if problem is None else [f"privacy.master_key_file: {problem}"]


PLUGIN = Plugin(name="privacy", component=component, check=check, order=1)
