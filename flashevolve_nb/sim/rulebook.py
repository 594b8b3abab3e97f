"""The "rulebook" task family: requests whose hidden rules are checked by code.

Each instance is a plausible user request about a topic plus a hidden subset
of 3-5 output rules from ``rules.RULES``; the request text never lists them,
so the only way to do well across instances is a system prompt that states
the rules that keep coming back. Rule frequencies are skewed (a few rules are
common, hence transferable; many are rare), and no instance needs both rules
of a conflicting pair. Score = fraction of the instance's rules satisfied;
feedback names the violated ones with their fixed sentences, which is what a
reflection model gets to read.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from flashevolve_nb.sim.rules import RULES, RULES_BY_ID, conflicts_with

__all__ = ["TOPICS", "Instance", "RulebookTask", "Scored", "Topic", "topic_of"]


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    detail: str
    """A specific thing to mention: the stuff of non-transferable prompt content."""


TOPICS: tuple[Topic, ...] = (
    Topic("volcanoes", "Mount Etna"),
    Topic("urban beekeeping", "rooftop hives in Paris"),
    Topic("sourdough baking", "a rye starter"),
    Topic("tidal energy", "the La Rance barrage"),
    Topic("medieval castles", "Carcassonne"),
    Topic("coral reefs", "the Great Barrier Reef"),
    Topic("marathon training", "long slow runs"),
    Topic("home composting", "a bokashi bin"),
    Topic("night sky photography", "the Milky Way core"),
    Topic("jazz improvisation", "the blues scale"),
    Topic("container gardening", "cherry tomatoes"),
    Topic("desert hiking", "Death Valley"),
    Topic("birdwatching", "the Atlantic puffin"),
    Topic("chess openings", "the Sicilian Defence"),
    Topic("rainwater harvesting", "a rain barrel"),
    Topic("lighthouse history", "the Pharos of Alexandria"),
    Topic("glacier retreat", "the Rhone Glacier"),
    Topic("tea ceremonies", "matcha"),
    Topic("bicycle maintenance", "chain lubrication"),
    Topic("public libraries", "interlibrary loans"),
    Topic("solar eclipses", "eclipse glasses"),
    Topic("river kayaking", "a spray skirt"),
    Topic("wild mushrooms", "chanterelles"),
    Topic("first aid", "the recovery position"),
    Topic("password security", "a password manager"),
    Topic("board game design", "playtesting"),
    Topic("cave exploration", "Carlsbad Caverns"),
    Topic("kite flying", "a delta kite"),
    Topic("recycling electronics", "lithium batteries"),
    Topic("street food markets", "Bangkok night markets"),
)

_REQUESTS = (
    "Write a short guide about {t} for a beginner.",
    "Explain {t} to a curious teenager.",
    "Give me practical advice about {t}.",
    "Summarise what a newcomer should know about {t}.",
    "Draft a note to a colleague about {t}.",
    "What are the main things to consider about {t}?",
    "Describe {t} for a school newsletter.",
    "Prepare talking points about {t} for a meeting.",
    "I am planning a weekend around {t}. What should I know?",
    "Our club wants an introduction to {t}. Can you help?",
)
_CONTEXT = (
    "",
    "",
    " Keep it friendly.",
    " It is for a community newsletter.",
    " My manager asked for it.",
    " Assume no prior knowledge.",
    " It will be read aloud.",
)


def topic_of(text: str) -> Topic | None:
    """The topic a request (or any text) is about, if it names a known one."""
    lowered = text.lower()
    for topic in sorted(TOPICS, key=lambda t: -len(t.name)):
        if topic.name in lowered:
            return topic
    return None


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    input: str
    rules: tuple[str, ...]
    """Ids of the hidden rules that apply (never shown to the model)."""


@dataclass(frozen=True, slots=True)
class Scored:
    score: float
    feedback: str


def _sample_rules(rng: random.Random) -> tuple[str, ...]:
    size = rng.choice((3, 3, 4, 4, 5))
    chosen: list[str] = []
    candidates = list(RULES)
    while len(chosen) < size and candidates:
        rule = rng.choices(candidates, weights=[r.weight for r in candidates])[0]
        chosen.append(rule.id)
        blocked = conflicts_with(rule.id) | {rule.id}
        candidates = [r for r in candidates if r.id not in blocked]
    return tuple(sorted(chosen, key=[r.id for r in RULES].index))


class RulebookTask:
    """Seeded train/val/test splits of rulebook instances, a scorer and the prompt shape."""

    name = "rulebook"

    def __init__(
        self, seed: int = 0, n_train: int = 60, n_val: int = 40, n_test: int = 100
    ) -> None:
        if min(n_train, n_val, n_test) < 0:
            raise ValueError("split sizes must be >= 0")
        self.seed = seed
        rng = random.Random(f"rulebook:{seed}")
        splits: list[tuple[Instance, ...]] = []
        for split, size in (("train", n_train), ("val", n_val), ("test", n_test)):
            items = []
            for i in range(size):
                topic = rng.choice(TOPICS)
                text = rng.choice(_REQUESTS).format(t=topic.name) + rng.choice(_CONTEXT)
                items.append(Instance(f"{split}-{i:03d}", text, _sample_rules(rng)))
            splits.append(tuple(items))
        self.train, self.val, self.test = splits

    def seed_candidate(self) -> dict[str, str]:
        return {"system_prompt": "You are a helpful assistant. Answer the user's request."}

    def messages(self, components: Mapping[str, str], instance: Instance) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": "\n\n".join(components.values())},
            {"role": "user", "content": instance.input},
        ]

    def score(self, instance: Instance, output: str) -> Scored:
        violated = [r for r in instance.rules if not RULES_BY_ID[r].check(output)]
        score = 1.0 - len(violated) / len(instance.rules) if instance.rules else 1.0
        if not violated:
            return Scored(score, "All rules satisfied.")
        lines = ["Violated rules:", *(RULES_BY_ID[r].feedback for r in violated)]
        return Scored(score, "\n".join(lines))

    def __repr__(self) -> str:
        sizes = f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}"
        return f"RulebookTask(seed={self.seed}, {sizes})"
