"""A browsable atlas of a whole model as a static site (`site`): see `build`."""

from .build import SiteError, SiteResult, site

__all__ = ["SiteError", "SiteResult", "site"]
