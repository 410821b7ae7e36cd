"""Ops: commands built on the API for operators: the nightly monitor pass and pre-deploy checks."""
