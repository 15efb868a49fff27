"""SEDD Protein Studio: score entropy discrete diffusion (absorbing process) for protein design."""
__version__ = "0.1.0"
