"""Benchmarks for bitwrn (``make bench`` runs ``python -m bench``)."""
