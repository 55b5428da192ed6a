"""Simulated hosts: presets, generated host trees, and a Python stand-in for the driver libraries."""
