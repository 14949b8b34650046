"""The ground floor: what every layer uses and that imports nothing of the project.

Errors, NIfTI and file I/O, paths, numeric ranges, dotted config keys, the config schema,
distributed helpers, devices, output checks and the segmentation tasks.
"""

__version__ = "0.1.0"
