"""Widgets of the TUI: the paged table and the trajectory views."""
