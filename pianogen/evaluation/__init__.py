"""Evaluation: token, codec and continuation metrics next to their floors, notes heard by a transcriber, Opus anchors,
reports and figures.
"""
