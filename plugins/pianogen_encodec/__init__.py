"""Built-in PianoGen plugin: encodec (registered through the 'pianogen' entry-point group)."""
