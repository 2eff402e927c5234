"""The command palette: every console action, searchable by name (Ctrl+P)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, action, help): actions the app itself runs, whatever screen is showing.
APP_PALETTE: list[tuple[str, str, str]] = [
    ("Switch to agent view", "app.show_agent", "Route complaints and correct them (F2)"),
    ("Switch to supervisor view", "app.show_supervisor", "Review queue, training data, retrain, models (F3)"),
    ("Toggle light/dark theme", "app.toggle_dark", "Switch between the light and dark themes (Ctrl+T)"),
    ("Quit", "app.quit", "Leave the console (Ctrl+Q)"),
]


class ConsoleCommands(Provider):
    """Commands of the current screen (its PALETTE list) and of the app."""

    def _commands(self) -> list[tuple[str, str, str]]:
        return list(getattr(self.screen, "PALETTE", [])) + APP_PALETTE

    async def _run(self, action: str) -> None:
        await self.screen.run_action(action)

    async def discover(self) -> Hits:
        for title, action, help_text in self._commands():
            yield DiscoveryHit(title, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=help_text)
