"""Accuracy recovery that keeps every layer in int8: cross-layer equalization (CLE) and AdaRound.

Both produce an *adjusted fp32 graph* (model.adjusted.onnx in the workspace) that the int8 artifacts of every
target are built from, while the fp32 reference stays model.fp32.onnx:

- CLE (Nagel et al. 2019, "Data-Free Quantization"): for a Conv -> [Relu | LeakyRelu | MaxPool | AveragePool]
  -> Conv chain, output channel i of the first conv is divided by s_i and input channel i of the second multiplied
  by s_i, s_i = sqrt(r1_i / r2_i) (r: the channel's weight range), which leaves both with range sqrt(r1_i r2_i).
  Those activations are positively homogeneous, so the fp32 function is unchanged; what changes is the tensor
  between the convs, whose single per-tensor int8 range no longer has to span one channel 100x or 1000x larger
  than the rest (the outlier-channel and unbalanced-depthwise failures). Implemented here, on the ONNX graph,
  because no maintained dependency does it without changing the model: NNCF's CLE (ChannelAlignment) has an
  OpenVINO backend only, and aimet-onnx's `equalize_model` replaces every ReLU6 with ReLU first (a different fp32
  function). Chains through a Clip (ReLU6) are left alone here for that reason: scaling a channel would move its
  clipping point.
- AdaRound (Nagel et al. 2020): the rounding direction of every weight learned layer by layer to reconstruct the
  layer's fp32 output, through aimet-onnx (`pip install 'edgekit[aimet]'`, optional). The learned integers are
  baked into the graph as W' = s * q (per output channel, s = max|W|/127, the channel's largest weight kept at
  +-127 exactly), so any target's symmetric per-channel max-abs weight quantizer (ORT, OpenVINO, ai-edge-quantizer,
  TensorRT's Q nodes) recovers exactly AdaRound's integers.
"""

from __future__ import annotations

import contextlib
import io
import importlib.util
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import EdgekitError
from .progress import progress

METHODS = ("cle", "cle+adaround")  # --method names; the activation ranges come from RANGE_METHOD
RANGE_METHOD = "percentile"  # calibration of the adjusted graph when --method names a recovery method
ADJUSTED_ONNX = "model.adjusted.onnx"  # the workspace file every target builds its int8 artifact from
INSTALL_AIMET = "pip install 'edgekit[aimet]'"
# Tried by the --max-drop fallback before any layer is kept in float, in this order (tests may empty it to get the
# float-only fallback of earlier versions).
FALLBACK_METHODS = METHODS
# AdaRound: optimisation steps per layer (aimet recommends 10,000 for 8-bit; 1,000 recovers most of it at a tenth
# of the time on a CPU), and the time auto and the fallback give it: after the first layer, when the projected
# total passes the budget, it stops and the layers not reached keep round-to-nearest (logged, and recorded).
ADAROUND_ITERATIONS = 1000
ADAROUND_BUDGET_S = 300.0
ADAROUND_BATCH = 16
CLE_SWEEPS = 20  # passes over all pairs (a chain A-B-C converges in a few)
HOMOGENEOUS = ("Relu", "LeakyRelu", "MaxPool", "AveragePool")  # f(x * s) = s * f(x) per channel, s > 0
WEIGHTED = ("Conv", "Gemm")


def aimet_missing() -> str | None:
    """None when aimet-onnx can be imported, else why not (one line)."""
    if importlib.util.find_spec("aimet_onnx") is None:
        return f"aimet-onnx is not installed ({INSTALL_AIMET})"
    return None


def available(method: str) -> str | None:
    """None if the recovery method can run here, else why not."""
    return aimet_missing() if "adaround" in method else None


# ---------------------------------------------------------------- cross-layer equalization (pure ONNX)

def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def equalize_pairs(model: onnx.ModelProto) -> list[tuple]:
    """(producer Conv, consumer Conv) pairs CLE may rescale: the producer's output reaches only the consumer's data
    input, through positively homogeneous ops only, and neither's weights are shared or a graph output."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    uses: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            uses.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}

    def conv_with_weights(n) -> bool:
        return (n.op_type == "Conv" and len(n.input) >= 2 and n.input[1] in inits and len(uses[n.input[1]]) == 1
                and (len(n.input) < 3 or not n.input[2] or (n.input[2] in inits and len(uses[n.input[2]]) == 1)))

    pairs = []
    for p in (n for n in graph.node if conv_with_weights(n)):
        t, through = p.output[0], []
        while t not in outputs and len(uses.get(t, [])) == 1:
            n = uses[t][0]
            if n.op_type in HOMOGENEOUS and n.input[0] == t:
                if n.op_type == "MaxPool" and len(n.output) > 1 and n.output[1]:
                    break  # MaxPool's indices output
                through.append(n.op_type)
                t = n.output[0]
                continue
            if conv_with_weights(n) and n.input[0] == t:
                pairs.append((p, n, through))
            break
    return pairs


def equalize(src: Path, out: Path, sweeps: int = CLE_SWEEPS) -> dict:
    """Write `out`, `src` with every equalizable Conv pair's weight ranges balanced; returns the record (pairs,
    largest rescale, Clip chains skipped). The fp32 function is unchanged up to float rounding."""
    model = onnx.load(str(src))
    pairs = equalize_pairs(model)
    arrays = {i.name: numpy_helper.to_array(i).astype(np.float32).copy() for i in model.graph.initializer}
    largest = np.ones(len(pairs))
    for _ in range(sweeps):
        moved = 0.0
        for k, (p, c, _through) in enumerate(pairs):
            w1, w2 = arrays[p.input[1]], arrays[c.input[1]]
            groups = int(_attr(c, "group", 1))
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(1)
            per_group = w2.reshape(groups, w2.shape[0] // groups, w2.shape[1], -1)  # (G, out/G, in/G, k*k)
            r2 = np.abs(per_group).max(axis=(1, 3)).reshape(-1)  # input channel c = g * in/G + j
            if r1.shape != r2.shape:
                continue
            ok = (r1 > 0) & (r2 > 0)
            s = np.where(ok, np.sqrt(np.where(ok, r1, 1) / np.where(ok, r2, 1)), 1.0).astype(np.float32)
            w1 /= s.reshape(-1, *[1] * (w1.ndim - 1))
            if len(p.input) > 2 and p.input[2]:
                arrays[p.input[2]] /= s
            per_group *= s.reshape(groups, 1, -1, 1)
            arrays[c.input[1]] = per_group.reshape(w2.shape)
            moved = max(moved, float(np.abs(np.log(s)).max(initial=0.0)))
            largest[k] *= float(np.max(np.maximum(s, 1 / s), initial=1.0))
        if moved < 1e-3:
            break
    for init in model.graph.initializer:
        if init.name in arrays:
            init.CopyFrom(numpy_helper.from_array(arrays[init.name].astype(numpy_helper.to_array(init).dtype),
                                                  init.name))
    onnx.save(model, str(out))
    clipped = _clip_chains(model)
    return {"method": "cle", "pairs": [{"producer": p.name, "consumer": c.name, "through": t,
                                        "max_rescale": round(float(m), 3)} for (p, c, t), m in zip(pairs, largest)],
            "skipped_clip_chains": clipped}


def _clip_chains(model: onnx.ModelProto) -> list[str]:
    """Conv -> Clip -> Conv chains CLE leaves alone (ReLU6: rescaling a channel would move its clipping point)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv" and n.input[0] in producer and producer[n.input[0]].op_type == "Clip":
            clip = producer[n.input[0]]
            if clip.input[0] in producer and producer[clip.input[0]].op_type == "Conv":
                out.append(f"{producer[clip.input[0]].name} -> {n.name}")
    return out


# ---------------------------------------------------------------- AdaRound (aimet-onnx)

def adaround(src: Path, out: Path, batches: list[np.ndarray], input_name: str, log=print,
             budget_s: float | None = None, iterations: int | None = None) -> dict:
    """Write `out`: `src` with each Conv/Gemm weight replaced by AdaRound's int8 choice (aimet-onnx), baked as
    s * q. `budget_s`: stop when the projected time passes it (None: no limit). Progress with an ETA goes to `log`."""
    why = aimet_missing()
    if why:
        raise EdgekitError(f"AdaRound needs aimet-onnx: {why}", f"{INSTALL_AIMET}, or use --method cle")
    for name in ("Quant", "Utils", "ConnectedGraph", "aimet_onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        from aimet_onnx import QuantizationSimModel, apply_adaround

    iterations = iterations or ADAROUND_ITERATIONS
    model = onnx.load(str(src))
    inputs = [{input_name: x} for x in batches]
    start, out = time.perf_counter(), Path(out).resolve()
    # aimet's sim writes its files under `path`: a temp dir of our own. (The working directory stays as it is:
    # measured, aimet-onnx 2.42 writes nothing there, so no os.chdir, which would be process-wide.)
    with tempfile.TemporaryDirectory(prefix="edgekit-adaround-") as tmp:
        return _adaround(model, out, inputs, tmp, log, budget_s, iterations, start, QuantizationSimModel,
                         apply_adaround)


def _adaround(model, out: Path, inputs, tmp: str, log, budget_s, iterations: int, start: float,
              QuantizationSimModel, apply_adaround) -> dict:  # noqa: N803 - aimet's classes, imported by the caller
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        sim = QuantizationSimModel(_copy(model), param_type="int8", activation_type="int8", path=tmp)
        sim.compute_encodings(inputs)
    layers = [n.name for n in sim.model.model.graph.node if n.op_type in WEIGHTED]
    done, stopped, first = [], None, time.perf_counter()
    with progress(len(layers), "adaround", "layer") as bar:
        for k, name in enumerate(layers):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                apply_adaround(sim, inputs, num_iterations=iterations, nodes_to_include=[name])
            done.append(name)
            bar.update(1)
            elapsed = time.perf_counter() - start
            eta = (time.perf_counter() - first) / (k + 1) * (len(layers) - k - 1)
            log(f"  adaround: {k + 1}/{len(layers)} layers ({name}, {time.perf_counter() - t0:.1f} s), "
                f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s")
            if budget_s is not None and k + 1 < len(layers) and elapsed + eta > budget_s:
                stopped = (f"stopped after {k + 1}/{len(layers)} layers: {elapsed + eta:.0f} s projected exceeds the "
                           f"{budget_s:.0f} s budget; the rest keep round-to-nearest")
                log(f"  adaround: {stopped}")
                break
    baked = _bake(model, sim, done)
    onnx.save(model, str(out))
    return {"method": "adaround", "iterations": iterations, "layers": done, "baked": baked,
            "seconds": round(time.perf_counter() - start, 3), "budget_s": budget_s, "stopped": stopped}


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _bake(model: onnx.ModelProto, sim, layers: list[str]) -> int:
    """Put AdaRound's integers into `model` as W' = s * q per output channel, with the channel's largest |W| at
    +-127 so that max|W'| / 127 == s: every target's max-abs weight quantizer then rounds W' back to exactly q."""
    sim_w = {i.name: numpy_helper.to_array(i) for i in sim.model.model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    baked = 0
    for name in layers:
        node = nodes.get(name)
        if node is None or len(node.input) < 2 or node.input[1] not in inits or node.input[1] not in sim_w:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        axis = 0 if node.op_type == "Conv" or _attr(node, "transB", 0) else 1
        q = baked_integers(w, sim_w[node.input[1]].astype(np.float32), axis)
        if q is None:
            continue
        wt = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        s = np.abs(wt).max(1) / 127.0
        s[s == 0] = 1.0
        new = np.moveaxis((q * s[:, None]).reshape(np.moveaxis(w, axis, 0).shape), 0, axis).astype(np.float32)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(new, node.input[1]))
        baked += 1
    return baked


def baked_integers(w: np.ndarray, w_ada: np.ndarray, axis: int) -> np.ndarray | None:
    """AdaRound's per-channel integers (channels first, flattened) on the grid s = max|w|/127 of the original
    weights, each channel's largest |w| pinned at +-127; None when the shapes differ."""
    if w.shape != w_ada.shape:
        return None
    wt = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    at = np.moveaxis(w_ada, axis, 0).reshape(w.shape[axis], -1)
    s = np.abs(wt).max(1) / 127.0
    s[s == 0] = 1.0
    q = np.clip(np.round(at / s[:, None]), -127, 127)
    top = np.abs(wt).argmax(1)
    q[np.arange(len(q)), top] = np.sign(wt[np.arange(len(q)), top]) * 127
    return q


# ---------------------------------------------------------------- both, as one step

def recover(method: str, src: Path, out: Path, batches: Callable[[], list[np.ndarray]], input_name: str, log=print,
            budget_s: float | None = None) -> dict:
    """`method` ("cle" or "cle+adaround") applied to `src`, written to `out`; returns the record for quantize.json
    (what ran, seconds). `batches()` gives the calibration images AdaRound learns from."""
    if method not in METHODS:
        raise EdgekitError(f"unknown recovery method {method!r}", f"use one of: {', '.join(METHODS)}")
    why = available(method)
    if why:
        raise EdgekitError(f"--method {method} cannot run here: {why}", "or use --method cle")
    t0 = time.perf_counter()
    record = {"method": method, "cle": equalize(src, out)}
    n = len(record["cle"]["pairs"])
    log(f"  cle: {n} conv pair(s) equalized"
        + (f", largest channel rescale x{max(p['max_rescale'] for p in record['cle']['pairs']):.3g}" if n else "")
        + (f"; {len(record['cle']['skipped_clip_chains'])} chain(s) through Clip (ReLU6) left alone"
           if record["cle"]["skipped_clip_chains"] else ""))
    if "adaround" in method:
        left = None if budget_s is None else max(0.0, budget_s - (time.perf_counter() - t0))
        record["adaround"] = adaround(out, out, batches(), input_name, log, left, ADAROUND_ITERATIONS)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def recover_images(method: str, fp32: Path, out: Path, images, pre, log,
                   budget_s: float | None = ADAROUND_BUDGET_S) -> dict:
    """recover() on the fp32 model, AdaRound learning from `images` (an ImageSet, preprocessed by `pre`) in the
    batch the graph fixes, if it fixes one."""
    from .export import INPUT_NAME, fixed_batch

    batch = fixed_batch(fp32)
    return recover(method, fp32, out, lambda: list(images.batches(pre, batch or ADAROUND_BATCH, batch is not None)),
                   INPUT_NAME, log, budget_s)


def attempt_graph(method: str, fp32: Path, out: Path, images, pre, range_method: str, log, prefix: str = ""):
    """One attempt of the fallback (quantize's and compile's alike): `method`'s adjusted graph written to `out` and
    calibrated on `images` with `range_method`, as (record, Calibration); None, logged, when it cannot run here."""
    why = available(method)
    if why:
        log(f"  {prefix}recovery {method} not tried: {why}")
        return None
    from .calibration import calibrate

    record = recover_images(method, fp32, out, images, pre, log)
    return record, calibrate(out, images, pre, range_method)
