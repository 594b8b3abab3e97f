"""The ACE playbook: sectioned bullets with ids and helpful/harmful counters.

An ACE artifact has one text component, the playbook, in a stable line
format that a person can read and edit and that parses back exactly::

    ## formatting
    [b-3] helpful=2 harmful=0 :: End every answer with the word DONE.

    ## guidelines
    [b-1] helpful=0 harmful=1 :: Read the request carefully before answering.

A ``## name`` line opens a section; each bullet line is
``[id] helpful=N harmful=M :: content``. :class:`Playbook` is the typed,
immutable value of that text (``Playbook.parse(text)``, ``playbook.render()``,
and ``Playbook.parse(p.render()) == p``). Bullets keep the order of their
sections, then the order they were added in.

Bullet ids (``b-<n>``) are never reused within a run: the workload allocates
them from one counter when a change is *applied* (see
:mod:`flashevolve_nb.workloads.ace.delta`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from flashevolve_nb.errors import FlashEvolveError

__all__ = [
    "Bullet",
    "Playbook",
    "PlaybookFormatError",
    "bullet_number",
    "normalise",
]

_SECTION = re.compile(r"^##[ \t]+(?P<name>\S.*?)[ \t]*$")
_BULLET = re.compile(
    r"^\[(?P<id>[A-Za-z0-9_.-]+)\][ \t]+helpful=(?P<helpful>\d+)[ \t]+harmful=(?P<harmful>\d+)"
    r"[ \t]+::[ \t]?(?P<content>.*)$"
)
_ID_NUMBER = re.compile(r"^b-(\d+)$")
_NON_WORD = re.compile(r"[^a-z0-9]+")


class PlaybookFormatError(FlashEvolveError, ValueError):
    """A playbook text that does not follow the line format (the message names the line)."""


def normalise(text: str) -> str:
    """Bullet content reduced to what makes two bullets the same advice.

    Letter case, punctuation and spacing differ between two writings of the
    same bullet; duplicates are detected on this form.
    """
    return _NON_WORD.sub(" ", text.lower()).strip()


def bullet_number(bullet_id: str) -> int | None:
    """The counter value of an id the workload allocated (``b-12`` -> 12), else None."""
    m = _ID_NUMBER.match(bullet_id)
    return int(m.group(1)) if m else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Bullet:
    id: str
    section: str
    content: str
    helpful: int = 0
    harmful: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.id):
            raise PlaybookFormatError(f"bullet id {self.id!r}: use letters, digits, '_.-'")
        if self.helpful < 0 or self.harmful < 0:
            raise PlaybookFormatError(f"bullet {self.id}: counters must be >= 0")
        # One line per bullet is what makes the text format parse back exactly.
        object.__setattr__(self, "content", _one_line(self.content))
        object.__setattr__(self, "section", _one_line(self.section))
        if not self.content:
            raise PlaybookFormatError(f"bullet {self.id}: empty content")
        if not self.section:
            raise PlaybookFormatError(f"bullet {self.id}: empty section name")

    def render(self) -> str:
        return f"[{self.id}] helpful={self.helpful} harmful={self.harmful} :: {self.content}"


@dataclass(frozen=True)
class Playbook:
    """Sections (in order, possibly empty) and their bullets; immutable."""

    sections: tuple[str, ...] = ()
    bullets: tuple[Bullet, ...] = ()
    _by_id: dict[str, Bullet] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sections = [_one_line(s) for s in self.sections]
        for b in self.bullets:
            if b.section not in sections:
                sections.append(b.section)
        if len(set(sections)) != len(sections) or not all(sections):
            raise PlaybookFormatError(f"section names must be unique and non-empty: {sections}")
        order = {name: i for i, name in enumerate(sections)}
        bullets = sorted(self.bullets, key=lambda b: order[b.section])  # stable
        by_id: dict[str, Bullet] = {}
        for b in bullets:
            if b.id in by_id:
                raise PlaybookFormatError(f"bullet id {b.id} appears twice")
            by_id[b.id] = b
        object.__setattr__(self, "sections", tuple(sections))
        object.__setattr__(self, "bullets", tuple(bullets))
        object.__setattr__(self, "_by_id", by_id)

    # ---- reading -------------------------------------------------------------
    def __contains__(self, bullet_id: object) -> bool:
        return bullet_id in self._by_id

    def __iter__(self) -> Iterator[Bullet]:
        return iter(self.bullets)

    def __len__(self) -> int:
        return len(self.bullets)

    def get(self, bullet_id: str) -> Bullet | None:
        return self._by_id.get(bullet_id)

    def ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.bullets)

    def in_section(self, section: str) -> tuple[Bullet, ...]:
        return tuple(b for b in self.bullets if b.section == section)

    def same_as(self, content: str, *, ignore: Sequence[str] = ()) -> Bullet | None:
        """A bullet (other than those in ``ignore``) saying the same as ``content``."""
        key = normalise(content)
        return next(
            (b for b in self.bullets if b.id not in ignore and normalise(b.content) == key), None
        )

    def max_number(self) -> int:
        """The largest allocated id number in this playbook (0: none)."""
        return max((n for b in self.bullets if (n := bullet_number(b.id)) is not None), default=0)

    # ---- making new playbooks ----------------------------------------------------
    def with_bullets(self, bullets: Sequence[Bullet]) -> Playbook:
        """The same sections with ``bullets`` instead (new sections are appended)."""
        return Playbook(self.sections, tuple(bullets))

    def tagged(self, bullet_id: str, *, helpful: int = 0, harmful: int = 0) -> Playbook:
        """The counters of one bullet raised."""
        b = self._by_id[bullet_id]
        new = replace(b, helpful=b.helpful + helpful, harmful=b.harmful + harmful)
        return self.with_bullets([new if x.id == bullet_id else x for x in self.bullets])

    # ---- text ------------------------------------------------------------------
    def render(self) -> str:
        blocks = []
        for name in self.sections:
            lines = [f"## {name}", *(b.render() for b in self.in_section(name))]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks) + ("\n" if blocks else "")

    @classmethod
    def parse(cls, text: str) -> Playbook:
        """The playbook a text states; :class:`PlaybookFormatError` names a bad line."""
        sections: list[str] = []
        bullets: list[Bullet] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            m = _SECTION.match(line)
            if m:
                name = m.group("name")
                if name in sections:
                    raise PlaybookFormatError(f"line {n}: section {name!r} appears twice")
                sections.append(name)
                continue
            m = _BULLET.match(line)
            if m is None:
                raise PlaybookFormatError(
                    f"line {n}: expected '## section' or "
                    f"'[id] helpful=N harmful=M :: content', got {line[:80]!r}"
                )
            if not sections:
                raise PlaybookFormatError(f"line {n}: a bullet before any '## section' line")
            bullets.append(
                Bullet(
                    m.group("id"),
                    sections[-1],
                    m.group("content"),
                    int(m.group("helpful")),
                    int(m.group("harmful")),
                )
            )
        return cls(tuple(sections), tuple(bullets))
