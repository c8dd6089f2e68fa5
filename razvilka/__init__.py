"""razvilka: steer a local LLM at its forks."""
__version__ = "0.1.0"
