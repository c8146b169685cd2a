"""MLflow's search syntax: filter strings and order_by clauses, parsed into plain clauses.

    metrics.acc > 0.9 AND params.lr = '0.01' AND tags.`my tag` LIKE 'x%'
    attributes.status = 'FINISHED' AND run_name ILIKE '%sweep%' AND start_time > 1700000000000
    attributes.run_id IN ('a1', 'b2') AND tags.reviewed IS NULL

The grammar and the error messages follow MLflow's own parser
(mlflow.utils.search_utils.SearchUtils), so a filter that MLflow accepts is
accepted here and a filter it refuses is refused with the same words. This
module only parses; runs.mlflow.queries turns the clauses into ORM queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runs.mlflow.errors import MlflowError

METRIC, PARAM, TAG, ATTRIBUTE, DATASET = "metric", "parameter", "tag", "attribute", "dataset"
_IDENTIFIERS = [METRIC, PARAM, TAG, ATTRIBUTE, DATASET]
_ALIASES = {
    "metric": METRIC,
    "metrics": METRIC,
    "parameter": PARAM,
    "parameters": PARAM,
    "param": PARAM,
    "params": PARAM,
    "tag": TAG,
    "tags": TAG,
    "attribute": ATTRIBUTE,
    "attributes": ATTRIBUTE,
    "attr": ATTRIBUTE,
    "run": ATTRIBUTE,
    "dataset": DATASET,
    "datasets": DATASET,
}

NUMERIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
KEY_VALUE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"})
DATASET_COMPARATORS = STRING_ATTRIBUTE_COMPARATORS

# RunInfo's searchable attributes, plus MLflow's aliases for two of them.
RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created", "run name", "Run name", "Run Name", "lifecycle_stage"}
)
RUN_ORDER_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id", "created", "Created"}
)
DATASET_ATTRIBUTES = frozenset({"name", "digest", "context"})
LIST_ATTRIBUTES = frozenset({"run_id"})

EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id"}) | EXPERIMENT_NUMERIC_ATTRIBUTES
EXPERIMENT_ORDER_ATTRIBUTES = EXPERIMENT_ATTRIBUTES

_ALIAS_KEYS = {"created": "start_time", "Created": "start_time", "run name": "run_name", "Run name": "run_name"}
_ALIAS_KEYS["Run Name"] = "run_name"


@dataclass(frozen=True)
class Clause:
    type: str  # METRIC, PARAM, TAG, ATTRIBUTE or DATASET
    key: str
    comparator: str  # upper case: "=", "LIKE", "IN", "IS NULL", ...
    value: object  # float for metrics, int/float for numeric attributes, str, tuple[str, ...] or None


@dataclass(frozen=True)
class OrderBy:
    type: str
    key: str
    ascending: bool


# --- tokens ----------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<squote>'[^']*')
  | (?P<dquote>"[^"]*")
  | (?P<backtick>`[^`]*`)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op>>=|<=|!=|<>|=|>|<)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<word>[A-Za-z_][\w]*)
  | (?P<dot>\.)
  | (?P<other>.)
    """,
    re.VERBOSE,
)
# After "<entity>.", an unquoted key runs on over the characters MLflow allows in names.
_KEY_RE = re.compile(r"[\w./:\-]+")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        assert match is not None  # the last alternative matches any character
        kind = match.lastgroup or "other"
        if kind == "dot" and tokens and tokens[-1].kind in ("word", "backtick"):
            key = _match_key(text, match.end())
            if key is None:
                raise MlflowError(f"Invalid identifier {text[pos:].split()[0]!r}. Could not be parsed.")
            entity = tokens.pop()
            tokens.append(_Token("ident", entity.text + "." + key[0]))
            pos = key[1]
            continue
        if kind != "ws":
            tokens.append(_Token(kind, match.group(0)))
        pos = match.end()
    return tokens


def _match_key(text: str, pos: int) -> tuple[str, int] | None:
    if pos < len(text) and text[pos] in "`\"'":
        end = text.find(text[pos], pos + 1)
        if end < 0:
            return None
        return text[pos : end + 1], end + 1
    match = _KEY_RE.match(text, pos)
    if match is None:
        return None
    return match.group(0), match.end()


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _strip_backticks(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "`":
        return value[1:-1]
    return value


def _identifier(token: _Token, valid_attributes: frozenset[str]) -> tuple[str, str]:
    if token.kind == "ident":
        entity, key = token.text.split(".", 1)
    elif token.kind in ("word", "backtick", "dquote"):
        entity, key = ATTRIBUTE, token.text
    else:
        raise MlflowError(
            f"Invalid identifier {token.text!r}. Columns should be specified as 'attribute.<key>', "
            "'metric.<key>', 'tag.<key>', 'dataset.<key>', or 'param.'."
        )
    entity = _strip_backticks(entity)
    kind = _ALIASES.get(entity) if token.kind == "ident" else ATTRIBUTE
    if kind is None:
        raise MlflowError(f"Invalid entity type '{entity}'. Valid values are {_IDENTIFIERS}")
    key = _strip_backticks(_strip_quotes(key))
    if kind == ATTRIBUTE and key not in valid_attributes:
        raise MlflowError(f"Invalid attribute key '{key}' specified. Valid keys are '{set(valid_attributes)}'")
    if kind == DATASET and key not in DATASET_ATTRIBUTES:
        raise MlflowError(f"Invalid dataset key '{key}' specified. Valid keys are '{set(DATASET_ATTRIBUTES)}'")
    return kind, _ALIAS_KEYS.get(key, key) if kind == ATTRIBUTE else key


# --- filters ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, attributes: frozenset[str], numeric: frozenset[str]):
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.attributes = attributes
        self.numeric = numeric

    def peek(self, offset: int = 0) -> _Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise MlflowError(f"Invalid filter '{self.text}'. Could not be parsed.")
        self.pos += 1
        return token

    def is_word(self, token: _Token | None, *words: str) -> bool:
        return token is not None and token.kind == "word" and token.text.upper() in words

    def clauses(self) -> list[Clause]:
        out = [self.clause()]
        while self.peek() is not None:
            token = self.take()
            if not self.is_word(token, "AND"):
                raise MlflowError(f"Invalid clause(s) in filter string: '{token.text}'")
            if self.peek() is None:
                raise MlflowError(f"Invalid clause(s) in filter string: '{token.text}'")
            out.append(self.clause())
        return out

    def clause(self) -> Clause:
        first = self.take()
        if self.is_word(first, "AND", "OR", "NOT"):
            raise MlflowError(f"Invalid clause(s) in filter string: '{first.text}'")
        kind, key = _identifier(first, self.attributes)
        op = self.take()
        if self.is_word(op, "IS"):
            negate = self.is_word(self.peek(), "NOT")
            if negate:
                self.take()
            if not self.is_word(self.take(), "NULL"):
                raise MlflowError("Invalid comparison clause. Expected 'IS NULL' or 'IS NOT NULL'")
            comparator = "IS NOT NULL" if negate else "IS NULL"
            if kind not in (TAG, PARAM):
                raise MlflowError(
                    f"IS NULL / IS NOT NULL is only supported for tags and params, not for '{kind}' '{key}'"
                )
            return Clause(kind, key, comparator, None)
        if self.is_word(op, "NOT") and self.is_word(self.peek(), "IN"):
            self.take()
            comparator = "NOT IN"
        elif op.kind == "op" or self.is_word(op, "LIKE", "ILIKE", "IN"):
            comparator = op.text.upper()
        else:
            raise MlflowError(f"Invalid comparison clause. Expected comparison found '{op.text}'")
        self._check_comparator(kind, key, comparator)
        value = self.value(kind, key, comparator)
        return Clause(kind, key, comparator, value)

    def _check_comparator(self, kind: str, key: str, comparator: str) -> None:
        if kind == METRIC or (kind == ATTRIBUTE and key in self.numeric):
            allowed = NUMERIC_COMPARATORS
        elif kind in (PARAM, TAG):
            allowed = KEY_VALUE_COMPARATORS
        elif kind == DATASET:
            allowed = DATASET_COMPARATORS
        else:
            allowed = STRING_ATTRIBUTE_COMPARATORS
        if comparator not in allowed:
            raise MlflowError(f"Invalid comparator '{comparator}' not one of '{set(allowed)}'")

    def value(self, kind: str, key: str, comparator: str) -> object:
        token = self.take()
        if comparator in ("IN", "NOT IN"):
            if kind == ATTRIBUTE and key not in LIST_ATTRIBUTES:
                raise MlflowError(
                    f"Only {sorted(LIST_ATTRIBUTES)} attributes support comparison with a list of quoted string values."
                )
            if token.kind != "lparen":
                raise MlflowError(f"Expected a list of quoted strings after {comparator}. Got value {token.text}")
            return self.string_list()
        if kind == METRIC or (kind == ATTRIBUTE and key in self.numeric):
            if token.kind != "number":
                what = "metric" if kind == METRIC else f"numeric attribute: {key}"
                raise MlflowError(f"Expected numeric value type for {what}. Found {token.text}")
            number = float(token.text)
            if kind == ATTRIBUTE and re.fullmatch(r"[-+]?\d+", token.text):
                return int(token.text)
            return number
        if token.kind in ("squote", "dquote"):
            return _strip_quotes(token.text)
        if kind in (PARAM, TAG):
            raise MlflowError(f"Expected a quoted string value for {kind} (e.g. 'my-value'). Got value {token.text}")
        if token.kind in ("word", "number", "ident"):
            raise MlflowError(
                "Parameter value is either not quoted or unidentified quote types used for string value "
                f"{token.text}. Use either single or double quotes."
            )
        raise MlflowError(f"Expected a quoted string value for attributes. Got value {token.text}")

    def string_list(self) -> tuple[str, ...]:
        items: list[str] = []
        while True:
            token = self.take()
            if token.kind not in ("squote", "dquote"):
                raise MlflowError(
                    "While parsing a list in the query, expected string value, punctuation, or whitespace, "
                    f"but got different type in list: {token.text}"
                )
            items.append(_strip_quotes(token.text))
            separator = self.take()
            if separator.kind == "rparen":
                return tuple(items)
            if separator.kind != "comma":
                raise MlflowError(f"Invalid list in filter: expected ',' or ')', got {separator.text}")


def parse_run_filter(text: str | None) -> list[Clause]:
    """Parse a search_runs filter. Raises MlflowError (INVALID_PARAMETER_VALUE) as MLflow does."""
    if not text or not text.strip():
        return []
    return _Parser(text, RUN_ATTRIBUTES, RUN_NUMERIC_ATTRIBUTES).clauses()


def parse_experiment_filter(text: str | None) -> list[Clause]:
    """Parse a search_experiments filter (attributes name, experiment_id, creation/update times; tags)."""
    if not text or not text.strip():
        return []
    clauses = _Parser(text, EXPERIMENT_ATTRIBUTES, EXPERIMENT_NUMERIC_ATTRIBUTES).clauses()
    for clause in clauses:
        if clause.type not in (ATTRIBUTE, TAG):
            raise MlflowError(f"Invalid entity type '{clause.type}'. Valid values are ['tag', 'attribute']")
    return clauses


# --- order_by --------------------------------------------------------------------------------------


def _parse_order_by(text: object, attributes: frozenset[str]) -> OrderBy:
    if not isinstance(text, str) or not text.strip():
        raise MlflowError(f"Invalid order_by clause '{text}'. Could not be parsed.")
    tokens = _tokenize(text)
    direction = "ASC"
    if len(tokens) == 2 and tokens[1].kind == "word" and tokens[1].text.upper() in ("ASC", "DESC"):
        direction = tokens[1].text.upper()
        tokens = tokens[:1]
    if len(tokens) != 1:
        raise MlflowError(f"Invalid order_by clause '{text}'. Could not be parsed.")
    kind, key = _identifier(tokens[0], attributes)
    if kind == DATASET:
        raise MlflowError(f"Invalid order_by entity type '{kind}'")
    return OrderBy(kind, key, direction == "ASC")


def parse_run_order_by(items: list[object] | None) -> list[OrderBy]:
    """Parse order_by items such as 'metrics.acc DESC'; duplicates are refused as MLflow refuses them."""
    out: list[OrderBy] = []
    seen: set[tuple[str, str]] = set()
    for item in items or []:
        order = _parse_order_by(item, RUN_ORDER_ATTRIBUTES)
        if (order.type, order.key) in seen:
            raise MlflowError(f"`order_by` contains duplicate fields: {items}")
        seen.add((order.type, order.key))
        out.append(order)
    return out


def parse_experiment_order_by(items: list[object] | None) -> list[OrderBy]:
    out = []
    for item in items or []:
        order = _parse_order_by(item, EXPERIMENT_ORDER_ATTRIBUTES)
        if order.type != ATTRIBUTE:
            raise MlflowError(f"Invalid order_by entity type '{order.type}'")
        out.append(order)
    return out
