"""Simulated hosts: presets, generated host trees, and a Python stand-in for the driver libraries.

May import: the leaf modules and :mod:`nvlow.host` (a simulated tree is read like a real one).
"""
