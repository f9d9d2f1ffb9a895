"""A recorded preprocessing pipeline: a JSON list of named steps, applied identically at training and prediction.

A pipeline is data, e.g.::

    [{"name": "green_channel"},
     {"name": "clahe", "clip_limit": 0.01, "mask": "roi"},
     {"name": "zscore", "mask": "roi"}]

The model folder stores this list; :func:`apply_pipeline` replays it. Statistics that must come from
the training set (a histogram-matching reference, a fixed CT window or clip range, a dataset mean and
standard deviation) are explicit step parameters, never recomputed at prediction time.

``mask`` parameters take ``null`` (statistics over the whole image), ``"roi"`` (the ROI passed to
:func:`apply_pipeline`, e.g. a fundus field of view; an error if none is given) or ``"nonzero"``
(voxels where any channel of the *input* image is non-zero, as after skull stripping or cropping).

Every step also accepts ``"channels": [i, ...]``: it then acts on those channels only (the others
pass through unchanged), e.g. CT windowing on the CT channel of a PET/CT pair. Steps that change the
channel count (``green_channel``, ``luminance``, ``slice_context``) take no ``channels``.

Third parties add steps through the ``medseg.preprocessing_steps`` entry point group: the object is
called as ``step(array, context, **params)`` and may carry ``medseg_metadata = {"params": {...}}``
with :class:`Param` specifications (steps without them accept any field).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from medseg.errors import MedsegError
from medseg.image import Image, check_mask
from medseg.preprocessing import bias, color, context, denoise, enhance, intensity
from medseg.registry import Registry

_REQUIRED = object()
MASK_CHOICES = (None, "roi", "nonzero")


@dataclass(frozen=True)
class Param:
    """Specification of one step parameter.

    kind is one of: "number", "positive", "int", "bool", "numbers" (a number or one per channel),
    "range" (two increasing numbers), "ints" (an int or a list of ints), "quantiles" (a list of
    numbers or one list per channel), "choice" (one of ``choices``) and "mask" (null, "roi", "nonzero").
    """

    kind: str
    default: Any = _REQUIRED
    nullable: bool = False
    choices: tuple = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _check_value(p: Param, v: Any) -> str | None:
    """None when ``v`` fits ``p``, else what was expected."""
    if v is None:
        return None if (p.nullable or p.kind == "mask") else "a value (not null)"
    k = p.kind
    if k == "number":
        return None if _is_number(v) else "a number"
    if k == "positive":
        return None if _is_number(v) and v > 0 else "a positive number"
    if k == "int":
        return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "a positive integer"
    if k == "bool":
        return None if isinstance(v, bool) else "true or false"
    if k == "numbers":
        ok = _is_number(v) or (isinstance(v, list) and v and all(_is_number(x) for x in v))
        return None if ok else "a number or a list of numbers (one per channel)"
    if k == "range":
        ok = isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] < v[1]
        return None if ok else "a list of two increasing numbers"
    if k == "ints":
        ok = (isinstance(v, int) and not isinstance(v, bool) and v > 0) or (
            isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
        )
        return None if ok else "a positive integer or a list of them"
    if k == "quantiles":
        flat = v if (isinstance(v, list) and v and not isinstance(v[0], list)) else None
        lists = [flat] if flat is not None else (v if isinstance(v, list) and v else None)
        ok = lists is not None and all(
            isinstance(q, list) and len(q) >= 2 and all(_is_number(x) for x in q) and all(np.diff(q) >= 0) for q in lists
        )
        return None if ok else "a non-decreasing list of at least 2 numbers, or one such list per channel"
    if k == "choice":
        return None if v in p.choices else f"one of {list(p.choices)}"
    if k == "mask":
        return None if v in MASK_CHOICES else 'null, "roi" or "nonzero"'
    raise MedsegError(f"unknown parameter kind {k!r}")


@dataclass
class StepContext:
    """What a step may know besides the array: channel names, spacing and the available masks."""

    index: int
    name: str
    channel_names: tuple[str, ...]
    spacing: tuple[float, ...]
    roi: np.ndarray | None = None
    nonzero: np.ndarray | None = None

    def mask(self, which: str | None) -> np.ndarray | None:
        """Resolve a ``mask`` parameter value to a boolean array (or None)."""
        if which is None:
            return None
        if which == "roi":
            if self.roi is None:
                raise MedsegError("uses mask 'roi' but no ROI was given (pass roi=..., or --roi when predicting)")
            return self.roi
        if which == "nonzero":
            if self.nonzero is None or not self.nonzero.any():
                raise MedsegError("uses mask 'nonzero' but the input image is zero everywhere")
            return self.nonzero
        raise MedsegError(f"unknown mask {which!r}")


STEPS = Registry("preprocessing step", "medseg.preprocessing_steps")


def register_step(name: str, **params: Param) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(array, context, **params)`` as pipeline step ``name`` with its parameters."""
    return STEPS.register(name, params=dict(params))


# --- the built-in steps ------------------------------------------------------------------------
@register_step("green_channel")
def _green(a, ctx):
    return color.green_channel(a, ctx.channel_names), ("green",)


@register_step("luminance")
def _luminance(a, ctx):
    return color.luminance(a, ctx.channel_names), ("luminance",)


@register_step("zscore", mask=Param("mask", None), mean=Param("numbers", None, True), std=Param("numbers", None, True))
def _zscore(a, ctx, mask, mean, std):
    return intensity.zscore(a, ctx.mask(mask), mean=mean, std=std, channel_axis=0)


@register_step("clip_percentiles", lower=Param("number", 0.5), upper=Param("number", 99.5), mask=Param("mask", None))
def _clip_percentiles(a, ctx, lower, upper, mask):
    return intensity.clip_percentiles(a, lower, upper, ctx.mask(mask), channel_axis=0)


@register_step("clip", low=Param("numbers"), high=Param("numbers"))
def _clip(a, ctx, low, high):
    return intensity.clip(a, low, high, channel_axis=0)


@register_step("window", level=Param("numbers"), width=Param("numbers"), output=Param("choice", "unit", choices=("unit", "clip")))
def _window(a, ctx, level, width, output):
    return intensity.window(a, level, width, output, channel_axis=0)


@register_step("rescale", out_range=Param("range", [0.0, 1.0]), mask=Param("mask", None))
def _rescale(a, ctx, out_range, mask):
    return intensity.rescale(a, tuple(out_range), ctx.mask(mask), channel_axis=0)


@register_step("gamma", gamma=Param("positive"), mask=Param("mask", None))
def _gamma(a, ctx, gamma, mask):
    return intensity.gamma(a, gamma, ctx.mask(mask), channel_axis=0)


@register_step(
    "clahe",
    clip_limit=Param("positive", 0.01),
    kernel_size=Param("ints", None, True),
    nbins=Param("int", 256),
    mask=Param("mask", None),
)
def _clahe(a, ctx, clip_limit, kernel_size, nbins, mask):
    return enhance.clahe(a, clip_limit, kernel_size, nbins, ctx.mask(mask), channel_axis=0)


@register_step("match_histograms", reference=Param("quantiles"), mask=Param("mask", None))
def _match(a, ctx, reference, mask):
    return enhance.match_histograms(a, reference, ctx.mask(mask), channel_axis=0)


@register_step("denoise_nl_means", h=Param("positive", None, True), patch_size=Param("int", 5), patch_distance=Param("int", 6))
def _nl_means(a, ctx, h, patch_size, patch_distance):
    return denoise.denoise_nl_means(a, h, patch_size, patch_distance, channel_axis=0)


@register_step("denoise_bilateral", domain_sigma=Param("positive", 1.0), range_sigma=Param("positive", None, True))
def _bilateral(a, ctx, domain_sigma, range_sigma):
    return denoise.denoise_bilateral(a, domain_sigma, range_sigma, spacing=ctx.spacing, channel_axis=0)


@register_step("n4", mask=Param("mask", None), shrink_factor=Param("int", 4), iterations=Param("ints", [50, 50, 50]))
def _n4(a, ctx, mask, shrink_factor, iterations):
    its = [iterations] if isinstance(iterations, int) else iterations
    return bias.n4_bias_correction(a, ctx.mask(mask), shrink_factor, its, spacing=ctx.spacing, channel_axis=0)


@register_step("slice_context", axis=Param("choice", choices=(0, 1, 2)), neighbours=Param("int", 1))
def _slice_context(a, ctx, axis, neighbours):
    return (context.slice_context(a, axis, neighbours, channel_axis=0),
            context.context_channel_names(ctx.channel_names, neighbours))


# --- validation and application ----------------------------------------------------------------
def _step_params(name: str) -> dict[str, Param] | None:
    return STEPS.entry(name).metadata.get("params")


def validate_pipeline(steps: Any) -> list[dict[str, Any]]:
    """Check a pipeline and return it with every default filled in (the form to record).

    Parameters
    ----------
    steps : list of dict
        Each step is ``{"name": <registered step>, <parameter>: <value>, ...}``.

    Returns
    -------
    list of dict
        The steps with defaults made explicit; JSON-serialisable.

    Raises
    ------
    MedsegError
        Naming the step (index and name) and the field that is wrong.

    Examples
    --------
    >>> validate_pipeline([{"name": "zscore"}])
    [{'name': 'zscore', 'mask': None, 'mean': None, 'std': None}]
    """
    if not isinstance(steps, (list, tuple)):
        raise MedsegError(f"a preprocessing pipeline must be a list of steps; got {type(steps).__name__}")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise MedsegError(f"preprocessing step {i} must be an object with a 'name'; got {step!r}")
        name = step.get("name")
        if not isinstance(name, str):
            raise MedsegError(f"preprocessing step {i} has no 'name' (a string); got {step!r}")
        if name not in STEPS:
            raise MedsegError(f"preprocessing step {i}: unknown step '{name}'; known: {', '.join(STEPS.names())}")
        spec = _step_params(name)
        given = {k: v for k, v in step.items() if k not in ("name", "channels")}
        channels = step.get("channels")
        if channels is not None and (
            not isinstance(channels, list) or not channels
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise MedsegError(
                f"preprocessing step {i} ({name}): field 'channels' must be null or a list of distinct "
                f"channel indices (>= 0); got {channels!r}"
            )
        if spec is None:  # a plug-in without declared parameters: pass its fields through unchecked
            filled = dict(given)
        else:
            unknown = sorted(set(given) - set(spec))
            if unknown:
                raise MedsegError(
                    f"preprocessing step {i} ({name}): unknown field '{unknown[0]}'; "
                    f"fields: {', '.join(list(spec) + ['channels'])}"
                )
            filled = {}
            for pname, p in spec.items():
                if pname not in given:
                    if p.required:
                        raise MedsegError(f"preprocessing step {i} ({name}): missing required field '{pname}'")
                    filled[pname] = p.default
                    continue
                problem = _check_value(p, given[pname])
                if problem:
                    raise MedsegError(
                        f"preprocessing step {i} ({name}): field '{pname}' must be {problem}; got {given[pname]!r}"
                    )
                filled[pname] = given[pname]
        record = {"name": name, **filled}
        if channels is not None:
            record["channels"] = list(channels)
        try:
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise MedsegError(f"preprocessing step {i} ({name}) is not JSON-serialisable: {exc}") from None
        out.append(record)
    return out


def apply_pipeline(image: Image, steps: Sequence[dict[str, Any]], roi: np.ndarray | Image | None = None) -> Image:
    """Apply a recorded pipeline to an image.

    Parameters
    ----------
    image : Image
        Channels-first image.
    steps : list of dict
        Pipeline (validated here).
    roi : ndarray or Image, optional
        Region of interest (spatial shape, or a single-channel Image on the same grid) used by
        ``"mask": "roi"`` steps.

    Returns
    -------
    Image
        float32 image on the same grid; channel names follow steps that change the channel count
        (``green_channel`` → ``("green",)``, ``slice_context`` → ``("T2[-1]", "T2", "T2[+1]")``).

    Examples
    --------
    >>> img = Image(np.arange(12, dtype=np.uint8).reshape(1, 3, 4))
    >>> out = apply_pipeline(img, [{"name": "rescale"}])
    >>> out.array.dtype, float(out.array.max())
    (dtype('float32'), 1.0)
    """
    steps = validate_pipeline(steps)
    if isinstance(roi, Image):
        image.check_same_geometry(roi, "image and ROI")
        roi = roi.array
    roi = check_mask(roi, image.spatial_shape, "roi") if roi is not None else None
    array = np.asarray(image.array, dtype=np.float32).copy()
    nonzero = np.any(array != 0, axis=0)
    names = tuple(image.channel_names)
    for i, step in enumerate(steps):
        name = step["name"]
        params = {k: v for k, v in step.items() if k not in ("name", "channels")}
        channels = step.get("channels")
        if channels is not None and max(channels) >= array.shape[0]:
            raise MedsegError(
                f"preprocessing step {i} ({name}): channels {channels} but the image has {array.shape[0]} channel(s)"
            )
        sub = array if channels is None else array[channels]
        sub_names = names if channels is None else tuple(names[c] for c in channels)
        ctx = StepContext(i, name, sub_names, tuple(image.spacing), roi, nonzero)
        try:
            result = STEPS.get(name)(sub, ctx, **params)
        except MedsegError as exc:
            raise MedsegError(f"preprocessing step {i} ({name}): {exc.message}") from exc
        new_names = None
        if isinstance(result, tuple):
            result, new_names = result
        result = np.asarray(result)
        if channels is not None:
            if result.shape != sub.shape:
                raise MedsegError(
                    f"preprocessing step {i} ({name}) changes the number of channels and cannot take 'channels'"
                )
            full = array.copy()
            full[channels] = result
            result, new_names = full, names
        if result.ndim != array.ndim or result.shape[1:] != array.shape[1:]:
            raise MedsegError(
                f"preprocessing step {i} ({name}) changed the spatial shape {array.shape[1:]} to {result.shape[1:]}"
            )
        if new_names is None:
            new_names = names if result.shape[0] == len(names) else tuple(f"{name}{c}" for c in range(result.shape[0]))
        array = result.astype(np.float32, copy=False)
        names = tuple(new_names)
    return image.with_array(array, names)
