"""The project's own Kubernetes cluster on this machine (``userstream cluster``) and its images."""
