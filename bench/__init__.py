"""Benchmarks and accuracy measurement for serve_app (see bench/README.md)."""
