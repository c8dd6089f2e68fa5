"""Browser renderer: HTTP/WebSocket bridge and page."""
