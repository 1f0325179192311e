"""The site file's `privacy:` section: how long each privacy class of data is kept (PIPL art. 19).

```yaml
privacy:
  retention: {sensitive: 30d, personal: 90d}   # public: storage.keep_history
  master_key_file: /etc/community-edge/master.key   # 0600: seals sensitive data at rest
```

With `master_key_file` (a file only its owner can read, written by `edge privacy new-key`),
sensitive payloads and the values of sensitive points are sealed at rest under one data key per
resident (`edge.privacy.atrest`); without it they are stored in clear, and the record of
processing says so.

A class left out keeps `storage.keep_history`. A class may be kept longer than `keep_history`:
retention is a ceiling the law sets, not a promise to keep data that long (the byte cap can still
trim delivered history earlier). Unlike public data, personal and sensitive records are deleted at
their retention even when a sink or pull consumer has not fetched them yet.
"""

from __future__ import annotations

from pydantic import Field

from edge.model import PRIVACY_RANK, Privacy
from edge.units import Duration
from edge.validation import SitePath, Strict


class RetentionConfig(Strict):
    """`privacy.retention`: the longest each class is kept; unknown class names are refused."""

    sensitive: Duration | None = Field(default=None, gt=0)
    personal: Duration | None = Field(default=None, gt=0)
    public: Duration | None = Field(default=None, gt=0)


class PrivacyConfig(Strict):
    """The site file's `privacy:` section."""

    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # the site master key that wraps every resident's data key (None: nothing is sealed)
    master_key_file: SitePath | None = Field(default=None, min_length=1)

    @property
    def encrypted_at_rest(self) -> bool:
        """Sensitive records are sealed before they are written."""
        return self.master_key_file is not None

    def retention_s(self, keep_history: float | None) -> dict[int, float | None]:
        """Seconds each class (by `PRIVACY_RANK`) is kept; None: kept until the byte cap."""
        out: dict[int, float | None] = {}
        for cls, rank in PRIVACY_RANK.items():
            value: float | None = getattr(self.retention, str(cls))
            out[rank] = keep_history if value is None else value
        return out

    def retention_of(self, cls: Privacy, keep_history: float | None) -> float | None:
        return self.retention_s(keep_history)[PRIVACY_RANK[cls]]
