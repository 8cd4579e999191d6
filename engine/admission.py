"""Task admission (事务准入) and certificate control (万能章治理): what departments may push onto a community."""

from __future__ import annotations

import importlib.resources
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import InvalidCommand, UnknownReference

DUTIES: tuple[str, ...] = ("autonomy", "assisting", "supervisory")  # 自治 / 协助 / 监督
DUTY_NAMES: Mapping[str, str] = MappingProxyType(
    {"autonomy": "自治事项", "assisting": "协助事项", "supervisory": "监督事项"}
)
KINDS: Mapping[str, str] = MappingProxyType({"task": "T", "inspection": "I", "report": "R", "service": "S"})
"""Kinds of admitted item and the letter their codes start with."""
STATUSES: tuple[str, ...] = ("abolished", "retained", "transferred")
"""What became of a certificate a community was asked to stamp."""

RULE_PLACEHOLDERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "admitted": ("code", "name", "duty", "department"),
        "unfunded": ("code", "name", "duty", "department"),
        "outside": ("code", "department"),
        "abolished": ("code", "name"),
        "retained": ("code", "name"),
        "transferred": ("code", "name"),
    }
)
"""The rule texts a catalogue file gives in [rules], and the placeholders each may use."""

_ITEM_CODE = re.compile(r"^[TIRS][0-9]{3}$")
_CERTIFICATE_CODE = re.compile(r"^Z[0-9]{3}$")
_TOP_KEYS = ("source", "rules", "item", "certificate", "refused_example")
_ITEM_FIELDS = ("code", "name", "name_en", "duty", "kind", "funded", "illustrative")
_CERTIFICATE_FIELDS = ("code", "name", "status", "alternative", "illustrative")
_EXAMPLE_FIELDS = ("code", "name", "name_en", "kind", "reason", "illustrative")


@dataclass(frozen=True)
class AdmissionItem:
    """One item of the admission catalogue (准入清单): work a department may push onto a community."""

    code: str
    name: str
    name_en: str
    duty: str
    kind: str  # "task" | "inspection" | "report" | "service"
    funded: bool  # 费随事转: the pushing department funds it
    illustrative: bool


@dataclass(frozen=True)
class RefusedExample:
    """Work a community used to be given that the admission rules removed, with the reason."""

    code: str
    name: str
    name_en: str
    kind: str
    reason: str
    illustrative: bool


@dataclass(frozen=True)
class Certificate:
    """A certificate (证明) communities were asked to stamp, and what the rules made of it."""

    code: str
    name: str
    status: str  # "abolished" | "retained" | "transferred"
    rule: str  # the rule to cite, in words
    alternative: str  # what the resident does instead ("" for retained)
    illustrative: bool


@dataclass(frozen=True)
class Decision:
    """Whether pushed work is admitted, the rule cited and the reason in words."""

    admitted: bool
    rule: str
    reason: str
    item: AdmissionItem | None


@dataclass(frozen=True)
class AdmissionCatalogue:
    """An admission catalogue (准入清单) and a certificate list (证明事项清单), looked up by code."""

    name: str
    source: str
    items: Mapping[str, AdmissionItem]
    certificates: Mapping[str, Certificate]
    rules: Mapping[str, str]
    refused_examples: Mapping[str, RefusedExample]

    @classmethod
    def load(cls, name_or_path: str | Path = "zhongshan") -> AdmissionCatalogue:
        """A packaged catalogue by name, or a catalogue file (a Path, or a text ending in .toml)."""
        if isinstance(name_or_path, str) and name_or_path in packaged():
            resource = _folder() / f"{name_or_path}.toml"
            return _parse(resource.read_text(encoding="utf-8"), str(resource), name_or_path)
        if isinstance(name_or_path, str) and not name_or_path.endswith(".toml"):
            raise UnknownReference("admission catalogue", name_or_path, allowed=packaged())
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(
                f"{path}: cannot read the admission catalogue ({exc.strerror or exc}); "
                f"packaged catalogues: {', '.join(packaged())}"
            ) from exc
        return _parse(text, str(path), path.stem)

    def admit(self, item_code: str, *, department: str) -> Decision:
        """事务准入: whether a department may push this item onto a community; a refusal is a Decision."""
        if not department.strip():
            raise InvalidCommand("department", "is empty", "the department pushing the item, e.g. 民政局")
        item = self.items.get(item_code)
        if item is None:
            rule = self.rules["outside"].format(code=item_code, department=department)
            return Decision(False, rule, self._outside_reason(item_code, department), None)
        fields = {"code": item.code, "name": item.name, "duty": DUTY_NAMES[item.duty], "department": department}
        described = (
            f"{item.code} {item.name} ({item.name_en}) is in the admission catalogue {self.name!r} "
            f"as {DUTY_NAMES[item.duty]} ({item.duty} duty)"
        )
        if item.duty == "assisting" and not item.funded:
            reason = (
                f"{described}, but no funding follows it; 费随事转: {department} must fund "
                "an assisting duty before a community takes it on"
            )
            return Decision(False, self.rules["unfunded"].format(**fields), reason, item)
        funding = ", funded by the pushing department (费随事转)" if item.funded else ""
        reason = f"{described}{funding}; pushed by {department}"
        return Decision(True, self.rules["admitted"].format(**fields), reason, item)

    def certificate(self, code: str) -> Certificate:
        """The certificate with this code; UnknownReference lists the known codes."""
        try:
            return self.certificates[code]
        except KeyError:
            raise UnknownReference("certificate", code, allowed=sorted(self.certificates)) from None

    def counts(self) -> dict[str, int]:
        """Items per duty and per kind, certificates per status."""
        items = list(self.items.values())
        statuses = [c.status for c in self.certificates.values()]
        return (
            {duty: sum(i.duty == duty for i in items) for duty in DUTIES}
            | {kind: sum(i.kind == kind for i in items) for kind in KINDS}
            | {status: statuses.count(status) for status in STATUSES}
        )

    def _outside_reason(self, code: str, department: str) -> str:
        outside = (
            f"not in the admission catalogue {self.name!r} ({len(self.items)} items); "
            "work outside it may not be pushed onto a community"
        )
        if not code.strip():
            return f"no item code given by {department}: {outside}"
        example = self.refused_examples.get(code)
        if example is None:
            return f"{code!r} pushed by {department} is {outside}"
        return f"{code} {example.name} ({example.name_en}) pushed by {department} is {outside}: {example.reason}"


def packaged() -> tuple[str, ...]:
    """Names of the packaged admission catalogues, sorted."""
    return tuple(sorted(e.name[: -len(".toml")] for e in _folder().iterdir() if e.name.endswith(".toml")))


def _folder() -> Traversable:
    return importlib.resources.files("engine") / "data" / "admission"


def _parse(text: str, source: str, name: str) -> AdmissionCatalogue:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {unknown}; allowed: {list(_TOP_KEYS)}")
    document = data.get("source")
    if not isinstance(document, str) or not document.strip():
        raise ValueError(f"{source}: source must be a non-empty string naming the document, got {document!r}")
    rules = _rules(data.get("rules"), f"{source}: [rules]")
    items: dict[str, AdmissionItem] = {}
    for index, entry in enumerate(_tables(data, "item", source)):
        item = _item(entry, f"{source}: [[item]] #{index + 1} ({entry.get('code', '?')!r})")
        _unique(items, item.code, f"{source}: [[item]] #{index + 1} ({item.code!r})")
        items[item.code] = item
    certificates: dict[str, Certificate] = {}
    for index, entry in enumerate(_tables(data, "certificate", source)):
        certificate = _certificate(entry, rules, f"{source}: [[certificate]] #{index + 1} ({entry.get('code', '?')!r})")
        _unique(certificates, certificate.code, f"{source}: [[certificate]] #{index + 1} ({certificate.code!r})")
        certificates[certificate.code] = certificate
    examples: dict[str, RefusedExample] = {}
    for index, entry in enumerate(_tables(data, "refused_example", source)):
        where = f"{source}: [[refused_example]] #{index + 1} ({entry.get('code', '?')!r})"
        example = _example(entry, where)
        if example.code in items:
            raise ValueError(f"{where}: the code is an admitted item; a refused example must be outside the catalogue")
        _unique(examples, example.code, where)
        examples[example.code] = example
    return AdmissionCatalogue(
        name=name,
        source=document,
        items=MappingProxyType(items),
        certificates=MappingProxyType(certificates),
        rules=MappingProxyType(rules),
        refused_examples=MappingProxyType(examples),
    )


def _rules(table: object, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: missing or not a table; it holds the rule texts {list(RULE_PLACEHOLDERS)}")
    _fields(table, tuple(RULE_PLACEHOLDERS), (), where)
    rules = _strings(table, tuple(RULE_PLACEHOLDERS), where)
    for key, template in rules.items():
        allowed = RULE_PLACEHOLDERS[key]
        try:
            used = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        except ValueError as exc:
            raise ValueError(
                f"{where}: {key} is not a valid rule text ({exc}); write literal braces as {{{{ }}}}"
            ) from exc
        wrong = sorted({field for field in used if field not in allowed})
        if wrong:
            placeholders = ", ".join(f"{{{p}}}" for p in allowed)
            raise ValueError(f"{where}: {key} uses unknown placeholder(s) {wrong}; allowed: {placeholders}")
    return rules


def _item(entry: Mapping[str, Any], where: str) -> AdmissionItem:
    _fields(entry, _ITEM_FIELDS, (), where)
    fields = _strings(entry, ("code", "name", "name_en", "duty", "kind"), where)
    duty, kind = fields["duty"], fields["kind"]
    if duty not in DUTIES:
        raise ValueError(f"{where}: unknown duty {duty!r}; allowed: {', '.join(DUTIES)}")
    _code(fields["code"], kind, where)
    return AdmissionItem(
        **fields, funded=_bool(entry, "funded", where), illustrative=_bool(entry, "illustrative", where)
    )


def _certificate(entry: Mapping[str, Any], rules: Mapping[str, str], where: str) -> Certificate:
    _fields(entry, _CERTIFICATE_FIELDS, ("rule",), where)
    fields = _strings(entry, ("code", "name", "status"), where)
    code, name, status = fields["code"], fields["name"], fields["status"]
    if not _CERTIFICATE_CODE.match(code):
        raise ValueError(f"{where}: code must be 'Z' + 3 digits, e.g. Z001")
    if status not in STATUSES:
        raise ValueError(f"{where}: unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    alternative = entry["alternative"]
    if not isinstance(alternative, str):
        raise ValueError(f"{where}: alternative must be a string, got {alternative!r}")
    if status == "retained" and alternative:
        raise ValueError(f'{where}: a retained certificate is still stamped; its alternative must be ""')
    if status != "retained" and not alternative.strip():
        raise ValueError(f"{where}: an {status} certificate needs an alternative: what the resident does instead")
    rule = _strings(entry, ("rule",), where)["rule"] if "rule" in entry else rules[status].format(code=code, name=name)
    return Certificate(code, name, status, rule, alternative, _bool(entry, "illustrative", where))


def _example(entry: Mapping[str, Any], where: str) -> RefusedExample:
    _fields(entry, _EXAMPLE_FIELDS, (), where)
    fields = _strings(entry, ("code", "name", "name_en", "kind", "reason"), where)
    _code(fields["code"], fields["kind"], where)
    return RefusedExample(**fields, illustrative=_bool(entry, "illustrative", where))


def _code(code: str, kind: str, where: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    if not _ITEM_CODE.match(code) or code[0] != KINDS[kind]:
        raise ValueError(f"{where}: code must be {KINDS[kind]!r} (kind {kind}) + 3 digits, e.g. {KINDS[kind]}001")


def _unique(seen: Mapping[str, object], code: str, where: str) -> None:
    if code in seen:
        raise ValueError(f"{where}: duplicate code; codes must be unique")


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{source}: {key!r} must be an array of tables ([[{key}]])")
    return tables


def _fields(entry: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(entry) - {*required, *optional})
    missing = [f for f in required if f not in entry]
    problems = [f"unknown field(s) {unknown}"] if unknown else []
    problems += [f"missing field(s) {missing}"] if missing else []
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}; required: {list(required)}, optional: {list(optional)}")


def _strings(entry: Mapping[str, Any], names: tuple[str, ...], where: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in names:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {name} must be a non-empty string, got {value!r}")
        fields[name] = value
    return fields


def _bool(entry: Mapping[str, Any], name: str, where: str) -> bool:
    value = entry.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
    return value
