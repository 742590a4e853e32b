"""What a PromQL expression reads: metric names with the label names (and equality values) it
matches on, and the labels it groups or joins by. A small tokenizer rather than a full parser
(no PromQL parser is packaged for Python here; promtool validates the syntax itself): enough
for the expressions of the alert rules and the dashboard, which `promtool check rules` and
the rule tests keep valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# words that are not metric names where they stand
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)
# aggregation operators: `sum by (le) (…)` puts a grouping between the name and its "("
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      |(?P<range>\[[^\]]*\])
      |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[smhdwy]?)
      |(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
      |(?P<matcher>=~|!~|!=|==|=)
      |(?P<punct>[{}(),])
      |(?P<other>\S)""",
    re.VERBOSE,
)


@dataclass
class Selector:
    metric: str | None
    labels: set[str] = field(default_factory=set)
    equals: dict[str, str] = field(default_factory=dict)
    """label -> value of `label="value"` matchers"""


@dataclass
class Reads:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors if s.metric}


def _tokens(expr: str) -> list[tuple[str, str]]:
    # Grafana's variables ($__rate_interval, ${datasource}) only stand in ranges or values
    expr = re.sub(r"\$\{?\w+\}?", "5m", expr)
    return [
        (m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "range"
    ]


def _matchers(tokens: list[tuple[str, str]], i: int, selector: Selector) -> int:
    """Read `{label op "value", ...}` from tokens[i] == "{"; return the index after "}"."""
    i += 1
    while i < len(tokens) and tokens[i][1] != "}":
        kind, text = tokens[i]
        if kind == "name" and i + 2 < len(tokens) and tokens[i + 1][0] == "matcher":
            op, (value_kind, value) = tokens[i + 1][1], tokens[i + 2]
            selector.labels.add(text)
            if op == "=" and value_kind == "string":
                selector.equals[text] = value[1:-1]
            i += 3
            continue
        i += 1
    return i + 1


def reads(expr: str) -> Reads:
    tokens = _tokens(expr)
    found = Reads()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "name" and text in GROUPING and following == "(":
            i += 2
            while i < len(tokens) and tokens[i][1] != ")":
                if tokens[i][0] == "name":
                    found.grouping.add(tokens[i][1])
                i += 1
            i += 1
            continue
        if kind == "name" and text == "offset":
            i += 2
            continue
        if kind == "name" and text not in KEYWORDS | AGGREGATIONS and following != "(":
            selector = Selector(text)
            i += 1
            if following == "{":
                i = _matchers(tokens, i, selector)
            found.selectors.append(selector)
            continue
        if text == "{":  # a selector without a metric name
            selector = Selector(None)
            i = _matchers(tokens, i, selector)
            found.selectors.append(selector)
            continue
        i += 1
    return found
