"""The managed-hosts app: policies rendered into mail-server config and deployed over SSH."""
