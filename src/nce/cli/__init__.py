"""The ``nce`` command line: thin commands over the public API."""
