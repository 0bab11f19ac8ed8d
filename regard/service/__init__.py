"""Regard's HTTP service: the native REST API, the Rekognition-compatible API, and their authentication."""
