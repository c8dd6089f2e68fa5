"""LoRA adapters as GGUF files llama.cpp loads (``llama_adapter_lora_init``), and a fit check.

llama.cpp's loader (src/llama-adapter.cpp) wants ``general.type = adapter``,
``general.architecture`` equal to the model's, ``adapter.type = lora``, ``adapter.lora.alpha``,
and for each adapted weight ``W`` (a model tensor such as ``blk.3.attn_q.weight``) two tensors
``<W>.lora_a`` and ``<W>.lora_b`` with ``ne(a) = [n_in, r]`` and ``ne(b) = [r, n_out]`` where
``ne(W) = [n_in, n_out]``. GGUF lists dimensions in reverse of numpy's order, so these are
PEFT's own matrices, untransposed: ``lora_A.weight`` (r x n_in) and ``lora_B.weight`` (n_out x r).
It applies ``W x + (alpha / r) * scale * B (A x)``, the same scaling as PEFT's ``lora_alpha / r``.

Besides that, razvilka records which model file the adapter was trained for (``razvilka.base.*``),
so ``check_adapter`` can say plainly when an adapter belongs to another model — before llama.cpp
is asked, and without touching the daemon.
"""
from __future__ import annotations

import logging
import mmap
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from razvilka.daemon.learn.errors import ErrorCode, LearnError
from razvilka.private import private_dir, private_file

KEY_BASE_NAME = "razvilka.base.name"
KEY_BASE_FILE = "razvilka.base.file"
KEY_BASE_SIZE = "razvilka.base.size"


def hf_to_gguf_name(module: str, arch: str, n_layers: int) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight`` (gguf-py's own name map)."""
    import gguf

    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    name = gguf.get_tensor_name_map(arch_id, n_layers).get_name(module)
    if name is None:
        raise LearnError(ErrorCode.BAD_CONFIG, f"no GGUF tensor for the module {module!r} of a {arch} model")
    return name + ".weight"


_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_header(path: str | Path) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """(scalar and string metadata, {tensor name: ne}) of a GGUF file, arrays skipped.

    gguf-py's GGUFReader decodes every array (262,144 vocabulary strings here) and takes most of a
    minute on two cores; this reads only what the fit check needs, in well under a second.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        pos = 24

        def string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", m, at)
            return bytes(m[at + 8: at + 8 + n]).decode("utf-8", errors="replace"), at + 8 + n

        def skip(vtype: int, at: int) -> tuple[Any, int]:
            if vtype == 8:
                return string(at)
            if vtype == 9:
                etype, count = struct.unpack_from("<IQ", m, at)
                at += 12
                if etype == 8:
                    for _ in range(count):
                        (n,) = struct.unpack_from("<Q", m, at)
                        at += 8 + n
                elif etype == 9:
                    raise ValueError("nested GGUF arrays are not supported")
                else:
                    at += count * struct.calcsize(_SCALAR[etype])
                return None, at
            fmt = _SCALAR[vtype]
            return struct.unpack_from(fmt, m, at)[0], at + struct.calcsize(fmt)

        kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", m, pos)
            value, pos = skip(vtype, pos + 4)
            if value is not None:
                kv[key] = value
        tensors: dict[str, list[int]] = {}
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", m, pos)
            dims = list(struct.unpack_from(f"<{n_dims}Q", m, pos + 4))
            pos += 4 + 8 * n_dims + 4 + 8
            tensors[name] = [int(d) for d in dims]
    return kv, tensors


def model_info(model_path: str | Path) -> dict[str, Any]:
    """Architecture, name and tensor shapes (GGUF ``ne`` order) of a model file; reads only its header."""
    try:
        kv, shapes = gguf_header(model_path)
    except (ValueError, struct.error, KeyError, OSError) as exc:
        raise LearnError(ErrorCode.BAD_CONFIG, f"cannot read the model {model_path}: {exc}") from None
    return {"arch": kv.get("general.architecture"), "name": kv.get("general.name") or "",
            "file": Path(model_path).name, "size": Path(model_path).stat().st_size, "shapes": shapes}


def write_adapter(path: str | Path, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], *, alpha: float,
                  base: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> Path:
    """Write ``{model tensor name: (A (r x n_in), B (n_out x r))}`` as a llama.cpp LoRA GGUF for the model ``base``
    (``model_info`` of the daemon's GGUF): shapes are checked against the model first."""
    import gguf

    shapes = base["shapes"]
    for name, (a, b) in pairs.items():
        ne = shapes.get(name)
        if ne is None:
            raise LearnError(ErrorCode.BAD_CONFIG, f"{base['file']} has no tensor {name}")
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != ne[0] or b.shape[0] != ne[1] or a.shape[0] != b.shape[1]:
            raise LearnError(ErrorCode.BAD_CONFIG, f"LoRA for {name}: A {a.shape} / B {b.shape} do not fit "
                                f"the model's {ne[1]} x {ne[0]} weight")
    out = Path(path)
    private_dir(out.parent)  # learned from what the person wrote: private (razvilka/private.py)
    logging.getLogger("gguf").setLevel(logging.WARNING)  # its per-file INFO lines are noise in our CLI
    tmp = private_file(out.with_name(f".{out.name}.tmp"))  # created 0600: the writer's "wb" keeps the mode
    w = gguf.GGUFWriter(str(tmp), arch=base["arch"])
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    w.add_name(f"razvilka LoRA for {base['name'] or base['file']}")
    w.add_string(KEY_BASE_NAME, str(base["name"]))
    w.add_string(KEY_BASE_FILE, str(base["file"]))
    w.add_uint64(KEY_BASE_SIZE, int(base["size"]))
    for k, v in (extra or {}).items():
        w.add_string(f"razvilka.{k}", str(v))
    for name, (a, b) in sorted(pairs.items()):
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def read_adapter(path: str | Path) -> dict[str, Any]:
    """Metadata and tensor shapes of an adapter file (a clear error if it is not a GGUF LoRA)."""
    from razvilka.daemon.engine import check_gguf

    p = check_gguf(path, "LoRA")
    try:
        kv, shapes = gguf_header(p)
    except (ValueError, struct.error, KeyError, OSError) as exc:
        raise LearnError(ErrorCode.BAD_CONFIG, f"LoRA {p} is not a readable GGUF: {exc}") from None
    return {
        "type": kv.get("general.type"), "adapter_type": kv.get("adapter.type"),
        "arch": kv.get("general.architecture"), "alpha": kv.get("adapter.lora.alpha"),
        "base_name": kv.get(KEY_BASE_NAME), "base_file": kv.get(KEY_BASE_FILE), "base_size": kv.get(KEY_BASE_SIZE),
        "shapes": shapes,
    }


def check_adapter(adapter_path: str | Path, model_path: str | Path) -> dict[str, Any]:
    """Raise BAD_CONFIG, saying why, unless the adapter fits the model; returns the adapter's metadata."""
    ad = read_adapter(adapter_path)
    model = model_info(model_path)
    where = f"LoRA {adapter_path}"
    made_for = ad.get("base_name") or ad.get("base_file") or ad.get("arch") or "an unknown model"
    if ad["type"] != "adapter" or ad["adapter_type"] != "lora":
        raise LearnError(ErrorCode.BAD_CONFIG, f"{where} is not a LoRA adapter (general.type={ad['type']!r}, "
                            f"adapter.type={ad['adapter_type']!r})")
    if ad["arch"] != model["arch"]:
        raise LearnError(ErrorCode.BAD_CONFIG, f"{where} was made for a {ad['arch']} model ({made_for}), "
                            f"but the daemon runs {model['file']} ({model['arch']})")
    for tname, ne in ad["shapes"].items():
        base_name, _, part = tname.rpartition(".")
        have = model["shapes"].get(base_name)
        if have is None:
            raise LearnError(ErrorCode.BAD_CONFIG, f"{where} adapts {base_name}, which {model['file']} does not "
                                f"have: it was made for another model ({made_for})")
        dim_ok = ne[0] == have[0] if part == "lora_a" else ne[1] == have[1]
        if not dim_ok:
            raise LearnError(ErrorCode.BAD_CONFIG, f"{where} does not fit {model['file']}: {tname} has shape "
                                f"{ne} for a weight of shape {have}; it was made for another model ({made_for})")
    if ad.get("base_size") and model["size"] != int(ad["base_size"]):
        ad["warning"] = (f"the adapter was trained on {ad.get('base_file')} ({ad.get('base_size')} bytes); "
                         f"the daemon runs {model['file']} ({model['size']} bytes): same shapes, other weights")
    return ad
