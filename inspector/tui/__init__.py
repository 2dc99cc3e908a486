"""The Textual TUI: app, screens and widgets. It reads runs only through core.store."""
