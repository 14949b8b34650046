"""Everything between a network's output and a number or a file: post-processing, native-grid
scoring, metrics, inference on NIfTI files and QC panels."""
