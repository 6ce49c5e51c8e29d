"""Reference marketplace API server for p2pvps.fleet (contract v1)."""
from p2pvps_server.app import create_app
from p2pvps_server.settings import Settings

__all__ = ["Settings", "create_app"]
__version__ = "1.0.0"
