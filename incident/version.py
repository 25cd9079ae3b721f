"""The installed version of incident: a leaf module, so that any module may name it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("incident")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
