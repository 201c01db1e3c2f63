"""The policy file: who may look at what, deny by default.

```yaml
roles:
  oncall:
    services: ["orders", "payments-*"]      # globs; required unless the role only observes or administers
    probes: [snapshot, log, metric, stacks] # kinds its holders may set (default: none)
    max_session: 30m                        # longest session (default 15m, at most 24h)
    reveal: [pii]                           # redaction classes shown unredacted (default: none)
    approval: {from: [sre-lead], count: 1}  # a session needs approvers holding these roles
    observe: ["payments-*"]                 # may watch others' sessions on these services (and end them)
    admin: [users, enrollment, policy, audit]
groups:
  sre: {roles: [sre-lead], members: [bob]}
users:
  alice: [oncall]
```

A file that does not validate is refused whole, with the line and the reason; nothing of it is used.
Limiting a role to agents by their labels is not enforced yet, so a role with `labels:` is refused
rather than read as a limit that does not hold.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import yaml

from keyhole.gateway.errors import GatewayError
from keyhole.protocol.durations import format_duration, parse_duration
from keyhole.protocol.errors import SpecError
from keyhole.protocol.probe_spec import KINDS
from keyhole.protocol.redaction import validate_reveal

ADMIN_ABILITIES = ("users", "enrollment", "policy", "audit")
DEFAULT_MAX_SESSION = 15 * 60.0
LONGEST_SESSION = 24 * 3600.0
_ROLE_FIELDS = ("services", "probes", "max_session", "reveal", "approval", "observe", "admin")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class PolicyError(GatewayError):
    """A policy file that does not validate: the message names the line and the reason."""


@dataclass(frozen=True)
class Approval:
    roles: frozenset[str]
    count: int


@dataclass(frozen=True)
class Role:
    name: str
    services: tuple[str, ...]
    probes: frozenset[str] = frozenset()
    max_session: float = DEFAULT_MAX_SESSION
    reveal: frozenset[str] = frozenset()
    approval: Approval | None = None
    admin: frozenset[str] = frozenset()
    observe: tuple[str, ...] = ()

    def covers(self, service: str) -> bool:
        """Whether this role reaches `service`."""
        return any(fnmatch.fnmatchcase(service, glob) for glob in self.services)

    def observes(self, service: str) -> bool:
        """Whether this role may watch other users' sessions on `service`."""
        return any(fnmatch.fnmatchcase(service, glob) for glob in self.observe)


@dataclass(frozen=True)
class Policy:
    roles: dict[str, Role]
    users: dict[str, frozenset[str]]  # user -> roles, directly or through groups

    def roles_of(self, user: str) -> list[Role]:
        return [self.roles[name] for name in sorted(self.users.get(user, frozenset()))]

    def abilities_of(self, user: str) -> frozenset[str]:
        return frozenset().union(*(role.admin for role in self.roles_of(user)))

    def observes(self, user: str, service: str) -> bool:
        return any(role.observes(service) for role in self.roles_of(user))


# --- reading, with line numbers -------------------------------------------------------------------------


def _at(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def _fail(node: yaml.Node, reason: str) -> PolicyError:
    return PolicyError(f"{_at(node)}: {reason}")


def _mapping(node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _fail(node, f"{what} must be a mapping")
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: set[str] = set()
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise _fail(key, f"a key of {what} must be a plain name")
        if key.value in seen:
            raise _fail(key, f"{key.value!r} appears twice in {what}")
        seen.add(key.value)
        items.append((str(key.value), key, value))
    return items


def _strings(node: yaml.Node, what: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode) or not all(
        isinstance(item, yaml.ScalarNode) and item.value for item in node.value
    ):
        raise _fail(node, f"{what} must be a list of names, such as [a, b]")
    return [str(item.value) for item in node.value]


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _fail(node, f"{what} must be a single value")
    return str(node.value)


def _name(key: yaml.Node, name: str, what: str) -> str:
    if not name or not set(name) <= _NAME_CHARS:
        raise _fail(key, f"{what} {name!r} must be lower case letters, digits, '-', '_' or '.'")
    return name


def _one_of(node: yaml.Node, what: str, allowed: tuple[str, ...], noun: tuple[str, str]) -> frozenset[str]:
    names = _strings(node, what)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise _fail(node, f"{what}: unknown {noun[0]} {unknown[0]!r} ({noun[1]}: {', '.join(allowed)})")
    return frozenset(names)


def _approval(node: yaml.Node, role: str) -> tuple[list[str], int, yaml.Node]:
    roles: list[str] = []
    count = 1
    for key, key_node, value in _mapping(node, f"role {role}'s approval"):
        if key == "from":
            roles = _strings(value, f"role {role}'s approval.from")
        elif key == "count":
            text = _scalar(value, f"role {role}'s approval.count")
            if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 10:
                raise _fail(value, f"role {role}'s approval.count must be a whole number from 1 to 10")
            count = int(text)
        else:
            raise _fail(key_node, f"unknown field {key!r} in role {role}'s approval (fields: from, count)")
    if not roles:
        raise _fail(node, f"role {role}'s approval needs from: [the roles that may approve]")
    return roles, count, node


def _role(name: str, name_node: yaml.Node, node: yaml.Node, pending: list[tuple[str, list[str], yaml.Node]]) -> Role:
    fields: dict[str, Any] = {}
    services: tuple[str, ...] | None = None
    for key, key_node, value in _mapping(node, f"role {name}"):
        what = f"role {name}'s {key}"
        if key == "services":
            services = tuple(_strings(value, what))
        elif key == "labels":
            raise _fail(key_node, f"{what}: limiting a role by agent labels is not enforced yet; remove it for now")
        elif key == "probes":
            fields["probes"] = _one_of(value, what, KINDS, ("probe kind", "kinds"))
        elif key == "max_session":
            try:
                seconds = parse_duration(_scalar(value, what), what)
            except SpecError as exc:
                raise _fail(value, str(exc)) from None
            if seconds > LONGEST_SESSION:
                raise _fail(value, f"{what} may be at most {format_duration(LONGEST_SESSION)}")
            fields["max_session"] = seconds
        elif key == "reveal":
            try:
                fields["reveal"] = frozenset(validate_reveal(_strings(value, what), what))
            except SpecError as exc:
                raise _fail(value, str(exc)) from None
        elif key == "approval":
            roles, count, where = _approval(value, name)
            pending.append((f"role {name}'s approval.from", roles, where))
            fields["approval"] = Approval(frozenset(roles), count)
        elif key == "observe":
            fields["observe"] = tuple(_strings(value, what))
        elif key == "admin":
            fields["admin"] = _one_of(value, what, ADMIN_ABILITIES, ("ability", "abilities"))
        else:
            raise _fail(key_node, f"unknown field {key!r} in role {name} (fields: {', '.join(_ROLE_FIELDS)})")
    if services is None:
        if not fields.get("admin") and not fields.get("observe"):
            raise _fail(name_node, f"role {name} needs services: [globs of the services it reaches]")
        services = ()  # a role that only administers or observes reaches no service
    return Role(name=name, services=services, **fields)


def parse_policy(text: str) -> Policy:
    """The policy in `text`, or PolicyError naming the first line that is wrong."""
    try:
        return _parse(text)
    except RecursionError:
        raise PolicyError("the policy is nested too deeply to be a policy") from None


def _parse(text: str) -> Policy:
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PolicyError(f"{where}{problem}") from None
    if document is None:
        raise PolicyError("the policy is empty; it needs at least roles: and users:")
    roles: dict[str, Role] = {}
    pending: list[tuple[str, list[str], yaml.Node]] = []  # role references, checked once all roles are read
    direct: dict[str, set[str]] = {}
    groups: list[tuple[str, list[str], list[str], yaml.Node]] = []
    for section, key_node, value in _mapping(document, "the policy"):
        if section == "roles":
            for name, name_node, body in _mapping(value, "roles"):
                roles[_name(name_node, name, "role")] = _role(name, name_node, body, pending)
        elif section == "users":
            for user, user_node, body in _mapping(value, "users"):
                granted = _strings(body, f"user {user}'s roles")
                pending.append((f"user {user}'s roles", granted, body))
                direct.setdefault(_name(user_node, user, "user"), set()).update(granted)
        elif section == "groups":
            for group, group_node, body in _mapping(value, "groups"):
                members: list[str] = []
                held: list[str] = []
                for key, field_node, item in _mapping(body, f"group {group}"):
                    if key == "members":
                        members = [_name(item, m, "member") for m in _strings(item, f"group {group}'s members")]
                    elif key == "roles":
                        held = _strings(item, f"group {group}'s roles")
                    else:
                        raise _fail(field_node, f"unknown field {key!r} in group {group} (fields: members, roles)")
                pending.append((f"group {group}'s roles", held, body))
                groups.append((_name(group_node, group, "group"), members, held, body))
        else:
            raise _fail(key_node, f"unknown section {section!r} (sections: roles, groups, users)")
    for what, names, node in pending:
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise _fail(node, f"{what}: no role {unknown[0]!r} is defined")
    users = {user: set(held) for user, held in direct.items()}
    for _, members, held, _ in groups:
        for member in members:
            users.setdefault(member, set()).update(held)
    return Policy(roles=roles, users={user: frozenset(held) for user, held in users.items()})
