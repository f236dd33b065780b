"""Flask blueprints. Views are thin: they call flow, mapping (via services) and aws."""
