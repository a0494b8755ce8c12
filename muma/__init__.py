"""MUMA's shared core: settings, the landing-zone data contract, params and the CLI."""

__version__ = "0.1.0"
