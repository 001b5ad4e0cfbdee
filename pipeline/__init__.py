"""voicescrub: the scrub pipeline."""
