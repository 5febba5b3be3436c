#!/usr/bin/env python3
"""side_by_side.py ENGINE.csv PYTORCH.csv OUT.csv: join `fptt bench` rows and
`pytorch_reference.py bench` rows on (hidden, layers, batch), and write time per step of both and
the engine's speed-up (PyTorch ms / engine ms), with the adapter and device of each side. Then,
at the end of each row, the engine step's FLOP count and rate (the engine CSV's gflop_per_step and
gflop_per_s: the step's matrix work counted from the shapes) and its share of the vendor library's
f32 matrix-product rate that the peer measured on its device (cuBLAS on CUDA, TF32 off):
share_of_vendor_matmul = engine gflop_per_s / vendor_matmul_gflop_per_s. Where the peer's CSV has
no vendor figure (older CSVs, or `--matmul 0`), those cells are empty. Standard library only."""

import csv
import sys


def number(row, column):
    """The row's value of `column` as a float, or None where the column is absent or empty."""
    try:
        return float(row.get(column) or "")
    except ValueError:
        return None


def main(engine_path, peer_path, out_path):
    with open(engine_path, newline="") as f:
        engine = {(r["hidden"], r["layers"], r["batch"]): r for r in csv.DictReader(f)}
    with open(peer_path, newline="") as f:
        peer = {(r["hidden"], r["layers"], r["batch"]): r for r in csv.DictReader(f)}
    # Old columns first and unchanged; the FLOP-rate columns are appended.
    header = ["hidden", "layers", "batch", "engine_ms_per_step", "pytorch_ms_per_step", "speedup",
              "engine_adapter", "engine_device_type", "pytorch_device", "torch_version",
              "engine_gflop_per_step", "engine_gflop_per_s", "vendor_matmul_n", "vendor_matmul_gflop_per_s",
              "share_of_vendor_matmul"]
    rows, devices = [], set()
    for key in sorted(set(engine) & set(peer), key=lambda k: tuple(int(v) for v in k)):
        e, p = engine[key], peer[key]
        e_ms, p_ms = float(e["ms_per_step"]), float(p["ms_per_step"])
        gflop = number(e, "gflop_per_step")
        rate = number(e, "gflop_per_s")
        if rate is None and gflop is not None and e_ms > 0:
            rate = gflop / (e_ms / 1e3)
        vendor = number(p, "vendor_matmul_gflop_per_s")
        share = rate / vendor if rate is not None and vendor else None
        rows.append([*key, f"{e_ms:.3f}", f"{p_ms:.3f}", f"{p_ms / e_ms:.1f}", e["adapter"], e["device_type"],
                     p["device"], p["torch_version"],
                     "" if gflop is None else f"{gflop:.6f}", "" if rate is None else f"{rate:.3f}",
                     p.get("vendor_matmul_n") or "", "" if vendor is None else f"{vendor:.3f}",
                     "" if share is None else f"{share:.4f}"])
        devices.add((e["adapter"], e["device_type"], p["device"], p.get("device_type", "")))
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print(f"{'hidden':>7} {'batch':>6} {'engine ms':>10} {'torch ms':>10} {'speed-up':>9} "
          f"{'engine GFLOP/s':>15} {'vendor mm GFLOP/s':>18} {'of vendor mm':>13}")
    for r in rows:
        share = f"{100 * float(r[14]):.1f}%" if r[14] else "-"
        print(f"{r[0]:>7} {r[2]:>6} {r[3]:>10} {r[4]:>10} {r[5]:>8}x {r[11] or '-':>15} {r[13] or '-':>18} "
              f"{share:>13}")
    # The share only means "against the vendor library on the same chip" when both ran on one device.
    for adapter, device_type, torch_device, torch_type in sorted(devices):
        same = adapter == torch_device or (device_type == "cpu" and torch_type == "cpu")
        if not same:
            print(f"note: engine adapter '{adapter}' and PyTorch device '{torch_device}' differ: "
                  "share_of_vendor_matmul compares two devices")
    print(f"csv: {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
