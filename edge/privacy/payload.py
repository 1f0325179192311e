"""What a rule's firing hands the journal to seal: a payload with the subject it is about held beside
its fields, and the site-wide subject. Kept apart from `atrest` (the sealer) so that a site
without a master key, whose rules still build these payloads, does not load the sealer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SITE_SUBJECT = "@site"  # the data key of sensitive records that name no resident


class SubjectPayload(dict[str, Any]):
    """An event payload with the subject it is about held beside its fields, not in them: what a
    rule's firing leaves (its alert, `rule_error`, `rule_action_failed`) is about the resident or
    plate the record that fired it names, though no field of its own names them. The journal seals
    it under that subject's key (`edge.privacy.atrest.subject_of`), so forgetting the subject
    shreds it with the record. Written out (orjson, json) it is its fields alone: no reader, sink or pull consumer
    receives the reference, which a field would carry to them in clear."""

    __slots__ = ("subject",)

    def __init__(self, fields: Mapping[str, Any], subject: str) -> None:
        super().__init__(fields)
        self.subject = subject
