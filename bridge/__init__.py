"""Federation Bridge: upstream IdP sign-in → rules → AWS credentials and console access."""

__version__ = "0.1.0"
