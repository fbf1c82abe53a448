"""A stand-in Python worker for the bridge's tests: speaks protocol 1 with the standard library
only, and misbehaves on purpose according to its first argument (the mode)."""
import json
import os
import struct
import sys
import time

mode = sys.argv[1]
marker = sys.argv[2] if len(sys.argv) > 2 else ""
spec = None
params = None


def write_safetensors(path, tensors):
    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    body = raw[8 + size :]
    out = []
    for t in spec["tensors"]:
        entry = header[t["name"]]
        start, end = entry["data_offsets"]
        out.append((t["name"], entry["shape"], list(struct.unpack("<%df" % ((end - start) // 4), body[start:end]))))
    return out


for line in sys.stdin:
    request = json.loads(line)
    op, rid = request["op"], request["id"]

    def reply(**fields):
        sys.stdout.write(json.dumps({"id": rid, "ok": True, **fields}) + "\n")
        sys.stdout.flush()

    if op == "hello":
        spec = request["model"]
        reply(protocol=0 if mode == "old-protocol" else 1, worker="fake 0", workload="fake-" + mode, framework="stdlib")
    elif op == "ping":
        reply()
    elif op == "load":
        params = read_safetensors(request["checkpoint"])
        reply()
    elif op == "export":
        write_safetensors(request["checkpoint"], params)
        reply()
    elif op == "train":
        if mode == "crash" or (mode == "crash-once" and not os.path.exists(marker)):
            if marker:
                open(marker, "w").close()
            sys.stderr.write("fake worker: out of memory while training\n")
            sys.stderr.flush()
            sys.exit(3)
        if mode == "hang":
            time.sleep(600)
        if mode == "garbage":
            sys.stdout.write("Epoch 1/1 ... done\n")
            sys.stdout.flush()
            continue
        if mode == "missing-field":
            reply(mean_loss=1.0)
            continue
        if mode == "refuse":
            sys.stdout.write(json.dumps({"id": rid, "ok": False, "error": "ValueError: learning rate too high"}) + "\n")
            sys.stdout.flush()
            continue
        delta = [(t["name"], t["shape"], [0.001] * len(v)) for t, (_, _, v) in zip(spec["tensors"], params)]
        if mode == "nan":
            delta[0][2][5] = float("nan")
        if mode == "wrong-shape":
            name, shape, values = delta[0]
            delta[0] = (name, list(reversed(shape)), values)
        write_safetensors(request["delta"], delta)
        steps = request["local_steps"]
        reply(mean_loss=0.5, steps=steps, examples=steps * request["batch_size"], seconds=0.001)
    elif op == "shutdown":
        reply()
        break
