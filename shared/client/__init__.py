"""Python clients of the Postwire APIs (importable without the services)."""
