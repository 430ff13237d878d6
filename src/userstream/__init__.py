"""userstream: a Kubernetes-native real-time user-data pipeline."""

__version__ = "0.1.0"
