"""The web console: server-rendered pages, our own CSS, no third-party front-end code."""
