"""The seed's INI dialect, read without configparser (which cannot keep repeated keys).

Rules (as the original acme-mgmtserver): lines starting with ``#`` or ``;`` are comments (no inline
comments); ``[type]`` or ``[type "name"]`` (quotes optional) opens a section; ``key = value`` lines
may repeat and keep their order; several files are read in order and a section named in more than
one file is merged. Options before any section are warned about and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from acmems.errors import ConfigError

__all__ = ["Entry", "Section", "parse_ini"]

_SECTION_RE = re.compile(r'^\[\s*([A-Za-z][\w-]*)\s*(?:\s"?([^"\]]*?)"?\s*)?\]$')
_KEY_RE = re.compile(r"^([A-Za-z_][\w.-]*)\s*[=:]\s*(.*)$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``key = value`` line and where it was read."""

    key: str
    value: str
    file: str
    line: int


@dataclass(slots=True)
class Section:
    """A section of the merged files: its type (``auth``), its name (``mail`` or None) and entries."""

    type: str
    name: str | None
    file: str
    line: int
    entries: list[Entry] = field(default_factory=list)

    @property
    def title(self) -> str:
        """The section as written in the file, e.g. ``auth "mail"``."""
        return self.type if self.name is None else f'{self.type} "{self.name}"'

    def error(self, message: str, *, key: str | None = None, entry: Entry | None = None) -> ConfigError:
        """A :class:`ConfigError` at this section's header, or at ``entry`` (its file and line) if given."""
        where = entry or self
        return ConfigError(message, file=where.file, line=where.line, section=self.title, key=key)


def parse_ini(sources: list[tuple[str, str]], warnings: list[str]) -> list[Section]:
    """Parse ``(filename, text)`` pairs, in order, into merged sections.

    Args:
        sources: the files' names (for messages) and their text.
        warnings: receives one line for each option that stands before any section.

    Returns:
        The sections in order of first appearance; a section repeated later is merged into the first.

    Raises:
        ConfigError: a line that is neither comment, section header nor ``key = value``.
    """
    sections: list[Section] = []
    by_title: dict[tuple[str, str | None], Section] = {}
    for filename, text in sources:
        current: Section | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                match = _SECTION_RE.match(line)
                if match is None:
                    raise ConfigError(
                        f'malformed section header {line!r}; write [type] or [type "name"]',
                        file=filename,
                        line=number,
                    )
                stype = match.group(1).lower()
                name = match.group(2)
                if name is not None:
                    name = name.strip()
                    if not name:
                        raise ConfigError(f"section [{stype}] has an empty name", file=filename, line=number)
                key = (stype, name)
                current = by_title.get(key)
                if current is None:
                    current = Section(stype, name, filename, number)
                    by_title[key] = current
                    sections.append(current)
                continue
            match = _KEY_RE.match(line)
            if match is None:
                raise ConfigError(
                    f"cannot read {line!r}; expected 'key = value', a [section] or a # comment",
                    file=filename,
                    line=number,
                    section=current.title if current else None,
                )
            if current is None:
                warnings.append(
                    f"{filename}:{number}: option {match.group(1)!r} stands before any section and is ignored"
                )
                continue
            current.entries.append(Entry(match.group(1).lower(), match.group(2).strip(), filename, number))
    return sections
