"""Commands: the click CLI (pianogen ...), built from the host's commands and the plugins'.
"""
