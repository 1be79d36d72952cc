"""Fetching what the report's recipes need from nothing: MAESTRO audio and the codec weights.

``maestro``: only the zip members of the chosen years, over HTTP range requests, resumable.
``weights``: the codec weights plugins declare (``WeightsSpec``): from https or the model hub, verified.
``needs``: which of them a recipe lacks, and the exact command that fetches it.
``run_codec``: a run's codec recorded by content hash, found again on another machine.
"""
