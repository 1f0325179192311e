"""Residents' personal data, protected by construction (PIPL art. 51: de-identification and
encryption).

This package holds the building blocks, each usable and tested on its own:
- `pseudonym`: keyed pseudonyms (HMAC-SHA256, one key per recipient) for plates and resident ids
  before they leave the site, the `pseudonymise:` block a sink or pull consumer declares, and the
  identifying fields of each shipped event kind;
- `keys`: one AES-256-GCM data key per subject, wrapped by the site's master key, in `keys.db`:
  sealing a sensitive record under its subject's key, and forgetting a subject by deleting that
  key (crypto-shredding);
- `keyfile`: reading a key given by reference (a file only its owner can read, or an environment
  variable) and writing a new master key file;
- `atrest`: the sealer the journal, the trend index, dead letters and a sensitive camera's
  snapshot files use for private data,
  wired into a running gateway by the `privacy` plugin's component (`plugin`, `component`);
- `subjects`: a resident's export and erasure (`edge privacy export`/`forget`).

Sinks and the pull API pseudonymise with `pseudonym`; `edge privacy` drives export, forgetting
and master-key rotation.
"""
