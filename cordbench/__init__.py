"""cordbench: segmentation benchmarks and quantitative analysis of cervical spinal cord MRI."""
__version__ = "0.1.0"
