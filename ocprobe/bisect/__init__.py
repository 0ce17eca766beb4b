"""``ocprobe bisect``: find the published version where a probe's behaviour changed, with statistics.

- ``search``: the version range, the verdict rules (one-sided tests against the endpoints) and the choice
  of the next version to probe. Pure functions.
- ``state``: what a bisect has measured so far, and its JSON log, rewritten atomically after every batch.
- ``run``: the loop: endpoints first, then candidates, installs prefetched in the background.
- ``probes``: per-version probes: a gateway probed in batches, or the user's own command.
- ``report``: the result: changelog entries between the boundary versions, the git command, Markdown.
"""
