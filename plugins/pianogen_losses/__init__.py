"""Built-in PianoGen plugin: losses (registered through the 'pianogen' entry-point group)."""
