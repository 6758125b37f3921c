"""The HTTP server and the command line: the top layer, imported by nothing below it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamrag")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"
