"""What every browsing screen shares: re-reading itself when the database changed."""

from __future__ import annotations

from textual.screen import Screen


class LiveScreen(Screen):
    """A screen that shows database content and re-reads it when another process writes.

    The app calls `database_changed(changed)` once a poll (see RLInspectApp.poll_database);
    a screen that was underneath while the database changed re-reads when it comes back.
    """

    loaded_version: int = -1
    """The app's data_version when this screen last read the database."""

    def database_changed(self, changed: bool) -> None:
        """`changed`: another process committed since the last poll. Screens whose figures
        depend on the clock (a running run's duration) may also refresh when it is False."""
        if changed:
            self.reload_data()

    def on_screen_resume(self) -> None:
        if self.loaded_version != -1 and self.loaded_version != self.app.data_version:
            self.reload_data()

    def reload_data(self) -> None:
        """Re-read what is on screen, keeping the place (cursor, page, scroll)."""
        raise NotImplementedError
