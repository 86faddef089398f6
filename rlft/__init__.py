from rlft.version import __version__
