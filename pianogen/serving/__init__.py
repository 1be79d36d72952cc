"""Serving: the local web page (pianogen serve) and its hardened HTTP handler.
"""
