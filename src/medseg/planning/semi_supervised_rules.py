"""The rules of a semi-supervised run: which method, how labelled and unlabelled patches mix in a batch,
how fast the unlabelled term ramps up, how much it weighs, and how closely the teacher follows the student.

Each is a named :class:`~medseg.planning.training_rules.Rule` (value, inputs, reason) that the trainer
records in the model folder's ``rules.json`` and prints, like every other training default; a value the
user gave (``--semi-supervised``, ``--ssl-option KEY=VALUE``) wins and is recorded as such. The values are
those of the papers' released code (SSL4MIS for mean teacher and CPS on ACDC, UA-MT on LA, BCP's own), so
that medseg's runs are the published recipes at CPU budgets; BENCHMARKS.md "Few labels" holds medseg's
own comparison (``benchmarks/fewlabels_acdc.py``).
"""

from __future__ import annotations

from typing import Any

from medseg.errors import MedsegError
from medseg.planning.training_rules import Rule, user_rule

#: The semi-supervised methods ("none": the labelled selection, supervised only — the baseline).
METHODS = ("mean_teacher", "cps", "bcp", "none")

#: Rule constants, named so that the rules read like their documentation.
DEFAULT_METHOD = "bcp"
#: A 3D network's method: the labelled cases alone (BCP lost to them on every LA fold measured; see rule_method).
DEFAULT_METHOD_3D = "none"
#: Unlabelled patches per labelled patch: SSL4MIS (ACDC: 12 + 12 of 24), UA-MT (LA: 2 + 2 of 4) and BCP all
#: use half-and-half batches.
UNLABELED_PER_LABELED = 1
#: Share of the budget over which the unlabelled weight rises along exp(-5 (1 - t)²) (Laine & Aila 2017).
RAMPUP_SHARE = 0.4
#: BCP: share of the budget trained on the labelled patches only before copy-paste self-training starts.
PRETRAIN_SHARE = 0.2
#: The teacher's EMA decay: 0.99 in SSL4MIS, UA-MT and BCP alike.
TEACHER_EMA_DECAY = 0.99
#: Weight of the unlabelled loss after the ramp-up: SSL4MIS's consistency 0.1 (mean teacher, CPS on ACDC);
#: BCP weighs the unlabelled part of a mixed image 0.5 against 1 for the labelled part.
UNLABELED_WEIGHT = {"mean_teacher": 0.1, "cps": 0.1, "bcp": 0.5, "none": 0.0}

#: The numeric settings (``--ssl-option KEY=VALUE``) and their types.
NUMERIC_SETTINGS = {"unlabeled_batch_size": int, "rampup": float, "weight": float, "ema_decay": float,
                    "pretrain": float, "confidence_threshold": float, "teacher_noise": float, "copy_paste_size": float}

_METHOD_NAMES = {"mean_teacher": "mean teacher", "cps": "cross pseudo supervision",
                 "bcp": "bidirectional copy-paste (BCP)", "none": "none (labelled cases only, supervised)"}


def rule_method(user: str | None, spatial_dims: int) -> Rule:
    """The method: the user's; else bidirectional copy-paste for a 2D network, the labelled cases alone for a
    3D one.

    Why BCP in 2D: measured here, paired (ACDC, 3 labelled patients, 45 min on one thread, one plan;
    BENCHMARKS.md "Session 12"): supervised only 0.726 mean Dice, mean teacher 0.711, CPS 0.713, BCP 0.784 — the
    only method that beats the labelled cases alone at a CPU budget. With 7 labelled patients ("Session 13") it
    did not: BCP 0.768 vs supervised 0.780 (one run each; BCP's steps cost twice as much: 1,458 vs 2,648 steps),
    so the unlabelled scans pay at a CPU budget only where labels are scarcest. It also has the best published
    results of the three on the standard protocols (ACDC 3 / 7 labelled: 0.8759 / 0.8884; LA 8 / 16: 0.8955 /
    0.9018).

    Why not in 3D: on LA (2 labelled + 6 unlabelled volumes, one thread; BENCHMARKS.md "Session 19") BCP lost
    to the two labelled volumes alone on every fold and budget measured: 20 min, folds 0 / 1 / 2: 0.554 / 0.514 /
    0.747 vs 0.793 / 0.711 / 0.864 Dice; 60 min, fold 0: 0.646 vs 0.823. A 3D BCP step costs about twice a
    supervised one (820 vs 1,574 steps in 60 min), and tripling the budget did not close the gap (0.24 → 0.18).
    Mean teacher lost too (20 min, folds 0 / 1: 0.693 / 0.674, 229 / 224 steps).
    The unlabelled cases are recorded in the model folder and not used; ``--semi-supervised bcp`` uses them.
    """
    title = "Semi-supervised method"
    if user is not None:
        return user_rule("ssl_method", title, user, _METHOD_NAMES.get(user, user), "--semi-supervised")
    inputs = {"spatial_dims": spatial_dims, "methods": list(METHODS)}
    if spatial_dims == 3:
        return Rule("ssl_method", title, DEFAULT_METHOD_3D, _METHOD_NAMES[DEFAULT_METHOD_3D],
                    "in 3D at a CPU budget BCP lost to the labelled volumes alone on every LA fold and budget medseg "
                    "measured (2 labelled + 6 unlabelled, one thread; 20 min, 3 folds: mean Dice 0.605 vs 0.789; "
                    "60 min: 0.646 vs 0.823; mean teacher, 20 min, 2 folds: 0.683 vs 0.752; "
                    "benchmarks/fewlabels_la.py): a 3D BCP step costs twice a supervised one. --semi-supervised bcp "
                    "uses the unlabelled volumes", inputs)
    return Rule("ssl_method", title, DEFAULT_METHOD, _METHOD_NAMES[DEFAULT_METHOD],
                "the only one of the three that beat supervised training at a CPU budget in medseg's paired run "
                "(ACDC, 3 labelled, 45 min, 1 thread: supervised 0.726, mean teacher 0.711, CPS 0.713, BCP 0.784 "
                "mean Dice; benchmarks/fewlabels_acdc.py), and the best published ACDC/LA results of the three. "
                "With 7 labelled it did not beat supervised training (0.768 vs 0.780): unlabelled scans pay at a "
                "CPU budget where labels are scarcest", inputs)


def rule_batch_mix(user: int | None) -> Rule:
    """Unlabelled patches per step: as many as labelled ones (the papers' half-and-half batches)."""
    title = "Labelled / unlabelled batch mix"
    if user:
        return user_rule("ssl_batch_mix", title, int(user), f"{int(user)} unlabelled patch(es) per step",
                         "--ssl-option unlabeled_batch_size")
    return Rule("ssl_batch_mix", title, 0, "as many unlabelled patches as labelled ones",
                "half-and-half batches as in SSL4MIS (ACDC 12 + 12), UA-MT (LA 2 + 2) and BCP", {})


def rule_rampup(user: float | None, method: str) -> Rule:
    """The unlabelled weight rises over the first 40 % of the budget (sigmoid ramp-up).

    The papers ramp over their whole 30,000 iterations (SSL4MIS: 200 "epochs" of 150 iterations), on a GPU
    where that is hours; a CPU budget affords a few thousand steps, and the unlabelled term must act at full
    weight for a good part of them, so medseg reaches it at 40 % (BCP: 40 % of the budget after its
    supervised pre-training).
    """
    title = "Unlabelled-loss ramp-up"
    if user is not None:
        return user_rule("ssl_rampup", title, float(user), f"{float(user):.0%} of the budget", "--ssl-option rampup")
    return Rule("ssl_rampup", title, RAMPUP_SHARE, f"{RAMPUP_SHARE:.0%} of the budget (sigmoid)",
                "the papers ramp over their whole 30k GPU iterations; a CPU budget affords a few thousand steps, so "
                "the full weight is reached at 40 % and acts for the rest of the run", {"method": method})


def rule_weight(user: float | None, method: str) -> Rule:
    """Weight of the unlabelled loss after the ramp-up: the method's published value."""
    title = "Unlabelled-loss weight"
    if user is not None:
        return user_rule("ssl_weight", title, float(user), f"{float(user):g}", "--ssl-option weight")
    value = UNLABELED_WEIGHT[method]
    source = "BCP's weight of the pseudo-labelled part of a mixed patch" if method == "bcp" else \
        "SSL4MIS's consistency weight on ACDC"
    return Rule("ssl_weight", title, value, f"{value:g}", f"{source} (the papers' released code)", {"method": method})


def rule_teacher(user: float | None, method: str) -> Rule | None:
    """The teacher's EMA decay (mean teacher, BCP): 0.99; CPS has two students and no teacher (None)."""
    if method not in ("mean_teacher", "bcp"):
        return None
    title = "Teacher (EMA of the student)"
    if user is not None:
        return user_rule("ssl_teacher", title, float(user), f"decay {float(user):g}", "--ssl-option ema_decay")
    return Rule("ssl_teacher", title, TEACHER_EMA_DECAY,
                f"decay {TEACHER_EMA_DECAY:g} (~{round(1 / (1 - TEACHER_EMA_DECAY))} steps), with warm-up",
                "the decay of SSL4MIS, UA-MT and BCP; the teacher changes only through this average, never by "
                "gradients", {"method": method})


def rule_pretrain(user: float | None, method: str) -> Rule | None:
    """BCP only: the first 20 % of the budget trains on the labelled patches (the teacher follows by EMA)."""
    if method != "bcp":
        return None
    title = "BCP supervised pre-training"
    if user is not None:
        return user_rule("ssl_pretrain", title, float(user), f"{float(user):.0%} of the budget", "--ssl-option pretrain")
    return Rule("ssl_pretrain", title, PRETRAIN_SHARE, f"{PRETRAIN_SHARE:.0%} of the budget",
                "BCP pre-trains on the labelled data before copy-paste (10k of its 40k iterations); without it the "
                "first pseudo-labels come from a random teacher (medseg's ACDC smoke runs learned almost only the RV)",
                {"method": method})


def semi_supervised_rules(given: dict[str, Any], spatial_dims: int) -> tuple[dict[str, Any], list[Rule]]:
    """Complete the semi-supervised settings the user gave, and the rules that decided the rest.

    Parameters
    ----------
    given : dict
        Settings as given (``method`` and any ``--ssl-option`` keys; absent = decided by a rule).
    spatial_dims : int
        The network's dimensionality (2 for a 2D network on slices of volumes).

    Returns
    -------
    settings : dict
        ``given`` with ``method``, ``unlabeled_batch_size``, ``rampup``, ``weight``, ``ema_decay`` (mean
        teacher, BCP), ``pretrain`` (BCP) and ``reason`` (the method rule's) filled in.
    rules : list of Rule

    Examples
    --------
    >>> settings, fired = semi_supervised_rules({"rampup": 0.2}, spatial_dims=2)
    >>> settings["method"], settings["rampup"], [r.overridden_by_user for r in fired][:3]
    ('bcp', 0.2, [False, False, True])
    """
    settings = dict(given)
    for key, kind in NUMERIC_SETTINGS.items():
        value = settings.get(key)
        if value is None:
            continue
        try:
            number = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (kind is int and number != float(value)) or number < 0:
            raise MedsegError(f"--ssl-option {key}={value}: expected a non-negative "
                              f"{'whole number' if kind is int else 'number'}")
        settings[key] = number
    if settings.get("method") is not None and settings["method"] not in METHODS:
        raise MedsegError(f"unknown semi-supervised method '{settings['method']}' ({', '.join(METHODS)})")
    method = rule_method(settings.get("method"), spatial_dims)
    fired = [method]
    settings["method"] = method.value
    if method.value == "none":
        return settings, fired
    mix = rule_batch_mix(settings.get("unlabeled_batch_size"))
    rampup = rule_rampup(settings.get("rampup"), method.value)
    weight = rule_weight(settings.get("weight"), method.value)
    fired += [mix, rampup, weight]
    settings.update(unlabeled_batch_size=mix.value, rampup=rampup.value, weight=weight.value)
    teacher = rule_teacher(settings.get("ema_decay"), method.value)
    if teacher is not None:
        fired.append(teacher)
        settings["ema_decay"] = teacher.value
    pretrain = rule_pretrain(settings.get("pretrain"), method.value)
    if pretrain is not None:
        fired.append(pretrain)
        settings["pretrain"] = pretrain.value
    if not settings.get("reason"):
        settings["reason"] = method.reason
    return settings, fired
