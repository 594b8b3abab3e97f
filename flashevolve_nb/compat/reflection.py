"""Who writes a child's new texts in a ``gepa`` run, and how.

As in ``gepa``, the first of: the adapter's own ``propose_new_texts``, a
``custom_candidate_proposer``, or the reflection model. The reflection model
gets ``gepa``'s own prompt (``InstructionProposalSignature``, or the
``reflection_prompt_template`` given for all components or per component),
once per component to update, and its answer is read the ``gepa`` way
(``parse="gepa"``: the text between the first and the last fence, or the whole
answer when there is no fence, which lets chatter into the text) or strictly
(``parse="strict"``: only a complete fenced block is adopted, a truncated
answer never is).

The calls of one proposal run side by side (``gepa`` makes them one after
another). The prompt needs the ``gepa`` package; the other two ways do not.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flashevolve_nb.compat.calls import AdapterCalls, AdapterContractError
from flashevolve_nb.llm.protocol import LLM, LLMError, Message
from flashevolve_nb.workloads.gepa.prompts import parse_reflection_answer

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["Parse", "Proposal", "Reflector"]

Parse = Literal["gepa", "strict"]
Template = str | Mapping[str, str] | None


@dataclass(frozen=True)
class Proposal:
    """New texts by component, with what the model was asked and answered; or why none."""

    new_texts: Mapping[str, str] = field(default_factory=dict)
    prompts: Mapping[str, Any] = field(default_factory=dict)
    raw_outputs: Mapping[str, str] = field(default_factory=dict)
    failure: str = ""


def _signature() -> Any:
    try:
        module = importlib.import_module("gepa.strategies.instruction_proposal")
    except ImportError:
        raise ImportError(
            "proposing with a reflection model uses gepa's reflection prompt, which needs the "
            "gepa package: pip install 'flashevolve_nb[gepa]' (or give the adapter a "
            "propose_new_texts method, or pass custom_candidate_proposer)"
        ) from None
    return module.InstructionProposalSignature


class Reflector:
    """Turns (candidate, reflective dataset, components) into new component texts."""

    def __init__(
        self,
        adapter: Any,
        calls: AdapterCalls,
        *,
        llm: LLM | None,
        template: Template = None,
        parse: Parse = "gepa",
        custom_proposer: Callable[..., Mapping[str, str]] | None = None,
    ) -> None:
        if parse not in ("gepa", "strict"):
            raise ValueError(f"reflection parse must be 'gepa' or 'strict' (got {parse!r})")
        self.adapter_proposes = getattr(adapter, "propose_new_texts", None) is not None
        if self.adapter_proposes and custom_proposer is not None:
            raise ValueError(
                "the adapter has propose_new_texts and custom_candidate_proposer was given too; "
                "use only one of them"
            )
        self.adapter = adapter
        self.calls = calls
        self.llm = llm
        self.template = template
        self.parse = parse
        self.custom_proposer = custom_proposer
        self._signature: Any = None
        if template is not None and self.source != "reflection_lm":
            raise ValueError(
                f"proposals come from {self.source}, so reflection_prompt_template would be "
                "ignored; leave it out (gepa.optimize refuses it too)"
            )
        if self.source == "reflection_lm":
            if llm is None:
                raise ValueError(
                    "reflection_lm was not given, and the adapter has no propose_new_texts and "
                    "no custom_candidate_proposer was passed: someone has to write new texts"
                )
            self._signature = _signature()
            templates = template.values() if isinstance(template, Mapping) else [template]
            for t in templates:
                self._signature.validate_prompt_template(t)

    @property
    def source(self) -> str:
        if self.adapter_proposes:
            return "adapter.propose_new_texts"
        if self.custom_proposer is not None:
            return "custom_candidate_proposer"
        return "reflection_lm"

    async def propose(
        self,
        ctx: StageContext,
        candidate: Mapping[str, str],
        dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components: Sequence[str],
    ) -> Proposal:
        if self.source != "reflection_lm":
            fn = self.adapter.propose_new_texts if self.adapter_proposes else self.custom_proposer
            assert fn is not None
            given = await self.calls.traced(
                ctx,
                f"{self.source}: {', '.join(components)}",
                "reflection",
                lambda: fn(dict(candidate), dataset, list(components)),
            )
            return Proposal(new_texts=_checked_texts(given, self.source))
        wanted = [c for c in components if dataset.get(c)]
        if not wanted:
            return Proposal(
                failure=f"the reflective dataset has no examples for {', '.join(components)}"
            )
        answers = await asyncio.gather(
            *(self._reflect(ctx, candidate[c], dataset[c], c) for c in wanted)
        )
        texts: dict[str, str] = {}
        prompts: dict[str, Any] = {}
        raws: dict[str, str] = {}
        for c, (prompt, raw, text, failure) in zip(wanted, answers, strict=True):
            prompts[c] = prompt
            raws[c] = raw
            if failure:
                return Proposal(prompts=prompts, raw_outputs=raws, failure=f"{c}: {failure}")
            texts[c] = text
        return Proposal(texts, prompts, raws)

    async def _reflect(
        self, ctx: StageContext, current: str, records: Sequence[Mapping[str, Any]], name: str
    ) -> tuple[Any, str, str, str]:
        """(prompt, raw answer, new text, failure) for one component."""
        template = self.template.get(name) if isinstance(self.template, Mapping) else self.template
        prompt = self._signature.prompt_renderer(
            {
                "current_instruction_doc": current,
                "dataset_with_feedback": list(records),
                "prompt_template": template,
            }
        )
        messages: list[Message] = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        )
        assert self.llm is not None
        try:
            completion = await ctx.chat(self.llm, messages, role="reflection")
        except LLMError as exc:
            return prompt, "", "", f"the reflection model failed: {exc}"
        raw = completion.text
        if self.parse == "strict":
            parsed = parse_reflection_answer(raw, completion.finish_reason)
            if parsed.text is None:
                return prompt, raw, "", parsed.reason
            return prompt, raw, parsed.text, ""
        extracted = self._signature.output_extractor(raw.strip())["new_instruction"]
        return prompt, raw, str(extracted), ""


def _checked_texts(texts: object, source: str) -> dict[str, str]:
    if not isinstance(texts, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in texts.items()
    ):
        raise AdapterContractError(
            f"{source} returned {type(texts).__name__}; it must return a dict of component "
            "name -> new text"
        )
    return dict(texts)
