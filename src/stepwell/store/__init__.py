"""The store seam: `base.Store` is the only way the runtime reaches persistence."""
