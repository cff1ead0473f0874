"""What a fleet ran, in words people read: its name, its strategy with its parameters, and
every setting that sets it apart (personal layers, fine-tuning, mode, privacy, faults,
deadline, over-commitment, the devices' mix). Shared by the report, compare and the
dashboard, so a fleet reads the same wherever it is shown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.services.durations import duration

STRATEGIES = {"fedavg": "FedAvg", "fedavgm": "FedAvgM", "fedadam": "FedAdam",
              "fedyogi": "FedYogi", "fedadagrad": "FedAdagrad", "fedmedian": "FedMedian",
              "fedtrimmedavg": "FedTrimmedAvg", "local": "local only"}


def name_of(spec: Mapping[str, Any], fleet_id: str) -> str:
    """The fleet's name, or its id when it has none."""
    name = spec.get("name")
    return str(name) if name else fleet_id


def _params(values: Mapping[str, Any], skip: tuple[str, ...] = ()) -> str:
    shown = [f"{k} {_value(v)}" for k, v in values.items()
             if k not in skip and v is not None and v != {} and v != []]
    return f" ({', '.join(shown)})" if shown else ""


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def strategy(spec: Mapping[str, Any]) -> str:
    """The server's rule as it ran: FedPer when layers stay on the devices, FedBuff or
    FedAsync for an asynchronous fleet, with the parameters the spec gave."""
    rule = dict(spec.get("strategy") or {"name": "fedavg"})
    name = STRATEGIES.get(str(rule.get("name")), str(rule.get("name")))
    text = name + _params(rule, skip=("name",))
    if spec.get("personal"):
        text = f"FedPer over {text}"
    if spec.get("mode") == "async":
        rule_async = dict(spec.get("async") or spec.get("async_") or {})
        algorithm = str(rule_async.pop("algorithm", "async"))
        text = {"fedbuff": "FedBuff", "fedasync": "FedAsync"}.get(algorithm, algorithm) + \
            _params(rule_async) + f", {text}"
    return text


def settings(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every setting of the fleet that a reader compares, as (label, value) in words."""
    faults = spec.get("faults")
    privacy = spec.get("privacy")
    devices = spec.get("devices") or {}
    deadline = spec.get("round_deadline_s")
    return [
        ("strategy", strategy(spec)),
        ("mode", str(spec.get("mode") or "sync")),
        ("personal layers", ", ".join(spec.get("personal") or []) or "none"),
        ("fine-tuning", f"{spec['finetune_epochs']} epochs" if spec.get("finetune_epochs")
         else "none"),
        ("privacy", "DP" + _params(privacy) if privacy else "none"),
        ("faults", _faults(faults) if faults else "none"),
        ("round deadline", duration(deadline) if deadline else "none"),
        ("over-commit", f"{float(spec.get('over_commit') or 1.0):g}x"),
        ("devices", _devices(devices)),
        ("clients", f"{spec.get('clients')}, {spec.get('clients_per_round')} a round, "
                    f"{spec.get('rounds')} rounds"),
        ("local training", f"{spec.get('local_epochs')} epochs, batch {spec.get('batch_size')}"),
        ("partition", _value(spec.get("partition") or {})),
        ("seed", str(spec.get("seed"))),
    ]


def traits(spec: Mapping[str, Any]) -> list[str]:
    """What sets the fleet apart from plain synchronous FedAvg, short (for lists)."""
    out = []
    if spec.get("personal"):
        out.append("personal " + ", ".join(spec["personal"]))
    if spec.get("finetune_epochs"):
        out.append(f"fine-tune {spec['finetune_epochs']}")
    if spec.get("mode") == "async":
        out.append("async " + str((spec.get("async") or {}).get("algorithm", "")).strip())
    if spec.get("privacy"):
        out.append(f"DP z={_value(spec['privacy'].get('noise_multiplier'))}")
    if spec.get("faults"):
        out.append("faults " + _faults(spec["faults"]))
    if spec.get("round_deadline_s"):
        out.append("deadline " + duration(spec["round_deadline_s"]))
    if float(spec.get("over_commit") or 1.0) != 1.0:
        out.append(f"over-commit {float(spec['over_commit']):g}x")
    return out


def _faults(faults: Mapping[str, Any]) -> str:
    fraction = faults.get("fraction")
    share = f"{100 * float(fraction):g}% " if fraction is not None else ""
    rest = {k: v for k, v in faults.items() if k not in ("fraction", "kind")}
    return f"{share}{faults.get('kind', 'faulty')}{_params(rest)}"


def _devices(devices: Mapping[str, Any]) -> str:
    mix = devices.get("mix")
    text = ("mix " + ", ".join(f"{k} {100 * float(v):g}%" for k, v in mix.items())
            if isinstance(mix, Mapping) else "the default mix")
    rest = {k: v for k, v in devices.items() if k != "mix"}
    return text + _params(rest)
