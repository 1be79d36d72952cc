"""Built-in PianoGen plugin: filters (registered through the 'pianogen' entry-point group)."""
