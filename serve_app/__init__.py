"""serve_app: document OCR on Ray Serve."""

__version__ = "0.1.0"
