#!/usr/bin/env python3
"""side_by_side.py ENGINE.csv PYTORCH.csv OUT.csv: join `fptt bench` rows and
`pytorch_reference.py bench` rows on (hidden, layers, batch), and write time per step of both and
the engine's speed-up (PyTorch ms / engine ms), with the adapter and device of each side. Standard
library only."""

import csv
import sys


def main(engine_path, peer_path, out_path):
    with open(engine_path, newline="") as f:
        engine = {(r["hidden"], r["layers"], r["batch"]): r for r in csv.DictReader(f)}
    with open(peer_path, newline="") as f:
        peer = {(r["hidden"], r["layers"], r["batch"]): r for r in csv.DictReader(f)}
    header = ["hidden", "layers", "batch", "engine_ms_per_step", "pytorch_ms_per_step", "speedup",
              "engine_adapter", "engine_device_type", "pytorch_device", "torch_version"]
    rows = []
    for key in sorted(set(engine) & set(peer), key=lambda k: tuple(int(v) for v in k)):
        e, p = engine[key], peer[key]
        e_ms, p_ms = float(e["ms_per_step"]), float(p["ms_per_step"])
        rows.append([*key, f"{e_ms:.3f}", f"{p_ms:.3f}", f"{p_ms / e_ms:.1f}", e["adapter"], e["device_type"],
                     p["device"], p["torch_version"]])
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    print(f"{'hidden':>7} {'batch':>6} {'engine ms':>10} {'torch ms':>10} {'speed-up':>9}")
    for r in rows:
        print(f"{r[0]:>7} {r[2]:>6} {r[3]:>10} {r[4]:>10} {r[5]:>8}x")
    print(f"csv: {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
