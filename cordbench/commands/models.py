"""``cordbench models``: registered networks × presets with parameter count and FLOPs."""

from __future__ import annotations

import argparse
from typing import Any

from core.ranges import Range, add_number
from lightning_modules.flops import count_flops, flop_counter  # noqa: F401  (the library's one FLOP counter)

HELP = "list registered models and presets with parameters and GFLOPs at a given input size"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_number(
        parser, "--size", kind=int, range=Range(8, 4096), default=128, help="input edge length in voxels (default 128)"
    )
    parser.add_argument("--spatial-dims", type=int, default=2, choices=(2, 3), help="2D slices or 3D volumes")
    add_number(parser, "--in-channels", kind=int, range=Range(1, 1024), default=1, help="input channels")
    add_number(parser, "--num-classes", kind=int, range=Range(1, 1024), default=2, help="output classes")
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    parser.add_argument("--preset", action="append", help="only this preset (repeatable)")


def model_rows(
    size: int,
    spatial_dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 2,
    models: list[str] | None = None,
    presets: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per (model, preset): parameters and forward GFLOPs for one ``size``^d input."""
    import torch

    from lightning_modules.registry import build_network, get_spec, list_models

    rows = []
    for name in models or list_models():
        spec = get_spec(name)
        for preset in presets or list(spec.presets):
            row: dict[str, Any] = {"model": name, "preset": preset}
            if preset not in spec.presets:
                continue
            if spatial_dims not in spec.spatial_dims:
                rows.append({**row, "params": None, "gflops": None, "note": f"{spatial_dims}D not supported"})
                continue
            torch.manual_seed(0)
            model = build_network(name, in_channels, num_classes, spatial_dims, preset).eval()
            x = torch.zeros((1, in_channels) + (size,) * spatial_dims)
            with torch.no_grad():
                flops = count_flops(lambda: model(x))
            rows.append(
                {**row, "params": sum(p.numel() for p in model.parameters()), "gflops": flops / 1e9, "note": ""}
            )
    return rows


def format_table(rows: list[dict[str, Any]], size: int, spatial_dims: int) -> str:
    """Aligned text table of :func:`model_rows`."""
    head = f"{'model':<14}{'preset':<8}{'params':>14}{f'GFLOPs@{size}^{spatial_dims}':>18}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "-"
        gfl = f"{r['gflops']:.3f}" if r["gflops"] is not None else "-"
        lines.append(f"{r['model']:<14}{r['preset']:<8}{params:>14}{gfl:>18}  {r['note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from core.errors import ConfigError
    from lightning_modules.registry import get_spec

    for name in args.model or []:
        spec = get_spec(name)
        for preset in args.preset or []:
            if preset not in spec.presets:
                raise ConfigError(f"model {name!r} has no preset {preset!r}; presets: {', '.join(spec.presets)}")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    rows = model_rows(args.size, args.spatial_dims, args.in_channels, args.num_classes, args.model, args.preset)
    print(format_table(rows, args.size, args.spatial_dims))
    return 0
