"""gitops-bridge: deploy container images to Kubernetes by committing Flux manifests to Git."""

__version__ = "0.1.0"
