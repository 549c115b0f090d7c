"""Estimated cost of a run's tokens: a small table of batch prices, overridable per model.

Batch prediction bills tokens at half the online list price. These are list prices in USD per million
tokens when this table was written (check the Vertex AI pricing page); output includes thinking tokens. A
model not in the table has no estimate unless `--price MODEL=INPUT/OUTPUT` gives one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# model -> (input, output) USD per million tokens, batch (half the online price).
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gemini-2.5-pro": (0.625, 5.00),
    "gemini-2.5-flash": (0.15, 1.25),
    "gemini-2.5-flash-lite": (0.05, 0.20),
}


@dataclass(frozen=True, slots=True)
class Estimate:
    model: str
    input_price: float
    output_price: float
    input_tokens: int
    output_tokens: int

    @property
    def usd(self) -> float:
        return (self.input_tokens * self.input_price + self.output_tokens * self.output_price) / 1_000_000

    def to_json(self) -> dict:
        return {"estimate": True, "usd": round(self.usd, 9), "model": self.model,
                "pricePerMillion": {"input": self.input_price, "output": self.output_price},
                "tokens": {"input": self.input_tokens, "output": self.output_tokens}}


def parse_overrides(values: Iterable[str]) -> dict[str, tuple[float, float]]:
    """`MODEL=INPUT/OUTPUT` (USD per million tokens) -> table entries. Raises ValueError naming a bad one."""
    table = {}
    for value in values:
        model, _, prices = value.partition("=")
        try:
            given, _, taken = prices.partition("/")
            table[model.strip()] = (float(given), float(taken))
        except ValueError:
            raise ValueError(f"--price {value!r}: expected MODEL=INPUT/OUTPUT in USD per million tokens, "
                             "such as gemini-2.5-flash=0.15/1.25") from None
        if not model.strip():
            raise ValueError(f"--price {value!r}: no model named")
    return table


def price_of(model: str, overrides: Mapping[str, tuple[float, float]] | None = None) -> tuple[str, float, float] | None:
    """(table key, input, output) for a model name (`publishers/google/models/x`, versioned `x-001`): the
    longest key the name starts with, overrides first."""
    name = model.rsplit("/", 1)[-1]
    table = {**BATCH_PRICES, **(overrides or {})}
    keys = sorted((k for k in table if name == k or name.startswith(k + "-") or name.startswith(k + "@")),
                  key=len, reverse=True)
    if overrides and name in overrides:
        keys = [name]
    return (keys[0], *table[keys[0]]) if keys else None


def estimate(model: str, tokens: Mapping[str, int],
             overrides: Mapping[str, tuple[float, float]] | None = None) -> Estimate | None:
    found = price_of(model, overrides)
    if found is None:
        return None
    key, given, taken = found
    prompt = int(tokens.get("prompt") or 0)
    total = int(tokens.get("total") or 0)
    output = max(total - prompt, int(tokens.get("candidates") or 0))  # thinking tokens bill as output
    return Estimate(key, given, taken, prompt, output)
