"""Versioned recipe files (YAML) and published reference numbers; shipped as package data."""
