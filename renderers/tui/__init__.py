"""Terminal renderer (Textual)."""
