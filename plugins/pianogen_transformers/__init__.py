"""Built-in PianoGen plugin: transformers (registered through the 'pianogen' entry-point group)."""
