"""Built-in PianoGen plugin: soundstream (registered through the 'pianogen' entry-point group)."""
